//! The runner: executes the steps of instances whose timer has come, then hands due
//! deliveries to the outbox.
//!
//! Steps: an instance runs from its step until it must wait (a delay, a wait, a time window)
//! or ends, in one transaction, and the write says which `fence` it read: a late or duplicate
//! timer, an exit or another worker that moved the instance first makes the write change
//! nothing. A send step only plans a delivery keyed by (instance, step, loop), so running a
//! step twice plans it once.
//!
//! Deliveries: each due delivery is checked again just before it goes (the instance is still
//! in the journey, consent, quiet hours, the daily cap), gets its channel (see `choose`), is
//! rendered for it and written to the customer's conversation with its send job, in one
//! transaction. Quiet hours defer, never drop.

use std::sync::Arc;
use std::time::Duration;

use sb_core::inbox::Purpose;
use sb_core::journey::{self, Action, Condition, Definition, SendStep};
use sb_engine::{Engine, Time};
use sb_inbox::Channels;
use sb_inbox::live::Live;
use sb_inbox::outbox::{self, Author, Content, Draft, ReplyError};
use sb_store::deliveries::{self, Delivery, NewDelivery, Outcome};
use sb_store::journeys::{self, Definitions, Instance, Move};
use sb_store::live_events::LiveEvent;
use sb_store::{Conn, Store, StoreError, carts, profiles};

use crate::{choose, context, render};

#[derive(Debug, Clone)]
pub struct Settings {
    /// The zone for customers without a known `timezone` trait.
    pub default_time_zone: String,
    /// Marketing messages per customer per local day, across all automated sends.
    pub daily_cap: i64,
    /// Instances or deliveries handled per transaction.
    pub batch: i64,
    /// Where people reach this server (links in messages).
    pub public_url: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_time_zone: "UTC".into(),
            daily_cap: 3,
            batch: 500,
            public_url: "http://localhost:8080".into(),
        }
    }
}

#[derive(Clone)]
pub struct Journeys {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    engine: Engine,
    channels: Channels,
    live: Live,
    time: Time,
    settings: Settings,
}

impl Journeys {
    pub fn new(store: Store, engine: Engine, channels: Channels, live: Live, time: Time, settings: Settings) -> Self {
        Journeys {
            inner: Arc::new(Inner {
                store,
                engine,
                channels,
                live,
                time,
                settings,
            }),
        }
    }

    /// Runs the step loop and the delivery loop until `stop`.
    pub async fn run(self, stop: tokio::sync::watch::Receiver<bool>) {
        let deliveries = tokio::spawn(self.clone().run_deliveries(stop.clone()));
        self.run_steps(stop).await;
        let _ = deliveries.await;
    }

