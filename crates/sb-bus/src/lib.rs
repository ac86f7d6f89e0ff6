//! Ephemeral notification bus for Switchboard.
//!
//! The database is the source of truth; the bus only fans out hints such as
//! "look now", "conversation updated", typing and presence. Delivery is
//! best-effort and at-most-once, so consumers must treat every event as a
//! prompt to re-read state, and must subscribe *before* reading the database
//! so that nothing written in between is missed.
//!
//! Two backends share one contract ([`Bus`]):
//! - [`InProcessBus`] for a single process (tests, single-node deployments);
//! - [`NatsBus`] for fan-out between processes via core NATS pub/sub.
//!
//! Subjects use NATS syntax in both backends so code moves between them
//! without change: tokens separated by `.`, `*` matches exactly one token and
//! `>` matches one or more trailing tokens.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::{broadcast, mpsc};

/// Events buffered per subscription between the backend and the consumer.
/// Bounded so a stuck consumer costs memory only up to this limit.
const SUBSCRIPTION_BUFFER: usize = 256;

/// Default fan-out buffer of the in-process bus. Large enough to ride out
/// bursts; a subscriber that falls further behind skips events (with a
/// warning) rather than slowing publishers down.
const DEFAULT_IN_PROCESS_CAPACITY: usize = 4096;

/// How long a NATS connect may take before we report the server unavailable.
/// Short, so a misconfigured or down server fails startup fast.
const NATS_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One notification: the concrete subject it was published on and an opaque
/// payload (usually small JSON; the bus does not interpret it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub subject: String,
    pub payload: Bytes,
}

/// Errors a bus operation can return.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The backend cannot be reached or refused the operation.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// A subject or filter is not valid NATS syntax (or, for publishing,
    /// contains wildcards).
    #[error("invalid subject: {0}")]
    InvalidSubject(String),
}

/// A publish/subscribe fan-out for ephemeral notifications.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Backend name for logs and health output: `"in-process"` or `"nats"`.
    fn name(&self) -> &'static str;

    /// Publishes `payload` on a concrete `subject` (no wildcards).
    /// Having no subscribers is not an error: notifications are fire-and-forget.
    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), BusError>;

    /// Subscribes to every subject matching `filter`.
    ///
    /// `filter` uses NATS subject syntax: tokens separated by `.`, `*` matches
    /// exactly one token, `>` (last token only) matches one or more trailing
    /// tokens. Events published by this bus after `subscribe` returns are
    /// delivered in publish order; dropping the [`Subscription`] unsubscribes.
    async fn subscribe(&self, filter: &str) -> Result<Subscription, BusError>;
}

/// A live subscription. Dropping it stops delivery and frees backend resources.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Event>,
}

impl Subscription {
    /// Waits for the next matching event. Returns `None` once the bus behind
    /// this subscription has shut down, so loops end on their own.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

/// Lets a subscription be merged with other streams (e.g. a websocket).
impl Stream for Subscription {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// Returns whether `subject` matches `filter` under NATS rules.
///
/// `*` matches exactly one token, and `>` as the final token matches one or
/// more remaining tokens (so `a.>` does not match `a`). Wildcard characters
/// inside a longer token are literal, as in NATS. Empty inputs never match.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    if filter.is_empty() || subject.is_empty() {
        return false;
    }
    let mut subject_tokens = subject.split('.');
    let mut filter_tokens = filter.split('.').peekable();
    while let Some(f) = filter_tokens.next() {
        let is_last = filter_tokens.peek().is_none();
        if f == ">" && is_last {
            // Needs at least one remaining subject token.
            return subject_tokens.next().is_some();
        }
        match subject_tokens.next() {
            Some(s) if f == "*" || f == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// Checks that `subject` is a concrete subject that may be published on:
/// non-empty tokens, no whitespace and no wildcards.
pub fn validate_subject(subject: &str) -> Result<(), BusError> {
    check_tokens(subject, false)
}

/// Checks that `filter` is valid for subscribing: like [`validate_subject`]
/// but `*` may appear as a whole token and `>` as the whole last token.
pub fn validate_filter(filter: &str) -> Result<(), BusError> {
    check_tokens(filter, true)
}

fn check_tokens(text: &str, wildcards_allowed: bool) -> Result<(), BusError> {
    let invalid = |why: &str| Err(BusError::InvalidSubject(format!("{text:?}: {why}")));
    if text.is_empty() {
        return invalid("empty");
    }
    let tokens: Vec<&str> = text.split('.').collect();
    let last = tokens.len() - 1;
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return invalid("empty token");
        }
        if token.chars().any(char::is_whitespace) {
            return invalid("contains whitespace");
        }
        let wildcard_token = *token == "*" || (*token == ">" && i == last);
        if wildcards_allowed && wildcard_token {
            continue;
        }
        if token.contains(['*', '>']) {
            return invalid(if wildcards_allowed {
                "'*' must be a whole token and '>' the whole last token"
            } else {
                "wildcards are not allowed when publishing"
            });
        }
    }
    Ok(())
}

/// Single-process bus on a tokio broadcast channel.
///
/// Cheap to clone; clones share the same channel. Publishing never blocks: a
/// subscriber that falls more than `capacity` events behind skips the oldest
/// ones and a warning is logged.
#[derive(Debug, Clone)]
pub struct InProcessBus {
    tx: broadcast::Sender<Event>,
}

impl InProcessBus {
    /// Creates a bus with the default buffer of 4096 events.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_IN_PROCESS_CAPACITY)
    }

