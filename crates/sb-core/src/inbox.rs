//! Inbox rules: delivery status moves only forward, conversation states, and the
//! identifiers that may link a customer across channels.

use serde::{Deserialize, Serialize};

/// Why an outbound message is sent. Marketing needs the customer's consent on the channel
/// and an address that is not suppressed; the others go to anyone in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    #[default]
    Conversation,
    Transactional,
    Marketing,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Conversation => "conversation",
            Purpose::Transactional => "transactional",
            Purpose::Marketing => "marketing",
        }
    }

    pub fn parse(s: &str) -> Option<Purpose> {
        [Purpose::Conversation, Purpose::Transactional, Purpose::Marketing]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// Delivery status of an outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Queued,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Sent, Self::Delivered, Self::Read, Self::Failed]
            .into_iter()
            .find(|d| d.as_str() == s)
    }

    fn rank(self) -> u8 {
        match self {
            DeliveryStatus::Queued => 0,
            DeliveryStatus::Sent => 1,
            DeliveryStatus::Failed => 1,
            DeliveryStatus::Delivered => 2,
            DeliveryStatus::Read => 3,
        }
    }

    /// The status after a provider reports `reported`: only forward (queued → sent →
    /// delivered → read). `failed` replaces only queued or sent; a late delivered/read after a
    /// failure wins (providers do send those), a late "delivered" never overwrites "read".
    pub fn advance(self, reported: DeliveryStatus) -> DeliveryStatus {
        if reported.rank() > self.rank() || (reported == DeliveryStatus::Failed && self == DeliveryStatus::Queued) {
            reported
        } else if reported == DeliveryStatus::Failed && self == DeliveryStatus::Sent {
            DeliveryStatus::Failed
        } else {
            self
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    Open,
    Pending,
    Snoozed,
    Resolved,
}

impl ConversationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationStatus::Open => "open",
            ConversationStatus::Pending => "pending",
            ConversationStatus::Snoozed => "snoozed",
            ConversationStatus::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Open, Self::Pending, Self::Snoozed, Self::Resolved]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// Identifier kinds. Global ones (e-mail, phone) link a customer across channels on their
/// own; the others are scoped to the channel account that issued them.
pub fn is_global_identity(kind: &str) -> bool {
    matches!(kind, "email" | "phone" | "user_id")
}

/// Lower-cased, trimmed; `None` when it is not an e-mail address.
pub fn normalise_email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && e.len() <= 254
        && !e.chars().any(char::is_whitespace)
        && !domain.contains('@');
    ok.then_some(e)
}

/// E.164 (`+` and 8–15 digits). Accepts spaces, dashes, dots, brackets and a `00` prefix;
/// refuses a number without a country code rather than guessing one.
pub fn normalise_phone(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let rest = trimmed.strip_prefix('+').or_else(|| trimmed.strip_prefix("00"))?;
    let mut digits = String::with_capacity(16);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    ((8..=15).contains(&digits.len()) && !digits.starts_with('0')).then(|| format!("+{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [DeliveryStatus; 5] = [
        DeliveryStatus::Queued,
        DeliveryStatus::Sent,
        DeliveryStatus::Delivered,
        DeliveryStatus::Read,
        DeliveryStatus::Failed,
    ];

    #[test]
    fn a_late_delivered_never_overwrites_read() {
        assert_eq!(
            DeliveryStatus::Read.advance(DeliveryStatus::Delivered),
            DeliveryStatus::Read
        );
        assert_eq!(DeliveryStatus::Read.advance(DeliveryStatus::Sent), DeliveryStatus::Read);
        assert_eq!(
            DeliveryStatus::Sent.advance(DeliveryStatus::Failed),
            DeliveryStatus::Failed
        );
        assert_eq!(
            DeliveryStatus::Delivered.advance(DeliveryStatus::Failed),
            DeliveryStatus::Delivered
        );
        assert_eq!(
            DeliveryStatus::Failed.advance(DeliveryStatus::Read),
            DeliveryStatus::Read
        );
    }

    proptest! {
        /// Whatever order and repetition reports arrive in, status only moves forward.
        #[test]
        fn status_never_moves_backwards(reports in proptest::collection::vec(0usize..5, 0..20)) {
            let mut status = DeliveryStatus::Queued;
            for r in reports {
                let next = status.advance(ALL[r]);
                prop_assert!(next.rank() >= status.rank(), "{status:?} → {next:?}");
                status = next;
            }
        }

        /// The final status does not depend on whether a report is repeated.
        #[test]
        fn repeated_reports_change_nothing(reports in proptest::collection::vec(0usize..5, 1..12)) {
            let once = reports.iter().fold(DeliveryStatus::Queued, |s, r| s.advance(ALL[*r]));
            let twice = reports.iter().fold(DeliveryStatus::Queued, |s, r| s.advance(ALL[*r]).advance(ALL[*r]));
            prop_assert_eq!(once, twice);
        }
    }

    #[test]
    fn identifiers_normalise_to_one_form() {
        assert_eq!(
            normalise_email("  Ana.Lopez@Example.COM "),
            Some("ana.lopez@example.com".into())
        );
        assert_eq!(normalise_email("not-an-email"), None);
        assert_eq!(normalise_email("a@b"), None);
        assert_eq!(normalise_phone("+34 600-111-222"), Some("+34600111222".into()));
        assert_eq!(normalise_phone("0034 (600) 111 222"), Some("+34600111222".into()));
        assert_eq!(normalise_phone("600111222"), None, "no country code: no guess");
        assert_eq!(normalise_phone("+12"), None);
        assert!(is_global_identity("phone") && !is_global_identity("api"));
    }
}
