//! Journeys, their versions and instances. Events reach running journeys here, in the
//! transaction that stores the event (`on_event`): exit rules first, then waits, then
//! triggers. Steps themselves run in the `sb-journeys` runner, which picks instances whose
//! `wake_at` has come and writes back only if the instance's `fence` is still the one it read.

use std::collections::HashMap;

use sb_core::journey::{self, Action, Definition, Reentry};
use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;
use serde_json::Value;

use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Journey {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub state: String,
    pub current_version: i64,
    pub trigger_event: String,
    pub created_at: i64,
    pub updated_at: i64,
}
from_row!(Journey in "journeys" { id, workspace_id, name, state, current_version, trigger_event, created_at, updated_at });

const JOURNEY_COLUMNS: &str = "id, workspace_id, name, state, current_version, trigger_event, created_at, updated_at";

#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub id: String,
    pub workspace_id: String,
    pub journey_id: String,
    pub version: i64,
    pub customer_id: String,
    pub correlation: String,
    pub state: String,
    pub step: i64,
    pub loop_count: i64,
    pub fence: i64,
    pub wake_at: Option<i64>,
    pub context_json: String,
    pub trigger_at: i64,
    pub restarted_at: Option<i64>,
    pub exit_rule: Option<i64>,
    pub entered_at: i64,
    pub updated_at: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    pub converted_at: Option<i64>,
}
from_row!(Instance in "journey_instances" {
    id, workspace_id, journey_id, version, customer_id, correlation, state, step, loop_count, fence, wake_at,
    context_json, trigger_at, restarted_at, exit_rule, entered_at, updated_at, ended_at, end_reason, converted_at
});

const INSTANCE_COLUMNS: &str = "id, workspace_id, journey_id, version, customer_id, correlation, state, step, \
    loop_count, fence, wake_at, context_json, trigger_at, restarted_at, exit_rule, entered_at, updated_at, ended_at, \
    end_reason, converted_at";

/// A new journey (state `draft`) with its first version.
pub fn create(
    c: &mut dyn Conn,
    ws: &str,
    name: &str,
    definition: &Definition,
    by: Option<&str>,
    now: i64,
) -> Result<Journey> {
    let id = sb_core::new_id();
    c.execute(
        &Stmt::new(
            "INSERT INTO journeys (id, workspace_id, name, state, current_version, trigger_event, created_at, updated_at)
             VALUES (:id, :ws, :name, 'draft', 1, :trigger, :now, :now)",
        )
        .bind("id", &id)
        .bind("ws", ws)
        .bind("name", name)
        .bind("trigger", &definition.trigger.event)
        .bind("now", now),
    )?;
    insert_version(c, ws, &id, 1, definition, by, now)?;
    get(c, ws, &id)?.ok_or(crate::StoreError::NotFound("journey"))
}

fn insert_version(
    c: &mut dyn Conn,
    ws: &str,
    journey_id: &str,
    version: i64,
    definition: &Definition,
    by: Option<&str>,
    now: i64,
) -> Result<()> {
    c.execute(
        &Stmt::new(
            "INSERT INTO journey_versions (journey_id, version, workspace_id, definition_json, created_by, created_at)
             VALUES (:journey, :version, :ws, :definition, :by, :now)",
        )
        .bind("journey", journey_id)
        .bind("version", version)
        .bind("ws", ws)
        .bind("definition", serde_json::to_string(definition).unwrap_or_default())
        .bind("by", by)
        .bind("now", now),
    )?;
    Ok(())
}

/// Saves a new version and makes it the one new customers enter; instances on older
/// versions go on with theirs.
pub fn add_version(
    c: &mut dyn Conn,
    ws: &str,
    journey_id: &str,
    name: &str,
    definition: &Definition,
    by: Option<&str>,
    now: i64,
) -> Result<Option<Journey>> {
    let Some(journey) = get(c, ws, journey_id)? else {
        return Ok(None);
    };
    let version = journey.current_version + 1;
    insert_version(c, ws, journey_id, version, definition, by, now)?;
    c.execute(
        &Stmt::new(
            "UPDATE journeys SET current_version = :version, trigger_event = :trigger, name = :name, updated_at = :now
             WHERE workspace_id = :ws AND id = :id",
        )
        .bind("version", version)
        .bind("trigger", &definition.trigger.event)
        .bind("name", name)
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", journey_id),
    )?;
    get(c, ws, journey_id)
}