    /// Creates a bus buffering `capacity` events (at least 1) for slow subscribers.
    pub fn with_capacity(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Bus for InProcessBus {
    fn name(&self) -> &'static str {
        "in-process"
    }

    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), BusError> {
        validate_subject(subject)?;
        let event = Event {
            subject: subject.to_owned(),
            payload,
        };
        // Err only means nobody is listening, which is fine for notifications.
        let _ = self.tx.send(event);
        Ok(())
    }

    async fn subscribe(&self, filter: &str) -> Result<Subscription, BusError> {
        validate_filter(filter)?;
        // Register with the broadcast channel before returning, so every
        // publish after this call is seen by the subscription.
        let mut source = self.tx.subscribe();
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let filter = filter.to_owned();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    // Consumer dropped the Subscription: stop promptly
                    // instead of waiting for the next matching event.
                    () = tx.closed() => break,
                    received = source.recv() => match received {
                        Ok(event) => event,
                        Err(broadcast::error::RecvError::Lagged(skipped)) => {
                            tracing::warn!(%filter, skipped, "in-process bus subscriber lagged; events dropped");
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                };
                if subject_matches(&filter, &event.subject) && tx.send(event).await.is_err() {
                    break;
                }
            }
        });
        Ok(Subscription { rx })
    }
}

/// Cross-process bus on core NATS pub/sub (no JetStream: events are ephemeral).
///
/// Cheap to clone; clones share one connection. The client reconnects on its
/// own after the initial connect; events published while disconnected may be lost.
#[derive(Debug, Clone)]
pub struct NatsBus {
    client: async_nats::Client,
}

impl NatsBus {
    /// Connects to the NATS server at `url`, failing fast with
    /// [`BusError::Unavailable`] (naming the URL) if it cannot be reached.
    pub async fn connect(url: &str) -> Result<NatsBus, BusError> {
        let unavailable = |why: String| BusError::Unavailable(format!("NATS at {url}: {why}"));
        let connecting = async_nats::ConnectOptions::new()
            .name("switchboard")
            .connection_timeout(NATS_CONNECT_TIMEOUT)
            .connect(url);
        // Outer bound also covers DNS resolution, which the client's own
        // connection timeout does not.
        let client = tokio::time::timeout(NATS_CONNECT_TIMEOUT + Duration::from_secs(1), connecting)
            .await
            .map_err(|_| unavailable("connect timed out".to_owned()))?
            .map_err(|err| unavailable(err.to_string()))?;
        Ok(NatsBus { client })
    }

    /// Wraps an already configured client (custom auth, TLS, ...).
    pub fn from_client(client: async_nats::Client) -> Self {
        NatsBus { client }
    }

    /// Waits until buffered publishes have been written to the server; useful
    /// before shutdown so final notifications are not lost.
    pub async fn flush(&self) -> Result<(), BusError> {
        self.client
            .flush()
            .await
            .map_err(|err| BusError::Unavailable(format!("NATS flush: {err}")))
    }
}

#[async_trait]
impl Bus for NatsBus {
    fn name(&self) -> &'static str {
        "nats"
    }

    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), BusError> {
        validate_subject(subject)?;
        self.client
            .publish(subject.to_owned(), payload)
            .await
            .map_err(|err| BusError::Unavailable(format!("NATS publish on {subject}: {err}")))
    }

    async fn subscribe(&self, filter: &str) -> Result<Subscription, BusError> {
        validate_filter(filter)?;
        let mut subscriber = self
            .client
            .subscribe(filter.to_owned())
            .await
            .map_err(|err| BusError::Unavailable(format!("NATS subscribe to {filter}: {err}")))?;
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = tx.closed() => break,
                    message = subscriber.next() => match message {
                        Some(message) => message,
                        None => break,
                    },
                };
                let event = Event {
                    subject: message.subject.to_string(),
                    payload: message.payload,
                };
                if tx.send(event).await.is_err() {
                    break;
                }
            }
            // Dropping `subscriber` here unsubscribes on the server.
        });
        Ok(Subscription { rx })
    }
}
