//! The outbound lifecycle (channels.md §5.5, §5.8): per-sender queues drained in
//! segments per second on the SimClock, `ValidityPeriod` expiry, and one status
//! callback per transition after the initial state.
//!
//! Scheduling is decided when a message enters its sender's queue: it leaves at
//! `max(now, sender free)` and occupies the sender for `segments / rate` seconds;
//! if that start is later than its validity allows, it fails at the deadline
//! without using the sender. The pacer then applies whatever is due.

use std::sync::Arc;

use serde_json::json;

use super::errors::async_error_message;
use super::message::{API_VERSION, dlr_done_date};
use super::webhooks::Post;
use super::{Received, Tw, TwState};

/// 24 h customer-service window of WhatsApp.
const WHATSAPP_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

impl Tw {
    /// Applies every transition that is due on the SimClock.
    pub(super) fn tick(self: &Arc<Self>) {
        let now = self.clock.now_ms();
        let mut posts = Vec::new();
        {
            let mut st = self.st();
            let active: Vec<usize> = st.active.iter().copied().collect();
            for i in active {
                self.advance(&mut st, i, now, &mut posts);
            }
        }
        for p in posts {
            self.enqueue_callback(p);
        }
    }

    /// Moves message `i` through every transition due at `now`.
    fn advance(&self, st: &mut TwState, i: usize, now: i64, posts: &mut Vec<Post>) {
        loop {
            let status = st.messages[i].status;
            match status {
                "accepted" => match self.pick_sender(st, i) {
                    Ok(()) => match self.schedule(st, i, now, true) {
                        Ok(()) => self.transition(st, i, "queued", now, None, posts),
                        Err(code) => self.transition(st, i, "failed", now, Some(code), posts),
                    },
                    Err(code) => self.transition(st, i, "failed", now, Some(code), posts),
                },
                "queued" => {
                    let m = &st.messages[i];
                    if m.expire_at_ms.is_some_and(|t| t <= now) {
                        let code = if m.validity_explicit { 30036 } else { 30001 };
                        self.transition(st, i, "failed", now, Some(code), posts);
                        continue;
                    }
                    let due = m.send_at_ms.is_some_and(|t| t <= now);
                    if !due || m.media_pending > 0 {
                        return;
                    }
                    if let Some(code) = m.media_fetches.iter().find_map(|f| f.error_code) {
                        self.transition(st, i, "failed", now, Some(code), posts);
                    } else if m.whatsapp && m.content_sid.is_none() && !in_window(st, i, now) {
                        self.transition(st, i, "failed", now, Some(63016), posts);
                    } else {
                        self.hand_to_carrier(st, i, now, posts);
                    }
                }
                "sent" => match st.messages[i].deliver_at_ms {
                    Some(t) if t <= now => self.transition(st, i, "delivered", now, None, posts),
                    Some(_) => return,
                    // No receipt is coming: only the control API moves it on.
                    None => {
                        st.active.remove(&i);
                        return;
                    }
                },
                _ => {
                    st.active.remove(&i);
                    return;
                }
            }
        }
    }

    /// A Messaging Service send gets the first pool sender of its channel.
    fn pick_sender(&self, st: &mut TwState, i: usize) -> Result<(), u32> {
        let whatsapp = st.messages[i].whatsapp;
        let from = st
            .numbers
            .iter()
            .find(|n| super::is_whatsapp(&n.cfg.phone) == whatsapp)
            .map(|n| n.cfg.phone.clone())
            .ok_or(21606u32)?;
        let m = &mut st.messages[i];
        m.from = Some(from);
        m.num_segments = m.billed_segments;
        Ok(())
    }

