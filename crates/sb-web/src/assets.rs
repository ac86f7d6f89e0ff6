//! Static files embedded in the binary (no build step, nothing fetched at run time). URLs carry
//! a hash of the content, so a changed file gets a new URL and the old one can be cached for good.

use std::sync::OnceLock;

use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: [Asset; 4] = [
    Asset {
        name: "htmx.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../static/vendor/htmx-2.0.11.min.js"),
    },
    Asset {
        name: "htmx-ext-sse.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../static/vendor/htmx-ext-sse-2.2.4.min.js"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../static/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../static/app.css"),
    },
];

/// First 12 hex digits of each asset's SHA-256, computed once.
fn hashes() -> &'static [String] {
    static HASHES: OnceLock<Vec<String>> = OnceLock::new();
    HASHES.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| hex::encode(Sha256::digest(a.bytes))[..12].to_owned())
            .collect()
    })
}

/// The URL of an embedded asset, with its content hash.
pub fn url(name: &str) -> String {
    let hash = ASSETS
        .iter()
        .position(|a| a.name == name)
        .map(|i| hashes()[i].as_str())
        .unwrap_or("");
    format!("/app/static/{name}?h={hash}")
}

#[derive(Deserialize)]
pub struct Version {
    h: Option<String>,
}

pub async fn serve(Path(name): Path<String>, Query(v): Query<Version>) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let asset = &ASSETS[i];
    // The hashed URL never changes meaning; anything else is revalidated.
    let cache = if v.h.as_deref() == Some(hashes()[i].as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, cache),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        [(header::ETAG, format!("\"{}\"", hashes()[i]))],
        asset.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_content_hash_and_unknown_names_have_none() {
        let u = url("app.css");
        assert!(u.starts_with("/app/static/app.css?h="), "{u}");
        assert_eq!(u.len(), "/app/static/app.css?h=".len() + 12);
        assert_eq!(url("nope.js"), "/app/static/nope.js?h=");
    }

    /// VENDORED.md states the checksum of every vendored file; the embedded bytes must match it.
    #[test]
    fn vendored_files_match_their_recorded_checksums() {
        let record = include_str!("../static/vendor/VENDORED.md");
        let vendored = [
            ("htmx-2.0.11.min.js", ASSETS[0].bytes),
            ("htmx-ext-sse-2.2.4.min.js", ASSETS[1].bytes),
        ];
        for (file, bytes) in vendored {
            let row = record
                .lines()
                .find(|l| l.starts_with(&format!("| `{file}`")))
                .unwrap_or_else(|| panic!("{file} is not recorded in VENDORED.md"));
            let digest = hex::encode(Sha256::digest(bytes));
            assert!(
                row.contains(&format!("`{digest}`")),
                "{file}: recorded {row}, embedded {digest}"
            );
        }
    }
}
