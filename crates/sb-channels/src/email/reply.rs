//! The part of an e-mail reply the customer wrote: quoted history and signatures cut off
//! (channels.md §7.5, patterns after discourse/email_reply_trimmer). The removed part is kept
//! so an agent can still open it.

/// A reply split into what the customer wrote and what was quoted or signed below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub reply: String,
    pub quoted: String,
}

/// Lines that start the quoted message in the major clients and languages.
fn is_quote_header(line: &str, next: Option<&str>) -> bool {
    let l = line.trim();
    let lower = l.to_lowercase();
    // "On Tue, 1 Jan 2026 at 10:00, Ana <ana@x> wrote:" and its translations ("Am … schrieb
    // Ana <ana@x>:" puts the name after the verb).
    let wrote = [
        "wrote",
        "a écrit",
        "schrieb",
        "escribió",
        "escreveu",
        "schreef",
        "ha scritto",
        "napisał(a)",
        "skrev",
        "写道",
    ];
    let starts = ["on ", "le ", "am ", "el ", "em ", "op ", "il ", "dnia ", "den ", "在"];
    let ends_header = |s: &str| s.ends_with(':') || s.ends_with('：');
    let says_wrote = |s: &str| wrote.iter().any(|w| s.contains(w));
    if ends_header(&lower) && says_wrote(&lower) && (starts.iter().any(|s| lower.starts_with(s)) || l.contains('@')) {
        return true;
    }
    // A header split over two lines: "On Tue, 1 Jan 2026, Ana <ana@x>" / "wrote:".
    if starts.iter().any(|s| lower.starts_with(s))
        && next.is_some_and(|n| {
            let n = n.trim().to_lowercase();
            ends_header(&n) && says_wrote(&n)
        })
        && l.chars().any(|c| c.is_ascii_digit())
    {
        return true;
    }
    let separators = [
        "-----original message-----",
        "----- original message -----",
        "-----ursprüngliche nachricht-----",
        "-----mensaje original-----",
        "-----message d'origine-----",
        "----- forwarded message -----",
        "---------- forwarded message ---------",
        "begin forwarded message:",
    ];
    if separators.iter().any(|s| lower.starts_with(s)) {
        return true;
    }
    // Outlook's block: "From: …" followed by "Sent: …" (or "Date:") within the next lines.
    let outlook_from = ["from:", "de :", "de:", "von:", "van:", "da:"];
    if outlook_from.iter().any(|f| lower.starts_with(f))
        && next.is_some_and(|n| {
            let n = n.trim().to_lowercase();
            [
                "sent:",
                "date:",
                "envoyé :",
                "gesendet:",
                "enviado:",
                "verzonden:",
                "inviato:",
            ]
            .iter()
            .any(|s| n.starts_with(s))
        })
    {
        return true;
    }
    false
}

/// Mobile and webmail footers that end the customer's text.
fn is_signature_start(line: &str) -> bool {
    let l = line.trim_end_matches(['\r']);
    if l == "-- " || l == "--" || l == "__" {
        return true;
    }
    let lower = l.trim().to_lowercase();
    [
        "sent from my ",
        "sent from outlook",
        "get outlook for ",
        "enviado desde mi ",
        "envoyé de mon ",
        "von meinem ",
        "inviato da ",
        "verzonden vanaf ",
    ]
    .iter()
    .any(|p| lower.starts_with(p))
}

/// Splits a plain-text body at the first quote header or signature; a trailing run of
/// `>`-quoted lines goes too.
pub fn split_text(body: &str) -> Split {
    let body = body.replace("\r\n", "\n");
    let lines: Vec<&str> = body.lines().collect();
    let mut cut = lines.len();
    for (i, line) in lines.iter().enumerate() {
        let next = lines[i + 1..].iter().find(|l| !l.trim().is_empty()).copied();
        if is_quote_header(line, next) || is_signature_start(line) {
            cut = i;
            break;
        }
    }
    // Quoted lines directly above the cut (or at the end) belong to the history.
    while cut > 0 {
        let line = lines[cut - 1].trim();
        if line.starts_with('>') || line.is_empty() {
            cut -= 1;
        } else {
            break;
        }
    }
    let reply = lines[..cut].join("\n").trim().to_owned();
    let quoted = lines[cut..].join("\n").trim().to_owned();
    if reply.is_empty() {
        // Everything looked quoted (a forward with no comment): keep it all as the message.
        return Split {
            reply: body.trim().to_owned(),
            quoted: String::new(),
        };
    }
    Split { reply, quoted }
}

/// Text of an HTML body with the quoted history removed: the elements clients wrap it in
/// (Gmail `div.gmail_quote`, Apple/Thunderbird `blockquote[type=cite]`, Outlook
/// `#divRplyFwdMsg` / `#appendonsend`) end the reply.
pub fn html_reply_text(html: &str) -> String {
    let lower = html.to_lowercase();
    let markers = [
        "<div class=\"gmail_quote",
        "<blockquote type=\"cite\"",
        "<div id=\"divrplyfwdmsg\"",
        "<div id=\"appendonsend\"",
        "<blockquote",
    ];
    let cut = markers.iter().filter_map(|m| lower.find(m)).min().unwrap_or(html.len());
    html_to_text(&html[..cut])
}

