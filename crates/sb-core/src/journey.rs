//! Journeys as a marketer defines them (a trigger, exit rules, a goal and a vertical list of
//! steps) and the pure rules the engine applies: which events match, where a step goes next,
//! when a local time falls. No IO here: storage is `sb_store::journeys`, the runner that
//! executes steps and plans deliveries is the `sb-journeys` crate.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::inbox::Purpose;

/// One version of a journey. Saved versions never change; an edit is a new version, and
/// instances keep running on the version they entered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub trigger: Trigger,
    /// An event property whose value keys an instance (the cart id): one live instance per
    /// customer and value, and exit rules or waits with `match_key` only see events with the
    /// same value.
    #[serde(default)]
    pub correlation_key: Option<String>,
    #[serde(default)]
    pub reentry: Reentry,
    /// Checked before anything else on every event of a customer in the journey.
    #[serde(default)]
    pub exit_rules: Vec<ExitRule>,
    /// Conversion: the goal event within `window_hours` of entering.
    #[serde(default)]
    pub goal: Option<Goal>,
    /// Sends due inside these local hours wait until they end (never dropped).
    #[serde(default)]
    pub quiet_hours: Option<Hours>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// An event name (`Product Added`, `Order Completed`, any tracked event).
    pub event: String,
    #[serde(default)]
    pub filter: Vec<Filter>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reentry {
    /// Again after the previous instance (for the same key) ended.
    #[default]
    AfterExit,
    /// Once per customer and key, ever.
    Once,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitRule {
    pub event: String,
    #[serde(default)]
    pub filter: Vec<Filter>,
    /// Only an event carrying the instance's correlation value exits it.
    #[serde(default)]
    pub match_key: bool,
    /// Sent once on exit (the thank-you after the purchase).
    #[serde(default)]
    pub then: Option<SendStep>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    pub event: String,
    #[serde(default)]
    pub filter: Vec<Filter>,
    pub window_hours: u32,
}

/// A property test on an event (`properties.<path>`, dots for nested objects).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub property: String,
    pub op: Op,
    #[serde(default)]
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    Contains,
    Exists,
}

/// Local hours `start`–`end` ("21:00"–"08:00" wraps midnight).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    pub start: String,
    pub end: String,
}

// No `deny_unknown_fields` here: serde cannot combine it with `flatten`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    #[serde(flatten)]
    pub action: Action,
}

/// Where a step goes instead of the next one: `next`, `exit` or a later step's id.
pub type Goto = String;

fn next() -> Goto {
    "next".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Wait a duration, then (if given) until the next local time of day.
    Delay {
        #[serde(default)]
        minutes: u32,
        #[serde(default)]
        until_local: Option<String>,
    },
    /// Wait for one of `events` (then go on), restarting the timeout on each of `restart_on`;
    /// after `timeout_minutes` without them go to `on_timeout`.
    WaitFor {
        #[serde(default)]
        events: Vec<String>,
        #[serde(default)]
        restart_on: Vec<String>,
        #[serde(default)]
        match_key: bool,
        timeout_minutes: u32,
        #[serde(default = "next")]
        on_timeout: Goto,
    },
    /// Go on when the condition holds, else to `otherwise`.
    Branch {
        condition: Condition,
        #[serde(default = "exit_goto")]
        otherwise: Goto,
    },
    /// Go on only inside these local hours (and days, when given: mon … sun).
    TimeWindow {
        hours: Hours,
        #[serde(default)]
        days: Vec<String>,
    },
    Send(Box<SendStep>),
    Exit,
}

