//! The Message resource (channels.md §5.7): what the simulator keeps per message,
//! its JSON shape, SIDs and Twilio's date format.

use serde::Serialize;
use sha1::{Digest, Sha1};

use crate::json::Json;

pub(crate) const API_VERSION: &str = "2010-04-01";

/// One status a message went through (sim bookkeeping, not part of the resource).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct StatusStep {
    pub status: &'static str,
    pub at_ms: i64,
    pub error_code: Option<u32>,
}

/// One fetch of an outbound `MediaUrl` by the simulator.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct MediaFetch {
    pub url: String,
    /// HTTP status of the final response (after redirects); `null` when the connection failed.
    pub status: Option<u16>,
    pub content_type: Option<String>,
    pub size: Option<usize>,
    pub error: Option<String>,
    /// The message fails with this code because of the fetch.
    pub error_code: Option<u32>,
}

#[derive(Clone, Debug)]
pub(crate) struct Message {
    pub sid: String,
    /// `inbound` or `outbound-api`.
    pub direction: &'static str,
    /// `None` while a Messaging Service has not picked a sender.
    pub from: Option<String>,
    pub to: String,
    pub body: String,
    pub status: &'static str,
    /// 0 until a sender is picked for Messaging Service sends.
    pub num_segments: usize,
    pub num_media: usize,
    pub messaging_service_sid: Option<String>,
    pub error_code: Option<u32>,
    pub error_message: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub sent_ms: Option<i64>,
    // -- simulator bookkeeping -------------------------------------------
    pub whatsapp: bool,
    pub status_callback: Option<String>,
    pub validity_ms: i64,
    /// `ValidityPeriod` was given (expiry then fails with 30036 instead of 30001).
    pub validity_explicit: bool,
    pub content_sid: Option<String>,
    pub content_variables: Option<String>,
    pub media_urls: Vec<String>,
    pub media_fetches: Vec<MediaFetch>,
    /// Media fetches still running; the message is not sent before they finish.
    pub media_pending: usize,
    /// Segments the sender's queue is charged for.
    pub billed_segments: usize,
    /// SimClock ms at which the sender hands it to the carrier.
    pub send_at_ms: Option<i64>,
    /// SimClock ms at which the carrier's delivery receipt arrives.
    pub deliver_at_ms: Option<i64>,
    /// SimClock ms at which it leaves the queue unsent (ValidityPeriod).
    pub expire_at_ms: Option<i64>,
    pub history: Vec<StatusStep>,
}

impl Message {
    /// Final states: nothing more happens on its own.
    pub fn is_final(&self) -> bool {
        matches!(
            self.status,
            "delivered" | "undelivered" | "failed" | "read" | "received" | "canceled"
        )
    }

    pub fn uri(&self, account_sid: &str) -> String {
        format!("/{API_VERSION}/Accounts/{account_sid}/Messages/{}.json", self.sid)
    }

    /// The REST resource, fields in twilio-python's order as shown in channels.md §5.7.
    pub fn to_json(&self, account_sid: &str) -> Json {
        let date = |ms: i64| Json::Str(rfc2822(ms));
        Json::obj()
            .with("sid", self.sid.as_str())
            .with("account_sid", account_sid)
            .with("messaging_service_sid", self.messaging_service_sid.clone())
            .with("from", self.from.clone())
            .with("to", self.to.as_str())
            .with("body", self.body.as_str())
            .with("status", self.status)
            .with("direction", self.direction)
            .with("num_segments", self.num_segments.to_string())
            .with("num_media", self.num_media.to_string())
            .with("price", Json::Null)
            .with("price_unit", "USD")
            .with("error_code", self.error_code.map(u64::from))
            .with("error_message", self.error_message.clone())
            .with("date_created", date(self.created_ms))
            .with("date_updated", date(self.updated_ms))
            .with("date_sent", self.sent_ms.map(rfc2822))
            .with("api_version", API_VERSION)
            .with("uri", self.uri(account_sid))
            .with(
                "subresource_uris",
                Json::obj().with(
                    "media",
                    format!("/{API_VERSION}/Accounts/{account_sid}/Messages/{}/Media.json", self.sid),
                ),
            )
    }
}

