//! Delivery Status Notifications (RFC 3464): the bounce a relay sends to the
//! envelope sender after it accepted a message it then could not deliver.

use super::headers;
use super::store::RecordedMail;

/// One failed recipient of a DSN.
#[derive(Clone, Debug)]
pub(crate) struct FailedRecipient {
    pub address: String,
    /// RFC 3463 status, e.g. `5.1.1`.
    pub status: String,
    /// The remote server's reply, e.g. `550 5.1.1 user unknown`.
    pub diagnostic: String,
}

impl FailedRecipient {
    /// A "user unknown" failure (the common hard bounce).
    pub fn unknown_user(address: &str) -> Self {
        Self {
            address: address.to_string(),
            status: "5.1.1".into(),
            diagnostic: format!("550 5.1.1 <{address}>: Recipient address rejected: User unknown"),
        }
    }
}

/// A DSN ready to send: `MAIL FROM:<>` to the original envelope sender.
#[derive(Clone, Debug)]
pub(crate) struct Dsn {
    pub raw: Vec<u8>,
    pub message_id: String,
    pub to: String,
}

/// Builds the DSN for `original` reporting `failed`; `unique` makes the Message-ID and boundary.
pub(crate) fn build(
    reporting_mta: &str,
    original: &RecordedMail,
    failed: &[FailedRecipient],
    now_ms: i64,
    unique: &str,
) -> Dsn {
    let to = original.envelope_from.clone();
    let message_id = format!("<dsn.{unique}@{reporting_mta}>");
    let boundary = format!("dsn-{unique}");
    let date = headers::rfc5322_date(now_ms);
    let arrival = headers::rfc5322_date(original.received_at_ms);
    let subject = headers::get(&original.headers(), "Subject").unwrap_or_default();
    let failed_list = failed.iter().map(|f| f.address.as_str()).collect::<Vec<_>>().join(", ");

    let mut notice = format!(
        "This is the mail system at host {reporting_mta}.\r\n\r\n\
         I'm sorry to have to inform you that your message could not\r\n\
         be delivered to one or more recipients.\r\n\r\n"
    );
    for f in failed {
        notice.push_str(&format!("<{}>: {}\r\n", f.address, f.diagnostic));
    }

    // Per-message fields, then one block of per-recipient fields per recipient (RFC 3464 §2.2, §2.3).
    let mut status = format!("Reporting-MTA: dns; {reporting_mta}\r\nArrival-Date: {arrival}\r\n");
    for f in failed {
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {addr}\r\nOriginal-Recipient: rfc822; {addr}\r\nAction: failed\r\n\
             Status: {st}\r\nRemote-MTA: dns; {host}\r\nDiagnostic-Code: smtp; {diag}\r\n",
            addr = f.address,
            st = f.status,
            host = headers::domain(&f.address),
            diag = f.diagnostic,
        ));
    }

    let mut original_headers = headers::header_block(&original.raw).to_vec();
    if !original_headers.ends_with(b"\n") {
        original_headers.extend_from_slice(b"\r\n");
    }

    let mut raw = format!(
        "From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n\
         To: <{to}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {date}\r\n\
         Message-ID: {message_id}\r\n\
         Auto-Submitted: auto-replied\r\n\
         X-Failed-Recipients: {failed_list}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated message.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         Content-Description: Notification\r\n\
         \r\n\
         {notice}\
         \r\n\
         Original subject: {subject}\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         Content-Description: Delivery report\r\n\
         \r\n\
         {status}\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         Content-Description: Undelivered Message Headers\r\n\
         \r\n"
    )
    .into_bytes();
    raw.extend_from_slice(&original_headers);
    raw.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Dsn { raw, message_id, to }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    #[test]
    fn is_a_multipart_report_with_status_and_original_headers() {
        let original = RecordedMail {
            id: "m1".into(),
            received_at_ms: 1_767_225_600_000,
            envelope_from: "bounce+abc@mail.acme.test".into(),
            recipients: vec!["gone@cust.test".into()],
            tls: true,
            auth_user: None,
            helo: "acme".into(),
            raw: b"From: Acme <s@acme.test>\r\nTo: gone@cust.test\r\nSubject: Your order\r\nMessage-ID: <o1@acme.test>\r\n\r\nHi\r\n"
                .to_vec(),
        };
        let dsn = build(
            "mx.sim.example.test",
            &original,
            &[FailedRecipient::unknown_user("gone@cust.test")],
            1_767_225_660_000,
            "u1",
        );
        assert_eq!(dsn.to, "bounce+abc@mail.acme.test");
        let text = String::from_utf8(dsn.raw.clone()).unwrap();
        assert!(text.contains("X-Failed-Recipients: gone@cust.test\r\n"));
        assert!(text.contains("Final-Recipient: rfc822; gone@cust.test\r\nOriginal-Recipient"));
        assert!(text.contains("Action: failed\r\nStatus: 5.1.1\r\n"));
        assert!(text.contains("Message-ID: <o1@acme.test>\r\n\r\n--dsn-u1--\r\n"));
        let p = MessageParser::default().parse(&dsn.raw).unwrap();
        let ct = p.root_part().content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        let parts: Vec<String> = p.parts[1..]
            .iter()
            .filter_map(|part| {
                part.content_type()
                    .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
            })
            .collect();
        assert_eq!(
            parts,
            vec!["text/plain", "message/delivery-status", "text/rfc822-headers"]
        );
    }
}
