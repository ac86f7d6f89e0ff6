//! The receiving side of RFC 2369 / RFC 8058: a mail client's one-click
//! unsubscribe (the POST Gmail makes) and a link scanner's GET prefetch of the
//! same URI, which must not unsubscribe.

use serde::Serialize;

use super::headers;
use super::store::RecordedMail;

/// The one-click body, exactly as RFC 8058 §3.2 and Gmail send it.
pub(crate) const ONE_CLICK_BODY: &str = "List-Unsubscribe=One-Click";

/// What a client learns from a message's list headers.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ListUnsubscribe {
    /// Every URI of `List-Unsubscribe`, in preference order, without brackets.
    pub uris: Vec<String>,
    /// The first HTTP(S) URI (what one-click uses).
    pub http_uri: Option<String>,
    /// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` is present.
    pub one_click: bool,
    /// The DKIM-Signature `h=` tag lists both headers; `None` without a DKIM-Signature.
    pub dkim_covers_both: Option<bool>,
}

pub(crate) fn inspect(mail: &RecordedMail) -> ListUnsubscribe {
    let fields = mail.headers();
    let uris: Vec<String> = headers::get(&fields, "List-Unsubscribe")
        .map(|v| {
            headers::angle_tokens(&v)
                .into_iter()
                .map(|t| t.trim_matches(['<', '>']).trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    let http_uri = uris
        .iter()
        .find(|u| u.to_ascii_lowercase().starts_with("https://") || u.to_ascii_lowercase().starts_with("http://"))
        .cloned();
    let one_click = headers::get(&fields, "List-Unsubscribe-Post").is_some_and(|v| v.trim() == ONE_CLICK_BODY);
    ListUnsubscribe {
        uris,
        http_uri,
        one_click,
        dkim_covers_both: headers::get(&fields, "DKIM-Signature").map(|d| dkim_covers(&d)),
    }
}

/// Whether a DKIM-Signature's `h=` list includes List-Unsubscribe and List-Unsubscribe-Post.
fn dkim_covers(sig: &str) -> bool {
    let signed: Vec<String> = sig
        .split(';')
        .filter_map(|tag| tag.trim().strip_prefix("h="))
        .flat_map(|h| h.split(':').map(|n| n.trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .collect();
    ["list-unsubscribe", "list-unsubscribe-post"]
        .iter()
        .all(|n| signed.iter().any(|s| s == n))
}

/// One HTTP request the client made and what came back.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct HttpExchange {
    pub method: &'static str,
    pub url: String,
    /// Request headers set by the client (no cookies, no credentials).
    pub request_headers: Vec<(String, String)>,
    pub request_body: String,
    pub status: Option<u16>,
    /// `Location` of a redirect: RFC 8058 §3.2 says the POST must not be redirected.
    pub location: Option<String>,
    /// The start of the response body.
    pub response_excerpt: String,
    pub error: Option<String>,
}

async fn exchange(
    client: &reqwest::Client,
    method: &'static str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpExchange {
    let mut ex = HttpExchange {
        method,
        url: url.to_string(),
        request_headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        request_body: body.to_string(),
        status: None,
        location: None,
        response_excerpt: String::new(),
        error: None,
    };
    let mut req = match method {
        "POST" => client.post(url).body(body.to_string()),
        _ => client.get(url),
    };
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    match req.send().await {
        Ok(resp) => {
            ex.status = Some(resp.status().as_u16());
            ex.location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = resp.text().await.unwrap_or_default();
            ex.response_excerpt = text.chars().take(500).collect();
        }
        Err(e) => ex.error = Some(e.to_string()),
    }
    ex
}

/// The one-click POST (RFC 8058 §3.2): form-encoded body `List-Unsubscribe=One-Click`, no cookies,
/// no auth, redirects not followed.
pub(crate) async fn one_click(client: &reqwest::Client, url: &str) -> HttpExchange {
    exchange(
        client,
        "POST",
        url,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        ONE_CLICK_BODY,
    )
    .await
}

/// A link scanner's prefetch: a plain GET of the same URI, redirects followed like a browser.
pub(crate) async fn prefetch(client: &reqwest::Client, url: &str) -> HttpExchange {
    exchange(client, "GET", url, &[("Accept", "text/html,*/*")], "").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_list_headers_and_dkim_coverage() {
        let mail = RecordedMail {
            id: "m1".into(),
            received_at_ms: 0,
            envelope_from: String::new(),
            recipients: vec![],
            tls: false,
            auth_user: None,
            helo: String::new(),
            raw: b"DKIM-Signature: v=1; a=rsa-sha256; d=acme.test; s=s1;\r\n h=from:to:subject:list-unsubscribe:\r\n list-unsubscribe-post; bh=x; b=y\r\n\
List-Unsubscribe: <mailto:u+T@acme.test?subject=unsubscribe>, <https://acme.test/u/T>\r\n\
List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nhi\r\n"
                .to_vec(),
        };
        let l = inspect(&mail);
        assert_eq!(l.uris.len(), 2);
        assert_eq!(l.http_uri.as_deref(), Some("https://acme.test/u/T"));
        assert!(l.one_click);
        assert_eq!(l.dkim_covers_both, Some(true));
        assert!(!dkim_covers("v=1; h=from:list-unsubscribe; b=x"));
    }
}
