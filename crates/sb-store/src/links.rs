//! Short links of automated messages: a token per URL per delivery, followed by `/l/{token}`.

use sb_sql::{Conn, Stmt};

use crate::Result;

/// Registers `url` for a delivery and returns its token (10 characters, about 58 bits).
pub fn create(c: &mut dyn Conn, ws: &str, delivery_id: &str, url: &str, now: i64) -> Result<String> {
    let token: String = sb_core::credentials::random_password().chars().take(10).collect();
    c.execute(
        &Stmt::new(
            "INSERT INTO links (token, workspace_id, delivery_id, url, clicks, created_at)
             VALUES (:token, :ws, :delivery, :url, 0, :now)",
        )
        .bind("token", &token)
        .bind("ws", ws)
        .bind("delivery", delivery_id)
        .bind("url", url)
        .bind("now", now),
    )?;
    Ok(token)
}

/// The URL behind a token, counting the click; `None` for a token nobody made.
pub fn follow(c: &mut dyn Conn, token: &str, now: i64) -> Result<Option<String>> {
    Ok(c.query_opt(
        &Stmt::new("UPDATE links SET clicks = clicks + 1, last_click_at = :now WHERE token = :token RETURNING url")
            .bind("now", now)
            .bind("token", token),
    )?
    .map(|r| r.get_in::<String>("links", "url"))
    .transpose()?)
}