pub fn set_state(c: &mut dyn Conn, ws: &str, id: &str, state: &str, now: i64) -> Result<Option<Journey>> {
    c.execute(
        &Stmt::new("UPDATE journeys SET state = :state, updated_at = :now WHERE workspace_id = :ws AND id = :id")
            .bind("state", state)
            .bind("now", now)
            .bind("ws", ws)
            .bind("id", id),
    )?;
    get(c, ws, id)
}

pub fn get(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<Journey>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {JOURNEY_COLUMNS} FROM journeys WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

pub fn list(c: &mut dyn Conn, ws: &str) -> Result<Vec<Journey>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {JOURNEY_COLUMNS} FROM journeys WHERE workspace_id = :ws AND state <> 'archived'
             ORDER BY created_at, id"
        ))
        .bind("ws", ws),
    )?)
}

/// A saved version's definition.
pub fn definition(c: &mut dyn Conn, ws: &str, journey_id: &str, version: i64) -> Result<Option<Definition>> {
    let row = c.query_opt(
        &Stmt::new(
            "SELECT definition_json FROM journey_versions
             WHERE workspace_id = :ws AND journey_id = :journey AND version = :version",
        )
        .bind("ws", ws)
        .bind("journey", journey_id)
        .bind("version", version),
    )?;
    Ok(match row {
        Some(r) => serde_json::from_str(&r.get_in::<String>("journey_versions", "definition_json")?).ok(),
        None => None,
    })
}

/// Parsed versions, shared by every transaction: a saved version never changes, so a parse
/// is good for the life of the process. Bounded; emptied when full.
type Parsed = HashMap<(String, String, i64), std::sync::Arc<Definition>>;
static PARSED: std::sync::LazyLock<std::sync::Mutex<Parsed>> = std::sync::LazyLock::new(Default::default);
const PARSED_MAX: usize = 4_096;

/// Definitions read during one transaction, each parsed once (and kept for the process).
#[derive(Default)]
pub struct Definitions(HashMap<(String, i64), Option<std::sync::Arc<Definition>>>);

impl Definitions {
    pub fn get(
        &mut self,
        c: &mut dyn Conn,
        ws: &str,
        journey_id: &str,
        version: i64,
    ) -> Result<Option<std::sync::Arc<Definition>>> {
        let key = (journey_id.to_owned(), version);
        if let Some(found) = self.0.get(&key) {
            return Ok(found.clone());
        }
        let shared = (ws.to_owned(), journey_id.to_owned(), version);
        let cached = PARSED.lock().map(|m| m.get(&shared).cloned()).unwrap_or(None);
        let found = match cached {
            Some(def) => Some(def),
            None => {
                let parsed = definition(c, ws, journey_id, version)?.map(std::sync::Arc::new);
                if let (Some(def), Ok(mut m)) = (&parsed, PARSED.lock()) {
                    if m.len() >= PARSED_MAX {
                        m.clear();
                    }
                    m.insert(shared, def.clone());
                }
                parsed
            }
        };
        self.0.insert(key, found.clone());
        Ok(found)
    }
}

/// Per step of one journey: how many instances are there, by state.
#[derive(Debug, Clone, Serialize)]
pub struct StepCount {
    pub step: i64,
    pub state: String,
    pub n: i64,
}
from_row!(StepCount in "journey_instances" { step, state, n });

pub fn step_counts(c: &mut dyn Conn, ws: &str, journey_id: &str) -> Result<Vec<StepCount>> {
    Ok(c.fetch_all(
        &Stmt::new(
            "SELECT step, state, COUNT(*) AS n FROM journey_instances
             WHERE workspace_id = :ws AND journey_id = :journey GROUP BY step, state ORDER BY step, state",
        )
        .bind("ws", ws)
        .bind("journey", journey_id),
    )?)
}

