//! Journeys, the marketers' use cases: save a definition (checked in full: shape, event
//! properties, every template), new versions that leave running instances alone, activate,
//! pause, resume, archive, live counts per step, a preview per channel for a real customer,
//! and a customer's journeys with the next planned send.

use std::collections::HashMap;

use http::StatusCode;
use sb_core::Permission;
use sb_core::clock::rfc3339;
use sb_core::journey::{Action, Definition, Invalid};
use sb_store::audit::{self, Change};
use sb_store::journeys::{self as store, Journey};
use sb_store::objects::ObjectKind;
use sb_store::{Conn, StoreError, deliveries};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{AppError, AppResult};
use crate::{App, Principal};

const MAX_NAME_CHARS: usize = 200;
const MAX_STEPS: usize = 50;

#[derive(Deserialize, ToSchema)]
pub struct SaveJourney {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// The definition: trigger, correlation_key, reentry, exit_rules, goal, quiet_hours, steps.
    #[schema(value_type = Object)]
    pub definition: Value,
}

#[derive(Serialize, ToSchema)]
pub struct StepView {
    pub id: String,
    /// delay, wait_for, branch, time_window, send, exit.
    #[serde(rename = "type")]
    pub kind: String,
    /// Instances waiting at this step now.
    pub waiting: i64,
    /// Instances whose step is due now.
    pub active: i64,
}

#[derive(Serialize, ToSchema)]
pub struct JourneyCounts {
    pub entered: i64,
    pub in_progress: i64,
    pub exited: i64,
    pub completed: i64,
    pub converted: i64,
}

#[derive(Serialize, ToSchema)]
pub struct JourneyView {
    pub id: String,
    pub name: String,
    /// draft, active, paused, archived.
    pub state: String,
    pub version: i64,
    pub trigger_event: String,
    #[schema(value_type = Object)]
    pub definition: Value,
    pub counts: JourneyCounts,
    pub steps: Vec<StepView>,
    pub created_at: String,
    pub updated_at: String,
}

fn kind_of(a: &Action) -> &'static str {
    match a {
        Action::Delay { .. } => "delay",
        Action::WaitFor { .. } => "wait_for",
        Action::Branch { .. } => "branch",
        Action::TimeWindow { .. } => "time_window",
        Action::Send(_) => "send",
        Action::Exit => "exit",
    }
}

