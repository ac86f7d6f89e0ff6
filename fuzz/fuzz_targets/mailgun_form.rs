#![no_main]
//! Any bytes as Mailgun's inbound form (past the signature): rebuilding the message and
//! parsing it never panic.

use libfuzzer_sys::fuzz_target;
use sb_channels::email::{inbound, mailgun};

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = mailgun::message_of(&mailgun::form_pairs(data)) {
        let _ = inbound::parse(&raw, 1_767_225_600_000, inbound::FromTrust::UnlessFailed);
    }
});
