#![no_main]
//! Any bytes as a Twilio form post (inbound message or status callback): parsing never panics.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sb_channels::Channel;
use sb_channels::twilio::TwilioChannel;

fuzz_target!(|data: &[u8]| {
    static CHANNEL: OnceLock<TwilioChannel> = OnceLock::new();
    let channel = CHANNEL.get_or_init(TwilioChannel::default);
    let account = sb_channels::Account::default();
    let _ = channel.parse(data, 1_767_225_600_000, &account);
});
