//! The marketers' journeys: the list with state and live counts per step, and a builder that
//! is a vertical list of steps edited by plain forms (add, move, remove, save as a new
//! version), with each send step previewed on every channel for a real customer. Every write
//! goes through `sb_app::journeys`, the JSON API's own use cases.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use sb_app::App;
use sb_app::journeys::{self, JourneyView, SaveJourney};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::web::{Chrome, Signed, WebError, WebResult};

const PAGE: &str = "/app/journeys";

pub struct JourneyRow {
    pub id: String,
    pub name: String,
    pub state: String,
    pub trigger: String,
    pub version: i64,
    pub entered: i64,
    pub in_progress: i64,
    pub converted: i64,
    pub exited: i64,
    pub completed: i64,
    /// "step: n waiting" for steps with someone there.
    pub steps: Vec<(String, String, i64)>,
}

impl From<&JourneyView> for JourneyRow {
    fn from(j: &JourneyView) -> Self {
        JourneyRow {
            id: j.id.clone(),
            name: j.name.clone(),
            state: j.state.clone(),
            trigger: j.trigger_event.clone(),
            version: j.version,
            entered: j.counts.entered,
            in_progress: j.counts.in_progress,
            converted: j.counts.converted,
            exited: j.counts.exited,
            completed: j.counts.completed,
            steps: j
                .steps
                .iter()
                .map(|s| (s.id.clone(), s.kind.clone(), s.waiting + s.active))
                .collect(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "journeys.html")]
pub struct ListPage {
    pub chrome: Chrome,
    pub journeys: Vec<JourneyRow>,
}

pub async fn list_page(State(state): State<App>, signed: Signed) -> WebResult<ListPage> {
    let list = journeys::list(&state, &signed.0).await?;
    Ok(ListPage {
        chrome: signed.chrome("journeys"),
        journeys: list.iter().map(JourneyRow::from).collect(),
    })
}

/// One channel's rendering of a send step for the previewed customer.
#[derive(Clone)]
pub struct PreviewLine {
    pub channel: String,
    pub subject: Option<String>,
    pub text: String,
    pub template: Option<String>,
    pub segments: Option<String>,
    pub error: Option<String>,
}

/// A step as the form shows and posts it: every field a string, whatever the type.
#[derive(Default, Clone)]
pub struct StepForm {
    pub id: String,
    pub kind: String,
    pub minutes: String,
    pub until_local: String,
    pub events: String,
    pub restart_on: String,
    pub match_key: bool,
    pub timeout_minutes: String,
    pub on_timeout: String,
    pub condition: String,
    pub sku: String,
    pub trait_name: String,
    pub trait_value: String,
    pub negate: bool,
    pub otherwise: String,
    pub hours_start: String,
    pub hours_end: String,
    pub days: String,
    pub channel: String,
    pub purpose: String,
    pub headline: String,
    pub body: String,
    pub image_url: String,
    pub cta_label: String,
    pub cta_url: String,
    pub products: String,
    pub skus: String,
    pub sms_text: String,
    pub email_subject: String,
    pub wa_template: String,
    pub wa_language: String,
    pub wa_params: String,
    pub telegram_text: String,
    /// Live instances at this step (from the saved journey).
    pub here: i64,
    pub previews: Vec<PreviewLine>,
    pub chosen: Option<String>,
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

fn split(text: &str, sep: char) -> Vec<String> {
    text.split(sep)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

impl StepForm {
    fn from_json(step: &Value) -> StepForm {
        let mut f = StepForm {
            id: s(&step["id"]),
            kind: s(&step["type"]),
            ..StepForm::default()
        };
        match f.kind.as_str() {
            "delay" => {
                f.minutes = s(&step["minutes"]);
                f.until_local = s(&step["until_local"]);
            }
            "wait_for" => {
                f.events = list(&step["events"]);
                f.restart_on = list(&step["restart_on"]);
                f.match_key = step["match_key"].as_bool().unwrap_or(false);
                f.timeout_minutes = s(&step["timeout_minutes"]);
                f.on_timeout = s(&step["on_timeout"]);
            }
            "branch" => {
                let mut c = &step["condition"];
                if c["type"] == "not" {
                    f.negate = true;
                    c = &c["condition"];
                }
                f.condition = s(&c["type"]);
                f.sku = s(&c["sku"]);
                f.trait_name = s(&c["property"]);
                f.trait_value = s(&c["value"]);
                f.otherwise = s(&step["otherwise"]);
            }
            "time_window" => {
                f.hours_start = s(&step["hours"]["start"]);
                f.hours_end = s(&step["hours"]["end"]);
                f.days = list(&step["days"]);
            }
            "send" => {
                let m = &step["message"];
                f.channel = s(&step["channel"]);
                f.purpose = s(&step["purpose"]);
                f.headline = s(&m["headline"]);
                f.body = s(&m["body"]);
                f.image_url = s(&m["image_url"]);
                f.cta_label = s(&m["cta_label"]);
                f.cta_url = s(&m["cta_url"]);
                f.products = s(&m["products"]["type"]);
                f.skus = list(&m["products"]["skus"]);
                let v = &m["variants"];
                f.sms_text = s(&v["sms"]["text"]);
                f.email_subject = s(&v["email"]["subject"]);
                f.wa_template = s(&v["whatsapp"]["template"]);
                f.wa_language = s(&v["whatsapp"]["language"]);
                f.wa_params = v["whatsapp"]["parameters"]
                    .as_array()
                    .map(|a| a.iter().map(s).collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default();
                f.telegram_text = s(&v["telegram"]["text"]);
            }
            _ => {}
        }
        f
    }

    /// The posted fields of step `i` (`s{i}.<field>`).
    fn from_form(pairs: &[(String, String)], i: usize) -> Option<StepForm> {
        let get = |name: &str| {
            let key = format!("s{i}.{name}");
            pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
        };
        let kind = get("type")?;
        let text = |name: &str| get(name).unwrap_or_default();
        Some(StepForm {
            id: text("id"),
            kind,
            minutes: text("minutes"),
            until_local: text("until_local"),
            events: text("events"),
            restart_on: text("restart_on"),
            match_key: get("match_key").is_some(),
            timeout_minutes: text("timeout_minutes"),
            on_timeout: text("on_timeout"),
            condition: text("condition"),
            sku: text("sku"),
            trait_name: text("trait_name"),
            trait_value: text("trait_value"),
            negate: get("negate").is_some(),
            otherwise: text("otherwise"),
            hours_start: text("hours_start"),
            hours_end: text("hours_end"),
            days: text("days"),
            channel: text("channel"),
            purpose: text("purpose"),
            headline: text("headline"),
            body: text("body"),
            image_url: text("image_url"),
            cta_label: text("cta_label"),
            cta_url: text("cta_url"),
            products: text("products"),
            skus: text("skus"),
            sms_text: text("sms_text"),
            email_subject: text("email_subject"),
            wa_template: text("wa_template"),
            wa_language: text("wa_language"),
            wa_params: text("wa_params"),
            telegram_text: text("telegram_text"),
            ..StepForm::default()
        })
    }

    fn to_json(&self) -> Value {
        let number = |t: &str| -> Value { t.trim().parse::<u64>().map_or(Value::String(t.to_owned()), Value::from) };
        let opt = |t: &str| -> Value {
            if t.trim().is_empty() {
                Value::Null
            } else {
                Value::String(t.to_owned())
            }
        };
        let goto = |t: &str, default: &str| -> Value {
            Value::String(if t.trim().is_empty() {
                default.to_owned()
            } else {
                t.trim().to_owned()
            })
        };
        let mut step = json!({"id": self.id.trim(), "type": self.kind});
        match self.kind.as_str() {
            "delay" => {
                step["minutes"] = if self.minutes.trim().is_empty() {
                    json!(0)
                } else {
                    number(&self.minutes)
                };
                step["until_local"] = opt(&self.until_local);
            }
            "wait_for" => {
                step["events"] = json!(split(&self.events, ','));
                step["restart_on"] = json!(split(&self.restart_on, ','));
                step["match_key"] = json!(self.match_key);
                step["timeout_minutes"] = number(&self.timeout_minutes);
                step["on_timeout"] = goto(&self.on_timeout, "next");
            }
            "branch" => {
                let condition = match self.condition.as_str() {
                    "purchased" => json!({"type": "purchased", "sku": self.sku.trim()}),
                    "trait" => {
                        json!({"type": "trait", "property": self.trait_name.trim(), "op": "eq", "value": self.trait_value})
                    }
                    _ => json!({"type": "cart_has_items"}),
                };
                step["condition"] = if self.negate {
                    json!({"type": "not", "condition": condition})
                } else {
                    condition
                };
                step["otherwise"] = goto(&self.otherwise, "exit");
            }
            "time_window" => {
                step["hours"] = json!({"start": self.hours_start, "end": self.hours_end});
                step["days"] = json!(split(&self.days, ','));
            }
            "send" => {
                let mut variants = serde_json::Map::new();
                if !self.sms_text.trim().is_empty() {
                    variants.insert("sms".into(), json!({"text": self.sms_text}));
                }
                if !self.email_subject.trim().is_empty() {
                    variants.insert("email".into(), json!({"subject": self.email_subject}));
                }
                if !self.wa_template.trim().is_empty() {
                    variants.insert(
                        "whatsapp".into(),
                        json!({"template": self.wa_template.trim(),
                               "language": if self.wa_language.trim().is_empty() { "en_US" } else { self.wa_language.trim() },
                               "parameters": self.wa_params.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>()}),
                    );
                }
                if !self.telegram_text.trim().is_empty() {
                    variants.insert("telegram".into(), json!({"text": self.telegram_text}));
                }
                let products = match self.products.as_str() {
                    "cart" => json!({"type": "cart"}),
                    "pick" => json!({"type": "pick", "skus": split(&self.skus, ',')}),
                    _ => json!({"type": "none"}),
                };
                step["message"] = json!({
                    "headline": self.headline, "body": self.body, "image_url": opt(&self.image_url),
                    "cta_label": opt(&self.cta_label), "cta_url": opt(&self.cta_url),
                    "products": products, "variants": variants,
                });
                step["channel"] = opt(&self.channel);
                step["purpose"] = json!(if self.purpose.is_empty() {
                    "marketing"
                } else {
                    self.purpose.as_str()
                });
            }
            _ => {}
        }
        step
    }
}

pub struct ExitForm {
    pub event: String,
    pub match_key: bool,
}

/// The whole builder form.
pub struct Draft {
    pub name: String,
    pub trigger_event: String,
    pub trigger_property: String,
    pub trigger_value: String,
    pub correlation_key: String,
    pub reentry: String,
    pub exits: Vec<ExitForm>,
    pub goal_event: String,
    pub goal_hours: String,
    pub quiet_start: String,
    pub quiet_end: String,
    pub steps: Vec<StepForm>,
}

impl Draft {
    fn from_definition(name: &str, d: &Value) -> Draft {
        let filter = &d["trigger"]["filter"][0];
        Draft {
            name: name.to_owned(),
            trigger_event: s(&d["trigger"]["event"]),
            trigger_property: s(&filter["property"]),
            trigger_value: s(&filter["value"]),
            correlation_key: s(&d["correlation_key"]),
            reentry: s(&d["reentry"]),
            exits: d["exit_rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| ExitForm {
                    event: s(&r["event"]),
                    match_key: r["match_key"].as_bool().unwrap_or(false),
                })
                .collect(),
            goal_event: s(&d["goal"]["event"]),
            goal_hours: s(&d["goal"]["window_hours"]),
            quiet_start: s(&d["quiet_hours"]["start"]),
            quiet_end: s(&d["quiet_hours"]["end"]),
            steps: d["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(StepForm::from_json)
                .collect(),
        }
    }

    fn from_form(pairs: &[(String, String)]) -> Draft {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let mut exits = Vec::new();
        for i in 0..20 {
            let event = get(&format!("x{i}.event"));
            if event.trim().is_empty() {
                continue;
            }
            exits.push(ExitForm {
                event: event.trim().to_owned(),
                match_key: pairs.iter().any(|(k, _)| *k == format!("x{i}.match_key")),
            });
        }
        let steps = (0..60).filter_map(|i| StepForm::from_form(pairs, i)).collect();
        Draft {
            name: get("name"),
            trigger_event: get("trigger_event"),
            trigger_property: get("trigger_property"),
            trigger_value: get("trigger_value"),
            correlation_key: get("correlation_key"),
            reentry: get("reentry"),
            exits,
            goal_event: get("goal_event"),
            goal_hours: get("goal_hours"),
            quiet_start: get("quiet_start"),
            quiet_end: get("quiet_end"),
            steps,
        }
    }

    fn definition(&self) -> Value {
        let mut d = json!({
            "trigger": {"event": self.trigger_event.trim()},
            "reentry": if self.reentry.is_empty() { "after_exit" } else { self.reentry.as_str() },
            "exit_rules": self.exits.iter().map(|x| json!({"event": x.event, "match_key": x.match_key})).collect::<Vec<_>>(),
            "steps": self.steps.iter().map(StepForm::to_json).collect::<Vec<_>>(),
        });
        if !self.trigger_property.trim().is_empty() {
            d["trigger"]["filter"] =
                json!([{"property": self.trigger_property.trim(), "op": "eq", "value": self.trigger_value}]);
        }
        if !self.correlation_key.trim().is_empty() {
            d["correlation_key"] = json!(self.correlation_key.trim());
        }
        if !self.goal_event.trim().is_empty() {
            let hours = self.goal_hours.trim().parse::<u64>().unwrap_or(72);
            d["goal"] = json!({"event": self.goal_event.trim(), "window_hours": hours});
        }
        if !self.quiet_start.is_empty() && !self.quiet_end.is_empty() {
            d["quiet_hours"] = json!({"start": self.quiet_start, "end": self.quiet_end});
        }
        d
    }

    /// The ids other steps may jump to.
    pub fn step_ids(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.id.clone()).collect()
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "journey.html")]
pub struct BuilderPage {
    pub chrome: Chrome,
    /// `None` for a new journey.
    pub id: Option<String>,
    pub state: String,
    pub version: i64,
    pub draft: Draft,
    pub notice: Option<String>,
    pub error: Option<(String, String, Option<String>)>,
    pub unsaved: bool,
    pub preview_customer: String,
    pub counts: Option<(i64, i64, i64, i64, i64)>,
}

impl BuilderPage {
    pub fn action(&self) -> String {
        match &self.id {
            Some(id) => format!("{PAGE}/{id}"),
            None => format!("{PAGE}/new"),
        }
    }
}

fn blank_step(kind: &str, n: usize) -> StepForm {
    let mut f = StepForm {
        id: format!("{kind}_{n}"),
        kind: kind.to_owned(),
        ..StepForm::default()
    };
    match kind {
        "delay" => f.minutes = "60".into(),
        "wait_for" => f.timeout_minutes = "60".into(),
        "time_window" => {
            f.hours_start = "09:00".into();
            f.hours_end = "18:00".into();
        }
        "send" => {
            f.purpose = "marketing".into();
            f.products = "none".into();
        }
        _ => {}
    }
    f
}

#[derive(Deserialize)]
pub struct PreviewQuery {
    pub customer: Option<String>,
    pub notice: Option<String>,
}

pub async fn new_page(signed: Signed) -> WebResult<BuilderPage> {
    signed.require(sb_core::Permission::ManageCampaigns)?;
    Ok(BuilderPage {
        chrome: signed.chrome("journeys"),
        id: None,
        state: "draft".into(),
        version: 0,
        draft: Draft {
            name: String::new(),
            trigger_event: "Product Added".into(),
            trigger_property: String::new(),
            trigger_value: String::new(),
            correlation_key: String::new(),
            reentry: "after_exit".into(),
            exits: Vec::new(),
            goal_event: String::new(),
            goal_hours: String::new(),
            quiet_start: "21:00".into(),
            quiet_end: "08:00".into(),
            steps: vec![blank_step("send", 1)],
        },
        notice: None,
        error: None,
        unsaved: false,
        preview_customer: String::new(),
        counts: None,
    })
}

/// A customer to preview for: an id, or the first match of a search (e-mail, phone, name).
async fn find_customer(state: &App, signed: &Signed, q: &str) -> Option<String> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let found = sb_app::customers::search_customers(
        state,
        &signed.0,
        sb_app::customers::CustomerQuery { q: Some(q.to_owned()) },
        sb_app::views::PageQuery {
            limit: Some(1),
            cursor: None,
        },
    )
    .await
    .ok()?;
    found.items.first().map(|c| c.id.clone())
}

pub async fn builder_page(
    State(state): State<App>,
    signed: Signed,
    Path(id): Path<String>,
    Query(q): Query<PreviewQuery>,
) -> WebResult<BuilderPage> {
    let journey = journeys::get(&state, &signed.0, &id).await?;
    let mut draft = Draft::from_definition(&journey.name, &journey.definition);
    for (form, step) in draft.steps.iter_mut().zip(&journey.steps) {
        form.here = step.waiting + step.active;
    }
    let preview_customer = q.customer.clone().unwrap_or_default();
    if let Some(customer) = find_customer(&state, &signed, &preview_customer).await {
        for step in draft.steps.iter_mut().filter(|s| s.kind == "send") {
            if let Ok(p) = journeys::preview(&state, &signed.0, &id, &step.id, &customer).await {
                step.chosen = Some(match &p.chosen_channel {
                    Some(ch) => format!("Would go on {ch}: {}", p.why),
                    None => format!("Would not go: {}", p.why),
                });
                step.previews = p
                    .channels
                    .into_iter()
                    .map(|c| PreviewLine {
                        channel: c.channel,
                        subject: c.subject,
                        text: c.text,
                        template: c
                            .template
                            .map(|t| format!("{} ({}): {}", s(&t["name"]), s(&t["language"]), list(&t["parameters"]))),
                        segments: c.segments.map(|g| {
                            format!(
                                "{} characters, {} segment(s), {}",
                                s(&g["characters"]),
                                s(&g["segments"]),
                                if g["encoding"] == "gsm7" {
                                    "GSM-7"
                                } else {
                                    "UCS-2 (non-GSM characters)"
                                }
                            )
                        }),
                        error: c.error,
                    })
                    .collect();
            }
        }
    }
    let c = &journey.counts;
    Ok(BuilderPage {
        chrome: signed.chrome("journeys"),
        id: Some(journey.id.clone()),
        state: journey.state.clone(),
        version: journey.version,
        draft,
        notice: q.notice,
        error: None,
        unsaved: false,
        preview_customer,
        counts: Some((c.entered, c.in_progress, c.converted, c.exited, c.completed)),
    })
}

/// Every post of the builder: `op` says what to do with the form. `save` saves (a new
/// version); `add`, `up:i`, `down:i`, `remove:i`, `add_exit` change the draft and show it
/// again, unsaved.
pub async fn post_new(State(state): State<App>, signed: Signed, body: axum::body::Bytes) -> Response {
    post_builder(state, signed, None, body).await
}

pub async fn post_existing(
    State(state): State<App>,
    signed: Signed,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    post_builder(state, signed, Some(id), body).await
}

async fn post_builder(state: App, signed: Signed, id: Option<String>, body: axum::body::Bytes) -> Response {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    if pairs.iter().any(|(k, v)| k.contains('\0') || v.contains('\0')) {
        return WebError::from(sb_app::AppError::unprocessable(
            "invalid_text",
            "text may not contain NUL characters",
        ))
        .into_response();
    }
    let op = pairs
        .iter()
        .find(|(k, _)| k == "op")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "save".into());
    let mut draft = Draft::from_form(&pairs);
    let (head, arg) = op.split_once(':').unwrap_or((op.as_str(), ""));
    let at: usize = arg.parse().unwrap_or(usize::MAX);
    let n = draft.steps.len();
    match head {
        "add" => {
            let kind = pairs
                .iter()
                .find(|(k, _)| k == "new_step")
                .map(|(_, v)| v.as_str())
                .unwrap_or("send");
            let kind = match kind {
                "delay" | "wait_for" | "branch" | "time_window" | "send" | "exit" => kind,
                _ => "send",
            };
            draft.steps.push(blank_step(kind, n + 1));
        }
        "add_exit" => draft.exits.push(ExitForm {
            event: "Order Completed".into(),
            match_key: !draft.correlation_key.is_empty(),
        }),
        "up" if at > 0 && at < n => draft.steps.swap(at, at - 1),
        "down" if at + 1 < n => draft.steps.swap(at, at + 1),
        "remove" if at < n => {
            draft.steps.remove(at);
        }
        "save" => {
            let request = SaveJourney {
                name: draft.name.clone(),
                definition: draft.definition(),
            };
            let saved = match &id {
                Some(id) => journeys::update(&state, &signed.0, id, request).await,
                None => journeys::create(&state, &signed.0, request).await,
            };
            return match saved {
                Ok(j) => {
                    Redirect::to(&format!("{PAGE}/{}?notice=Saved+as+version+{}", j.id, j.version)).into_response()
                }
                Err(e) => {
                    let step = e.details.as_ref().and_then(|d| d["step"].as_str()).map(str::to_owned);
                    let page = unsaved(
                        &state,
                        &signed,
                        id,
                        draft,
                        Some((e.message.clone(), e.code.to_owned(), step)),
                    )
                    .await;
                    (e.status, page).into_response()
                }
            };
        }
        _ => {}
    }
    unsaved(&state, &signed, id, draft, None).await.into_response()
}

async fn unsaved(
    state: &App,
    signed: &Signed,
    id: Option<String>,
    draft: Draft,
    error: Option<(String, String, Option<String>)>,
) -> Response {
    let (st, version) = match &id {
        Some(id) => match journeys::get(state, &signed.0, id).await {
            Ok(j) => (j.state, j.version),
            Err(e) => return WebError::from(e).into_response(),
        },
        None => ("draft".into(), 0),
    };
    BuilderPage {
        chrome: signed.chrome("journeys"),
        id,
        state: st,
        version,
        draft,
        notice: None,
        error,
        unsaved: true,
        preview_customer: String::new(),
        counts: None,
    }
    .into_response()
}

/// Activate, pause, resume or archive.
pub async fn transition(
    State(state): State<App>,
    signed: Signed,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    match journeys::transition(&state, &signed.0, &id, &action).await {
        Ok(j) => {
            let to = if j.state == "archived" {
                PAGE.to_owned()
            } else {
                format!("{PAGE}/{id}?notice=The+journey+is+{}", j.state)
            };
            Redirect::to(&to).into_response()
        }
        Err(e) => WebError::from(e).into_response(),
    }
}
