//! End-to-end: a real server on 127.0.0.1 with a temporary data directory, spoken to over
//! HTTP; and the real `switchboard` binary for start-up, configuration and shutdown.

mod api;
mod binary;
mod canned;
mod cdp;
mod commerce;
mod email;
mod hardening;
mod harness;
mod inbox;
mod journeys;
mod messenger;
mod nothing_lost;
mod outgoing_webhooks;
mod permissions;
mod postgres;
mod schemathesis;
mod sms;
mod telegram;
mod web;
mod whatsapp;
mod widget;
mod widget_client;
