//! Identity resolution rules: which identifiers exist, how they are normalised, which values
//! are blocked, how many of a kind one profile may hold, and the plan for an incoming set of
//! identifiers (attach, merge, or drop the weakest one and try again), as Segment Unify does
//! (cdp-journeys.md §2.1 and (c)). Pure: the store looks identifiers up and applies the plan.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

const DAY_MS: i64 = 86_400_000;

/// One kind of identifier and the limits that keep profiles from gluing together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IdentifierRule {
    pub kind: &'static str,
    /// Scoped identifiers (a page-scoped id, a bot's user id) only mean something within the
    /// channel account that issued them; global ones (e-mail, phone, user id) everywhere.
    pub scoped: bool,
    /// How many distinct values of this kind one profile may hold (within `window_days`).
    pub limit: u32,
    /// Values older than this many days no longer count towards the limit.
    pub window_days: Option<u32>,
    /// 1 is strongest. When a plan would break a limit, the weakest incoming identifier is dropped.
    pub priority: u8,
}

impl IdentifierRule {
    fn window_ms(&self) -> Option<i64> {
        self.window_days.map(|d| i64::from(d) * DAY_MS)
    }
}

/// The identifier kinds, with Segment's defaults: a user id is one per profile for ever, an
/// e-mail or phone five a year, an anonymous id five a week.
pub const RULES: &[IdentifierRule] = &[
    rule("user_id", false, 1, None, 1),
    rule("email", false, 5, Some(365), 2),
    rule("phone", false, 5, Some(365), 3),
    rule("loyalty_id", false, 1, None, 4),
    rule("whatsapp_bsuid", true, 5, None, 5),
    rule("messenger_psid", true, 5, None, 6),
    rule("instagram_igsid", true, 5, None, 7),
    rule("telegram_user", true, 5, None, 8),
    rule("api", true, 5, None, 9),
    rule("device_id", false, 5, Some(365), 10),
    rule("visitor", true, 20, Some(7), 11),
    rule("anonymous_id", false, 5, Some(7), 12),
];

const fn rule(kind: &'static str, scoped: bool, limit: u32, window_days: Option<u32>, priority: u8) -> IdentifierRule {
    IdentifierRule {
        kind,
        scoped,
        limit,
        window_days,
        priority,
    }
}

pub fn rule_for(kind: &str) -> Option<&'static IdentifierRule> {
    RULES.iter().find(|r| r.kind == kind)
}

/// Values that real clients send when they have no id: they would glue strangers together.
/// Compared case-insensitively, after trimming (PostHog's and Segment's lists).
pub const BLOCKED: &[&str] = &[
    "null",
    "none",
    "nil",
    "undefined",
    "anonymous",
    "guest",
    "unknown",
    "id",
    "distinct_id",
    "distinctid",
    "user_id",
    "email",
    "not_authenticated",
    "true",
    "false",
    "nan",
    "[object object]",
    "-1",
    "test@test.com",
    "test@example.com",
];

/// A value nobody may own: blank, a placeholder, or only zeros and dashes (`^[0-]*$`).
pub fn is_blocked(value: &str) -> bool {
    let v = value.trim().trim_matches('"').trim();
    if v.is_empty() || v.chars().all(|c| c == '0' || c == '-') {
        return true;
    }
    let lower = v.to_lowercase();
    BLOCKED.contains(&lower.as_str())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("unknown identifier type `{0}`")]
    UnknownKind(String),
    #[error("`{0}` is not a valid value for {1}")]
    Invalid(String, &'static str),
    #[error("`{0}` is a blocked value for {1}")]
    Blocked(String, &'static str),
}

/// The stored form of a value of `kind`: e-mails lower-cased, phones in E.164, others trimmed.
pub fn normalise(kind: &str, raw: &str) -> Result<String, IdentifierError> {
    let rule = rule_for(kind).ok_or_else(|| IdentifierError::UnknownKind(kind.to_owned()))?;
    if is_blocked(raw) {
        return Err(IdentifierError::Blocked(raw.to_owned(), rule.kind));
    }
    let value = match kind {
        "email" => crate::inbox::normalise_email(raw),
        "phone" => crate::inbox::normalise_phone(raw),
        _ => Some(raw.trim().to_owned()).filter(|v| v.len() <= 255 && !v.chars().any(char::is_control)),
    };
    let value = value.ok_or_else(|| IdentifierError::Invalid(raw.to_owned(), rule.kind))?;
    if is_blocked(&value) {
        return Err(IdentifierError::Blocked(raw.to_owned(), rule.kind));
    }
    Ok(value)
}

/// One identifier: a kind, the scope it lives in ('' for global ones) and a normalised value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Identifier {
    pub kind: String,
    pub scope: String,
    pub value: String,
}