fn exit_goto() -> Goto {
    "exit".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Condition {
    /// The customer bought this SKU (any channel, any store) and did not return all of it.
    Purchased {
        sku: String,
    },
    /// The customer's open cart (or the journey's cart) has lines.
    CartHasItems,
    /// A trait of the customer's profile.
    Trait(Filter),
    Not {
        condition: Box<Condition>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendStep {
    pub message: Message,
    /// Pin one channel; otherwise the customer's preferred channel (see `sb-journeys`).
    #[serde(default)]
    pub channel: Option<String>,
    /// The fallback order to use instead of the workspace's.
    #[serde(default)]
    pub fallback: Vec<String>,
    #[serde(default = "marketing")]
    pub purpose: Purpose,
}

fn marketing() -> Purpose {
    Purpose::Marketing
}

/// A message written once and rendered per channel. Texts are Liquid templates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub headline: String,
    pub body: String,
    #[serde(default)]
    pub image_url: Option<String>,
    #[serde(default)]
    pub cta_label: Option<String>,
    #[serde(default)]
    pub cta_url: Option<String>,
    #[serde(default)]
    pub products: ProductBlock,
    /// Instagram and Messenger: quick-reply buttons.
    #[serde(default)]
    pub quick_replies: Vec<String>,
    #[serde(default)]
    pub variants: Variants,
}

/// Products shown under the text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProductBlock {
    #[default]
    None,
    /// The lines of the cart.
    Cart,
    /// These SKUs, leaving out what the customer already bought.
    Pick { skus: Vec<String> },
}

/// Per-channel overrides of what is derived from the core.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variants {
    #[serde(default)]
    pub sms: Option<TextVariant>,
    #[serde(default)]
    pub email: Option<EmailVariant>,
    #[serde(default)]
    pub whatsapp: Option<WhatsAppVariant>,
    #[serde(default)]
    pub telegram: Option<TextVariant>,
    #[serde(default)]
    pub messenger: Option<TextVariant>,
    #[serde(default)]
    pub instagram: Option<TextVariant>,
    #[serde(default)]
    pub widget: Option<TextVariant>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextVariant {
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailVariant {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
}

/// An approved WhatsApp template (outside the 24-hour window): its name and language and
/// one Liquid expression per `{{n}}` parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppVariant {
    pub template: String,
    pub language: String,
    #[serde(default)]
    pub parameters: Vec<String>,
}

/// A definition refused at save, with a stable code and the step it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
    pub step: Option<String>,
}

fn invalid(code: &'static str, step: Option<&str>, message: impl Into<String>) -> Invalid {
    Invalid {
        code,
        message: message.into(),
        step: step.map(str::to_owned),
    }
}

/// The channel a journey names for a channel account's kind: every SMS provider is `sms`.
pub fn channel_family(kind: &str) -> &str {
    match kind {
        "twilio_sms" => "sms",
        other => other,
    }
}

/// Channels a send may name.
pub const CHANNELS: [&str; 8] = [
    "whatsapp",
    "sms",
    "email",
    "telegram",
    "messenger",
    "instagram",
    "widget",
    "api",
];