    /// Steps and timers: runs due instances as soon as they are due. Its own loop, so that a
    /// slow delivery never delays a timer.
    pub async fn run_steps(self, stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let at = self.inner.time.now_ms();
            let did = self.steps().await;
            if !self.idle(&stop, "steps", at, did, journeys::next_wake).await {
                return;
            }
        }
    }

    /// Deliveries: hands due ones to the outbox.
    pub async fn run_deliveries(self, stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let at = self.inner.time.now_ms();
            let did = self.deliveries().await;
            if !self.idle(&stop, "deliveries", at, did, deliveries::next_due).await {
                return;
            }
        }
    }

    /// After a round that started at `at`: goes on at once when it did something; else
    /// sleeps until the next due time or a short poll (events of other paths and
    /// nodes enter instances without a wake-up). False once stopped.
    async fn idle(
        &self,
        stop: &tokio::sync::watch::Receiver<bool>,
        what: &'static str,
        at: i64,
        did: Result<usize, StoreError>,
        next: fn(&mut dyn Conn) -> Result<Option<i64>, StoreError>,
    ) -> bool {
        let mut stop = stop.clone();
        let did = match did {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, what, "a journey round failed; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
                0
            }
        };
        if *stop.borrow() {
            return false;
        }
        if did > 0 {
            return true;
        }
        let next = self.inner.store.db.read(next).await.unwrap_or(None);
        let now = self.inner.time.now_ms();
        // Due before the round and not taken (a paused journey's instances): look again at
        // the next poll. Due since the round started: at once.
        let deadline = next.map_or(now + 60_000, |n| if n <= at { now + 250 } else { n });
        tokio::select! {
            _ = self.inner.time.sleep_until(deadline) => true,
            _ = tokio::time::sleep(Duration::from_millis(250)) => true,
            _ = stop.wait_for(|s| *s) => false,
        }
    }

    /// One batch of due instances, in one transaction; how many were due.
    pub async fn steps(&self) -> Result<usize, StoreError> {
        let now = self.inner.time.now_ms();
        let batch = self.inner.settings.batch;
        let due = self.inner.store.db.read(move |c| journeys::due(c, now, batch)).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let (settings, n) = (self.inner.settings.clone(), due.len());
        let moved = self
            .inner
            .store
            .db
            .write(move |c| {
                let mut defs = Definitions::default();
                let mut moved = 0u64;
                for inst in &due {
                    moved += u64::from(step(c, &settings, &mut defs, inst, now)?);
                }
                Ok::<_, StoreError>(moved)
            })
            .await?;
        metrics::counter!("switchboard_journey_steps_total").increment(moved);
        Ok(n)
    }

    /// A batch of due deliveries, each in its own transaction; how many were handled.
    pub async fn deliveries(&self) -> Result<usize, StoreError> {
        let now = self.inner.time.now_ms();
        let due = self.inner.store.db.read(move |c| deliveries::due(c, now, 64)).await?;
        let n = due.len();
        for d in due {
            let (channels, settings) = (self.inner.channels.clone(), self.inner.settings.clone());
            let events = self
                .inner
                .store
                .db
                .write(move |c| dispatch(c, &channels, &settings, &d, now))
                .await?;
            if !events.is_empty() {
                self.inner.engine.notify_jobs();
                self.inner.live.publish(&events).await;
            }
        }
        Ok(n)
    }
}

fn time_zone(c: &mut dyn Conn, ws: &str, customer_id: &str, fallback: &str) -> Result<jiff::tz::TimeZone, StoreError> {
    let name = profiles::traits(c, ws, customer_id)?
        .into_iter()
        .find(|t| t.name == "timezone")
        .and_then(|t| serde_json::from_str::<String>(&t.value_json).ok());
    Ok(journey::zone(name.as_deref(), fallback))
}