impl Identifier {
    pub fn new(kind: &str, scope: &str, value: &str) -> Self {
        Identifier {
            kind: kind.to_owned(),
            scope: scope.to_owned(),
            value: value.to_owned(),
        }
    }

    fn priority(&self) -> u8 {
        rule_for(&self.kind).map_or(u8::MAX, |r| r.priority)
    }
}

/// An identifier a profile holds, with when it was first seen (for windowed limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub identifier: Identifier,
    pub since: i64,
}

/// What the store found for an incoming set: who owns each identifier, and everything each
/// of those profiles holds.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub owners: BTreeMap<Identifier, String>,
    pub profiles: BTreeMap<String, Vec<Held>>,
}

/// What to do with an incoming set of identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The profile the event belongs to; `None`: create one.
    pub target: Option<String>,
    /// The incoming identifier that found the target.
    pub target_via: Option<Identifier>,
    /// Profiles to merge into the target, with the identifier that joins each to the rest.
    pub merge: Vec<(String, Identifier)>,
    /// Identifiers nobody holds yet, to attach to the target.
    pub attach: Vec<Identifier>,
    /// Incoming identifiers left out because keeping them would break a limit.
    pub dropped: Vec<Identifier>,
}

/// Plans the resolution of `incoming` (already normalised and unblocked), Segment's way:
/// look every identifier up; none known → a new profile; one profile → attach the rest;
/// several → merge them. Whenever the result would hold more values of a kind than its
/// limit allows (two user ids, say), the weakest incoming identifier is dropped and the
/// plan is made again. So an event with a new user id and a known e-mail starts a new
/// profile rather than merging into the e-mail's owner.
pub fn plan(incoming: &[Identifier], found: &Found, now: i64) -> Plan {
    let mut kept: Vec<Identifier> = incoming
        .iter()
        .filter(|i| rule_for(&i.kind).is_some())
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Strongest first; ties by the identifier itself so the plan does not depend on order.
    kept.sort_by(|a, b| a.priority().cmp(&b.priority()).then_with(|| a.cmp(b)));
    let mut dropped = Vec::new();
    loop {
        let mut profiles: Vec<(String, Identifier)> = Vec::new();
        for id in &kept {
            if let Some(owner) = found.owners.get(id)
                && !profiles.iter().any(|(p, _)| p == owner)
            {
                profiles.push((owner.clone(), id.clone()));
            }
        }
        let fresh: Vec<Identifier> = kept
            .iter()
            .filter(|i| !found.owners.contains_key(*i))
            .cloned()
            .collect();
        if within_limits(&profiles, &fresh, found, now) || kept.is_empty() {
            // A dropped identifier its owner still brings along (matched by a stronger one) is not dropped.
            dropped.retain(|d| {
                !found
                    .owners
                    .get(d)
                    .is_some_and(|o| profiles.iter().any(|(p, _)| p == o))
            });
            let mut profiles = profiles.into_iter();
            let (target, target_via) = profiles.next().unzip();
            return Plan {
                target,
                target_via,
                merge: profiles.collect(),
                attach: fresh,
                dropped,
            };
        }
        // The weakest incoming identifier goes, and the plan is made again.
        if let Some(weakest) = kept.pop() {
            dropped.push(weakest);
        }
    }
}

