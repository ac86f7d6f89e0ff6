//! Just enough RFC 5322 to read the header block of a message byte-exactly:
//! unfolded fields in order, angle-bracketed tokens (message ids, URIs, addresses)
//! and the `Date:` format. Bodies and MIME structure are left to mail-parser.

/// The empty line ending the header block: `(where it starts, where the body starts)`.
fn separator(raw: &[u8]) -> Option<(usize, usize)> {
    let mut pos = 0;
    while pos < raw.len() {
        let end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..end];
        if line == b"\r\n" || line == b"\n" {
            return Some((pos, end));
        }
        pos = end;
    }
    None
}

/// Byte offset where the body starts, or the length when there is no body.
pub(crate) fn body_offset(raw: &[u8]) -> usize {
    separator(raw).map_or(raw.len(), |(_, body)| body)
}

/// The header block as sent, without the separating empty line.
pub(crate) fn header_block(raw: &[u8]) -> &[u8] {
    &raw[..separator(raw).map_or(raw.len(), |(sep, _)| sep)]
}

/// Header fields in order as `(name, unfolded value)`; lines that are not fields are skipped.
pub(crate) fn fields(raw: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(&raw[..body_offset(raw)]).into_owned();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim_end();
            if !name.is_empty() && !name.contains(' ') {
                out.push((name.to_string(), value.trim().to_string()));
            }
        }
    }
    out
}

/// First value of a header (case-insensitive name).
pub(crate) fn get(fields: &[(String, String)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// Every `<…>` token of a value, brackets kept (`<a@b>`): message ids, list URIs.
pub(crate) fn angle_tokens(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else { break };
        out.push(rest[start..start + len + 1].to_string());
        rest = &rest[start + len + 1..];
    }
    out
}

/// The addr-spec of a mailbox (`Ana <ana@x>` → `ana@x`, `ana@x` → `ana@x`).
pub(crate) fn addr_spec(mailbox: &str) -> Option<String> {
    let a = match angle_tokens(mailbox).pop() {
        Some(t) => t.trim_matches(['<', '>']).trim().to_string(),
        None => mailbox.trim().to_string(),
    };
    (a.contains('@') && !a.contains(char::is_whitespace)).then_some(a)
}

/// Addr-specs of an address list (`To: a@x, B <b@y>`); commas inside quotes are respected.
pub(crate) fn addr_list(value: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut cur, mut quoted, mut angle) = (String::new(), false, false);
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts.iter().filter_map(|p| addr_spec(p)).collect()
}

/// The domain of an address, lower-cased.
pub(crate) fn domain(addr: &str) -> String {
    addr.rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}

/// RFC 5322 `date-time` in UTC, e.g. `Thu, 01 Jan 2026 00:00:00 +0000`.
pub(crate) fn rfc5322_date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant), valid for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        tod / 3_600,
        tod % 3_600 / 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &[u8] = b"From: Ana <ana@x.test>\r\nTo: \"Acme, Support\" <s@acme.test>, b@y.test\r\nSubject: long\r\n  folded\r\n\r\nbody\r\nTo: not-a-header\r\n";

    #[test]
    fn reads_fields_in_order_and_unfolds() {
        let f = fields(RAW);
        assert_eq!(f.len(), 3);
        assert_eq!(get(&f, "subject").unwrap(), "long folded");
        assert_eq!(addr_list(&get(&f, "to").unwrap()), vec!["s@acme.test", "b@y.test"]);
        assert_eq!(addr_spec("Ana <ana@x.test>").unwrap(), "ana@x.test");
        assert!(header_block(RAW).ends_with(b"Subject: long\r\n  folded\r\n"));
        assert_eq!(&RAW[body_offset(RAW)..], b"body\r\nTo: not-a-header\r\n");
    }

    #[test]
    fn tokens() {
        assert_eq!(angle_tokens("<a@b> <c@d>"), vec!["<a@b>", "<c@d>"]);
        assert_eq!(
            angle_tokens("<mailto:u@x?subject=unsubscribe>, <https://x.test/u/T>"),
            vec!["<mailto:u@x?subject=unsubscribe>", "<https://x.test/u/T>"]
        );
        assert!(addr_spec("undisclosed-recipients:;").is_none());
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(1_767_225_600_000), "Thu, 01 Jan 2026 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_825_661_000), "Tue, 29 Feb 2000 12:01:01 +0000");
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
    }
}