/// Deterministic Twilio-shaped SIDs: a two-letter prefix and 32 lowercase hex digits
/// derived from the simulator's seed and a counter.
#[derive(Clone, Debug)]
pub(crate) struct SidGen {
    seed: u64,
    next: u64,
}

impl SidGen {
    pub fn new(seed: u64) -> Self {
        Self { seed, next: 1 }
    }

    pub fn next(&mut self, prefix: &str) -> String {
        let n = self.next;
        self.next += 1;
        let digest = Sha1::digest(format!("sb-sim/twilio/{}/{prefix}/{n}", self.seed));
        format!("{prefix}{}", &hex::encode(digest)[..32])
    }
}

/// RFC 2822 date as Twilio writes it: `Thu, 01 Jan 2026 00:00:00 +0000`.
pub(crate) fn rfc2822(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, ss, days) = civil(ms);
    format!(
        "{}, {d:02} {} {y:04} {hh:02}:{mm:02}:{ss:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize]
    )
}

/// `RawDlrDoneDate` of delivery receipts: `YYMMDDhhmm` (UTC here).
pub(crate) fn dlr_done_date(ms: i64) -> String {
    let (y, m, d, hh, mm, _, _) = civil(ms);
    format!("{:02}{m:02}{d:02}{hh:02}{mm:02}", y.rem_euclid(100))
}

/// (year, month, day, hour, minute, second, days since the epoch) in UTC.
fn civil(ms: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60, days)
}

/// Compact JSON keeping key order, with raw UTF-8 (Twilio's REST responses are not ASCII-escaped).
pub(crate) fn utf8_json(j: &Json) -> String {
    j.to_utf8_wire()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2822_dates() {
        assert_eq!(rfc2822(1_767_225_600_000), "Thu, 01 Jan 2026 00:00:00 +0000");
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc2822(951_782_400_000 + 3_661_000), "Tue, 29 Feb 2000 01:01:01 +0000");
        assert_eq!(rfc2822(1_798_761_599_999), "Thu, 31 Dec 2026 23:59:59 +0000");
        assert_eq!(dlr_done_date(1_767_225_600_000 + 90_061_000), "2601020101");
    }

    #[test]
    fn sids_are_deterministic_and_shaped() {
        let mut a = SidGen::new(7);
        let mut b = SidGen::new(7);
        let s = a.next("SM");
        assert_eq!(s, b.next("SM"));
        assert_eq!(s.len(), 34);
        assert!(s.starts_with("SM") && s[2..].bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a.next("SM"), s);
        assert_ne!(SidGen::new(8).next("SM"), s);
    }

    #[test]
    fn resource_shape() {
        let m = Message {
            sid: "SM8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d".into(),
            direction: "outbound-api",
            from: Some("+15551230000".into()),
            to: "+15557654321".into(),
            body: "¿Listo?".into(),
            status: "queued",
            num_segments: 1,
            num_media: 0,
            messaging_service_sid: None,
            error_code: None,
            error_message: None,
            created_ms: 1_767_225_600_000,
            updated_ms: 1_767_225_600_000,
            sent_ms: None,
            whatsapp: false,
            status_callback: None,
            validity_ms: 36_000_000,
            validity_explicit: false,
            content_sid: None,
            content_variables: None,
            media_urls: vec![],
            media_fetches: vec![],
            media_pending: 0,
            billed_segments: 1,
            send_at_ms: None,
            deliver_at_ms: None,
            expire_at_ms: None,
            history: vec![],
        };
        let wire = utf8_json(&m.to_json("AC0000000000000000000000000000demo"));
        assert!(wire.starts_with(
            r#"{"sid":"SM8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d","account_sid":"AC0000000000000000000000000000demo","messaging_service_sid":null,"from":"+15551230000","to":"+15557654321","body":"¿Listo?","status":"queued","direction":"outbound-api","num_segments":"1","num_media":"0","price":null,"price_unit":"USD","error_code":null,"error_message":null,"date_created":"Thu, 01 Jan 2026 00:00:00 +0000""#
        ), "{wire}");
        assert!(wire.ends_with(
            r#""date_sent":null,"api_version":"2010-04-01","uri":"/2010-04-01/Accounts/AC0000000000000000000000000000demo/Messages/SM8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d.json","subresource_uris":{"media":"/2010-04-01/Accounts/AC0000000000000000000000000000demo/Messages/SM8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d/Media.json"}}"#
        ), "{wire}");
    }
}
