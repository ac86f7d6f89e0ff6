//! Store staff: the pickup queue (prepare → ready → hand over with the customer's code; an
//! order sourced by transfer is received first), live stock per location with search, and
//! order / customer look-up. Order steps go through `sb_app::commerce::orders::order_step`, the API's
//! own use case (which also tells the customer), transfers through `transfer_step`.

use std::collections::HashMap;

use crate::web::Form;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use sb_app::App;
use sb_app::commerce::orders::{self as order_steps, OrderActionBody, ReceiveReturn, ReturnLineBody};
use sb_app::commerce::transfers;
use sb_core::Permission;
use sb_store::{StoreError, catalog, customers, orders};
use serde::Deserialize;

use crate::customer::{OrderRow, display_name, order_rows};
use crate::web::{Chrome, Signed, WebError, WebResult, after_post, is_htmx};

#[derive(Deserialize, Default)]
pub struct AtLocation {
    pub location: Option<String>,
}

pub struct LocationChoice {
    pub id: String,
    pub name: String,
    pub selected: bool,
}

pub struct QueueRow {
    pub order: OrderRow,
    pub customer: String,
    pub ready: bool,
    /// Transfers bringing its stock that have not arrived: (id, where from).
    pub awaiting: Vec<(String, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/pickup_queue.html")]
pub struct Queue {
    pub location: String,
    /// The queue's own refresh URL's query (`location=…`, encoded).
    pub query: String,
    pub rows: Vec<QueueRow>,
    /// The outcome of the last step, shown above the queue.
    pub done: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "store.html")]
pub struct StorePage {
    pub chrome: Chrome,
    pub locations: Vec<LocationChoice>,
    pub queue: Queue,
}

/// The locations a store page offers; stock and the pickup counter both need them.
async fn locations(state: &App, signed: &Signed, selected: &str, pickup_only: bool) -> WebResult<Vec<LocationChoice>> {
    let permission = if pickup_only {
        Permission::ManageOrders
    } else {
        Permission::ReadInventory
    };
    let list = sb_app::read_as(state, &signed.0, permission, |c, ws| catalog::locations(c, ws)).await?;
    Ok(list
        .into_iter()
        .filter(|l| l.active && (!pickup_only || l.can_pickup))
        .map(|l| LocationChoice {
            selected: l.id == selected,
            id: l.id,
            name: l.name,
        })
        .collect())
}

async fn load_queue(state: &App, signed: &Signed, location: &str, done: Option<String>) -> WebResult<Queue> {
    signed.require(Permission::ManageOrders)?;
    let (ws, loc, now) = (signed.ws(), location.to_owned(), state.now());
    let rows = sb_app::read_as(state, &signed.0, Permission::ManageOrders, move |c, _| {
        let list = orders::pickup_queue(c, &ws, (!loc.is_empty()).then_some(loc.as_str()), 200)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut names = HashMap::new();
        for o in &list {
            if !names.contains_key(&o.customer_id) {
                let name = customers::get(c, &ws, &o.customer_id)?.map(|c| display_name(&c));
                names.insert(o.customer_id.clone(), name.unwrap_or_default());
            }
        }
        let customers: Vec<String> = list
            .iter()
            .map(|o| names.get(&o.customer_id).cloned().unwrap_or_default())
            .collect();
        let ready: Vec<bool> = list.iter().map(|o| o.status == "ready_for_pickup").collect();
        let names: HashMap<String, String> = catalog::locations(c, &ws)?
            .into_iter()
            .map(|l| (l.id, l.name))
            .collect();
        let mut awaiting = Vec::with_capacity(list.len());
        for o in &list {
            let on_the_way = sb_store::transfers::for_order(c, &ws, &o.id)
                .map_err(|e| StoreError::Invalid(e.to_string()))?
                .into_iter()
                .filter(|t| t.status == "in_transit")
                .map(|t| {
                    let from = names.get(&t.from_location_id).cloned().unwrap_or_default();
                    (t.id, from)
                })
                .collect::<Vec<_>>();
            awaiting.push(on_the_way);
        }
        let rows = order_rows(c, &ws, list, now)?;
        Ok::<_, StoreError>(
            rows.into_iter()
                .zip(customers)
                .zip(ready)
                .zip(awaiting)
                .map(|(((order, customer), ready), awaiting)| QueueRow {
                    order,
                    customer,
                    ready,
                    awaiting,
                })
                .collect::<Vec<_>>(),
        )
    })
    .await?;
    Ok(Queue {
        query: location_query(location),
        location: location.to_owned(),
        rows,
        done,
    })
}

/// `location=…`, encoded for a URL (it comes from the request).
fn location_query(location: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("location", location)
        .finish()
}

pub async fn pickup_page(
    State(state): State<App>,
    signed: Signed,
    Query(at): Query<AtLocation>,
) -> WebResult<Response> {
    signed.require(Permission::ManageOrders)?;
    let location = at.location.unwrap_or_default();
    let locations = locations(&state, &signed, &location, true).await?;
    let queue = load_queue(&state, &signed, &location, None).await?;
    Ok(StorePage {
        chrome: signed.chrome("store"),
        locations,
        queue,
    }
    .into_response())
}

pub async fn queue_fragment(
    State(state): State<App>,
    signed: Signed,
    Query(at): Query<AtLocation>,
) -> WebResult<Queue> {
    load_queue(&state, &signed, at.location.as_deref().unwrap_or(""), None).await
}

#[derive(Deserialize)]
pub struct StepForm {
    #[serde(default)]
    location: String,
    code: Option<String>,
}

async fn step(state: App, signed: Signed, headers: HeaderMap, id: String, action: &str, form: StepForm) -> Response {
    let htmx = is_htmx(&headers);
    let body = OrderActionBody {
        code: form.code.map(|c| c.trim().to_owned()),
        reason: None,
    };
    let done = match order_steps::order_step(&state, &signed.0, &id, action, body).await {
        Ok((order, _)) if action == "ready" => format!("Order {} is ready; the customer has been told.", order.number),
        Ok((order, _)) => format!("Order {} handed over.", order.number),
        Err(e) => return WebError::from(e).with_htmx(htmx).into_response(),
    };
    let back = format!("/app/store?{}", location_query(&form.location));
    match load_queue(&state, &signed, &form.location, Some(done)).await {
        Ok(queue) => after_post(&headers, queue, &back),
        Err(e) => e.with_htmx(htmx).into_response(),
    }
}

pub async fn mark_ready(
    State(state): State<App>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<StepForm>,
) -> Response {
    step(state, signed, headers, id, "ready", form).await
}

/// The store receives a transfer bringing a pickup order's stock; the order can then be
/// marked ready.
pub async fn receive_transfer(
    State(state): State<App>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<StepForm>,
) -> Response {
    let htmx = is_htmx(&headers);
    if let Err(e) = transfers::transfer_step(&state, &signed.0, &id, "receive", Default::default()).await {
        return WebError::from(e).with_htmx(htmx).into_response();
    }
    let done = "Transfer received: the order can be prepared.".to_owned();
    let back = format!("/app/store?{}", location_query(&form.location));
    match load_queue(&state, &signed, &form.location, Some(done)).await {
        Ok(queue) => after_post(&headers, queue, &back),
        Err(e) => e.with_htmx(htmx).into_response(),
    }
}

pub async fn hand_over(
    State(state): State<App>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<StepForm>,
) -> Response {
    step(state, signed, headers, id, "pickup", form).await
}

#[derive(Deserialize, Default)]
pub struct StockQuery {
    #[serde(default)]
    pub q: String,
    pub location: Option<String>,
}

pub struct StockRow {
    pub sku: String,
    pub title: String,
    /// Units per shown location, in the header's order.
    pub available: Vec<i64>,
}

#[derive(Template, WebTemplate)]
#[template(path = "stock.html")]
pub struct StockPage {
    pub chrome: Chrome,
    pub q: String,
    pub locations: Vec<LocationChoice>,
    pub columns: Vec<String>,
    pub rows: Vec<StockRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/stock_table.html")]
pub struct StockTable {
    pub columns: Vec<String>,
    pub rows: Vec<StockRow>,
    pub q: String,
}

pub async fn stock_page(
    State(state): State<App>,
    signed: Signed,
    headers: HeaderMap,
    Query(query): Query<StockQuery>,
) -> WebResult<Response> {
    signed.require(Permission::ReadInventory)?;
    let location = query.location.clone().unwrap_or_default();
    let (ws, needle) = (signed.ws(), query.q.trim().to_lowercase());
    let (columns, rows) = sb_app::read_as(&state, &signed.0, Permission::ReadInventory, move |c, _| {
        let shown: Vec<catalog::Location> = catalog::locations(c, &ws)?
            .into_iter()
            .filter(|l| l.active && (location.is_empty() || l.id == location))
            .collect();
        let mut rows = Vec::new();
        for (product, variants) in catalog::products(c, &ws)? {
            for v in variants {
                let title = format!("{} — {}", product.title, v.title);
                if !needle.is_empty()
                    && !title.to_lowercase().contains(&needle)
                    && !v.sku.to_lowercase().contains(&needle)
                {
                    continue;
                }
                let Some(avail) = sb_commerce::availability(c, &ws, &v.sku, None)? else {
                    continue;
                };
                let available = shown
                    .iter()
                    .map(|l| {
                        avail
                            .locations
                            .iter()
                            .find(|a| a.location_id == l.id)
                            .map_or(0, |a| a.available)
                    })
                    .collect();
                rows.push(StockRow {
                    sku: v.sku,
                    title,
                    available,
                });
            }
        }
        Ok::<_, StoreError>((shown.into_iter().map(|l| l.name).collect::<Vec<_>>(), rows))
    })
    .await?;
    // Polling refreshes (and searches as you type) swap only the table.
    if is_htmx(&headers) {
        return Ok(StockTable {
            columns,
            rows,
            q: query.q,
        }
        .into_response());
    }
    let locations = locations(&state, &signed, query.location.as_deref().unwrap_or(""), false).await?;
    Ok(StockPage {
        chrome: signed.chrome("stock"),
        q: query.q,
        locations,
        columns,
        rows,
    }
    .into_response())
}

#[derive(Deserialize, Default)]
pub struct LookupQuery {
    #[serde(default)]
    pub q: String,
}

pub struct FoundCustomer {
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub conversation_id: Option<String>,
    pub orders: Vec<OrderRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "lookup.html")]
pub struct LookupPage {
    pub chrome: Chrome,
    pub q: String,
    pub order: Option<(OrderRow, String)>,
    /// The found order can be returned here (handed over or shipped, and the role may).
    pub return_form: Option<ReturnForm>,
    pub customers: Vec<FoundCustomer>,
    pub searched: bool,
    pub can_open_conversation: bool,
}

pub struct ReturnForm {
    pub order_id: String,
    /// One form, one return: a second submit of the same form is the same return.
    pub idempotency_key: String,
    pub locations: Vec<LocationChoice>,
    /// (sku, title, quantity bought)
    pub lines: Vec<(String, String, i64)>,
}

pub async fn lookup_page(
    State(state): State<App>,
    signed: Signed,
    Query(query): Query<LookupQuery>,
) -> WebResult<Response> {
    signed.require(Permission::ReadCustomers)?;
    signed.require(Permission::ReadOrders)?;
    let q = query.q.trim().to_owned();
    let (ws, needle, now) = (signed.ws(), q.clone(), state.now());
    let may_return = signed.may(Permission::ManageOrders);
    let (order, return_form, customers) = if q.is_empty() {
        (None, None, Vec::new())
    } else {
        sb_app::read_as(&state, &signed.0, Permission::ReadOrders, move |c, _| {
            let (order, return_form) =
                match orders::by_number(c, &ws, &needle).map_err(|e| StoreError::Invalid(e.to_string()))? {
                    Some(o) => {
                        let customer = customers::get(c, &ws, &o.customer_id)?
                            .map(|c| display_name(&c))
                            .unwrap_or_default();
                        let return_form = if may_return && matches!(o.status.as_str(), "picked_up" | "shipped") {
                            let lines = orders::lines(c, &o.id).map_err(|e| StoreError::Invalid(e.to_string()))?;
                            let locations = catalog::locations(c, &ws)?
                                .into_iter()
                                .filter(|l| l.active && l.accepts_returns)
                                .map(|l| LocationChoice {
                                    selected: l.id == o.location_id,
                                    id: l.id,
                                    name: l.name,
                                })
                                .collect();
                            Some(ReturnForm {
                                order_id: o.id.clone(),
                                idempotency_key: sb_core::new_id(),
                                locations,
                                lines: lines.into_iter().map(|l| (l.sku, l.title, l.quantity)).collect(),
                            })
                        } else {
                            None
                        };
                        (
                            order_rows(c, &ws, vec![o], now)?.pop().map(|row| (row, customer)),
                            return_form,
                        )
                    }
                    None => (None, None),
                };
            let mut found = Vec::new();
            for customer in customers::search(c, &ws, &needle, None, 20)? {
                let list =
                    orders::for_customer(c, &ws, &customer.id).map_err(|e| StoreError::Invalid(e.to_string()))?;
                found.push(FoundCustomer {
                    name: display_name(&customer),
                    conversation_id: sb_store::conversations::id_for_customer(c, &ws, &customer.id)?,
                    orders: order_rows(c, &ws, list, now)?,
                    email: customer.email,
                    phone: customer.phone,
                });
            }
            Ok::<_, StoreError>((order, return_form, found))
        })
        .await?
    };
    Ok(LookupPage {
        chrome: signed.chrome("lookup"),
        searched: !q.is_empty(),
        q,
        order,
        return_form,
        customers,
        can_open_conversation: signed.may(Permission::ReadConversations),
    }
    .into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "partials/notice.html")]
struct Done<'a> {
    kind: &'a str,
    code: &'a str,
    message: &'a str,
}

