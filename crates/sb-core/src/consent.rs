//! May we send this purpose on this channel to this customer now? One rule for every sender:
//! the outbox asks it when a message is queued and again just before it goes out.

use crate::inbox::Purpose;

/// The purposes consent is stated for. A conversation reply is `service`.
pub const PURPOSES: &[&str] = &["service", "transactional", "marketing"];

pub fn consent_purpose(purpose: Purpose) -> &'static str {
    match purpose {
        Purpose::Conversation => "service",
        Purpose::Transactional => "transactional",
        Purpose::Marketing => "marketing",
    }
}

/// What is known about the customer and the address at the moment of sending.
#[derive(Debug, Clone, Copy, Default)]
pub struct Standing<'a> {
    /// The customer's current statement for this channel and purpose, if they made one.
    pub statement: Option<bool>,
    /// Why the address is suppressed on this channel (`bounced`, `complained`, `opted_out`, …).
    pub suppression: Option<&'a str>,
    /// The customer's data was erased.
    pub erased: bool,
}

/// Why a message may not go: a stable code and a sentence for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub reason: String,
}

/// Marketing needs an opt-in on that channel (an inbound message is not one); transactional
/// and service messages go unless the customer said no to them. A suppressed address gets no
/// marketing or transactional mail (a bounce would repeat), but a reply to the customer's own
/// message still goes. Nothing goes to an erased customer.
pub fn may_send(purpose: Purpose, channel: &str, standing: Standing<'_>) -> Result<(), Refusal> {
    let refuse = |code, reason: String| Err(Refusal { code, reason });
    if standing.erased {
        return refuse("customer_erased", "the customer's data was erased".into());
    }
    let name = consent_purpose(purpose);
    if standing.statement == Some(false) {
        return refuse(
            "consent_revoked",
            format!("the customer opted out of {name} on {channel}"),
        );
    }
    if purpose != Purpose::Conversation
        && let Some(why) = standing.suppression
    {
        return refuse(
            "address_suppressed",
            format!("the address is suppressed on {channel} ({why})"),
        );
    }
    if purpose == Purpose::Marketing && standing.statement.is_none() {
        return refuse(
            "consent_missing",
            format!("the customer has not opted in to marketing on {channel}"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(statement: Option<bool>, suppression: Option<&str>, erased: bool) -> Standing<'_> {
        Standing {
            statement,
            suppression,
            erased,
        }
    }

    #[test]
    fn marketing_needs_an_opt_in_and_no_suppression() {
        let code = |s| may_send(Purpose::Marketing, "whatsapp", s).err().map(|r| r.code);
        assert_eq!(code(standing(None, None, false)), Some("consent_missing"));
        assert_eq!(code(standing(Some(true), None, false)), None);
        assert_eq!(code(standing(Some(false), None, false)), Some("consent_revoked"));
        assert_eq!(
            code(standing(Some(true), Some("bounced"), false)),
            Some("address_suppressed")
        );
        assert_eq!(code(standing(Some(true), None, true)), Some("customer_erased"));
    }

    #[test]
    fn service_and_transactional_go_unless_refused() {
        assert!(may_send(Purpose::Conversation, "sms", standing(None, Some("bounced"), false)).is_ok());
        assert!(may_send(Purpose::Transactional, "sms", standing(None, None, false)).is_ok());
        assert_eq!(
            may_send(Purpose::Transactional, "email", standing(None, Some("bounced"), false))
                .unwrap_err()
                .code,
            "address_suppressed"
        );
        assert_eq!(
            may_send(Purpose::Conversation, "email", standing(Some(false), None, false))
                .unwrap_err()
                .code,
            "consent_revoked"
        );
    }
}