/// Entered, converted, per journey.
pub fn totals(c: &mut dyn Conn, ws: &str, journey_id: &str) -> Result<(i64, i64)> {
    let r = c.query_one(
        &Stmt::new(
            "SELECT COUNT(*) AS entered, COUNT(converted_at) AS converted FROM journey_instances
             WHERE workspace_id = :ws AND journey_id = :journey",
        )
        .bind("ws", ws)
        .bind("journey", journey_id),
    )?;
    Ok((r.get("entered")?, r.get("converted")?))
}

pub fn instances_of_customer(c: &mut dyn Conn, ws: &str, customer_id: &str) -> Result<Vec<Instance>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {INSTANCE_COLUMNS} FROM journey_instances WHERE workspace_id = :ws AND customer_id = :customer
             ORDER BY entered_at DESC, id DESC LIMIT 50"
        ))
        .bind("ws", ws)
        .bind("customer", customer_id),
    )?)
}

pub fn live_instances_of_customer(c: &mut dyn Conn, ws: &str, customer_id: &str) -> Result<Vec<Instance>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {INSTANCE_COLUMNS} FROM journey_instances
             WHERE workspace_id = :ws AND customer_id = :customer AND state IN ('active', 'waiting')"
        ))
        .bind("ws", ws)
        .bind("customer", customer_id),
    )?)
}

pub fn instance(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<Instance>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {INSTANCE_COLUMNS} FROM journey_instances WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

/// Instances whose timer has come, of journeys that are active (a paused journey's
/// instances wait), oldest due first.
pub fn due(c: &mut dyn Conn, now: i64, limit: i64) -> Result<Vec<Instance>> {
    let columns = INSTANCE_COLUMNS
        .split(", ")
        .map(|col| format!("i.{col}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {columns} FROM journey_instances i JOIN journeys j ON j.id = i.journey_id
             WHERE i.wake_at <= :now AND j.state = 'active' ORDER BY i.wake_at LIMIT :limit"
        ))
        .bind("now", now)
        .bind("limit", limit),
    )?)
}

/// The earliest timer of any active journey's instance.
pub fn next_wake(c: &mut dyn Conn) -> Result<Option<i64>> {
    Ok(c.query_one(&Stmt::new(
        "SELECT MIN(wake_at) AS at FROM journey_instances WHERE wake_at IS NOT NULL",
    ))?
    .get("at")?)
}

/// Where an instance goes next, written only if nobody moved it since `fence` was read.
#[derive(Debug, Clone)]
pub struct Move<'a> {
    pub state: &'a str,
    pub step: i64,
    pub wake_at: Option<i64>,
    pub end_reason: Option<&'a str>,
    pub restarted_at: Option<i64>,
}

/// Applies `m` if the instance is still at `fence`; false when it moved on meanwhile (a
/// late timer, an exit, another worker), in which case nothing changed.
pub fn advance(c: &mut dyn Conn, ws: &str, id: &str, fence: i64, m: &Move<'_>, now: i64) -> Result<bool> {
    let ended = matches!(m.state, "exited" | "completed").then_some(now);
    Ok(c.execute(
        &Stmt::new(
            "UPDATE journey_instances SET state = :state, step = :step, wake_at = :wake, fence = fence + 1,
                 end_reason = COALESCE(:reason, end_reason), ended_at = COALESCE(:ended, ended_at),
                 restarted_at = :restarted, updated_at = :now
             WHERE workspace_id = :ws AND id = :id AND fence = :fence",
        )
        .bind("state", m.state)
        .bind("step", m.step)
        .bind("wake", m.wake_at)
        .bind("reason", m.end_reason)
        .bind("ended", ended)
        .bind("restarted", m.restarted_at)
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", id)
        .bind("fence", fence),
    )? == 1)
}

