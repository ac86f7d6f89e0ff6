//! The agents' inbox: the conversation list with filters and unread badges, the thread with
//! every channel's messages, the composer, and the conversation's status, assignee and labels.
//! Writes go through `sb_app` (the JSON API's own use cases).

use std::collections::HashMap;

use crate::web::Form;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use sb_app::App;
use sb_app::conversations::{self as inbox, Assign, ChangeLabels, ChangeStatus, CreateMessage, HandoffRequest};
use sb_app::customers as profiles;
use sb_core::Permission;
use sb_core::clock::rfc3339;
use sb_inbox::outbox::ReplyOption;
use sb_store::conversations::{self, Conversation, Filter};
use sb_store::{StoreError, customers, messages, users};
use serde::Deserialize;

use crate::customer::{self, CustomerPanel, display_name};
use crate::format::{channel_mark, short_time};
use crate::web::{Chrome, Signed, WebError, WebResult, after_post, is_htmx};

/// The list's filters, kept in the URL so every view is a link.
#[derive(Deserialize, Default, Clone)]
pub struct ListFilters {
    /// `mine`, `unassigned` or `all` (default).
    pub view: Option<String>,
    /// A status, or `any`; default `open`.
    pub status: Option<String>,
    pub channel: Option<String>,
    pub label: Option<String>,
}

const STATUSES: [&str; 4] = ["open", "pending", "snoozed", "resolved"];

impl ListFilters {
    pub fn view(&self) -> &str {
        match self.view.as_deref() {
            Some(v @ ("mine" | "unassigned")) => v,
            _ => "all",
        }
    }

    pub fn status(&self) -> &str {
        match self.status.as_deref() {
            Some("any") => "any",
            Some(s) if STATUSES.contains(&s) => s,
            _ => "open",
        }
    }

    pub fn channel(&self) -> &str {
        self.channel.as_deref().unwrap_or("").trim()
    }

    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or("").trim()
    }

    /// The query string of these filters with `view` replaced (for the view tabs).
    pub fn with_view(&self, view: &str) -> String {
        let mut f = self.clone();
        f.view = Some(view.to_owned());
        f.query()
    }

    pub fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("view", self.view());
        q.append_pair("status", self.status());
        if !self.channel().is_empty() {
            q.append_pair("channel", self.channel());
        }
        if !self.label().is_empty() {
            q.append_pair("label", self.label());
        }
        q.finish()
    }

    fn store_filter(&self, user_id: &str) -> Filter {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Filter {
            status: (self.status() != "any").then(|| self.status().to_owned()),
            assignee_id: (self.view() == "mine").then(|| user_id.to_owned()),
            unassigned: self.view() == "unassigned",
            channel: non_empty(self.channel()),
            label: non_empty(self.label()),
            ..Filter::default()
        }
    }
}