impl Definition {
    /// Checks the shape: step ids unique, every jump forward to a known step (a jump back
    /// would loop), times and channels valid, filters only on properties the event is known
    /// to carry (`properties_of` answers `None` when nothing is known of an event).
    pub fn validate(&self, properties_of: &dyn Fn(&str) -> Option<Vec<String>>) -> Result<(), Invalid> {
        if self.trigger.event.trim().is_empty() {
            return Err(invalid("invalid_trigger", None, "the trigger needs an event name"));
        }
        if self.steps.is_empty() {
            return Err(invalid("no_steps", None, "a journey needs at least one step"));
        }
        let check_filters = |event: &str, filters: &[Filter], step: Option<&str>| -> Result<(), Invalid> {
            let Some(known) = properties_of(event) else {
                return Ok(());
            };
            for f in filters {
                let top = f.property.split('.').next().unwrap_or_default();
                if !known.iter().any(|k| k == top) {
                    return Err(invalid(
                        "unknown_event_property",
                        step,
                        format!(
                            "`{event}` has no property `{}`; it carries: {}",
                            f.property,
                            known.join(", ")
                        ),
                    ));
                }
            }
            Ok(())
        };
        check_filters(&self.trigger.event, &self.trigger.filter, None)?;
        for rule in &self.exit_rules {
            check_filters(&rule.event, &rule.filter, None)?;
            if rule.match_key && self.correlation_key.is_none() {
                return Err(invalid(
                    "missing_correlation_key",
                    None,
                    format!(
                        "the exit on `{}` matches the key, but the journey has no correlation key",
                        rule.event
                    ),
                ));
            }
            if let Some(send) = &rule.then {
                send.validate(None)?;
            }
        }
        if let Some(goal) = &self.goal {
            check_filters(&goal.event, &goal.filter, None)?;
        }
        if let Some(key) = &self.correlation_key
            && let Some(known) = properties_of(&self.trigger.event)
            && !known.iter().any(|k| k == key)
        {
            return Err(invalid(
                "unknown_event_property",
                None,
                format!(
                    "the correlation key `{key}` is not a property of `{}`",
                    self.trigger.event
                ),
            ));
        }
        if let Some(h) = &self.quiet_hours {
            h.validate(None)?;
        }
        let mut seen = std::collections::HashSet::new();
        for step in &self.steps {
            if step.id.trim().is_empty() || step.id == "next" || step.id == "exit" {
                return Err(invalid(
                    "invalid_step_id",
                    Some(&step.id),
                    "each step needs an id other than next/exit",
                ));
            }
            if !seen.insert(step.id.as_str()) {
                return Err(invalid(
                    "duplicate_step_id",
                    Some(&step.id),
                    format!("two steps are called `{}`", step.id),
                ));
            }
        }
        for (i, step) in self.steps.iter().enumerate() {
            let id = Some(step.id.as_str());
            for goto in step.action.gotos() {
                self.target(i, goto)?;
            }
            match &step.action {
                Action::Delay { minutes, until_local } => {
                    if *minutes == 0 && until_local.is_none() {
                        return Err(invalid("invalid_delay", id, "a delay needs minutes or a local time"));
                    }
                    if let Some(t) = until_local {
                        parse_hhmm(t).ok_or_else(|| invalid("invalid_time", id, format!("`{t}` is not HH:MM")))?;
                    }
                }
                Action::WaitFor {
                    events,
                    restart_on,
                    match_key,
                    timeout_minutes,
                    ..
                } => {
                    if *timeout_minutes == 0 {
                        return Err(invalid("invalid_wait", id, "a wait needs a timeout"));
                    }
                    if *match_key && self.correlation_key.is_none() {
                        return Err(invalid(
                            "missing_correlation_key",
                            id,
                            "this wait matches the key, but the journey has no correlation key",
                        ));
                    }
                    if events.iter().chain(restart_on).any(|e| e.trim().is_empty()) {
                        return Err(invalid("invalid_wait", id, "an event name is empty"));
                    }
                }
                Action::TimeWindow { hours, days } => {
                    hours.validate(id)?;
                    for d in days {
                        weekday(d).ok_or_else(|| {
                            invalid("invalid_day", id, format!("`{d}` is not a day (mon, tue, … sun)"))
                        })?;
                    }
                }
                Action::Send(send) => send.validate(id)?,
                Action::Branch { condition, .. } => condition.validate(id)?,
                Action::Exit => {}
            }
        }
        Ok(())
    }

    /// The index a jump from step `from` lands on; `None` means the journey ends.
    pub fn target(&self, from: usize, goto: &str) -> Result<Option<usize>, Invalid> {
        match goto {
            "next" => Ok((from + 1 < self.steps.len()).then_some(from + 1)),
            "exit" => Ok(None),
            id => match self.steps.iter().position(|s| s.id == id) {
                Some(to) if to > from => Ok(Some(to)),
                Some(_) => Err(invalid(
                    "journey_cycle",
                    Some(&self.steps[from].id),
                    format!(
                        "step `{}` jumps back to `{id}`: journeys only go forward",
                        self.steps[from].id
                    ),
                )),
                None => Err(invalid(
                    "unknown_step",
                    Some(&self.steps[from].id),
                    format!("step `{}` jumps to `{id}`, which does not exist", self.steps[from].id),
                )),
            },
        }
    }

