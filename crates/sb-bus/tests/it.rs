//! Contract tests: both backends must pass the same `behaves_like_a_bus`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sb_bus::{
    Bus, BusError, Event, InProcessBus, NatsBus, Subscription, subject_matches, validate_filter, validate_subject,
};
use tokio::time::timeout;

/// Upper bound for any single wait, so a broken backend fails instead of hanging.
const WAIT: Duration = Duration::from_secs(5);

/// A subject prefix unique to this process and call, so parallel test runs
/// sharing one NATS server never see each other's events.
fn unique_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("sbtest.p{}.t{nanos}.n{n}", std::process::id())
}

/// Receives events until one carries `fence`, returning the payloads before it.
/// Events arrive in publish order, so anything wrongly delivered shows up here.
async fn payloads_until(sub: &mut Subscription, fence: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let event: Event = timeout(WAIT, sub.next())
            .await
            .expect("timed out waiting for an event")
            .expect("subscription ended early");
        let payload = String::from_utf8_lossy(&event.payload).into_owned();
        if payload == fence {
            return seen;
        }
        seen.push(format!("{}={payload}", event.subject));
    }
}

/// The contract every backend must meet.
async fn behaves_like_a_bus(bus: &dyn Bus) {
    assert!(matches!(bus.name(), "in-process" | "nats"));
    let p = unique_prefix();

    // Nobody listening is fine for fire-and-forget notifications.
    bus.publish(&format!("{p}.nobody"), Bytes::from_static(b"x"))
        .await
        .expect("publish without subscribers");

    // Bad subjects and filters are rejected the same way by every backend.
    for bad in ["", "a..b", "a b", "a.*", "a.>", "a.b*"] {
        let err = bus.publish(bad, Bytes::new()).await.unwrap_err();
        assert!(matches!(err, BusError::InvalidSubject(_)), "publish {bad:?}: {err}");
    }
    for bad in ["", "a.>.b", "a.b*", "a..b"] {
        let err = bus.subscribe(bad).await.unwrap_err();
        assert!(matches!(err, BusError::InvalidSubject(_)), "subscribe {bad:?}: {err}");
    }

    let mut exact = bus.subscribe(&format!("{p}.conv.1.updated")).await.unwrap();
    let mut exact_twin = bus.subscribe(&format!("{p}.conv.1.updated")).await.unwrap();
    let mut one_token = bus.subscribe(&format!("{p}.conv.*.updated")).await.unwrap();
    let mut tail = bus.subscribe(&format!("{p}.conv.>")).await.unwrap();
    let mut presence = bus.subscribe(&format!("{p}.presence.>")).await.unwrap();
    // A dropped subscription must not disturb publishers or other subscribers.
    drop(bus.subscribe(&format!("{p}.>")).await.unwrap());

    for (subject, payload) in [
        (format!("{p}.conv.1.updated"), "a"),
        (format!("{p}.conv.2.updated"), "b"),
        (format!("{p}.conv.2.typing.u1"), "c"),
        (format!("{p}.conv"), "not-for-tail"),
        (format!("{p}.other.1.updated"), "not-for-anyone"),
        // Fences: one per subscription, published last.
        (format!("{p}.conv.1.updated"), "fence"),
        (format!("{p}.presence.u1"), "fence"),
    ] {
        bus.publish(&subject, Bytes::from(payload)).await.unwrap();
    }

    let u1 = format!("{p}.conv.1.updated=a");
    let u2 = format!("{p}.conv.2.updated=b");
    let typing = format!("{p}.conv.2.typing.u1=c");
    assert_eq!(payloads_until(&mut exact, "fence").await, std::slice::from_ref(&u1));
    assert_eq!(
        payloads_until(&mut exact_twin, "fence").await,
        std::slice::from_ref(&u1)
    );
    assert_eq!(payloads_until(&mut one_token, "fence").await, [u1.clone(), u2.clone()]);
    assert_eq!(payloads_until(&mut tail, "fence").await, [u1, u2, typing]);
    assert_eq!(payloads_until(&mut presence, "fence").await, Vec::<String>::new());
}

