//! Twilio's default keyword handling on long codes (channels.md §6.2).
//!
//! Only a whole message that, trimmed and compared case-insensitively, equals a
//! keyword counts ("STOP please" does not). Opt-out blocks further sends from
//! that sender (or Messaging Service) to the customer with 21610; opt-in lifts
//! the block; help answers with the standard text. The inbound message still
//! reaches the webhook. The confirmation texts are Twilio's default replies as
//! quoted by integrators (verify against Twilio's support article).

use serde::Serialize;

const OPT_OUT: [&str; 8] = [
    "STOP",
    "UNSUBSCRIBE",
    "END",
    "QUIT",
    "STOPALL",
    "REVOKE",
    "OPTOUT",
    "CANCEL",
];
const OPT_IN: [&str; 3] = ["START", "YES", "UNSTOP"];
const HELP: [&str; 2] = ["HELP", "INFO"];

pub const OPT_OUT_REPLY: &str = "You have successfully been unsubscribed. You will not receive any more messages from this \
                                 number. Reply START to resubscribe.";
pub const OPT_IN_REPLY: &str = "You have successfully been re-subscribed to messages from this number. Reply HELP for \
                                help. Reply STOP to unsubscribe. Msg&Data Rates May Apply.";
pub const HELP_REPLY: &str = "Reply STOP to unsubscribe. Msg&Data Rates May Apply.";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Keyword {
    OptOut,
    OptIn,
    Help,
}

impl Keyword {
    /// The `OptOutType` webhook parameter under Advanced Opt-Out.
    pub fn opt_out_type(self) -> &'static str {
        match self {
            Keyword::OptOut => "STOP",
            Keyword::OptIn => "START",
            Keyword::Help => "HELP",
        }
    }

    /// The standard confirmation sent back to the customer.
    pub fn reply(self) -> &'static str {
        match self {
            Keyword::OptOut => OPT_OUT_REPLY,
            Keyword::OptIn => OPT_IN_REPLY,
            Keyword::Help => HELP_REPLY,
        }
    }
}

/// The keyword a whole inbound body is, if any.
pub fn classify(body: &str) -> Option<Keyword> {
    let word = body.trim().to_uppercase();
    if OPT_OUT.contains(&word.as_str()) {
        Some(Keyword::OptOut)
    } else if OPT_IN.contains(&word.as_str()) {
        Some(Keyword::OptIn)
    } else if HELP.contains(&word.as_str()) {
        Some(Keyword::Help)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_keyword() {
        for w in OPT_OUT {
            assert_eq!(classify(w), Some(Keyword::OptOut), "{w}");
        }
        for w in ["start", "Yes", "UNSTOP"] {
            assert_eq!(classify(w), Some(Keyword::OptIn), "{w}");
        }
        for w in ["help", "Info"] {
            assert_eq!(classify(w), Some(Keyword::Help), "{w}");
        }
    }

    #[test]
    fn whole_trimmed_case_insensitive_message_only() {
        assert_eq!(classify("  stop \n"), Some(Keyword::OptOut));
        assert_eq!(classify("Stop"), Some(Keyword::OptOut));
        assert_eq!(classify("\tcancel"), Some(Keyword::OptOut));
        for s in [
            "STOP please",
            "please stop",
            "STOP.",
            "STOP ALL",
            "opt out",
            "stopp",
            "",
            "HELP ME",
            "yess",
        ] {
            assert_eq!(classify(s), None, "{s:?}");
        }
    }

    #[test]
    fn advanced_opt_out_types_and_replies() {
        assert_eq!(Keyword::OptOut.opt_out_type(), "STOP");
        assert_eq!(Keyword::OptIn.opt_out_type(), "START");
        assert_eq!(Keyword::Help.opt_out_type(), "HELP");
        assert!(Keyword::OptOut.reply().contains("Reply START to resubscribe"));
        assert!(Keyword::OptIn.reply().contains("Reply STOP to unsubscribe"));
    }
}