    /// Every event name the journey listens to once a customer is in it.
    pub fn listens_to(&self) -> impl Iterator<Item = &str> {
        self.exit_rules
            .iter()
            .map(|r| r.event.as_str())
            .chain(self.goal.iter().map(|g| g.event.as_str()))
            .chain(self.steps.iter().flat_map(|s| match &s.action {
                Action::WaitFor { events, restart_on, .. } => {
                    events.iter().chain(restart_on).map(String::as_str).collect::<Vec<_>>()
                }
                _ => Vec::new(),
            }))
    }

    /// The value of the correlation key in an event's properties (`""` without a key).
    pub fn key_of(&self, properties: &Value) -> Option<String> {
        match &self.correlation_key {
            None => Some(String::new()),
            Some(k) => lookup(properties, k).and_then(scalar_text),
        }
    }
}

impl Action {
    fn gotos(&self) -> Vec<&str> {
        match self {
            Action::WaitFor { on_timeout, .. } => vec![on_timeout.as_str()],
            Action::Branch { otherwise, .. } => vec![otherwise.as_str()],
            _ => Vec::new(),
        }
    }
}

impl Hours {
    fn validate(&self, step: Option<&str>) -> Result<(), Invalid> {
        for t in [&self.start, &self.end] {
            parse_hhmm(t).ok_or_else(|| invalid("invalid_time", step, format!("`{t}` is not HH:MM")))?;
        }
        if self.start == self.end {
            return Err(invalid(
                "invalid_time",
                step,
                "the hours start and end at the same time",
            ));
        }
        Ok(())
    }
}

impl SendStep {
    fn validate(&self, step: Option<&str>) -> Result<(), Invalid> {
        for ch in self.channel.iter().chain(&self.fallback) {
            if !CHANNELS.contains(&ch.as_str()) {
                return Err(invalid("unknown_channel", step, format!("`{ch}` is not a channel")));
            }
        }
        if self.channel.as_deref() == Some("whatsapp") && self.message.variants.whatsapp.is_none() {
            return Err(invalid(
                "template_required",
                step,
                "WhatsApp outside the 24-hour window takes only an approved template: map one in the WhatsApp variant",
            ));
        }
        if self.message.headline.trim().is_empty() && self.message.body.trim().is_empty() {
            return Err(invalid("empty_message", step, "the message needs a headline or a body"));
        }
        Ok(())
    }
}

impl Condition {
    fn validate(&self, step: Option<&str>) -> Result<(), Invalid> {
        match self {
            Condition::Purchased { sku } if sku.trim().is_empty() => Err(invalid(
                "invalid_condition",
                step,
                "name the SKU the condition looks for",
            )),
            Condition::Trait(f) if f.property.trim().is_empty() => Err(invalid(
                "invalid_condition",
                step,
                "name the trait the condition looks at",
            )),
            Condition::Not { condition } => condition.validate(step),
            _ => Ok(()),
        }
    }
}

/// `a.b.c` in a JSON object.
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, part| v.get(part))
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Filter {
    pub fn matches(&self, properties: &Value) -> bool {
        let found = lookup(properties, &self.property);
        let Some(found) = found else {
            return self.op == Op::Ne;
        };
        let number = |v: &Value| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
        let ordered = |f: fn(f64, f64) -> bool| match (number(found), number(&self.value)) {
            (Some(a), Some(b)) => f(a, b),
            _ => false,
        };
        match self.op {
            Op::Exists => !found.is_null(),
            Op::Eq => loose_eq(found, &self.value),
            Op::Ne => !loose_eq(found, &self.value),
            Op::Gt => ordered(|a, b| a > b),
            Op::Gte => ordered(|a, b| a >= b),
            Op::Lt => ordered(|a, b| a < b),
            Op::Lte => ordered(|a, b| a <= b),
            Op::Contains => match (found, &self.value) {
                (Value::String(s), Value::String(n)) => s.to_lowercase().contains(&n.to_lowercase()),
                (Value::Array(items), v) => items.iter().any(|i| loose_eq(i, v)),
                _ => false,
            },
        }
    }
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => x.eq_ignore_ascii_case(y),
        _ => scalar_text(a).is_some() && scalar_text(a) == scalar_text(b),
    }
}

