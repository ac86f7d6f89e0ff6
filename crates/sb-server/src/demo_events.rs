//! The demo's customer data: a few customers with three months of web-shop events (page
//! views, products viewed and added, checkouts, orders), their sign-ups, and an e-mail
//! marketing opt-in with its proof. Stored through the same path as Segment batches, so the
//! profiles show what ingestion would have made of them.

use sb_core::cdp::TrackedEvent;
use sb_sql::Conn;
use sb_store::StoreError;
use serde_json::{Map, Value, json};

const DAY_MS: i64 = 86_400_000;

/// (name, e-mail, phone)
const CUSTOMERS: [(&str, &str, &str); 4] = [
    ("Lucía Fernández", "lucia.fernandez@example.com", "+34611200301"),
    ("Jordi Puig", "jordi.puig@example.com", "+34611200302"),
    ("Marta Gil", "marta.gil@example.com", "+34611200303"),
    ("Pablo Ruiz", "pablo.ruiz@example.com", "+34611200304"),
];

const PRODUCTS: [(&str, &str, f64); 5] = [
    ("JKT-BLU-M", "Trail jacket Blue M", 89.99),
    ("BOOT-42", "Hiking boots EU 42", 129.99),
    ("GLV-1", "Wool gloves", 19.99),
    ("PONCHO-1", "Rain poncho", 29.99),
    ("KIT-TRAIL-M", "Trail kit M", 139.99),
];

/// A small deterministic generator, so every demo has the same history.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % sides
    }
}

fn event(kind: &str, n: &mut u64, user: Option<&str>, anon: &str, at: i64) -> TrackedEvent {
    *n += 1;
    TrackedEvent {
        kind: kind.to_owned(),
        message_id: format!("demo-{n}"),
        user_id: user.map(str::to_owned),
        anonymous_id: Some(anon.to_owned()),
        previous_id: None,
        group_id: None,
        name: None,
        properties: Map::new(),
        traits: Map::new(),
        context: json!({"library": {"name": "demo-seed"}})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        integrations: Map::new(),
        ts: at,
        original_ts: Some(at),
        sent_at: Some(at),
        received_at: at,
    }
}

fn props(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Writes the events and consents; returns how many events were stored.
pub fn seed(c: &mut dyn Conn, ws: &str, now: i64) -> Result<usize, StoreError> {
    let mut dice = Dice(42);
    let mut outcome = sb_store::events::Outcome::default();
    let mut n = 0u64;
    for (i, (name, email, phone)) in CUSTOMERS.iter().enumerate() {
        let anon = format!("demo-anon-{i}");
        let user = format!("shop-user-{}", 1001 + i);
        let start = now - 90 * DAY_MS + (i as i64) * 3 * DAY_MS;
        // Browsing before signing up, anonymously.
        let mut at = start;
        for _ in 0..3 {
            let mut page = event("page", &mut n, None, &anon, at);
            page.name = Some("Home".into());
            sb_store::events::apply(c, ws, None, &page, &mut outcome)?;
            at += 3 * 60_000;
        }
        let mut identify = event("identify", &mut n, Some(&user), &anon, at);
        let (first, last) = name.split_once(' ').unwrap_or((name, ""));
        let city = ["Madrid", "Barcelona", "Valencia", "Zaragoza"][i];
        identify.traits = props(
            json!({"email": email, "phone": phone, "first_name": first, "last_name": last,
                                        "plan": "member", "city": city}),
        );
        sb_store::events::apply(c, ws, None, &identify, &mut outcome)?;
        // Then a visit every few days until now.
        while at < now - DAY_MS {
            at += (2 + dice.roll(6) as i64) * DAY_MS + dice.roll(8 * 3600) as i64 * 1000;
            if at >= now {
                break;
            }
            let (sku, title, price) = PRODUCTS[dice.roll(PRODUCTS.len() as u64) as usize];
            let mut viewed = event("track", &mut n, Some(&user), &anon, at);
            viewed.name = Some("Product Viewed".into());
            viewed.properties = props(json!({"sku": sku, "name": title, "price": price}));
            sb_store::events::apply(c, ws, None, &viewed, &mut outcome)?;
            if dice.roll(3) == 0 {
                continue;
            }
            let cart = format!("demo-cart-{n}");
            let mut added = event("track", &mut n, Some(&user), &anon, at + 60_000);
            added.name = Some("Product Added".into());
            added.properties =
                props(json!({"cart_id": cart, "sku": sku, "name": title, "price": price, "quantity": 1}));
            sb_store::events::apply(c, ws, None, &added, &mut outcome)?;
            if dice.roll(2) == 0 {
                continue;
            }
            let mut checkout = event("track", &mut n, Some(&user), &anon, at + 180_000);
            checkout.name = Some("Checkout Started".into());
            checkout.properties = props(json!({"cart_id": cart, "value": price, "currency": "EUR"}));
            sb_store::events::apply(c, ws, None, &checkout, &mut outcome)?;
            let mut completed = event("track", &mut n, Some(&user), &anon, at + 300_000);
            completed.name = Some("Order Completed".into());
            completed.properties = props(json!({
                "order_id": format!("W-{n}"), "total": price, "revenue": price, "currency": "EUR",
                "products": [{"sku": sku, "name": title, "price": price, "quantity": 1}],
            }));
            sb_store::events::apply(c, ws, None, &completed, &mut outcome)?;
        }
        // Half of them opted in to marketing e-mail at sign-up; the proof is the form's text.
        if i % 2 == 0
            && let Some(customer) = sb_store::customers::find_identity_owner(c, ws, "user_id", "", &user)?
        {
            let change = sb_store::consents::Change {
                workspace_id: ws,
                customer_id: &customer,
                channel: "email",
                purpose: "marketing",
                granted: true,
                source: "signup_form",
                at: start + 9 * 60_000,
                proof: json!({"text_shown": "Send me offers and news from Demo Shop by e-mail", "ip": "203.0.113.7",
                               "event_id": identify.message_id}),
            };
            sb_store::consents::record(c, &change)?;
        }
    }
    Ok(outcome.stored)
}