/// Plain text of HTML: tags dropped, block ends as line breaks, entities decoded by the
/// sanitiser's serialiser.
pub fn html_to_text(html: &str) -> String {
    let cleaned = ammonia::Builder::empty()
        .add_tags(["br", "p", "div", "li", "tr"])
        .clean(html)
        .to_string();
    let mut text = String::with_capacity(cleaned.len());
    let mut rest = cleaned.as_str();
    while let Some(start) = rest.find('<') {
        text.push_str(&rest[..start]);
        let end = rest[start..].find('>').map_or(rest.len(), |e| start + e + 1);
        let tag = &rest[start..end];
        if tag.starts_with("<br")
            || tag.starts_with("</p")
            || tag.starts_with("</div")
            || tag.starts_with("</li")
            || tag.starts_with("</tr")
        {
            text.push('\n');
        }
        rest = &rest[end..];
    }
    text.push_str(rest);
    let text = text
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let mut out = lines.join("\n");
    while out.contains("\n\n\n") {
        out = out.replace("\n\n\n", "\n\n");
    }
    out.trim().to_owned()
}

/// HTML safe to show agents: an allow-list of tags, no scripts or styles, remote images
/// dropped (tracking pixels), links opened safely.
pub fn sanitise_html(html: &str) -> String {
    ammonia::Builder::default()
        .url_schemes(["http", "https", "mailto", "cid"].into_iter().collect())
        .rm_tags(["img"])
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(html)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gmail_style_reply_loses_its_quote() {
        let body = "Yes, 3 pm works.\n\nOn Tue, 1 Jan 2026 at 10:00, Acme Support <support@acme.example> wrote:\n> Can you come at 3?\n> Thanks";
        let s = split_text(body);
        assert_eq!(s.reply, "Yes, 3 pm works.");
        assert!(s.quoted.starts_with("On Tue"));
    }

    #[test]
    fn a_quote_header_split_over_two_lines_is_found() {
        let body = "Thanks!\n\nOn Tue, 1 Jan 2026 at 10:00, Acme Support <support@acme.example>\nwrote:\n> old";
        assert_eq!(split_text(body).reply, "Thanks!");
    }

    #[test]
    fn localised_headers_and_outlook_blocks_are_found() {
        for (body, reply) in [
            (
                "Merci\n\nLe mar. 1 janv. 2026 à 10:00, Acme <s@acme.example> a écrit :\n> x",
                "Merci",
            ),
            (
                "Danke\n\nAm 01.01.2026 um 10:00 schrieb Acme <s@acme.example>:\n> x",
                "Danke",
            ),
            (
                "Gracias\n\nEl mar, 1 ene 2026 a las 10:00, Acme (<s@acme.example>) escribió:\n> x",
                "Gracias",
            ),
            (
                "Ok\n\nFrom: Acme Support <s@acme.example>\nSent: Tuesday, January 1, 2026 10:00 AM\nTo: Ana\nSubject: Pickup",
                "Ok",
            ),
            ("See below\n\n-----Original Message-----\nFrom: x", "See below"),
        ] {
            assert_eq!(split_text(body).reply, reply, "{body}");
        }
    }

    #[test]
    fn signatures_and_mobile_footers_are_cut() {
        assert_eq!(split_text("Ready?\n-- \nAna López\n+34 600").reply, "Ready?");
        assert_eq!(split_text("Ready?\n\nSent from my iPhone").reply, "Ready?");
        assert_eq!(split_text("Listo\n\nEnviado desde mi Android").reply, "Listo");
    }

    #[test]
    fn text_that_merely_mentions_wrote_is_kept() {
        let body = "I wrote: please call me.\nThanks";
        assert_eq!(split_text(body).reply, body);
        let only_quote = "> forwarded line\n> another";
        assert_eq!(split_text(only_quote).reply, only_quote);
    }

    #[test]
    fn html_quotes_are_removed_and_scripts_never_survive() {
        let gmail = "<div dir=\"ltr\">Yes, <b>3 pm</b> works.</div><br><div class=\"gmail_quote\"><div>On Tue … wrote:</div><blockquote>old</blockquote></div>";
        assert_eq!(html_reply_text(gmail), "Yes, 3 pm works.");
        let apple = "<div>Fine &amp; dandy</div><blockquote type=\"cite\">old</blockquote>";
        assert_eq!(html_reply_text(apple), "Fine & dandy");
        let hostile = "<p onclick=\"x()\">Hi<script>alert(1)</script><img src=\"https://t.example/pixel.gif\"><a href=\"javascript:x\">l</a></p>";
        let safe = sanitise_html(hostile);
        assert!(
            !safe.contains("script")
                && !safe.contains("onclick")
                && !safe.contains("pixel")
                && !safe.contains("javascript"),
            "{safe}"
        );
    }
}
