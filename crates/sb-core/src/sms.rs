//! SMS rules that hold whatever the provider (channels.md §6): how a text is encoded and how
//! many segments it costs, and the carriers' standard keywords.

use serde::Serialize;

/// How a text travels: 7-bit GSM when every character is in the GSM 03.38 tables, else
/// UCS-2 (UTF-16 code units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

/// What a text costs: its encoding, the units counted (septets or UTF-16 code units) and
/// the segments the carrier bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Segments {
    pub encoding: Encoding,
    pub characters: usize,
    pub units: usize,
    pub segments: usize,
}

/// The GSM 03.38 basic set: one septet each.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension set: an escape and the character, two septets each.
const GSM7_EXTENSION: &str = "^{}\\[~]|€\u{c}";

fn gsm7_septets(c: char) -> Option<usize> {
    if c != '\u{1b}' && GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Counts segments as the carriers do: 160 septets (70 code units) fit one message; longer
/// texts are split into parts of 153 septets (67 code units), and a part never ends inside
/// an escape pair or a surrogate pair.
pub fn segments(text: &str) -> Segments {
    let characters = text.chars().count();
    let gsm: Option<Vec<usize>> = text.chars().map(gsm7_septets).collect();
    let (encoding, widths, single, part) = match gsm {
        Some(widths) => (Encoding::Gsm7, widths, 160, 153),
        None => (Encoding::Ucs2, text.chars().map(char::len_utf16).collect(), 70, 67),
    };
    let units = widths.iter().sum();
    let segments = if units <= single {
        1
    } else {
        // Fill each part with whole characters only.
        let mut count = 1;
        let mut used = 0;
        for width in widths {
            if used + width > part {
                count += 1;
                used = 0;
            }
            used += width;
        }
        count
    };
    Segments {
        encoding,
        characters,
        units,
        segments,
    }
}

/// A carrier keyword: the whole message, trimmed, in any case (channels.md §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Keyword {
    OptOut,
    OptIn,
    Help,
}

pub fn keyword(text: &str) -> Option<Keyword> {
    let word = text.trim().to_ascii_uppercase();
    match word.as_str() {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "REVOKE" | "OPTOUT" | "STOP ALL"
        | "STOP PROMOTIONS" => Some(Keyword::OptOut),
        "START" | "YES" | "UNSTOP" | "RESUME" | "SUBSCRIBE" => Some(Keyword::OptIn),
        "HELP" | "INFO" => Some(Keyword::Help),
        _ => None,
    }
}

/// The one confirmation a keyword gets (CTIA: opt-out confirmations carry no marketing;
/// HELP names the business and how to stop).
pub fn keyword_reply(keyword: Keyword, business: &str) -> String {
    match keyword {
        Keyword::OptOut => format!(
            "You have successfully been unsubscribed from {business}. You will not receive any more messages from this number. Reply START to resubscribe."
        ),
        Keyword::OptIn => format!(
            "You have successfully been re-subscribed to messages from {business}. Reply HELP for help. Reply STOP to unsubscribe."
        ),
        Keyword::Help => format!("{business}: reply to this message to reach our team. Reply STOP to unsubscribe."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(text: &str, encoding: Encoding, units: usize, count: usize) {
        let s = segments(text);
        assert_eq!((s.encoding, s.units, s.segments), (encoding, units, count), "{text:?}");
    }

    /// channels.md Appendix B, every row.
    #[test]
    fn appendix_b_segment_vectors() {
        check(&"A".repeat(160), Encoding::Gsm7, 160, 1);
        check(&"A".repeat(161), Encoding::Gsm7, 161, 2);
        check(&"B".repeat(306), Encoding::Gsm7, 306, 2);
        check(&"B".repeat(307), Encoding::Gsm7, 307, 3);
        check(&"{".repeat(80), Encoding::Gsm7, 160, 1);
        check(&"{".repeat(81), Encoding::Gsm7, 162, 2);
        check("Total: 25€ - pay at pickup", Encoding::Gsm7, 27, 1);
        check("Total: 25€ – pay at pickup", Encoding::Ucs2, 26, 1);
        check("It’s ready", Encoding::Ucs2, 10, 1);
        check("Your order is ready 🎉", Encoding::Ucs2, 22, 1);
        check(&"Ж".repeat(70), Encoding::Ucs2, 70, 1);
        check(&"Ж".repeat(71), Encoding::Ucs2, 71, 2);
        assert_eq!(segments("Your order is ready 🎉").characters, 21);
    }

    #[test]
    fn parts_never_split_an_escape_or_a_surrogate_pair() {
        // 152 septets of 'A' then a brace: the brace's pair cannot fit in the first part.
        let text = format!("{}{{{}", "A".repeat(152), "A".repeat(10));
        check(&text, Encoding::Gsm7, 164, 2);
        let emoji = format!("{}🎉{}", "Ж".repeat(66), "Ж".repeat(10));
        check(&emoji, Encoding::Ucs2, 78, 2);
        let split_emoji = format!("{}🎉", "Ж".repeat(66));
        // 66 + 2 = 68 units: more than 67 per part and than 70? No: 68 <= 70 is one message.
        check(&split_emoji, Encoding::Ucs2, 68, 1);
    }

    #[test]
    fn keywords_match_the_whole_message_only() {
        assert_eq!(keyword(" stop "), Some(Keyword::OptOut));
        assert_eq!(keyword("Unstop"), Some(Keyword::OptIn));
        assert_eq!(keyword("help"), Some(Keyword::Help));
        assert_eq!(keyword("STOP please"), None);
        assert_eq!(keyword("stopped"), None);
    }

    proptest! {
        /// Invariant: segments are the least count of parts that hold the units, within the
        /// per-part limits, and a longer text never costs fewer segments.
        #[test]
        fn segments_are_bounded_and_monotonic(text in "[A-Za-z0-9 {}€Жé🎉]{0,400}", extra in "[A-Za-z{Ж🎉]") {
            let s = segments(&text);
            let (single, part) = match s.encoding { Encoding::Gsm7 => (160, 153), Encoding::Ucs2 => (70, 67) };
            if s.units <= single {
                prop_assert_eq!(s.segments, 1);
            } else {
                prop_assert!(s.segments >= s.units.div_ceil(part));
                // Whole characters lose at most one unit per part.
                prop_assert!(s.segments <= s.units.div_ceil(part - 1));
            }
            let longer = segments(&format!("{text}{extra}"));
            if longer.encoding == s.encoding {
                prop_assert!(longer.segments >= s.segments);
            }
        }
    }
}
