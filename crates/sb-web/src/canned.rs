//! Canned responses in the web app: the composer's picker (its options also carry the texts
//! that `/code` expands to, see `static/app.js`) and a small page to add and delete them.
//! Writes go through `sb_app::canned`, the JSON API's own use cases.

use crate::web::Form;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use sb_app::App;
use sb_app::canned::{self, CreateCannedResponse};
use sb_store::canned_responses::CannedResponse;
use serde::Deserialize;

use crate::web::{Chrome, Signed, WebError, WebResult, after_post, is_htmx};

const PAGE: &str = "/app/canned-responses";
/// How much of a response the picker shows next to its short code.
const PREVIEW_CHARS: usize = 60;

pub struct CannedRow {
    pub id: String,
    pub short_code: String,
    pub content: String,
    pub preview: String,
}

impl From<CannedResponse> for CannedRow {
    fn from(r: CannedResponse) -> Self {
        let flat = r.content.split_whitespace().collect::<Vec<_>>().join(" ");
        let preview = if flat.chars().count() > PREVIEW_CHARS {
            format!("{}…", flat.chars().take(PREVIEW_CHARS).collect::<String>())
        } else {
            flat
        };
        CannedRow {
            id: r.id,
            short_code: r.short_code,
            content: r.content,
            preview,
        }
    }
}

async fn rows(state: &App, signed: &Signed) -> WebResult<Vec<CannedRow>> {
    let list = canned::list_library(state, &signed.0, None).await?;
    Ok(list.into_iter().map(CannedRow::from).collect())
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/canned_picker.html")]
pub struct CannedPicker {
    pub items: Vec<CannedRow>,
}

/// The composer's picker, loaded with each open conversation.
pub async fn picker(State(state): State<App>, signed: Signed) -> WebResult<CannedPicker> {
    Ok(CannedPicker {
        items: rows(&state, &signed).await?,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/canned_list.html")]
pub struct CannedList {
    pub items: Vec<CannedRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "canned_responses.html")]
pub struct CannedPage {
    pub chrome: Chrome,
    pub list: CannedList,
}

pub async fn page(State(state): State<App>, signed: Signed) -> WebResult<CannedPage> {
    let items = rows(&state, &signed).await?;
    Ok(CannedPage {
        chrome: signed.chrome("canned"),
        list: CannedList { items },
    })
}

#[derive(Deserialize)]
pub struct AddForm {
    short_code: String,
    content: String,
}

/// Adds a response; htmx swaps the list (and the form clears itself), a plain post goes back.
pub async fn add(State(state): State<App>, signed: Signed, headers: HeaderMap, Form(form): Form<AddForm>) -> Response {
    let htmx = is_htmx(&headers);
    let body = CreateCannedResponse {
        // Agents type codes with a slash or in capitals; the library keeps one spelling.
        short_code: form.short_code.trim().trim_start_matches('/').to_lowercase(),
        content: form.content.trim().to_owned(),
    };
    if let Err(e) = canned::add(&state, &signed.0, body).await {
        // The form keeps what was typed; the reason shows above it.
        return WebError::from(e).with_htmx(htmx).at("#canned-error").into_response();
    }
    list_after_post(&state, &signed, &headers, htmx).await
}

/// Deletes a response; htmx swaps the list, a plain post goes back.
pub async fn delete(State(state): State<App>, signed: Signed, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let htmx = is_htmx(&headers);
    if let Err(e) = canned::remove(&state, &signed.0, &id).await {
        return WebError::from(e).with_htmx(htmx).into_response();
    }
    list_after_post(&state, &signed, &headers, htmx).await
}

async fn list_after_post(state: &App, signed: &Signed, headers: &HeaderMap, htmx: bool) -> Response {
    match rows(state, signed).await {
        Ok(items) => after_post(headers, CannedList { items }, PAGE),
        Err(e) => e.with_htmx(htmx).into_response(),
    }
}