/// Takes the instance for one step run: moves its fence on if it is still at `fence`. Every
/// side effect of the run (a planned send) comes after this, in the same transaction, so a
/// stale run (a late timer, a second worker, an event that moved the instance first) changes
/// nothing at all; on PostgreSQL the row stays locked until the run commits.
pub fn claim(c: &mut dyn Conn, ws: &str, id: &str, fence: i64) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new(
            "UPDATE journey_instances SET fence = fence + 1 WHERE workspace_id = :ws AND id = :id AND fence = :fence",
        )
        .bind("ws", ws)
        .bind("id", id)
        .bind("fence", fence),
    )? == 1)
}

/// An event of a customer, as journeys see it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub name: &'a str,
    pub properties: &'a Value,
    /// When it happened (may be long before it arrived).
    pub at: i64,
}

/// What one event did to journeys (for metrics and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Effects {
    pub entered: usize,
    pub exited: usize,
    pub advanced: usize,
    pub converted: usize,
}

/// Whether the workspace has any journey that is not archived or draft: when not, events
/// skip everything else here.
fn any_running(c: &mut dyn Conn, ws: &str) -> Result<bool> {
    Ok(c.query_opt(
        &Stmt::new("SELECT id FROM journeys WHERE workspace_id = :ws AND state IN ('active', 'paused') LIMIT 1")
            .bind("ws", ws),
    )?
    .is_some())
}

/// Applies one stored event to the customer's journeys, in the caller's transaction: exit
/// rules first (also mid-delay or mid-wait), then conversions and waits, then triggers.
pub fn on_event(c: &mut dyn Conn, ws: &str, customer_id: &str, event: Event<'_>, now: i64) -> Result<Effects> {
    let mut effects = Effects::default();
    if !any_running(c, ws)? {
        return Ok(effects);
    }
    let mut defs = Definitions::default();
    for inst in live_instances_of_customer(c, ws, customer_id)? {
        let Some(def) = defs.get(c, ws, &inst.journey_id, inst.version)? else {
            continue;
        };
        let same_key = |def: &Definition| def.key_of(event.properties).as_deref() == Some(inst.correlation.as_str());
        // A conversion counts within the goal's window after entering.
        if let Some(goal) = &def.goal
            && inst.converted_at.is_none()
            && goal.event == event.name
            && journey::all_match(&goal.filter, event.properties)
            && event.at >= inst.entered_at.min(inst.trigger_at)
            && event.at <= inst.trigger_at + i64::from(goal.window_hours) * 3_600_000
        {
            c.execute(
                &Stmt::new("UPDATE journey_instances SET converted_at = :at WHERE workspace_id = :ws AND id = :id")
                    .bind("at", event.at)
                    .bind("ws", ws)
                    .bind("id", &inst.id),
            )?;
            effects.converted += 1;
        }
        if inst.exit_rule.is_some() {
            continue; // on its way out already
        }
        let exit = def.exit_rules.iter().position(|r| {
            r.event == event.name
                && journey::all_match(&r.filter, event.properties)
                && (!r.match_key || same_key(&def))
                && event.at >= inst.trigger_at
        });
        if let Some(rule) = exit {
            exit_instance(c, ws, &inst, &def, rule, now)?;
            effects.exited += 1;
            continue;
        }

        let Some(step) = def.steps.get(inst.step as usize) else {
            continue;
        };
        if let Action::WaitFor {
            events,
            restart_on,
            match_key,
            timeout_minutes,
            ..
        } = &step.action
        {
            if *match_key && !same_key(&def) {
                continue;
            }
            if events.iter().any(|e| e == event.name) {
                let next = def.target(inst.step as usize, "next").ok().flatten();
                let m = match next {
                    Some(n) => Move {
                        state: "active",
                        step: n as i64,
                        wake_at: Some(now),
                        end_reason: None,
                        restarted_at: None,
                    },
                    None => Move {
                        state: "completed",
                        step: inst.step,
                        wake_at: None,
                        end_reason: Some("completed"),
                        restarted_at: None,
                    },
                };
                if advance(c, ws, &inst.id, inst.fence, &m, now)? {
                    effects.advanced += 1;
                }
            } else if restart_on.iter().any(|e| e == event.name) && event.at > inst.restarted_at.unwrap_or(i64::MIN) {
                // The wait starts again from this event (the cart changed: an hour from now); a
                // wait not started yet starts from it.
                let wake = event.at + i64::from(*timeout_minutes) * 60_000;
                c.execute(
                    &Stmt::new(
                        "UPDATE journey_instances SET wake_at = CASE WHEN state = 'waiting' THEN :wake ELSE wake_at END,
                             restarted_at = :at, loop_count = loop_count + 1,
                             fence = fence + 1, updated_at = :now
                         WHERE workspace_id = :ws AND id = :id AND fence = :fence",
                    )
                    .bind("wake", wake)
                    .bind("at", event.at)
                    .bind("now", now)
                    .bind("ws", ws)
                    .bind("id", &inst.id)
                    .bind("fence", inst.fence),
                )?;
                effects.advanced += 1;
            }
        }
    }
    effects.entered += enter(c, ws, customer_id, event, &mut defs, now)?;
    Ok(effects)
}