pub struct Row {
    pub id: String,
    pub customer: String,
    pub preview: String,
    pub channel_label: &'static str,
    pub channel_class: &'static str,
    pub time: String,
    pub time_iso: String,
    pub unread: i64,
    pub status: String,
    pub assignee: Option<String>,
    pub selected: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/conversation_list.html")]
pub struct ConversationList {
    pub rows: Vec<Row>,
    pub filters: ListFilters,
}

fn agent_names(c: &mut dyn sb_store::Conn, ws: &str) -> Result<HashMap<String, String>, StoreError> {
    Ok(users::list(c, ws, None, 200)?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect())
}

async fn load_list(
    state: &App,
    signed: &Signed,
    filters: &ListFilters,
    selected: Option<&str>,
) -> WebResult<ConversationList> {
    signed.require(Permission::ReadConversations)?;
    let (ws, filter, now) = (signed.ws(), filters.store_filter(&signed.0.user.id), state.now());
    let selected = selected.map(str::to_owned);
    let rows = sb_app::read_as(state, &signed.0, Permission::ReadConversations, move |c, _| {
        let names = agent_names(c, &ws)?;
        let list = conversations::list(c, &ws, &filter, None, 50)?;
        let mut rows = Vec::with_capacity(list.len());
        for conv in list {
            let customer = customers::get(c, &ws, &conv.customer_id)?;
            let last = messages::recent(c, &ws, &conv.id, 1)?.pop();
            let (channel_label, channel_class) =
                channel_mark(last.as_ref().and_then(|m| m.channel.as_deref()).unwrap_or(""));
            let preview = last.as_ref().map_or(String::new(), |m| {
                let prefix = match m.direction.as_str() {
                    "outbound" => "You: ",
                    "note" => "Note: ",
                    _ => "",
                };
                let body: String = m.body.chars().take(90).collect();
                format!("{prefix}{body}")
            });
            rows.push(Row {
                customer: customer.as_ref().map(display_name).unwrap_or_default(),
                preview,
                channel_label,
                channel_class,
                time: short_time(conv.last_message_at, now),
                time_iso: rfc3339(conv.last_message_at),
                unread: conv.unread_count,
                status: conv.status.clone(),
                assignee: conv.assignee_id.as_ref().and_then(|a| names.get(a).cloned()),
                selected: selected.as_deref() == Some(conv.id.as_str()),
                id: conv.id,
            });
        }
        Ok::<_, StoreError>(rows)
    })
    .await?;
    Ok(ConversationList {
        rows,
        filters: filters.clone(),
    })
}

pub struct MessageRow {
    pub id: String,
    pub direction: String,
    pub author: String,
    pub body: String,
    pub channel_label: &'static str,
    pub channel_class: &'static str,
    pub time: String,
    pub time_iso: String,
    pub status: String,
    /// A failed send: the provider's code and reason.
    pub failure: Option<String>,
    pub attachments: Vec<String>,
}

/// The thread's list element: it stays in the page for good (live refreshes and the
/// composer's posts replace only its items, one request at a time), so no refresh is lost.
#[derive(Template, WebTemplate)]
#[template(path = "partials/thread.html")]
pub struct Thread {
    pub conversation_id: String,
    pub items: ThreadItems,
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/thread_items.html")]
pub struct ThreadItems {
    pub messages: Vec<MessageRow>,
    pub can_reply: bool,
}

/// The header's element stays in the page; its actions and live refreshes replace the inside.
#[derive(Template, WebTemplate)]
#[template(path = "partials/conversation_header.html")]
pub struct Header {
    pub inner: HeaderInner,
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/conversation_header_inner.html")]
pub struct HeaderInner {
    pub conversation: Conversation,
    pub customer: String,
    pub labels: Vec<String>,
    pub agents: Vec<AgentChoice>,
    pub assignee: Option<String>,
    pub snoozed_until: Option<crate::format::Stamp>,
    pub can_reply: bool,
    pub me: String,
}

pub struct AgentChoice {
    pub id: String,
    pub name: String,
    /// `online`, `busy` or `offline`, from the agent's heartbeat.
    pub status: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/customer_panel.html")]
pub struct CustomerFragment {
    pub conversation_id: String,
    pub panel: CustomerPanel,
    /// The journeys the customer is in (and was lately), with the next planned send.
    pub journeys: Vec<JourneyLine>,
    /// The viewer may merge customers and undo merges.
    pub can_merge: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/merge_candidates.html")]
pub struct MergeCandidates {
    pub conversation_id: String,
    pub query: String,
    pub candidates: Vec<customer::MergeCandidate>,
}

pub struct ChannelChoice {
    pub id: String,
    /// The account as the agent knows it, e.g. `WhatsApp +1 555…`.
    pub name: String,
    pub label: String,
    pub allowed: bool,
    pub rule: String,
    pub default: bool,
}

fn choices(options: &[ReplyOption]) -> Vec<ChannelChoice> {
    options
        .iter()
        .map(|o| {
            let (mark, _) = channel_mark(&o.channel);
            // Account names often start with the channel already ("WhatsApp +1 555…").
            let account = if o.name.starts_with(mark) {
                o.name.clone()
            } else {
                format!("{mark} — {}", o.name)
            };
            let to = o.address.as_deref().map(|a| format!(" to {a}")).unwrap_or_default();
            let rule = if o.allowed {
                format!("A reply can go out now on {account}{to}.")
            } else {
                format!(
                    "Not possible on {account}: {}",
                    o.reason_text.as_deref().or(o.reason).unwrap_or("not allowed now")
                )
            };
            ChannelChoice {
                id: o.channel_account_id.clone(),
                name: account.clone(),
                label: format!("{account}{}", if o.allowed { "" } else { " (not now)" }),
                allowed: o.allowed,
                rule,
                default: o.default,
            }
        })
        .collect()
}

#[derive(Template, WebTemplate)]
#[template(path = "inbox.html")]
pub struct InboxPage {
    pub chrome: Chrome,
    pub list: ConversationList,
    pub open: Option<OpenConversation>,
    pub channels: Vec<(String, &'static str)>,
}

pub struct OpenConversation {
    pub header: Header,
    pub thread: Thread,
    pub customer: CustomerFragment,
    pub choices: Vec<ChannelChoice>,
    pub default_rule: String,
    /// The idempotency key of the next send from this composer: a send repeated after a lost
    /// answer makes no second message (the page's script moves to a new key after each send).
    pub send_key: String,
}

async fn load_thread(state: &App, signed: &Signed, id: &str) -> WebResult<ThreadItems> {
    signed.require(Permission::ReadConversations)?;
    inbox::get(state, &signed.0, id).await?;
    let (ws, cid, now) = (signed.ws(), id.to_owned(), state.now());
    let messages = sb_app::read_as(state, &signed.0, Permission::ReadConversations, move |c, _| {
        let names = agent_names(c, &ws)?;
        let rows = messages::recent(c, &ws, &cid, 200)?;
        let customer = rows
            .first()
            .map(|m| customers::get(c, &ws, &m.customer_id))
            .transpose()?
            .flatten()
            .map(|c| display_name(&c))
            .unwrap_or_default();
        Ok::<_, StoreError>(
            rows.into_iter()
                .map(|m| message_row(m, &names, &customer, now))
                .collect::<Vec<_>>(),
        )
    })
    .await?;
    Ok(ThreadItems {
        messages,
        can_reply: signed.may(Permission::ReplyConversations),
    })
}

fn message_row(m: messages::Message, names: &HashMap<String, String>, customer: &str, now: i64) -> MessageRow {
    let (channel_label, channel_class) = match m.direction.as_str() {
        "note" => ("Note", "ch-note"),
        _ => channel_mark(m.channel.as_deref().unwrap_or("")),
    };
    let author = match m.author_kind.as_str() {
        "customer" => customer.to_owned(),
        "user" => m
            .author_id
            .as_ref()
            .and_then(|a| names.get(a).cloned())
            .unwrap_or_else(|| "Agent".to_owned()),
        _ => "Switchboard".to_owned(),
    };
    let failure = (m.status == "failed").then(|| match (&m.error_code, &m.error_message) {
        (Some(code), Some(text)) => format!("{text} ({code})"),
        (None, Some(text)) => text.clone(),
        (Some(code), None) => code.clone(),
        (None, None) => "the provider gave no reason".to_owned(),
    });
    let attachments = serde_json::from_str::<Vec<serde_json::Value>>(&m.attachments_json)
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a["filename"].as_str().map(str::to_owned))
        .collect();
    MessageRow {
        id: m.id,
        direction: m.direction,
        author,
        body: m.body,
        channel_label,
        channel_class,
        time: short_time(m.sent_at, now),
        time_iso: rfc3339(m.sent_at),
        status: m.status,
        failure,
        attachments,
    }
}

async fn load_header(state: &App, signed: &Signed, id: &str) -> WebResult<HeaderInner> {
    signed.require(Permission::ReadConversations)?;
    let conversation = inbox::get(state, &signed.0, id).await?;
    let (ws, cid, customer_id, now) = (
        signed.ws(),
        id.to_owned(),
        conversation.customer_id.clone(),
        state.now(),
    );
    let (customer, labels, agents) = sb_app::read_as(state, &signed.0, Permission::ReadConversations, move |c, _| {
        let customer = customers::get(c, &ws, &customer_id)?.map(|c| display_name(&c));
        let labels = conversations::labels(c, &ws, &cid)?;
        let presence: HashMap<String, String> = sb_store::presence::list(c, &ws)?
            .into_iter()
            .map(|p| (p.user_id.clone(), p.effective_status(now).to_owned()))
            .collect();
        // Each agent with their presence, so the one assigning sees who is around.
        let agents: Vec<AgentChoice> = users::list(c, &ws, None, 200)?
            .into_iter()
            .filter(|u| !u.disabled && u.role().allows(Permission::ReplyConversations))
            .map(|u| AgentChoice {
                status: presence.get(&u.id).cloned().unwrap_or_else(|| "offline".to_owned()),
                id: u.id,
                name: u.name,
            })
            .collect();
        Ok::<_, StoreError>((customer, labels, agents))
    })
    .await?;
    let assignee = conversation.assignee_id.as_ref().and_then(|a| {
        agents
            .iter()
            .find(|agent| agent.id == *a)
            .map(|agent| agent.name.clone())
    });
    Ok(HeaderInner {
        snoozed_until: conversation
            .snoozed_until
            .filter(|_| conversation.status == "snoozed")
            .map(|t| crate::format::stamp(t, state.now())),
        conversation,
        customer: customer.unwrap_or_default(),
        labels,
        agents,
        assignee,
        can_reply: signed.may(Permission::ReplyConversations),
        me: signed.0.user.id.clone(),
    })
}

/// A customer's journey, as the side panel shows it.
pub struct JourneyLine {
    pub name: String,
    pub live: bool,
    pub state: String,
    pub step: String,
    /// "reminder on whatsapp at …" while a send is ahead.
    pub next: Option<String>,
    /// The latest delivery: where it went, or why it did not.
    pub last: Option<String>,
}

async fn journey_lines(state: &App, signed: &Signed, customer_id: &str) -> WebResult<Vec<JourneyLine>> {
    let list = sb_app::journeys::of_customer(state, &signed.0, customer_id).await?;
    Ok(list
        .into_iter()
        .take(5)
        .map(|j| JourneyLine {
            live: matches!(j.state.as_str(), "active" | "waiting"),
            name: j.journey_name,
            state: match j.end_reason {
                Some(reason) if !matches!(j.state.as_str(), "active" | "waiting") => format!("{} ({reason})", j.state),
                _ => j.state,
            },
            step: j.step_id.unwrap_or_default(),
            next: j.next_send.map(|n| {
                let when = n.at.map(|at| format!(" at {at}")).unwrap_or_default();
                match n.channel {
                    Some(ch) => format!("{} on {ch}{when}", n.step_id),
                    None => format!("{}{when}: {}", n.step_id, n.why),
                }
            }),
            last: j.deliveries.last().map(|d| match (&d.channel, d.state.as_str()) {
                (Some(ch), "queued") => format!("{} sent on {ch}", d.step_id),
                (_, st) => format!(
                    "{} {st}{}",
                    d.step_id,
                    d.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
                ),
            }),
        })
        .collect())
}

async fn load_customer(state: &App, signed: &Signed, id: &str) -> WebResult<CustomerFragment> {
    signed.require(Permission::ReadConversations)?;
    let conversation = inbox::get(state, &signed.0, id).await?;
    let commerce = signed.may(Permission::ReadOrders);
    let (ws, now) = (signed.ws(), state.now());
    let customer_id = conversation.customer_id.clone();
    let panel = sb_app::read_as(state, &signed.0, Permission::ReadConversations, move |c, _| {
        customer::load(c, &ws, &customer_id, commerce, now)
    })
    .await?
    .ok_or_else(|| sb_app::AppError::internal("conversation without customer"))?;
    let journeys = if signed.may(Permission::ReadCustomers) {
        journey_lines(state, signed, &conversation.customer_id).await?
    } else {
        Vec::new()
    };
    Ok(CustomerFragment {
        conversation_id: id.to_owned(),
        panel,
        journeys,
        can_merge: signed.may(Permission::ReplyConversations),
    })
}

async fn channel_filter_options(state: &App, signed: &Signed) -> WebResult<Vec<(String, &'static str)>> {
    let accounts = sb_app::read_as(state, &signed.0, Permission::ReadConversations, |c, ws| {
        sb_store::channel_accounts::list(c, ws)
    })
    .await?;
    let mut kinds: Vec<(String, &'static str)> = accounts
        .into_iter()
        .map(|a| {
            let label = channel_mark(&a.channel).0;
            (a.channel, label)
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    Ok(kinds)
}

pub async fn inbox_page(
    State(state): State<App>,
    signed: Signed,
    Query(filters): Query<ListFilters>,
) -> WebResult<Response> {
    let list = load_list(&state, &signed, &filters, None).await?;
    Ok(InboxPage {
        chrome: signed.chrome("inbox"),
        list,
        open: None,
        channels: channel_filter_options(&state, &signed).await?,
    }
    .into_response())
}

pub async fn list_fragment(
    State(state): State<App>,
    signed: Signed,
    Query(filters): Query<ListFilters>,
    Query(sel): Query<Selected>,
) -> WebResult<ConversationList> {
    load_list(&state, &signed, &filters, sel.selected.as_deref()).await
}

#[derive(Deserialize)]
pub struct Selected {
    pub selected: Option<String>,
}

pub async fn conversation_page(
    State(state): State<App>,
    signed: Signed,
    Path(id): Path<String>,
    Query(filters): Query<ListFilters>,
) -> WebResult<Response> {
    let header = Header {
        inner: load_header(&state, &signed, &id).await?,
    };
    let thread = Thread {
        conversation_id: id.clone(),
        items: load_thread(&state, &signed, &id).await?,
    };
    let customer = load_customer(&state, &signed, &id).await?;
    let list = load_list(&state, &signed, &filters, Some(&id)).await?;
    let options = sb_inbox::reply_options(&state.engine, &state.channels, &signed.ws(), &id)
        .await?
        .unwrap_or_default();
    let choices = choices(&options);
    let default_rule = choices
        .iter()
        .find(|c| c.default)
        .or(choices.first())
        .map(|c| c.rule.clone())
        .unwrap_or_else(|| "The customer has no channel to reply on; a private note is possible.".to_owned());
    Ok(InboxPage {
        chrome: signed.chrome("inbox"),
        list,
        open: Some(OpenConversation {
            header,
            thread,
            customer,
            choices,
            default_rule,
            send_key: sb_core::new_id(),
        }),
        channels: channel_filter_options(&state, &signed).await?,
    }
    .into_response())
}

pub async fn thread_fragment(
    State(state): State<App>,
    signed: Signed,
    Path(id): Path<String>,
) -> WebResult<ThreadItems> {
    load_thread(&state, &signed, &id).await
}

pub async fn header_fragment(
    State(state): State<App>,
    signed: Signed,
    Path(id): Path<String>,
) -> WebResult<HeaderInner> {
    load_header(&state, &signed, &id).await
}

pub async fn customer_fragment(
    State(state): State<App>,
    signed: Signed,
    Path(id): Path<String>,
) -> WebResult<CustomerFragment> {
    load_customer(&state, &signed, &id).await
}

#[derive(Deserialize)]
pub struct CandidateQuery {
    #[serde(default)]
    q: String,
}

/// Customers that could be merged into this conversation's customer, with a preview of what
/// each merge would move (identities, messages, events, orders) or why it would be refused.
pub async fn merge_candidates(
    State(state): State<App>,
    signed: Signed,
    Path(id): Path<String>,
    Query(query): Query<CandidateQuery>,
) -> WebResult<MergeCandidates> {
    signed.require(Permission::ReplyConversations)?;
    let conversation = inbox::get(&state, &signed.0, &id).await?;
    let (ws, q) = (signed.ws(), query.q.trim().to_owned());
    let candidates = if q.is_empty() {
        Vec::new()
    } else {
        let q = q.clone();
        sb_app::read_as(&state, &signed.0, Permission::ReplyConversations, move |c, _| {
            customer::merge_candidates(c, &ws, &conversation.customer_id, &q)
        })
        .await?
    };
    Ok(MergeCandidates {
        conversation_id: id,
        query: q,
        candidates,
    })
}

#[derive(Deserialize)]
pub struct MergeForm {
    source_customer_id: String,
}

/// Merges the chosen customer into this conversation's customer (the same use case as
/// `POST /api/v1/customers/{id}/merge`); answers with the refreshed panel.
pub async fn merge(
    State(state): State<App>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<MergeForm>,
) -> Response {
    let htmx = is_htmx(&headers);
    let conversation = match inbox::get(&state, &signed.0, &id).await {
        Ok(c) => c,
        Err(e) => return WebError::from(e).with_htmx(htmx).into_response(),
    };
    let request = profiles::MergeRequest {
        source_customer_id: form.source_customer_id,
    };
    if let Err(e) = profiles::merge_into(&state, &signed.0, conversation.customer_id, request).await {
        return WebError::from(e).with_htmx(htmx).into_response();
    }
    panel_after(&state, &signed, &headers, &id).await
}

/// Undoes a merge shown in the panel; answers with the refreshed panel.
pub async fn undo_merge(
    State(state): State<App>,
    signed: Signed,
    headers: HeaderMap,
    Path((id, merge_id)): Path<(String, String)>,
) -> Response {
    if let Err(e) = profiles::undo_merge_as(&state, &signed.0, merge_id).await {
        return WebError::from(e).with_htmx(is_htmx(&headers)).into_response();
    }
    panel_after(&state, &signed, &headers, &id).await
}

async fn panel_after(state: &App, signed: &Signed, headers: &HeaderMap, id: &str) -> Response {
    match load_customer(state, signed, id).await {
        Ok(panel) => after_post(headers, panel, &back_to(id)),
        Err(e) => e.with_htmx(is_htmx(headers)).into_response(),
    }
}

fn back_to(id: &str) -> String {
    format!("/app/conversations/{id}")
}

/// The composer's fields. Read as pairs because a template's parameters repeat (`param`).
struct ReplyForm {
    text: String,
    channel_account_id: Option<String>,
    /// Present (any value) for a private note.
    note: bool,
    /// `name|language` of a pre-approved template, sent instead of the text.
    template: Option<String>,
    params: Vec<String>,
    /// Files uploaded beforehand (`POST /api/v1/attachments`), sent with the reply.
    attachment_ids: Vec<String>,
    /// The composer's key for this send (see `OpenConversation::send_key`).
    idempotency_key: Option<String>,
}

impl ReplyForm {
    fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut form = ReplyForm {
            text: String::new(),
            channel_account_id: None,
            note: false,
            template: None,
            params: Vec::new(),
            attachment_ids: Vec::new(),
            idempotency_key: None,
        };
        for (key, value) in pairs {
            match key.as_str() {
                "text" => form.text = value,
                "channel_account_id" if !value.is_empty() => form.channel_account_id = Some(value),
                "note" => form.note = true,
                "template" if !value.is_empty() => form.template = Some(value),
                "param" => form.params.push(value),
                "attachment_id" if !value.is_empty() => form.attachment_ids.push(value),
                "idempotency_key" if !value.is_empty() => form.idempotency_key = Some(value),
                _ => {}
            }
        }
        form
    }

    fn into_message(self) -> (CreateMessage, bool) {
        let note = self.note;
        let mut body = CreateMessage::plain(self.text);
        body.idempotency_key = self.idempotency_key;
        body.channel_account_id = self.channel_account_id;
        body.attachment_ids = self.attachment_ids;
        if let Some((name, language)) = self.template.as_deref().and_then(|t| t.split_once('|')) {
            body.template = Some(sb_channels::TemplateSend {
                name: name.to_owned(),
                language: language.to_owned(),
                parameters: self.params,
            });
            // The template is the message; typed text would not go out with it.
            body.text.clear();
        }
        (body, note)
    }
}

pub async fn reply(
    State(state): State<App>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let htmx = is_htmx(&headers);
    let (body, note) = ReplyForm::from_pairs(pairs).into_message();
    if let Err(e) = inbox::post_message(&state, &signed.0, &id, body, note).await {
        // The composer keeps the text; the reason shows above it.
        return WebError::from(e).with_htmx(htmx).at("#composer-error").into_response();
    }
    match load_thread(&state, &signed, &id).await {
        Ok(thread) => {
            let mut resp = after_post(&headers, thread, &back_to(&id));
            // Tells the composer to clear itself (only after a successful send).
            resp.headers_mut()
                .insert("HX-Trigger", HeaderValue::from_static("composer-sent"));
            resp
        }
        Err(e) => e.with_htmx(htmx).into_response(),
    }
}

#[derive(Deserialize)]
pub struct TemplateQuery {
    channel_account_id: Option<String>,
    template: Option<String>,
}

pub struct TemplateChoice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/templates.html")]
pub struct TemplatePicker {
    pub conversation_id: String,
    pub choices: Vec<TemplateChoice>,
    /// The chosen template's body with `{{n}}` placeholders, and how many parameters it takes.
    pub chosen: Option<(String, usize)>,
}

/// The approved templates of the channel picked in the composer (WhatsApp: the way to write
/// after the 24-hour window), and the parameter fields of the chosen one.
pub async fn templates(
    State(state): State<App>,
    signed: Signed,
    Path(id): Path<String>,
    Query(q): Query<TemplateQuery>,
) -> WebResult<Response> {
    signed.require(Permission::ReplyConversations)?;
    inbox::get(&state, &signed.0, &id).await?;
    let (ws, account) = (signed.ws(), q.channel_account_id.unwrap_or_default());
    let list = sb_app::read_as(&state, &signed.0, Permission::ReplyConversations, move |c, _| {
        sb_store::templates::list(c, &ws, &account)
    })
    .await?;
    let approved: Vec<_> = list.into_iter().filter(|t| t.status == "APPROVED").collect();
    if approved.is_empty() {
        return Ok(axum::response::Html(String::new()).into_response());
    }
    let wanted = q.template.unwrap_or_default();
    let choices = approved
        .iter()
        .map(|t| {
            let value = format!("{}|{}", t.name, t.language);
            TemplateChoice {
                label: format!("{} ({})", t.name, t.language),
                selected: value == wanted,
                value,
            }
        })
        .collect();
    let chosen = approved
        .iter()
        .find(|t| format!("{}|{}", t.name, t.language) == wanted)
        .map(|t| (t.body.clone(), usize::try_from(t.parameter_count).unwrap_or(0)));
    Ok(TemplatePicker {
        conversation_id: id,
        choices,
        chosen,
    }
    .into_response())
}

#[derive(Deserialize)]
pub struct StatusForm {
    status: Option<String>,
    /// Snooze for this many hours.
    snooze_hours: Option<i64>,
}

pub async fn change_status(
    State(state): State<App>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<StatusForm>,
) -> Response {
    let htmx = is_htmx(&headers);
    let body = match form.snooze_hours.filter(|h| (1..=24 * 30).contains(h)) {
        Some(hours) => ChangeStatus {
            status: "snoozed".into(),
            snooze_until: Some(rfc3339(state.now() + hours * 3_600_000)),
        },
        None => ChangeStatus {
            status: form.status.unwrap_or_default(),
            snooze_until: None,
        },
    };
    if let Err(e) = inbox::set_status(&state, &signed.0, &id, body).await {
        return WebError::from(e).with_htmx(htmx).into_response();
    }
    header_after(&state, &signed, &headers, &id).await
}

async fn header_after(state: &App, signed: &Signed, headers: &HeaderMap, id: &str) -> Response {
    match load_header(state, signed, id).await {
        Ok(header) => after_post(headers, header, &back_to(id)),
        Err(e) => e.with_htmx(is_htmx(headers)).into_response(),
    }
}

#[derive(Deserialize)]
pub struct AssignForm {
    /// A user id, `me`, or empty to unassign.
    assignee: String,
}

pub async fn assign(
    State(state): State<App>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<AssignForm>,
) -> Response {
    let assignee_id = match form.assignee.as_str() {
        "" => None,
        "me" => Some(signed.0.user.id.clone()),
        other => Some(other.to_owned()),
    };
    let body = Assign {
        assignee_id,
        team: None,
    };
    let current = match inbox::get(&state, &signed.0, &id).await {
        Ok(c) => c,
        Err(e) => return WebError::from(e).with_htmx(is_htmx(&headers)).into_response(),
    };
    // The form only picks the agent; the team stays as it was.
    let body = Assign {
        team: current.team,
        ..body
    };
    if let Err(e) = inbox::assign_to(&state, &signed.0, &id, body).await {
        return WebError::from(e).with_htmx(is_htmx(&headers)).into_response();
    }
    header_after(&state, &signed, &headers, &id).await
}

#[derive(Deserialize)]
pub struct LabelForm {
    add: Option<String>,
    remove: Option<String>,
}

pub async fn labels(
    State(state): State<App>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<LabelForm>,
) -> Response {
    let body = ChangeLabels {
        add: form.add.into_iter().filter(|l| !l.trim().is_empty()).collect(),
        remove: form.remove.into_iter().collect(),
    };
    if let Err(e) = inbox::relabel(&state, &signed.0, &id, body).await {
        return WebError::from(e).with_htmx(is_htmx(&headers)).into_response();
    }
    header_after(&state, &signed, &headers, &id).await
}

pub async fn mark_read(
    State(state): State<App>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match inbox::mark_conversation_read(&state, &signed.0, &id).await {
        Ok(_) => after_post(&headers, axum::http::StatusCode::NO_CONTENT, &back_to(&id)),
        Err(e) => WebError::from(e).with_htmx(is_htmx(&headers)).into_response(),
    }
}

pub async fn retry(State(state): State<App>, signed: Signed, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let htmx = is_htmx(&headers);
    let message = match inbox::retry_failed(&state, &signed.0, &id).await {
        Ok(m) => m,
        Err(e) => return WebError::from(e).with_htmx(htmx).into_response(),
    };
    match load_thread(&state, &signed, &message.conversation_id).await {
        Ok(thread) => after_post(&headers, thread, &back_to(&message.conversation_id)),
        Err(e) => e.with_htmx(htmx).into_response(),
    }
}

#[derive(Deserialize)]
pub struct MeasureQuery {
    #[serde(default)]
    text: String,
    channel_account_id: Option<String>,
    note: Option<String>,
}

/// Before sending: the text's length against the channel's limit and, on SMS, the segments
/// the carrier will bill (the same counting the outbox paces by).
pub async fn measure(
    State(state): State<App>,
    signed: Signed,
    Path(id): Path<String>,
    Query(q): Query<MeasureQuery>,
) -> WebResult<axum::response::Html<String>> {
    signed.require(Permission::ReplyConversations)?;
    inbox::get(&state, &signed.0, &id).await?;
    let Some(account_id) = q.channel_account_id.filter(|a| !a.is_empty() && q.note.is_none()) else {
        return Ok(axum::response::Html(String::new()));
    };
    let ws = signed.ws();
    let account = sb_app::read_as(&state, &signed.0, Permission::ReplyConversations, move |c, _| {
        sb_store::channel_accounts::get(c, &ws, &account_id)
    })
    .await?;
    let Some(channel) = account.as_ref().and_then(|a| state.channels.get(&a.channel)) else {
        return Ok(axum::response::Html(String::new()));
    };
    let characters = q.text.chars().count();
    let limit = channel.policy().max_text_chars;
    let segments = channel.segments(&q.text);
    let fragment = Measure {
        characters,
        limit,
        too_long: characters > limit,
        segments: segments.map(|s| s.segments),
        unicode: segments.is_some_and(|s| s.encoding == sb_core::sms::Encoding::Ucs2),
    };
    Ok(axum::response::Html(
        fragment.render().map_err(sb_app::AppError::internal)?,
    ))
}

#[derive(Template)]
#[template(path = "partials/measure.html")]
struct Measure {
    characters: usize,
    limit: usize,
    too_long: bool,
    segments: Option<usize>,
    unicode: bool,
}

#[derive(Deserialize)]
pub struct HandoffForm {
    channel_account_id: String,
    #[serde(default)]
    address: String,
}

/// Moves the conversation to another channel (the API's handoff: the address linked, a first
/// message there quoting the conversation, the website chat told where it went).
pub async fn handoff(
    State(state): State<App>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HandoffForm>,
) -> Response {
    let htmx = is_htmx(&headers);
    let address = form.address.trim();
    let body = HandoffRequest {
        channel_account_id: form.channel_account_id,
        address: (!address.is_empty()).then(|| address.to_owned()),
    };
    if let Err(e) = inbox::hand_off(&state, &signed.0, &id, body).await {
        return WebError::from(e).with_htmx(htmx).at("#handoff-error").into_response();
    }
    match load_thread(&state, &signed, &id).await {
        Ok(thread) => after_post(&headers, thread, &back_to(&id)),
        Err(e) => e.with_htmx(htmx).into_response(),
    }
}