/// Runs one instance from its step until it waits or ends. False when the instance moved
/// on since it was read (then nothing is written: the claim comes first).
pub fn step(
    c: &mut dyn Conn,
    settings: &Settings,
    defs: &mut Definitions,
    inst: &Instance,
    now: i64,
) -> Result<bool, StoreError> {
    let ws = inst.workspace_id.as_str();
    if !journeys::claim(c, ws, &inst.id, inst.fence)? {
        return Ok(false);
    }
    let claimed = Instance {
        fence: inst.fence + 1,
        ..inst.clone()
    };
    let inst = &claimed;
    let Some(def) = defs.get(c, ws, &inst.journey_id, inst.version)? else {
        let m = Move {
            state: "exited",
            step: inst.step,
            wake_at: None,
            end_reason: Some("definition missing"),
            restarted_at: None,
        };
        return journeys::advance(c, ws, &inst.id, inst.fence, &m, now);
    };
    // On the exit path: plan the exit rule's send, then end.
    if let Some(rule) = inst.exit_rule {
        let m = Move {
            state: "exited",
            step: inst.step,
            wake_at: None,
            end_reason: None,
            restarted_at: inst.restarted_at,
        };
        if !journeys::advance(c, ws, &inst.id, inst.fence, &m, now)? {
            return Ok(false);
        }
        if let Some(send) = def.exit_rules.get(rule as usize).and_then(|r| r.then.as_ref()) {
            plan(c, inst, &format!("exit:{rule}"), "journey_exit", send, now)?;
        }
        return Ok(true);
    }
    let mut at = inst.step as usize;
    // Waking at a step that was waiting: its wait is over.
    let mut woke = inst.state == "waiting";
    for _ in 0..=def.steps.len() {
        let Some(s) = def.steps.get(at) else {
            return finish(c, inst, at, "completed", now);
        };
        let base = if at == 0 { inst.trigger_at.min(now) } else { now };
        let goto: String = match &s.action {
            Action::Delay { minutes, until_local } => {
                if woke {
                    "next".into()
                } else {
                    let mut wake = base + i64::from(*minutes) * 60_000;
                    if let Some(t) = until_local {
                        let tz = time_zone(c, ws, &inst.customer_id, &settings.default_time_zone)?;
                        wake = journey::next_local_time(wake, &tz, t);
                    }
                    return wait(c, inst, at, wake, now);
                }
            }
            Action::WaitFor {
                timeout_minutes,
                on_timeout,
                ..
            } => {
                if woke {
                    on_timeout.clone()
                } else {
                    let from = inst.restarted_at.filter(|_| at == inst.step as usize).unwrap_or(base);
                    return wait(c, inst, at, from + i64::from(*timeout_minutes) * 60_000, now);
                }
            }
            Action::TimeWindow { hours, days } => {
                let tz = time_zone(c, ws, &inst.customer_id, &settings.default_time_zone)?;
                let opens = journey::window_opens(now, &tz, hours, days);
                if opens > now {
                    return wait(c, inst, at, opens, now);
                }
                "next".into()
            }
            Action::Branch { condition, otherwise } => {
                if holds(c, inst, condition)? {
                    "next".into()
                } else {
                    otherwise.clone()
                }
            }
            Action::Send(send) => {
                plan(c, inst, &s.id, "journey", send, now)?;
                "next".into()
            }
            Action::Exit => return finish(c, inst, at, "completed", now),
        };
        woke = false;
        match def.target(at, &goto).ok().flatten() {
            Some(next) => at = next,
            None => return finish(c, inst, at, "completed", now),
        }
    }
    finish(c, inst, at, "completed", now)
}

fn wait(c: &mut dyn Conn, inst: &Instance, at: usize, wake: i64, now: i64) -> Result<bool, StoreError> {
    let m = Move {
        state: "waiting",
        step: at as i64,
        wake_at: Some(wake),
        end_reason: None,
        // A restart belongs to the wait it restarted; a new step starts clean.
        restarted_at: inst.restarted_at.filter(|_| at == inst.step as usize),
    };
    journeys::advance(c, &inst.workspace_id, &inst.id, inst.fence, &m, now)
}

fn finish(c: &mut dyn Conn, inst: &Instance, at: usize, reason: &str, now: i64) -> Result<bool, StoreError> {
    let m = Move {
        state: "completed",
        step: at as i64,
        wake_at: None,
        end_reason: Some(reason),
        restarted_at: inst.restarted_at,
    };
    journeys::advance(c, &inst.workspace_id, &inst.id, inst.fence, &m, now)
}

fn plan(
    c: &mut dyn Conn,
    inst: &Instance,
    step_id: &str,
    origin: &str,
    send: &SendStep,
    now: i64,
) -> Result<bool, StoreError> {
    let key = format!("journey:{}:{step_id}:{}", inst.id, inst.loop_count);
    deliveries::plan(
        c,
        &NewDelivery {
            workspace_id: &inst.workspace_id,
            idempotency_key: &key,
            origin,
            journey_id: Some(&inst.journey_id),
            instance_id: Some(&inst.id),
            step_id,
            customer_id: &inst.customer_id,
            purpose: send.purpose.as_str(),
            not_before: now,
        },
        now,
    )
}