/// Ends an instance on exit rule `rule`: its planned sends are suppressed at once; with the
/// rule's `then` it stays active on the exit path until the runner has planned that send.
fn exit_instance(c: &mut dyn Conn, ws: &str, inst: &Instance, def: &Definition, rule: usize, now: i64) -> Result<()> {
    let reason = format!("exit: {}", def.exit_rules[rule].event);
    c.execute(
        &Stmt::new(
            "UPDATE deliveries SET state = 'suppressed', reason_code = 'journey_exited', reason = :reason, updated_at = :now
             WHERE workspace_id = :ws AND instance_id = :id AND state IN ('planned', 'deferred')",
        )
        .bind("reason", format!("the customer left the journey ({reason}) before this was sent"))
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", &inst.id),
    )?;
    let on_exit_path = def.exit_rules[rule].then.is_some();
    c.execute(
        &Stmt::new(
            "UPDATE journey_instances SET state = :state, exit_rule = :rule, wake_at = :wake, fence = fence + 1,
                 end_reason = :reason, ended_at = :ended, updated_at = :now
             WHERE workspace_id = :ws AND id = :id",
        )
        .bind("state", if on_exit_path { "active" } else { "exited" })
        .bind("rule", on_exit_path.then_some(rule as i64))
        .bind("wake", on_exit_path.then_some(now))
        .bind("reason", &reason)
        .bind("ended", (!on_exit_path).then_some(now))
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", &inst.id),
    )?;
    Ok(())
}

/// Before `source` is merged into `target`: where both are in the same journey with the same
/// key, the newer instance ends (reason `merged`, its planned sends suppressed), so that the
/// move leaves one live instance per key, the older.
pub fn before_merge(c: &mut dyn Conn, ws: &str, target: &str, source: &str, now: i64) -> Result<usize> {
    let theirs = live_instances_of_customer(c, ws, source)?;
    if theirs.is_empty() {
        return Ok(0);
    }
    let mine = live_instances_of_customer(c, ws, target)?;
    let mut ended = 0;
    for s in &theirs {
        let Some(t) = mine
            .iter()
            .find(|t| t.journey_id == s.journey_id && t.correlation == s.correlation)
        else {
            continue;
        };
        let newer = if (s.entered_at, &s.id) < (t.entered_at, &t.id) {
            t
        } else {
            s
        };
        c.execute(
            &Stmt::new(
                "UPDATE deliveries SET state = 'suppressed', reason_code = 'journey_exited', updated_at = :now,
                     reason = 'the customer was merged with another who was already in this journey'
                 WHERE workspace_id = :ws AND instance_id = :id AND state IN ('planned', 'deferred')",
            )
            .bind("now", now)
            .bind("ws", ws)
            .bind("id", &newer.id),
        )?;
        c.execute(
            &Stmt::new(
                "UPDATE journey_instances SET state = 'exited', end_reason = 'merged', wake_at = NULL, exit_rule = NULL,
                     fence = fence + 1, ended_at = :now, updated_at = :now
                 WHERE workspace_id = :ws AND id = :id",
            )
            .bind("now", now)
            .bind("ws", ws)
            .bind("id", &newer.id),
        )?;
        ended += 1;
    }
    Ok(ended)
}