/// Whether every filter holds.
pub fn all_match(filters: &[Filter], properties: &Value) -> bool {
    filters.iter().all(|f| f.matches(properties))
}

fn parse_hhmm(t: &str) -> Option<(i8, i8)> {
    let (h, m) = t.split_once(':')?;
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m) && t.len() == 5).then_some((h, m))
}

fn weekday(d: &str) -> Option<jiff::civil::Weekday> {
    use jiff::civil::Weekday::*;
    Some(match d {
        "mon" => Monday,
        "tue" => Tuesday,
        "wed" => Wednesday,
        "thu" => Thursday,
        "fri" => Friday,
        "sat" => Saturday,
        "sun" => Sunday,
        _ => return None,
    })
}

/// The customer's time zone, or the fallback when theirs is missing or unknown.
pub fn zone(name: Option<&str>, fallback: &str) -> jiff::tz::TimeZone {
    name.and_then(|n| jiff::tz::TimeZone::get(n).ok())
        .or_else(|| jiff::tz::TimeZone::get(fallback).ok())
        .unwrap_or(jiff::tz::TimeZone::UTC)
}

fn zoned(ms: i64, tz: &jiff::tz::TimeZone) -> jiff::Zoned {
    jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(tz.clone())
}

/// The first instant at or after `ms` whose local time is `hh:mm` (DST-correct: a time that
/// does not exist that day moves forward).
pub fn next_local_time(ms: i64, tz: &jiff::tz::TimeZone, hhmm: &str) -> i64 {
    let Some((h, m)) = parse_hhmm(hhmm) else {
        return ms;
    };
    let now = zoned(ms, tz);
    let mut date = now.date();
    for _ in 0..3 {
        if let Ok(at) = date.at(h, m, 0, 0).to_zoned(tz.clone()) {
            let at = at.timestamp().as_millisecond();
            if at >= ms {
                return at;
            }
        }
        date = date.tomorrow().unwrap_or(date);
    }
    ms
}

fn minutes_of_day(z: &jiff::Zoned) -> i32 {
    i32::from(z.hour()) * 60 + i32::from(z.minute())
}

fn inside(minute: i32, hours: &Hours) -> bool {
    let (Some((sh, sm)), Some((eh, em))) = (parse_hhmm(&hours.start), parse_hhmm(&hours.end)) else {
        return true;
    };
    let (start, end) = (i32::from(sh) * 60 + i32::from(sm), i32::from(eh) * 60 + i32::from(em));
    if start < end {
        minute >= start && minute < end
    } else {
        minute >= start || minute < end
    }
}

/// When a step limited to `hours` (and `days`, empty for all) may go: `ms` itself when it is
/// inside, else the next start.
pub fn window_opens(ms: i64, tz: &jiff::tz::TimeZone, hours: &Hours, days: &[String]) -> i64 {
    let day_ok = |z: &jiff::Zoned| days.is_empty() || days.iter().any(|d| weekday(d) == Some(z.weekday()));
    let now = zoned(ms, tz);
    if inside(minutes_of_day(&now), hours) && day_ok(&now) {
        return ms;
    }
    let mut at = ms;
    for _ in 0..8 {
        at = next_local_time(at, tz, &hours.start);
        let z = zoned(at, tz);
        if day_ok(&z) {
            return at;
        }
        at += 60_000;
    }
    ms
}

/// When a send due at `ms` may go given quiet hours: `ms` outside them, else their end.
pub fn after_quiet_hours(ms: i64, tz: &jiff::tz::TimeZone, quiet: &Hours) -> i64 {
    if inside(minutes_of_day(&zoned(ms, tz)), quiet) {
        next_local_time(ms, tz, &quiet.end)
    } else {
        ms
    }
}

