//! The same server on PostgreSQL: the HTTP API, auth, isolation, audit and jobs through the
//! PostgreSQL executor, in a schema of its own that is dropped afterwards.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use sb_server::config::DatabaseConfig;
use sb_sql::postgres::{PgExecutor, PgOptions};
use sb_sql::{Db, SqlError};
use serde_json::json;

use crate::harness::{TestServer, code};

#[tokio::test]
async fn the_api_runs_on_postgres() {
    let Ok(url) = std::env::var("SWITCHBOARD_TEST_PG_URL") else {
        println!("PostgreSQL half skipped: SWITCHBOARD_TEST_PG_URL is not set");
        return;
    };
    let admin = Db::new(Arc::new(
        PgExecutor::connect(&PgOptions::new(url.clone()))
            .await
            .expect("PostgreSQL reachable"),
    ));
    let schema = format!("sb_e2e_{}", sb_core::new_id().replace('-', ""));
    let ddl = format!("CREATE SCHEMA {schema}");
    admin
        .write(move |c| c.execute_script(&ddl))
        .await
        .map_err(|e: SqlError| e)
        .expect("schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    let schema_url = format!("{url}{separator}options=-c%20search_path%3D{schema}");

    let s = TestServer::start_with(|c| c.database = DatabaseConfig::Postgres(schema_url)).await;
    let (status, _) = s.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, created) = s
        .post(
            "/api/v1/workspaces",
            &s.admin_token,
            json!({"name": "PG Shop", "admin_email": "pg@other.test", "admin_name": "P", "admin_password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let b_admin = created["admin"]["id"].as_str().expect("id").to_owned();
    let b_token = s.token_for("pg@other.test", "correct horse battery").await;
    let (status, body) = s.get(&format!("/api/v1/users/{b_admin}"), &s.admin_token).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "user_not_found"));
    let (_, audit) = s
        .get("/api/v1/audit?action=access.cross_workspace_denied", &s.admin_token)
        .await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1));
    let (status, body) = s.get("/api/v1/users", &b_token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["items"].as_array().map(Vec::len),
        Some(1),
        "B sees only its own user"
    );

    // A job with no handler dies and is retryable, through the PostgreSQL claim path.
    let (_, me) = s.get("/api/v1/me", &s.admin_token).await;
    let ws = me["workspace"]["id"].as_str().expect("workspace").to_owned();
    let job = sb_store::jobs::NewJob::new("default", "no.such.kind", "{}", s.server.store.now()).workspace(&ws);
    let id = s.server.engine.enqueue(job).await.expect("enqueue").expect("id");
    let mut dead = false;
    for _ in 0..200 {
        let (_, list) = s.get("/api/v1/jobs", &s.admin_token).await;
        if list["items"][0]["id"].as_str() == Some(id.as_str()) {
            dead = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(dead, "the job died and is listed");
    let (status, _) = s
        .post(&format!("/api/v1/jobs/{id}/retry"), &s.admin_token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);

    s.server.shutdown().await;
    let ddl = format!("DROP SCHEMA {schema} CASCADE");
    admin
        .write(move |c| c.execute_script(&ddl))
        .await
        .map_err(|e: SqlError| e)
        .expect("drop schema");
    admin.close().await;
}
