//! Identifiers: UUIDv7 strings, time-ordered so that index keys arrive in order.

/// A new random, time-ordered id in its canonical hyphenated form.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// True when `s` is a canonical UUID string (what every id we hand out looks like).
pub fn is_id(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::parse_str(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_canonical_and_time_ordered() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        assert!(is_id(&a) && is_id(&b));
        assert!(a < b, "v7 ids sort by creation time");
        assert!(!is_id("not-an-id"));
    }
}