/// The start of the local calendar day that holds `ms` (frequency caps count these days).
pub fn local_day_start(ms: i64, tz: &jiff::tz::TimeZone) -> i64 {
    zoned(ms, tz)
        .start_of_day()
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cart_journey() -> Definition {
        serde_json::from_value(json!({
            "trigger": {"event": "Product Added"},
            "correlation_key": "cart_id",
            "exit_rules": [{"event": "Order Completed", "match_key": true}],
            "steps": [
                {"id": "idle", "type": "wait_for", "restart_on": ["Product Added"], "match_key": true, "timeout_minutes": 60},
                {"id": "remind", "type": "send", "message": {"headline": "Your cart", "body": "{{ customer.first_name }}"}},
                {"id": "wait", "type": "delay", "minutes": 1440},
                {"id": "again", "type": "send", "channel": "email", "message": {"headline": "Still there", "body": "x"}}
            ]
        }))
        .expect("definition parses")
    }

    fn props(event: &str) -> Option<Vec<String>> {
        match event {
            "Product Added" => Some(vec!["cart_id".into(), "sku".into()]),
            "Order Completed" => Some(vec!["cart_id".into(), "order_id".into()]),
            _ => None,
        }
    }

    #[test]
    fn the_abandoned_cart_journey_is_valid() {
        cart_journey().validate(&props).expect("valid");
    }

    #[test]
    fn a_jump_back_is_refused_as_a_cycle() {
        let mut d = cart_journey();
        d.steps[2].action = Action::Branch {
            condition: Condition::CartHasItems,
            otherwise: "idle".into(),
        };
        assert_eq!(d.validate(&props).unwrap_err().code, "journey_cycle");
        d.steps[2].action = Action::Branch {
            condition: Condition::CartHasItems,
            otherwise: "nowhere".into(),
        };
        assert_eq!(d.validate(&props).unwrap_err().code, "unknown_step");
    }

    #[test]
    fn a_filter_on_a_property_the_event_does_not_carry_is_refused() {
        let mut d = cart_journey();
        d.trigger.filter.push(Filter {
            property: "colour".into(),
            op: Op::Eq,
            value: json!("blue"),
        });
        assert_eq!(d.validate(&props).unwrap_err().code, "unknown_event_property");
    }

    #[test]
    fn whatsapp_pinned_without_a_template_is_refused() {
        let mut d = cart_journey();
        if let Action::Send(s) = &mut d.steps[1].action {
            s.channel = Some("whatsapp".into());
        }
        assert_eq!(d.validate(&props).unwrap_err().code, "template_required");
    }

    #[test]
    fn filters_compare_loosely_and_by_path() {
        let p = json!({"cart": {"value": "12.5"}, "sku": "GLV-1", "tags": ["a", "b"]});
        let f = |property: &str, op, value| Filter {
            property: property.into(),
            op,
            value,
        };
        assert!(f("cart.value", Op::Gt, json!(10)).matches(&p));
        assert!(f("sku", Op::Eq, json!("glv-1")).matches(&p));
        assert!(f("tags", Op::Contains, json!("b")).matches(&p));
        assert!(f("missing", Op::Ne, json!("x")).matches(&p));
        assert!(!f("missing", Op::Exists, json!(null)).matches(&p));
    }

    #[test]
    fn local_times_follow_the_zone_across_dst() {
        let tz = zone(Some("Europe/Madrid"), "UTC");
        // 2026-03-28 12:00 UTC (13:00 CET); the clocks go forward on the 29th.
        let ms = 1_774_699_200_000;
        let next = next_local_time(ms, &tz, "10:00");
        // 10:00 CEST on the 29th is 08:00 UTC.
        assert_eq!(next, 1_774_771_200_000);
        let quiet = Hours {
            start: "21:00".into(),
            end: "08:00".into(),
        };
        // 23:00 local is quiet: the send waits for 08:00.
        let late = 1_774_735_200_000; // 2026-03-28 22:00 UTC = 23:00 CET
        let after = after_quiet_hours(late, &tz, &quiet);
        assert_eq!(after, 1_774_764_000_000); // 08:00 CEST = 06:00 UTC on the 29th
        assert_eq!(after_quiet_hours(ms, &tz, &quiet), ms);
    }
}
