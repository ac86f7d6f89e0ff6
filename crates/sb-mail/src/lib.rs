//! E-mail ingress we run ourselves, ending in the same inbound store as every webhook
//! (`sb_inbox::ingest_trusted`): a message is stored before it is acknowledged — before the
//! SMTP `250` after DATA, before the IMAP mailbox's read position moves past it.
//!
//! - [`imap`]: connected mailboxes, read by UID from the last position (UIDVALIDITY changes
//!   start over; Message-ID de-duplication keeps what was stored), woken by IDLE with a
//!   polling fallback.
//! - [`smtp`]: an SMTP listener for MX-style delivery to the accounts' addresses.

pub mod imap;
pub mod smtp;