fn view(c: &mut dyn Conn, j: &Journey) -> Result<JourneyView, StoreError> {
    let def = store::definition(c, &j.workspace_id, &j.id, j.current_version)?;
    let counts = store::step_counts(c, &j.workspace_id, &j.id)?;
    let (entered, converted) = store::totals(c, &j.workspace_id, &j.id)?;
    let sum = |states: &[&str]| {
        counts
            .iter()
            .filter(|s| states.contains(&s.state.as_str()))
            .map(|s| s.n)
            .sum()
    };
    let steps = def
        .as_ref()
        .map(|d| {
            d.steps
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let at = |state: &str| {
                        counts
                            .iter()
                            .filter(|n| n.step == i as i64 && n.state == state)
                            .map(|n| n.n)
                            .sum()
                    };
                    StepView {
                        id: s.id.clone(),
                        kind: kind_of(&s.action).into(),
                        waiting: at("waiting"),
                        active: at("active"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(JourneyView {
        id: j.id.clone(),
        name: j.name.clone(),
        state: j.state.clone(),
        version: j.current_version,
        trigger_event: j.trigger_event.clone(),
        definition: def
            .map(|d| serde_json::to_value(d).unwrap_or_default())
            .unwrap_or_default(),
        counts: JourneyCounts {
            entered,
            in_progress: sum(&["active", "waiting"]),
            exited: sum(&["exited"]),
            completed: sum(&["completed"]),
            converted,
        },
        steps,
        created_at: rfc3339(j.created_at),
        updated_at: rfc3339(j.updated_at),
    })
}

fn refused(e: Invalid) -> AppError {
    AppError::unprocessable(e.code, e.message).with_details(serde_json::json!({ "step": e.step }))
}

/// Properties seen on recent events of each name (our own events' are known in full).
fn observed_properties(
    c: &mut dyn Conn,
    ws: &str,
    names: &[String],
) -> Result<HashMap<String, Vec<String>>, StoreError> {
    let mut out = HashMap::new();
    for name in names {
        if let Some(known) = sb_journeys::known_properties(name) {
            out.insert(name.clone(), known);
            continue;
        }
        let rows = c.query(
            &sb_store::Stmt::new(
                "SELECT properties_json FROM events WHERE workspace_id = :ws AND name = :name ORDER BY ts DESC LIMIT 50",
            )
            .bind("ws", ws)
            .bind("name", name),
        )?;
        let mut keys: Vec<String> = Vec::new();
        for r in rows {
            let props: Value =
                serde_json::from_str(&r.get_in::<String>("events", "properties_json")?).unwrap_or_default();
            for k in props.as_object().into_iter().flat_map(|o| o.keys()) {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
        if !keys.is_empty() {
            out.insert(name.clone(), keys);
        }
    }
    Ok(out)
}

/// Parses and checks a definition against the workspace's events and traits.
async fn checked(app: &App, ws: &str, name: &str, definition: Value) -> AppResult<(String, Definition)> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(AppError::unprocessable(
            "invalid_journey",
            format!("give the journey a name of 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    let def: Definition = serde_json::from_value(definition)
        .map_err(|e| AppError::unprocessable("invalid_definition", format!("the definition does not read: {e}")))?;
    if def.steps.len() > MAX_STEPS {
        return Err(AppError::unprocessable(
            "invalid_definition",
            format!("a journey has at most {MAX_STEPS} steps"),
        ));
    }
    let mut names = vec![def.trigger.event.clone()];
    names.extend(def.exit_rules.iter().map(|r| r.event.clone()));
    names.extend(def.goal.iter().map(|g| g.event.clone()));
    let ws = ws.to_owned();
    let (props, traits) = app
        .store
        .db
        .read(move |c| {
            Ok::<_, StoreError>((
                observed_properties(c, &ws, &names)?,
                sb_store::profiles::trait_names(c, &ws)?,
            ))
        })
        .await?;
    sb_journeys::check(&def, &|event| props.get(event).cloned(), &traits).map_err(refused)?;
    Ok((name, def))
}

async fn not_found(app: &App, principal: &Principal, id: &str) -> AppError {
    crate::access::not_found(app, principal, ObjectKind::Journey, id, "journey_not_found").await
}

pub async fn list(app: &App, principal: &Principal) -> AppResult<Vec<JourneyView>> {
    principal.require(Permission::ManageCampaigns)?;
    let ws = principal.workspace_id().to_owned();
    Ok(app
        .store
        .db
        .read(move |c| {
            store::list(c, &ws)?
                .iter()
                .map(|j| view(c, j))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?)
}

pub async fn get(app: &App, principal: &Principal, id: &str) -> AppResult<JourneyView> {
    principal.require(Permission::ManageCampaigns)?;
    let (ws, jid) = (principal.workspace_id().to_owned(), id.to_owned());
    let found = app
        .store
        .db
        .read(move |c| store::get(c, &ws, &jid)?.map(|j| view(c, &j)).transpose())
        .await?;
    match found {
        Some(v) => Ok(v),
        None => Err(not_found(app, principal, id).await),
    }
}

fn audit_change<'a>(
    action: &'static str,
    id: &'a str,
    before: Option<&JourneyView>,
    after: Option<&JourneyView>,
) -> Change<'a> {
    let brief = |v: &JourneyView| serde_json::json!({"name": v.name, "state": v.state, "version": v.version});
    Change {
        action,
        object_kind: "journey",
        object_id: Some(id),
        before: before.map(brief),
        after: after.map(brief),
    }
}

pub async fn create(app: &App, principal: &Principal, body: SaveJourney) -> AppResult<JourneyView> {
    principal.require(Permission::ManageCampaigns)?;
    let ws = principal.workspace_id().to_owned();
    let (name, def) = checked(app, &ws, &body.name, body.definition).await?;
    let (actor, now, by) = (principal.actor(), app.now(), Some(principal.user.id.clone()));
    Ok(app
        .store
        .db
        .write(move |c| {
            let j = store::create(c, &ws, &name, &def, by.as_deref(), now)?;
            let v = view(c, &j)?;
            audit::record(
                c,
                &ws,
                &actor,
                &audit_change("journey.created", &j.id, None, Some(&v)),
                now,
            )?;
            Ok::<_, StoreError>(v)
        })
        .await?)
}

/// A new version: customers entering from now on follow it; those inside keep theirs.
pub async fn update(app: &App, principal: &Principal, id: &str, body: SaveJourney) -> AppResult<JourneyView> {
    principal.require(Permission::ManageCampaigns)?;
    let ws = principal.workspace_id().to_owned();
    let (name, def) = checked(app, &ws, &body.name, body.definition).await?;
    let (jid, actor, now, by) = (
        id.to_owned(),
        principal.actor(),
        app.now(),
        Some(principal.user.id.clone()),
    );
    let saved = app
        .store
        .db
        .write(move |c| {
            let Some(before) = store::get(c, &ws, &jid)? else {
                return Ok(None);
            };
            let before = view(c, &before)?;
            let Some(j) = store::add_version(c, &ws, &jid, &name, &def, by.as_deref(), now)? else {
                return Ok(None);
            };
            let after = view(c, &j)?;
            audit::record(
                c,
                &ws,
                &actor,
                &audit_change("journey.versioned", &jid, Some(&before), Some(&after)),
                now,
            )?;
            Ok::<_, StoreError>(Some(after))
        })
        .await?;
    match saved {
        Some(v) => Ok(v),
        None => Err(not_found(app, principal, id).await),
    }
}

/// `activate` (also resumes a paused journey), `pause` (instances wait where they are) or
/// `archive` (no new entries, no further steps).
pub async fn transition(app: &App, principal: &Principal, id: &str, action: &str) -> AppResult<JourneyView> {
    principal.require(Permission::ManageCampaigns)?;
    let (to, from): (&'static str, &'static [&'static str]) = match action {
        "activate" | "resume" => ("active", &["draft", "paused", "active"]),
        "pause" => ("paused", &["active", "paused"]),
        "archive" => ("archived", &["draft", "active", "paused", "archived"]),
        _ => return Err(AppError::not_found("not_found", "no such action")),
    };
    let (ws, jid, actor, now) = (
        principal.workspace_id().to_owned(),
        id.to_owned(),
        principal.actor(),
        app.now(),
    );
    let done = app
        .store
        .db
        .write(move |c| {
            let Some(j) = store::get(c, &ws, &jid)? else {
                return Ok(None);
            };
            if !from.contains(&j.state.as_str()) {
                return Ok(Some(Err(j.state)));
            }
            let before = view(c, &j)?;
            let j = store::set_state(c, &ws, &jid, to, now)?.ok_or(StoreError::NotFound("journey"))?;
            if to == "archived" {
                // Archived: nobody goes further; planned sends are dropped with the reason.
                c.execute(
                    &sb_store::Stmt::new(
                        "UPDATE journey_instances SET state = 'exited', end_reason = 'journey archived', wake_at = NULL,
                             fence = fence + 1, ended_at = :now, updated_at = :now
                         WHERE workspace_id = :ws AND journey_id = :id AND state IN ('active', 'waiting')",
                    )
                    .bind("now", now)
                    .bind("ws", &ws)
                    .bind("id", &jid),
                )?;
            }
            let after = view(c, &j)?;
            let action = match to {
                "active" => "journey.activated",
                "paused" => "journey.paused",
                _ => "journey.archived",
            };
            audit::record(
                c,
                &ws,
                &actor,
                &audit_change(action, &jid, Some(&before), Some(&after)),
                now,
            )?;
            Ok::<_, StoreError>(Some(Ok(after)))
        })
        .await?;
    match done {
        Some(Ok(v)) => Ok(v),
        Some(Err(state)) => Err(AppError::new(
            StatusCode::CONFLICT,
            "invalid_journey_state",
            format!("a journey that is {state} cannot be {action}d"),
        )),
        None => Err(not_found(app, principal, id).await),
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChannelPreview {
    pub channel: String,
    pub text: String,
    pub subject: Option<String>,
    /// WhatsApp outside the window: the template and its parameters.
    #[schema(value_type = Option<Object>)]
    pub template: Option<Value>,
    /// SMS: encoding, characters, segments.
    #[schema(value_type = Option<Object>)]
    pub segments: Option<Value>,
    /// Why this channel could not render it (a template error for this customer).
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Preview {
    pub customer_id: String,
    pub step_id: String,
    /// The channel this customer would get it on now, and why (or why none).
    pub chosen_channel: Option<String>,
    pub why: String,
    pub channels: Vec<ChannelPreview>,
}

/// A send step rendered for a real customer on every channel, and which one they would get.
pub async fn preview(
    app: &App,
    principal: &Principal,
    id: &str,
    step_id: &str,
    customer_id: &str,
) -> AppResult<Preview> {
    principal.require(Permission::ManageCampaigns)?;
    principal.require(Permission::ReadCustomers)?;
    let journey = get(app, principal, id).await?;
    let def: Definition = serde_json::from_value(journey.definition)
        .map_err(|e| AppError::internal(format!("a stored definition does not read: {e}")))?;
    let send = def
        .steps
        .iter()
        .find(|s| s.id == step_id)
        .and_then(|s| match &s.action {
            Action::Send(send) => Some((**send).clone()),
            _ => None,
        })
        .ok_or_else(|| AppError::not_found("step_not_found", format!("no send step `{step_id}` in this journey")))?;
    let (ws, customer, step, channels, now, base) = (
        principal.workspace_id().to_owned(),
        customer_id.to_owned(),
        step_id.to_owned(),
        app.channels.clone(),
        app.now(),
        app.base_url.to_string(),
    );
    let out = app
        .store
        .db
        .read(move |c| {
            if sb_store::customers::get(c, &ws, &customer)?.is_none() {
                return Ok(None);
            }
            let trigger = serde_json::json!({"event": def.trigger.event, "properties": {}});
            let ctx = sb_journeys::context::build(c, &ws, &customer, &trigger, &send.message.products, &base)?;
            let choice = sb_journeys::choose::choose(c, &channels, &ws, &customer, &send, now)?;
            let mut list = Vec::new();
            for channel in [
                "whatsapp",
                "sms",
                "email",
                "telegram",
                "messenger",
                "instagram",
                "widget",
            ] {
                let template_only = channel == "whatsapp" && send.message.variants.whatsapp.is_some();
                let r = sb_journeys::render::render(&send.message, channel, template_only, &ctx);
                list.push(match r {
                    Ok(r) => ChannelPreview {
                        channel: channel.into(),
                        segments: (channel == "sms")
                            .then(|| serde_json::to_value(sb_core::sms::segments(&r.text)).unwrap_or_default()),
                        text: r.text,
                        subject: r.subject,
                        template: r.template.map(|t| serde_json::to_value(t).unwrap_or_default()),
                        error: None,
                    },
                    Err(e) => ChannelPreview {
                        channel: channel.into(),
                        text: String::new(),
                        subject: None,
                        template: None,
                        segments: None,
                        error: Some(e),
                    },
                });
            }
            let (chosen_channel, why) = match choice {
                Ok(ch) => (Some(ch.account.channel), ch.why),
                Err(none) => (None, none.why),
            };
            Ok::<_, StoreError>(Some(Preview {
                customer_id: customer,
                step_id: step,
                chosen_channel,
                why,
                channels: list,
            }))
        })
        .await?;
    out.ok_or_else(|| {
        AppError::not_found(
            "customer_not_found",
            format!("no customer with id {customer_id} in this workspace"),
        )
    })
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub step_id: String,
    pub purpose: String,
    /// planned, deferred, queued, suppressed, capped, failed.
    pub state: String,
    pub channel: Option<String>,
    pub message_id: Option<String>,
    /// Why this channel, or why it was held or not sent.
    pub reason: Option<String>,
    pub reason_code: Option<String>,
    /// When it goes (planned or deferred) or went.
    pub at: String,
}

impl From<&deliveries::Delivery> for DeliveryView {
    fn from(d: &deliveries::Delivery) -> Self {
        DeliveryView {
            id: d.id.clone(),
            step_id: d.step_id.clone(),
            purpose: d.purpose.clone(),
            state: d.state.clone(),
            channel: d.channel.clone(),
            message_id: d.message_id.clone(),
            reason: d.reason.clone(),
            reason_code: d.reason_code.clone(),
            at: rfc3339(d.queued_at.unwrap_or(d.not_before)),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CustomerJourney {
    pub instance_id: String,
    pub journey_id: String,
    pub journey_name: String,
    pub version: i64,
    /// active, waiting, exited, completed.
    pub state: String,
    pub step_id: Option<String>,
    /// When the current step's wait ends.
    pub wakes_at: Option<String>,
    pub end_reason: Option<String>,
    pub entered_at: String,
    pub converted: bool,
    /// The next send: its step, when, and on which channel it would go now.
    pub next_send: Option<NextSend>,
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Serialize, ToSchema)]
pub struct NextSend {
    pub step_id: String,
    pub at: Option<String>,
    pub channel: Option<String>,
    pub why: String,
}

/// The journeys a customer is in (and was in lately), each with its step and next send.
pub async fn of_customer(app: &App, principal: &Principal, customer_id: &str) -> AppResult<Vec<CustomerJourney>> {
    principal.require(Permission::ReadCustomers)?;
    let (ws, customer, channels, now) = (
        principal.workspace_id().to_owned(),
        customer_id.to_owned(),
        app.channels.clone(),
        app.now(),
    );
    let found = app
        .store
        .db
        .read(move |c| {
            if sb_store::customers::get(c, &ws, &customer)?.is_none() {
                return Ok(None);
            }
            let mut out = Vec::new();
            let mut defs = store::Definitions::default();
            for inst in store::instances_of_customer(c, &ws, &customer)? {
                let name = store::get(c, &ws, &inst.journey_id)?
                    .map(|j| j.name)
                    .unwrap_or_default();
                let def = defs.get(c, &ws, &inst.journey_id, inst.version)?;
                let live = matches!(inst.state.as_str(), "active" | "waiting");
                let step_id = def
                    .as_ref()
                    .and_then(|d| d.steps.get(inst.step as usize))
                    .map(|s| s.id.clone());
                let mut next_send = None;
                if live && let Some(def) = &def {
                    let upcoming = def
                        .steps
                        .iter()
                        .enumerate()
                        .skip(inst.step as usize)
                        .find_map(|(i, s)| match &s.action {
                            Action::Send(send) => Some((i, s.id.clone(), (**send).clone())),
                            _ => None,
                        });
                    if let Some((i, id, send)) = upcoming {
                        let at = if i == inst.step as usize + 1 || i == inst.step as usize {
                            inst.wake_at
                        } else {
                            None
                        };
                        let (channel, why) =
                            match sb_journeys::choose::choose(c, &channels, &ws, &customer, &send, now)? {
                                Ok(ch) => (Some(ch.account.channel), ch.why),
                                Err(none) => (None, none.why),
                            };
                        next_send = Some(NextSend {
                            step_id: id,
                            at: at.map(rfc3339),
                            channel,
                            why,
                        });
                    }
                }
                out.push(CustomerJourney {
                    instance_id: inst.id.clone(),
                    journey_id: inst.journey_id.clone(),
                    journey_name: name,
                    version: inst.version,
                    state: inst.state.clone(),
                    step_id,
                    wakes_at: inst.wake_at.map(rfc3339),
                    end_reason: inst.end_reason.clone(),
                    entered_at: rfc3339(inst.entered_at),
                    converted: inst.converted_at.is_some(),
                    next_send,
                    deliveries: deliveries::for_instance(c, &ws, &inst.id)?
                        .iter()
                        .map(DeliveryView::from)
                        .collect(),
                });
            }
            Ok::<_, StoreError>(Some(out))
        })
        .await?;
    match found {
        Some(list) => Ok(list),
        None => {
            Err(crate::access::not_found(app, principal, ObjectKind::Customer, customer_id, "customer_not_found").await)
        }
    }
}

/// Where a short link of an automated message leads (public: whoever got the message). Only
/// URLs registered for a delivery come back; anything else is `link_not_found`.
pub async fn follow_link(app: &App, token: &str) -> AppResult<String> {
    let valid = !token.is_empty() && token.len() <= 32 && token.chars().all(|c| c.is_ascii_alphanumeric());
    let missing = || AppError::not_found("link_not_found", "this link is not valid (or no longer is)");
    if !valid {
        return Err(missing());
    }
    let (token, now) = (token.to_owned(), app.now());
    app.store
        .db
        .write(move |c| sb_store::links::follow(c, &token, now))
        .await?
        .ok_or_else(missing)
}
