//! Local provider simulators for Switchboard's tests and demo.
//!
//! Each simulator is an axum app on 127.0.0.1 (a free port) served by a tokio
//! task, written from the providers' documentation as summarised in
//! `shared/notes/channels.md` (never from our adapters). Every simulator has
//! three faces: the provider API our adapter calls, a webhook emitter that
//! POSTs to our adapter exactly like the provider (signed, ASCII-escaped,
//! retried), and a control API under `/_sim/...` for tests.
//!
//! - [`whatsapp`]: WhatsApp Business Platform Cloud API (§1).
//! - [`messenger`]: Messenger Platform — Facebook Messenger (§2) and Instagram
//!   Messaging (§3), which share its shape.
//! - [`telegram`]: Telegram Bot API (§4).
//! - [`mail`]: e-mail (§7): an SMTP sink with DSN bounces, customer mail over SMTP or Mailgun
//!   routes, and an RFC 8058 one-click unsubscribe client.
//! - [`clock`]: the controllable clock every time-based rule reads.
//!
//! `GET /` on each simulator serves a small page to play the customer by hand.

pub mod clock;
mod common;
pub mod json;
pub mod mail;
pub mod messenger;
mod page;
pub mod telegram;
pub mod twilio;
pub mod whatsapp;

pub use clock::SimClock;
pub use common::{DeliveryRecord, Faults, RetryPolicy, SendFault, hmac_hex, hub_signature};
pub use mail::{DeliveryAttempt, MailConfig, MailSim, RecordedMail, mailgun_signature};
pub use messenger::{MessengerConfig, MessengerSim};
pub use telegram::{TelegramConfig, TelegramSim};
pub use twilio::{TwilioConfig, TwilioNumber, TwilioSim, twilio_signature, validate_twilio_signature};
pub use whatsapp::{WhatsAppConfig, WhatsAppSim};
