//! Small display helpers: times, money and channel marks.

use sb_core::clock::rfc3339;

/// `HH:MM` for today, `YYYY-MM-DD HH:MM` otherwise (UTC, as the `<time>` element says).
pub fn short_time(ms: i64, now: i64) -> String {
    let t = rfc3339(ms);
    let (date, time) = (t.get(..10).unwrap_or(""), t.get(11..16).unwrap_or(""));
    if rfc3339(now).get(..10) == Some(date) {
        time.to_owned()
    } else {
        format!("{date} {time}")
    }
}

/// A time as a `<time>` element: the UTC text the server wrote, and the instant, so the page
/// can show it in the viewer's time zone. Only our own digits go in, so it is safe as HTML.
pub struct Stamp {
    text: String,
    iso: String,
}

pub fn stamp(ms: i64, now: i64) -> Stamp {
    Stamp {
        text: short_time(ms, now),
        iso: rfc3339(ms),
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<time datetime=\"{}\">{}</time>", self.iso, self.text)
    }
}

/// Minor units as `89.99 EUR`.
pub fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.abs();
    format!("{sign}{}.{:02} {currency}", m / 100, m % 100)
}

/// A short mark and a CSS class for a channel kind.
pub fn channel_mark(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "whatsapp" | "twilio_whatsapp" => ("WhatsApp", "ch-whatsapp"),
        "messenger" => ("Messenger", "ch-messenger"),
        "instagram" => ("Instagram", "ch-instagram"),
        "telegram" => ("Telegram", "ch-telegram"),
        "twilio_sms" => ("SMS", "ch-sms"),
        "email" => ("E-mail", "ch-email"),
        "widget" => ("Web chat", "ch-widget"),
        "api" => ("API", "ch-api"),
        _ => ("Other", "ch-other"),
    }
}

/// What an identity kind means to an agent.
pub fn identity_label(kind: &str) -> &str {
    match kind {
        "phone" => "Phone",
        "email" => "E-mail",
        "visitor" => "Website visitor",
        "whatsapp_bsuid" => "WhatsApp user",
        "telegram_user" => "Telegram user",
        "external" | "external_id" => "External id",
        "user_id" => "User id",
        "anonymous_id" => "Anonymous id",
        "loyalty_id" => "Loyalty id",
        "device_id" => "Device",
        "messenger_psid" => "Messenger user",
        "instagram_igsid" => "Instagram user",
        "api" => "API user",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_money_and_marks() {
        let day = 1_764_000_000_000; // 2025-11-24T16:00:00Z
        assert_eq!(short_time(day, day + 60_000), "16:00");
        assert_eq!(short_time(day, day + 86_400_000), "2025-11-24 16:00");
        assert_eq!(money(8999, "EUR"), "89.99 EUR");
        assert_eq!(money(-5, "EUR"), "-0.05 EUR");
        assert_eq!(channel_mark("twilio_sms").0, "SMS");
        assert_eq!(
            stamp(day, day).to_string(),
            "<time datetime=\"2025-11-24T16:00:00Z\">16:00</time>"
        );
    }
}
