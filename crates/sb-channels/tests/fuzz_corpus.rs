//! Replays the fuzzing seeds (`fuzz/seeds/*`, written by hand) and corpus (`fuzz/corpus/*`,
//! grown by `cargo +nightly fuzz run` and minimised with `cargo fuzz cmin`) through the same
//! parsers on stable, so every input that once mattered keeps being parsed without a panic.

use std::path::PathBuf;

use sb_channels::Channel;
use sb_channels::email::{inbound, mailgun, reply};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let mut inputs = Vec::new();
    for kind in ["seeds", "corpus"] {
        let dir = fuzz_dir().join(kind).join(target);
        inputs.extend(
            std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .filter_map(|entry| std::fs::read(entry.ok()?.path()).ok()),
        );
    }
    inputs.sort();
    assert!(!inputs.is_empty(), "the corpus of {target} is empty");
    inputs
}

#[test]
fn fuzz_corpus_replays() {
    const AT: i64 = 1_767_225_600_000;
    for data in corpus("mime") {
        let _ = inbound::parse(&data, AT, inbound::FromTrust::UnlessFailed);
        let text = String::from_utf8_lossy(&data);
        let _ = reply::split_text(&text);
        let _ = reply::html_reply_text(&text);
    }
    let twilio = sb_channels::twilio::TwilioChannel::default();
    for data in corpus("twilio_form") {
        let _ = twilio.parse(&data, AT, &sb_channels::Account::default());
    }
    for data in corpus("mailgun_form") {
        if let Ok(raw) = mailgun::message_of(&mailgun::form_pairs(&data)) {
            let _ = inbound::parse(&raw, AT, inbound::FromTrust::UnlessFailed);
        }
    }
}

/// The seeds still mean what they were written for.
#[test]
fn seed_inputs_parse() {
    let reply = std::fs::read(fuzz_dir().join("seeds/mime/reply.eml")).expect("seed");
    let (key, _) = inbound::parse(&reply, 0, inbound::FromTrust::UnlessFailed).expect("the reply seed parses");
    assert_eq!(key, "msgid:c-1@mail.example.test");
}