    /// Puts message `i` in its sender's queue. `service_overflow`: a full queue fails the
    /// message with 30001 (Messaging Service sends) — direct sends got 21611 before this.
    pub(super) fn schedule(&self, st: &mut TwState, i: usize, now: i64, service_overflow: bool) -> Result<(), u32> {
        let max_queue_ms = st.options.max_queue_secs.saturating_mul(1000);
        let from = st.messages[i].from.clone().unwrap_or_default();
        let (segments, created, validity) = {
            let m = &st.messages[i];
            (m.billed_segments.max(1), m.created_ms, m.validity_ms)
        };
        let Some(sender) = st.number_mut(&from) else {
            return Err(21606);
        };
        let start = now.max(sender.next_free_ms);
        if service_overflow && start.saturating_sub(now) > max_queue_ms {
            return Err(30001);
        }
        let rate = if sender.cfg.segments_per_second > 0.0 {
            sender.cfg.segments_per_second
        } else {
            f64::MAX
        };
        let busy_ms = (segments as f64 * 1000.0 / rate).ceil() as i64;
        let too_late = start.saturating_sub(created) > validity;
        if !too_late {
            sender.next_free_ms = start.saturating_add(busy_ms);
        }
        let m = &mut st.messages[i];
        if too_late {
            m.expire_at_ms = Some(created.saturating_add(validity));
        } else {
            m.send_at_ms = Some(start);
        }
        st.active.insert(i);
        Ok(())
    }

    /// `sent`: the handset gets it, and the receipt is scheduled when the carrier gives one.
    fn hand_to_carrier(&self, st: &mut TwState, i: usize, now: i64, posts: &mut Vec<Post>) {
        let m = &st.messages[i];
        let from = m.from.clone().unwrap_or_default();
        let receipts = st.number(&from).is_none_or(|n| n.cfg.delivery_receipts);
        let dlr = receipts && !st.faults.no_dlr && st.options.auto_deliver;
        let media = m
            .media_fetches
            .iter()
            .map(|f| json!({ "url": f.url, "content_type": f.content_type, "size": f.size }))
            .collect();
        let rec = Received {
            seq: 0,
            to: m.to.clone(),
            from,
            body: m.body.clone(),
            media,
            sid: Some(m.sid.clone()),
            kind: "message",
            at_ms: now,
        };
        st.push_received(rec);
        let delay = st.options.dlr_delay_ms.max(0);
        let m = &mut st.messages[i];
        m.sent_ms = Some(now);
        m.deliver_at_ms = dlr.then(|| now.saturating_add(delay));
        self.transition(st, i, "sent", now, None, posts);
    }

    /// Sets the status (with `error` for failures) and queues its status callback.
    pub(super) fn transition(
        &self,
        st: &mut TwState,
        i: usize,
        status: &'static str,
        now: i64,
        error: Option<u32>,
        posts: &mut Vec<Post>,
    ) {
        let m = &mut st.messages[i];
        m.status = status;
        m.updated_ms = now;
        if let Some(code) = error {
            m.error_code = Some(code);
            m.error_message = Some(async_error_message(code));
        }
        m.history.push(super::message::StatusStep {
            status,
            at_ms: now,
            error_code: error,
        });
        if m.is_final() {
            st.active.remove(&i);
        }
        // A handset that never got the message keeps no trace of it.
        if matches!(status, "undelivered" | "failed") {
            let sid = st.messages[i].sid.clone();
            st.received.retain(|r| r.sid.as_deref() != Some(sid.as_str()));
        }
        if let Some(post) = self.status_post(st, i, now) {
            posts.push(post);
        }
    }