/// Whether the union of the profiles' identifiers and the fresh ones keeps every limit.
fn within_limits(profiles: &[(String, Identifier)], fresh: &[Identifier], found: &Found, now: i64) -> bool {
    let mut counts: BTreeMap<&str, BTreeSet<(&str, &str)>> = BTreeMap::new();
    for (profile, _) in profiles {
        for held in found.profiles.get(profile).map(Vec::as_slice).unwrap_or_default() {
            let Some(rule) = rule_for(&held.identifier.kind) else {
                continue;
            };
            if rule.window_ms().is_some_and(|w| held.since < now - w) {
                continue;
            }
            counts
                .entry(rule.kind)
                .or_default()
                .insert((&held.identifier.scope, &held.identifier.value));
        }
    }
    for id in fresh {
        if let Some(rule) = rule_for(&id.kind) {
            counts.entry(rule.kind).or_default().insert((&id.scope, &id.value));
        }
    }
    counts
        .iter()
        .all(|(kind, values)| rule_for(kind).is_none_or(|r| values.len() <= r.limit as usize))
}

/// Whether two profiles holding these identifiers may become one: an agent's merge is
/// refused when the result would hold two values of a kind limited to one (two user ids).
pub fn conflicting_kind(a: &[Identifier], b: &[Identifier]) -> Option<&'static str> {
    RULES
        .iter()
        .filter(|r| r.limit == 1 && r.window_days.is_none())
        .find_map(|r| {
            let values: BTreeSet<(&str, &str)> = a
                .iter()
                .chain(b)
                .filter(|i| i.kind == r.kind)
                .map(|i| (i.scope.as_str(), i.value.as_str()))
                .collect();
            (values.len() > 1).then_some(r.kind)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(kind: &str, value: &str) -> Identifier {
        Identifier::new(kind, "", value)
    }

    fn held(kind: &str, value: &str) -> Held {
        Held {
            identifier: id(kind, value),
            since: 0,
        }
    }

    #[test]
    fn blocked_values_are_the_usual_placeholders() {
        for v in [
            "",
            " ",
            "null",
            "NULL",
            "undefined",
            "0",
            "000-000",
            "-1",
            "anonymous",
            "\"null\"",
        ] {
            assert!(is_blocked(v), "{v:?} should be blocked");
        }
        for v in ["u-1", "ana@example.com", "+34600111222", "10"] {
            assert!(!is_blocked(v), "{v:?} should be allowed");
        }
        assert!(matches!(
            normalise("user_id", "null"),
            Err(IdentifierError::Blocked(..))
        ));
        assert!(matches!(normalise("phone", "600"), Err(IdentifierError::Invalid(..))));
        assert!(matches!(
            normalise("shoe_size", "42"),
            Err(IdentifierError::UnknownKind(_))
        ));
        assert_eq!(normalise("email", " Ana@Example.COM ").unwrap(), "ana@example.com");
    }

    #[test]
    fn a_new_user_id_with_a_known_email_starts_a_new_profile() {
        let mut found = Found::default();
        found.owners.insert(id("email", "a@x.io"), "p1".into());
        found
            .profiles
            .insert("p1".into(), vec![held("user_id", "u1"), held("email", "a@x.io")]);
        let p = plan(&[id("user_id", "u2"), id("email", "a@x.io")], &found, 10);
        assert_eq!(p.target, None);
        assert_eq!(p.attach, vec![id("user_id", "u2")]);
        assert_eq!(p.dropped, vec![id("email", "a@x.io")]);
    }

    #[test]
    fn a_shared_email_merges_an_anonymous_profile_into_the_known_one() {
        let mut found = Found::default();
        found.owners.insert(id("email", "a@x.io"), "known".into());
        found.owners.insert(id("anonymous_id", "anon-1"), "anon".into());
        found.profiles.insert("known".into(), vec![held("email", "a@x.io")]);
        found
            .profiles
            .insert("anon".into(), vec![held("anonymous_id", "anon-1")]);
        let p = plan(&[id("anonymous_id", "anon-1"), id("email", "a@x.io")], &found, 10);
        assert_eq!(p.target.as_deref(), Some("known"));
        assert_eq!(p.merge, vec![("anon".to_owned(), id("anonymous_id", "anon-1"))]);
        assert!(p.attach.is_empty() && p.dropped.is_empty());
    }

    #[test]
    fn windowed_limits_forget_old_values() {
        let mut found = Found::default();
        let mut mine = Vec::new();
        for n in 0..5 {
            let anon = id("anonymous_id", &format!("a{n}"));
            found.owners.insert(anon.clone(), "p".into());
            mine.push(Held {
                identifier: anon,
                since: 0,
            });
        }
        found.profiles.insert("p".into(), mine);
        let incoming = [id("anonymous_id", "a0"), id("anonymous_id", "a9")];
        // Within the week a sixth anonymous id is too many; a month later the old ones no longer count.
        assert_eq!(plan(&incoming, &found, DAY_MS).dropped.len(), 1);
        assert!(plan(&incoming, &found, 30 * DAY_MS).dropped.is_empty());
    }

    const KINDS: [&str; 4] = ["user_id", "email", "anonymous_id", "loyalty_id"];

    fn arb_identifier() -> impl Strategy<Value = Identifier> {
        (0..KINDS.len(), 0..4u8).prop_map(|(k, v)| id(KINDS[k], &format!("v{v}")))
    }

    /// A world of profiles that each keep the limits, and who owns what.
    fn arb_found() -> impl Strategy<Value = Found> {
        prop::collection::vec(prop::collection::vec(arb_identifier(), 0..4), 0..4).prop_map(|profiles| {
            let mut found = Found::default();
            for (n, ids) in profiles.into_iter().enumerate() {
                let name = format!("p{n}");
                let mut mine: Vec<Held> = Vec::new();
                for i in ids {
                    let candidate: Vec<Identifier> =
                        mine.iter().map(|h| h.identifier.clone()).chain([i.clone()]).collect();
                    let fits = !found.owners.contains_key(&i)
                        && within_limits(
                            &[],
                            &candidate
                                .iter()
                                .cloned()
                                .collect::<BTreeSet<_>>()
                                .into_iter()
                                .collect::<Vec<_>>(),
                            &found,
                            0,
                        );
                    if fits {
                        found.owners.insert(i.clone(), name.clone());
                        mine.push(Held {
                            identifier: i,
                            since: 0,
                        });
                    }
                }
                found.profiles.insert(name, mine);
            }
            found
        })
    }

    proptest! {
        /// Invariant: a plan never makes a profile break a limit (so never joins two user
        /// ids), and every incoming identifier is accounted for exactly once: held by the
        /// target, held by a profile merged into it, attached, or dropped.
        #[test]
        fn plans_keep_limits_and_lose_no_identifier(found in arb_found(), incoming in prop::collection::vec(arb_identifier(), 0..6)) {
            let p = plan(&incoming, &found, 0);
            let members: Vec<String> = p.target.iter().cloned().chain(p.merge.iter().map(|(m, _)| m.clone())).collect();
            let mut union: Vec<Identifier> = members.iter().flat_map(|m| found.profiles[m].iter().map(|h| h.identifier.clone())).collect();
            union.extend(p.attach.iter().cloned());
            let set: BTreeSet<Identifier> = union.iter().cloned().collect();
            prop_assert_eq!(set.len(), union.len(), "an identifier would be held twice");
            for r in RULES {
                prop_assert!(union.iter().filter(|i| i.kind == r.kind).count() <= r.limit as usize, "{} over its limit", r.kind);
            }
            let distinct: BTreeSet<Identifier> = incoming.iter().cloned().collect();
            for i in &distinct {
                let placed = usize::from(set.contains(i)) + p.dropped.iter().filter(|d| *d == i).count();
                prop_assert_eq!(placed, 1, "{:?} not placed exactly once", i);
                if let Some(owner) = found.owners.get(i) && !p.dropped.contains(i) {
                    prop_assert!(members.contains(owner), "{:?}'s owner left out", i);
                }
            }
            for a in &p.attach {
                prop_assert!(!found.owners.contains_key(a));
            }
        }

        /// The plan does not depend on the order identifiers arrive in.
        #[test]
        fn plans_ignore_arrival_order(found in arb_found(), incoming in prop::collection::vec(arb_identifier(), 0..6)) {
            let mut reversed = incoming.clone();
            reversed.reverse();
            prop_assert_eq!(plan(&incoming, &found, 0), plan(&reversed, &found, 0));
        }
    }
}