#[test]
fn subject_wildcards_match_like_nats() {
    let matching = [
        ("a", "a"),
        ("a.b.c", "a.b.c"),
        ("a.*", "a.b"),
        ("*.b", "a.b"),
        ("a.*.c", "a.b.c"),
        ("*.*", "a.b"),
        ("a.>", "a.b"),
        ("a.>", "a.b.c.d"),
        (">", "a"),
        (">", "a.b.c"),
        ("a.*.>", "a.b.c"),
    ];
    for (filter, subject) in matching {
        assert!(subject_matches(filter, subject), "{filter} should match {subject}");
    }

    let not_matching = [
        ("a", "b"),
        ("a", "a.b"),
        ("a.b", "a"),
        // '*' is exactly one token: not zero, not two.
        ("a.*", "a"),
        ("a.*", "a.b.c"),
        ("a.*.c", "a.c"),
        // '>' needs at least one token.
        ("a.>", "a"),
        ("a.*.>", "a.b"),
        // Wildcards inside a longer token are literal.
        ("a.b*", "a.bc"),
        ("a.>x", "a.b"),
        // '>' is only a wildcard as the last token.
        ("a.>.c", "a.b.c"),
        ("", ""),
        ("a", ""),
        ("", "a"),
    ];
    for (filter, subject) in not_matching {
        assert!(!subject_matches(filter, subject), "{filter} should not match {subject}");
    }

    for ok in ["a", "a.b", "conv.123.updated", "a-b_c.d"] {
        assert!(validate_subject(ok).is_ok(), "{ok}");
        assert!(validate_filter(ok).is_ok(), "{ok}");
    }
    for wildcard in ["*", ">", "a.*", "a.>", "*.b.>"] {
        assert!(validate_subject(wildcard).is_err(), "publish {wildcard}");
        assert!(validate_filter(wildcard).is_ok(), "subscribe {wildcard}");
    }
    for bad in ["", ".", "a.", ".a", "a..b", "a b", "a\tb", "a.b*", "a.>.b", "a.*b"] {
        assert!(validate_subject(bad).is_err(), "publish {bad:?}");
        assert!(validate_filter(bad).is_err(), "subscribe {bad:?}");
    }
}

#[tokio::test]
async fn in_process_bus_delivers_to_matching_subscribers_only() {
    behaves_like_a_bus(&InProcessBus::new()).await;
}

#[tokio::test]
async fn in_process_bus_survives_a_lagging_subscriber() {
    // Tiny buffer so the subscriber lags; it must skip, warn and keep going.
    let bus = InProcessBus::with_capacity(4);
    let mut sub = bus.subscribe("lag.>").await.unwrap();
    for i in 0..1_000 {
        bus.publish("lag.burst", Bytes::from(i.to_string())).await.unwrap();
    }
    bus.publish("lag.end", Bytes::from_static(b"end")).await.unwrap();
    let skipped_some = payloads_until(&mut sub, "end").await.len() < 1_000;
    assert!(skipped_some, "expected the tiny buffer to drop events");
}

#[tokio::test]
async fn in_process_subscription_ends_when_bus_is_dropped() {
    let bus = InProcessBus::new();
    let mut sub = bus.subscribe("x.>").await.unwrap();
    drop(bus);
    let next = timeout(WAIT, sub.next()).await.expect("timed out");
    assert!(next.is_none());
}

#[tokio::test]
async fn nats_bus_delivers_to_matching_subscribers_only() {
    let Ok(url) = std::env::var("SWITCHBOARD_TEST_NATS_URL") else {
        println!("NATS half skipped: SWITCHBOARD_TEST_NATS_URL is not set");
        return;
    };
    let bus = NatsBus::connect(&url).await.expect("connect to test NATS server");
    behaves_like_a_bus(&bus).await;
}

#[tokio::test]
async fn nats_connect_to_unreachable_server_fails_fast_with_unavailable() {
    let url = "nats://127.0.0.1:1";
    let started = Instant::now();
    let result = timeout(Duration::from_secs(10), NatsBus::connect(url))
        .await
        .expect("connect did not give up within 10s");
    let Err(err) = result else {
        panic!("connect to {url} unexpectedly succeeded");
    };
    assert!(matches!(err, BusError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains(url), "error should name the URL: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}