fn holds(c: &mut dyn Conn, inst: &Instance, condition: &Condition) -> Result<bool, StoreError> {
    let ws = inst.workspace_id.as_str();
    Ok(match condition {
        Condition::Purchased { sku } => sb_store::orders::purchased_skus(c, ws, &inst.customer_id)?.contains(sku),
        Condition::CartHasItems => {
            let trigger: serde_json::Value = serde_json::from_str(&inst.context_json).unwrap_or_default();
            let cart = match journey::lookup(&trigger, "properties.cart_id").and_then(|v| v.as_str()) {
                Some(id) => carts::get(c, ws, id)?.filter(|cart| cart.status == "active"),
                None => carts::active_for_customer(c, ws, &inst.customer_id)?,
            };
            match cart {
                Some(cart) => !carts::lines(c, &cart.id)?.is_empty(),
                None => false,
            }
        }
        Condition::Trait(filter) => {
            let mut traits = serde_json::Map::new();
            for t in profiles::traits(c, ws, &inst.customer_id)? {
                traits.insert(t.name, serde_json::from_str(&t.value_json).unwrap_or_default());
            }
            filter.matches(&serde_json::Value::Object(traits))
        }
        Condition::Not { condition } => !holds(c, inst, condition)?,
    })
}

/// The send step a delivery belongs to.
fn send_of<'a>(def: &'a Definition, d: &Delivery) -> Option<&'a SendStep> {
    if let Some(rule) = d.step_id.strip_prefix("exit:") {
        let rule: usize = rule.parse().ok()?;
        return def.exit_rules.get(rule)?.then.as_ref();
    }
    def.steps
        .iter()
        .find(|s| s.id == d.step_id)
        .and_then(|s| match &s.action {
            Action::Send(send) => Some(&**send),
            _ => None,
        })
}