/// Starts the journeys this event triggers, unless the re-entry policy forbids it or the
/// customer's timeline already holds an exit event at or after this one (it arrived late).
fn enter(
    c: &mut dyn Conn,
    ws: &str,
    customer_id: &str,
    event: Event<'_>,
    defs: &mut Definitions,
    now: i64,
) -> Result<usize> {
    let starting: Vec<(String, i64)> = c
        .query(
            &Stmt::new(
                "SELECT id, current_version FROM journeys
                 WHERE workspace_id = :ws AND trigger_event = :name AND state = 'active'",
            )
            .bind("ws", ws)
            .bind("name", event.name),
        )?
        .iter()
        .map(|r| Ok((r.get_in("journeys", "id")?, r.get_in("journeys", "current_version")?)))
        .collect::<Result<_>>()?;
    let mut entered = 0;
    for (journey_id, version) in starting {
        let Some(def) = defs.get(c, ws, &journey_id, version)? else {
            continue;
        };
        if !journey::all_match(&def.trigger.filter, event.properties) {
            continue;
        }
        let Some(key) = def.key_of(event.properties) else {
            continue; // the event lacks the correlation key
        };
        if def.reentry == Reentry::Once && entered_before(c, ws, &journey_id, customer_id, &key)? {
            continue;
        }
        if exited_already(c, ws, customer_id, &def, &key, event.at)? {
            continue;
        }
        let inserted = c.execute(
            &Stmt::new(
                "INSERT INTO journey_instances (id, workspace_id, journey_id, version, customer_id, correlation, state,
                     step, loop_count, fence, wake_at, context_json, trigger_at, entered_at, updated_at)
                 VALUES (:id, :ws, :journey, :version, :customer, :key, 'active', 0, 0, 0, :now, :context, :at, :now, :now)
                 ON CONFLICT DO NOTHING",
            )
            .bind("id", sb_core::new_id())
            .bind("ws", ws)
            .bind("journey", &journey_id)
            .bind("version", version)
            .bind("customer", customer_id)
            .bind("key", &key)
            .bind("now", now)
            .bind(
                "context",
                serde_json::json!({"event": event.name, "properties": event.properties}).to_string(),
            )
            .bind("at", event.at),
        )?;
        entered += inserted as usize;
    }
    Ok(entered)
}

fn entered_before(c: &mut dyn Conn, ws: &str, journey_id: &str, customer_id: &str, key: &str) -> Result<bool> {
    Ok(c.query_opt(
        &Stmt::new(
            "SELECT id FROM journey_instances
                 WHERE workspace_id = :ws AND journey_id = :journey AND customer_id = :customer AND correlation = :key
                 LIMIT 1",
        )
        .bind("ws", ws)
        .bind("journey", journey_id)
        .bind("customer", customer_id)
        .bind("key", key),
    )?
    .is_some())
}

/// Whether an exit event for this key happened at or after `at` (events and order steps).
fn exited_already(c: &mut dyn Conn, ws: &str, customer_id: &str, def: &Definition, key: &str, at: i64) -> Result<bool> {
    for rule in &def.exit_rules {
        let rows = c.query(
            &Stmt::new(
                "SELECT properties_json FROM events
                 WHERE workspace_id = :ws AND customer_id = :customer AND name = :name AND ts >= :at
                 UNION ALL
                 SELECT properties_json FROM order_events
                 WHERE workspace_id = :ws AND customer_id = :customer AND name = :name AND at >= :at",
            )
            .bind("ws", ws)
            .bind("customer", customer_id)
            .bind("name", &rule.event)
            .bind("at", at),
        )?;
        for r in rows {
            let props: Value =
                serde_json::from_str(&r.get_in::<String>("events", "properties_json")?).unwrap_or_default();
            if journey::all_match(&rule.filter, &props)
                && (!rule.match_key || def.key_of(&props).as_deref() == Some(key))
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