    /// The status callback for message `i`'s current status, to its `StatusCallback` or its sender's default.
    fn status_post(&self, st: &TwState, i: usize, now: i64) -> Option<Post> {
        let m = &st.messages[i];
        let from = m.from.clone().unwrap_or_default();
        let url = m
            .status_callback
            .clone()
            .or_else(|| st.number(&from).and_then(|n| n.cfg.status_callback.clone()))?;
        let mut p: Vec<(String, String)> = Vec::with_capacity(12);
        let mut add = |k: &str, v: &str| p.push((k.to_string(), v.to_string()));
        add("MessageSid", &m.sid);
        add("SmsSid", &m.sid);
        add("MessageStatus", m.status);
        add("SmsStatus", m.status);
        if let Some(code) = m.error_code.filter(|_| matches!(m.status, "failed" | "undelivered")) {
            add("ErrorCode", &code.to_string());
            add("ErrorMessage", m.error_message.as_deref().unwrap_or_default());
        }
        add("AccountSid", &self.cfg.account_sid);
        if let Some(ms) = &m.messaging_service_sid {
            add("MessagingServiceSid", ms);
        }
        add("From", &from);
        add("To", &m.to);
        add("ApiVersion", API_VERSION);
        if m.status == "delivered" && !m.whatsapp {
            add("RawDlrDoneDate", &dlr_done_date(now));
        }
        Some(Post {
            kind: "status",
            message_sid: m.sid.clone(),
            url,
            signing_url: None,
            params: p,
        })
    }

    // -- control API ---------------------------------------------------------

    /// `POST /_sim/deliver/{sid}`: the carrier reports delivery now (handing a queued message over first).
    pub(super) fn force_deliver(self: &Arc<Self>, sid: &str) -> Result<(), String> {
        let now = self.clock.now_ms();
        let mut posts = Vec::new();
        {
            let mut st = self.st();
            let i = *st.index.get(sid).ok_or_else(|| format!("unknown message {sid}"))?;
            match st.messages[i].status {
                "queued" if st.messages[i].direction != "inbound" => {
                    self.hand_to_carrier(&mut st, i, now, &mut posts);
                    self.transition(&mut st, i, "delivered", now, None, &mut posts);
                }
                "sent" => self.transition(&mut st, i, "delivered", now, None, &mut posts),
                other => {
                    return Err(format!(
                        "{sid} is {other}; only queued or sent messages can be delivered"
                    ));
                }
            }
        }
        posts.into_iter().for_each(|p| self.enqueue_callback(p));
        Ok(())
    }

    /// `POST /_sim/fail/{sid}`: `undelivered` (after `sent`) or `failed` with `code`.
    pub(super) fn force_fail(self: &Arc<Self>, sid: &str, code: u32, status: Option<&str>) -> Result<(), String> {
        let now = self.clock.now_ms();
        let mut posts = Vec::new();
        {
            let mut st = self.st();
            let i = *st.index.get(sid).ok_or_else(|| format!("unknown message {sid}"))?;
            let m = &st.messages[i];
            if m.direction == "inbound" {
                return Err(format!("{sid} is an inbound message"));
            }
            let status = match status {
                Some("failed") => "failed",
                Some("undelivered") => "undelivered",
                Some(other) => return Err(format!("status must be failed|undelivered, got {other}")),
                None if m.sent_ms.is_some() => "undelivered",
                None => "failed",
            };
            self.transition(&mut st, i, status, now, Some(code), &mut posts);
        }
        posts.into_iter().for_each(|p| self.enqueue_callback(p));
        Ok(())
    }

    /// `POST /_sim/read/{sid}`: a WhatsApp read receipt.
    pub(super) fn mark_read(self: &Arc<Self>, sid: &str) -> Result<(), String> {
        let now = self.clock.now_ms();
        let mut posts = Vec::new();
        {
            let mut st = self.st();
            let i = *st.index.get(sid).ok_or_else(|| format!("unknown message {sid}"))?;
            let m = &st.messages[i];
            if !m.whatsapp || !matches!(m.status, "sent" | "delivered") {
                return Err(format!("{sid} is not a sent WhatsApp message (status {})", m.status));
            }
            self.transition(&mut st, i, "read", now, None, &mut posts);
        }
        posts.into_iter().for_each(|p| self.enqueue_callback(p));
        Ok(())
    }
}

/// The customer wrote to this WhatsApp sender within the last 24 h.
fn in_window(st: &TwState, i: usize, now: i64) -> bool {
    let m = &st.messages[i];
    let key = (m.from.clone().unwrap_or_default(), m.to.clone());
    st.last_inbound
        .get(&key)
        .is_some_and(|&t| now.saturating_sub(t) <= WHATSAPP_WINDOW_MS)
}
