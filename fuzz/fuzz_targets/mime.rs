#![no_main]
//! Any bytes as an inbound e-mail: parsing (messages, DSNs) and reply stripping never panic.

use libfuzzer_sys::fuzz_target;
use sb_channels::email::{inbound, reply};

fuzz_target!(|data: &[u8]| {
    let _ = inbound::parse(data, 1_767_225_600_000, inbound::FromTrust::UnlessFailed);
    let text = String::from_utf8_lossy(data);
    let _ = reply::split_text(&text);
    let _ = reply::html_reply_text(&text);
});
