//! SMS segment counting (channels.md §6.1, vectors in Appendix B).
//!
//! A body is GSM-7 when every character is in the GSM 03.38 basic set or its
//! extension table (extension characters cost two septets: ESC + code);
//! otherwise the whole body is UCS-2 and every UTF-16 code unit counts. One
//! segment holds 160 septets / 70 units; a concatenated message carries 153 /
//! 67 per part (the rest is the UDH). Parts are filled greedily and never split
//! an escape pair or a surrogate pair.

use serde::Serialize;

/// The 128 characters of the GSM 03.38 basic set (ESC 0x1B excluded: it only introduces the extension table).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                          ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// Characters of the extension table (each sent as ESC + code, two septets).
const GSM7_EXTENSION: &str = "\u{c}^{}\\[~]|€";

/// Single-part capacity and per-part capacity of concatenated messages.
const GSM7_SINGLE: usize = 160;
const GSM7_PART: usize = 153;
const UCS2_SINGLE: usize = 70;
const UCS2_PART: usize = 67;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

/// How a body travels as SMS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SegmentCount {
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    /// Number of SMS parts; an empty body still travels as one.
    pub segments: usize,
}

/// Septets a character costs in GSM-7, or `None` when it is not in the alphabet.
fn gsm7_cost(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Counts the segments of `text` as Twilio bills them.
pub fn count(text: &str) -> SegmentCount {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm7_cost).collect();
    let (encoding, costs, single, part) = match gsm {
        Some(costs) => (Encoding::Gsm7, costs, GSM7_SINGLE, GSM7_PART),
        None => (
            Encoding::Ucs2,
            text.chars().map(char::len_utf16).collect(),
            UCS2_SINGLE,
            UCS2_PART,
        ),
    };
    let units: usize = costs.iter().sum();
    let segments = if units <= single { 1 } else { pack(&costs, part) };
    SegmentCount {
        encoding,
        units,
        segments,
    }
}

/// Parts needed when each character (of the given cost) must stay whole within a part of `capacity` units.
fn pack(costs: &[usize], capacity: usize) -> usize {
    let mut parts = 1;
    let mut used = 0;
    for &c in costs {
        if used + c > capacity {
            parts += 1;
            used = 0;
        }
        used += c;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, encoding: Encoding, units: usize, segments: usize) {
        let got = count(text);
        assert_eq!(
            got,
            SegmentCount {
                encoding,
                units,
                segments
            },
            "{text:?}"
        );
    }

    #[test]
    fn basic_set_has_128_characters_and_no_overlap() {
        assert_eq!(GSM7_BASIC.chars().count(), 127, "128 minus ESC");
        assert_eq!(GSM7_EXTENSION.chars().count(), 10);
        assert!(GSM7_EXTENSION.chars().all(|c| !GSM7_BASIC.contains(c)));
    }

    /// Every row of channels.md Appendix B.
    #[test]
    fn appendix_b_vectors() {
        use Encoding::{Gsm7, Ucs2};
        check(&"A".repeat(160), Gsm7, 160, 1);
        check(&"A".repeat(161), Gsm7, 161, 2);
        check(&"B".repeat(306), Gsm7, 306, 2);
        check(&"B".repeat(307), Gsm7, 307, 3);
        check(&"{".repeat(80), Gsm7, 160, 1);
        check(&"{".repeat(81), Gsm7, 162, 2);
        check("Total: 25€ - pay at pickup", Gsm7, 27, 1);
        check("Total: 25€ – pay at pickup", Ucs2, 26, 1);
        check("It’s ready", Ucs2, 10, 1);
        check("Your order is ready 🎉", Ucs2, 22, 1);
        check(&"Ж".repeat(70), Ucs2, 70, 1);
        check(&"Ж".repeat(71), Ucs2, 71, 2);
    }

    #[test]
    fn escape_pairs_and_surrogates_are_never_split() {
        // 152 septets of 'A' then one '€' (2): 154 > 153, so the euro starts part 2.
        let text = format!("{}€{}", "A".repeat(152), "A".repeat(10));
        assert_eq!(count(&text).segments, 2);
        let text = format!("{}€{}", "A".repeat(152), "A".repeat(152));
        assert_eq!(count(&text).units, 306);
        assert_eq!(
            count(&text).segments,
            3,
            "306 septets fit 2×153 only if the pair could split"
        );
        // 66 units then an emoji (2 units): it moves whole to part 2.
        let text = format!("{}🎉{}", "Ж".repeat(66), "Ж".repeat(66));
        assert_eq!(count(&text).units, 134);
        assert_eq!(count(&text).segments, 3);
    }

    #[test]
    fn look_alikes_flip_to_ucs2_and_empty_is_one_segment() {
        for s in ["ç", "á", "“quoted”", "—", "…", "ê"] {
            assert_eq!(count(s).encoding, Encoding::Ucs2, "{s}");
        }
        for s in ["Ç", "é", "ñ", "¿", "\n", "\u{c}", "^~|[]\\"] {
            assert_eq!(count(s).encoding, Encoding::Gsm7, "{s:?}");
        }
        assert_eq!(count("").segments, 1);
    }
}