/// A return at the counter: `qty:<sku>` and `disp:<sku>` per line (read as pairs).
pub async fn take_return(
    State(state): State<App>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let htmx = is_htmx(&headers);
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let lines: Vec<ReturnLineBody> = pairs
        .iter()
        .filter_map(|(k, v)| {
            let sku = k.strip_prefix("qty:")?;
            let quantity = v.trim().parse::<i64>().ok().filter(|q| *q > 0)?;
            Some(ReturnLineBody {
                sku: sku.to_owned(),
                quantity,
                disposition: field(&format!("disp:{sku}")),
            })
        })
        .collect();
    if lines.is_empty() {
        let e = sb_app::AppError::unprocessable("invalid_order", "enter how many of at least one item came back");
        return WebError::from(e).with_htmx(htmx).at("#return-result").into_response();
    }
    let body = ReceiveReturn {
        idempotency_key: field("idempotency_key"),
        location_id: field("location_id"),
        reason: field("reason"),
        lines,
    };
    match order_steps::take_return(&state, &signed.0, &id, body).await {
        Ok((received, lines)) => {
            let units: i64 = lines.iter().map(|l| l.quantity).sum();
            let message = format!(
                "Return taken: {units} item{} back, {} refunded.",
                if units == 1 { "" } else { "s" },
                crate::format::money(received.refund_minor, &received.currency)
            );
            let notice = Done {
                kind: "ok",
                code: "return_received",
                message: &message,
            };
            after_post(
                &headers,
                axum::response::Html(notice.render().unwrap_or_default()),
                "/app/lookup",
            )
        }
        Err(e) => WebError::from(e).with_htmx(htmx).at("#return-result").into_response(),
    }
}