/// Handles one due delivery in the caller's transaction; returns the live events to publish.
pub fn dispatch(
    c: &mut dyn Conn,
    channels: &Channels,
    settings: &Settings,
    d: &Delivery,
    now: i64,
) -> Result<Vec<LiveEvent>, StoreError> {
    let ws = d.workspace_id.as_str();
    let settle = |c: &mut dyn Conn, o: Outcome<'_>| deliveries::settle(c, ws, &d.id, &o, now);
    let refuse = |c: &mut dyn Conn, state: &str, code: &str, reason: &str| {
        settle(
            c,
            Outcome {
                state,
                reason_code: Some(code),
                reason: Some(reason),
                ..Outcome::default()
            },
        )
    };
    let Some(instance_id) = d.instance_id.as_deref() else {
        refuse(
            c,
            "failed",
            "no_source",
            "the delivery belongs to nothing that can be sent",
        )?;
        return Ok(Vec::new());
    };
    let Some(inst) = journeys::instance(c, ws, instance_id)? else {
        refuse(c, "failed", "no_source", "the journey instance is gone")?;
        return Ok(Vec::new());
    };
    // Not sent once the customer left the journey by an exit (the exit's own send excepted);
    // a journey that simply reached its end still sends its last step.
    let left = inst.state == "exited" || inst.exit_rule.is_some();
    if d.origin == "journey" && left {
        let reason = format!(
            "the customer left the journey ({}) before this was sent",
            inst.end_reason.as_deref().unwrap_or("ended")
        );
        refuse(c, "suppressed", "journey_exited", &reason)?;
        return Ok(Vec::new());
    }
    let Some(def) = journeys::definition(c, ws, &inst.journey_id, inst.version)? else {
        refuse(c, "failed", "no_source", "the journey version is gone")?;
        return Ok(Vec::new());
    };
    let Some(send) = send_of(&def, d) else {
        refuse(c, "failed", "no_source", "the send step is not in the journey version")?;
        return Ok(Vec::new());
    };
    let marketing = send.purpose == Purpose::Marketing;
    let tz = time_zone(c, ws, &d.customer_id, &settings.default_time_zone)?;
    if marketing && let Some(quiet) = &def.quiet_hours {
        let after = journey::after_quiet_hours(now, &tz, quiet);
        if after > now {
            let reason = format!(
                "held for the customer's quiet hours ({}–{} local)",
                quiet.start, quiet.end
            );
            settle(
                c,
                Outcome {
                    state: "deferred",
                    not_before: Some(after),
                    reason_code: Some("quiet_hours"),
                    reason: Some(&reason),
                    ..Outcome::default()
                },
            )?;
            return Ok(Vec::new());
        }
    }
    if marketing {
        let sent = deliveries::marketing_sent_since(c, ws, &d.customer_id, journey::local_day_start(now, &tz))?;
        if sent >= settings.daily_cap {
            let reason = format!(
                "the customer already received {sent} marketing message(s) today (cap {})",
                settings.daily_cap
            );
            refuse(c, "capped", "frequency_capped", &reason)?;
            return Ok(Vec::new());
        }
    }
    let choice = match choose::choose(c, channels, ws, &d.customer_id, send, now)? {
        Ok(choice) => choice,
        Err(none) => {
            let state = if none.code == "no_channel" {
                "failed"
            } else {
                "suppressed"
            };
            refuse(c, state, &none.code, &none.why)?;
            return Ok(Vec::new());
        }
    };
    let trigger: serde_json::Value = serde_json::from_str(&inst.context_json).unwrap_or_default();
    let built = context::build(
        c,
        ws,
        &d.customer_id,
        &trigger,
        &send.message.products,
        &settings.public_url,
    );
    let ctx = match built {
        Ok(ctx) => ctx,
        Err(StoreError::NotFound(what)) => {
            refuse(c, "failed", "not_found", &format!("the {what} is gone"))?;
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let family = journey::channel_family(&choice.account.channel);
    let rendered = match render::render(&send.message, family, choice.template_only, &ctx) {
        Ok(r) => r,
        Err(e) => {
            refuse(c, "failed", "template_error", &e)?;
            return Ok(Vec::new());
        }
    };
    // SMS links go through our own redirect: short, and only to the URLs of this message.
    let mut rendered = rendered;
    if family == "sms" && rendered.template.is_none() {
        let base = settings.public_url.trim_end_matches('/').to_owned();
        let mut failed = None;
        rendered.text = render::shorten_links(&rendered.text, |url| {
            match sb_store::links::create(c, ws, &d.id, url, now) {
                Ok(token) => format!("{base}/l/{token}"),
                Err(e) => {
                    failed.get_or_insert(e);
                    url.to_owned()
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
    }
    let content = match &rendered.template {
        Some(t) => Content::Template(t),
        None => Content::Text(&rendered.text),
    };
    let meta = rendered
        .rich
        .as_ref()
        .map(|rich| serde_json::json!({ "rich": rich }).to_string());
    let draft = Draft {
        author: Author::System,
        content,
        purpose: send.purpose,
        meta_json: meta.as_deref(),
    };
    match outbox::queue_automated(c, channels, ws, &d.customer_id, &choice.account, draft, now)? {
        Ok((message, event)) => {
            settle(
                c,
                Outcome {
                    state: "queued",
                    channel: Some(&choice.account.channel),
                    channel_account_id: Some(&choice.account.id),
                    message_id: Some(&message.id),
                    reason: Some(&choice.why),
                    ..Outcome::default()
                },
            )?;
            metrics::counter!("switchboard_journey_deliveries_total", "channel" => choice.account.channel.clone())
                .increment(1);
            Ok(vec![event])
        }
        Err(ReplyError::NotAllowed(reason, code)) => {
            refuse(c, "failed", code, &format!("{}: {reason}", choice.why))?;
            Ok(Vec::new())
        }
        Err(e) => {
            refuse(c, "failed", "not_sent", &e.to_string())?;
            Ok(Vec::new())
        }
    }
}
