//! Order routing without IO (commerce.md §8.5): which locations send an order's units.
//!
//! One location that covers the whole demand is always preferred (one shipment); when none
//! can, the fewest locations are chosen by greedy set cover — each round takes the location
//! that covers the most of what is still missing — and a line's units may be split across
//! locations. Ties follow the candidates' order (the caller sorts them: rank, distance to
//! the destination, code), so the plan is deterministic.

use std::collections::BTreeMap;

/// A location that could send units, with what it can spare of each item.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub stock: BTreeMap<String, i64>,
}

/// One shipment: a candidate (by its index in the list given) and the units it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub candidate: usize,
    pub items: BTreeMap<String, i64>,
}

fn spare(c: &Candidate, item: &str) -> i64 {
    c.stock.get(item).copied().unwrap_or(0).max(0)
}

/// The first candidate (in the caller's order) that covers the whole demand.
pub fn single(demand: &BTreeMap<String, i64>, candidates: &[Candidate]) -> Option<usize> {
    candidates
        .iter()
        .position(|c| demand.iter().all(|(item, wanted)| spare(c, item) >= *wanted))
}

/// The fewest shipments that together cover `demand` exactly, or `None` when all the
/// candidates together cannot. A single covering location always wins.
pub fn plan(demand: &BTreeMap<String, i64>, candidates: &[Candidate]) -> Option<Vec<Part>> {
    let demand: BTreeMap<String, i64> = demand
        .iter()
        .filter(|(_, q)| **q > 0)
        .map(|(i, q)| (i.clone(), *q))
        .collect();
    if demand.is_empty() {
        return Some(Vec::new());
    }
    if let Some(one) = single(&demand, candidates) {
        return Some(vec![Part {
            candidate: one,
            items: demand,
        }]);
    }
    let mut missing = demand;
    let mut used = vec![false; candidates.len()];
    let mut parts = Vec::new();
    while !missing.is_empty() {
        // The unused location covering the most missing units; the earliest on a tie.
        let mut best: Option<(usize, i64)> = None;
        for (i, c) in candidates.iter().enumerate() {
            if used[i] {
                continue;
            }
            let covered: i64 = missing.iter().map(|(item, q)| spare(c, item).min(*q)).sum();
            if covered > 0 && best.is_none_or(|(_, b)| covered > b) {
                best = Some((i, covered));
            }
        }
        let (i, _) = best?;
        used[i] = true;
        let mut items = BTreeMap::new();
        for (item, q) in missing.iter_mut() {
            let take = spare(&candidates[i], item).min(*q);
            if take > 0 {
                items.insert(item.clone(), take);
                *q -= take;
            }
        }
        missing.retain(|_, q| *q > 0);
        parts.push(Part { candidate: i, items });
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn candidate(id: &str, stock: &[(&str, i64)]) -> Candidate {
        Candidate {
            id: id.into(),
            stock: stock.iter().map(|(i, q)| ((*i).to_owned(), *q)).collect(),
        }
    }

    fn want(d: &[(&str, i64)]) -> BTreeMap<String, i64> {
        d.iter().map(|(i, q)| ((*i).to_owned(), *q)).collect()
    }

    #[test]
    fn one_location_with_everything_is_one_shipment() {
        let cs = [candidate("a", &[("x", 1)]), candidate("b", &[("x", 2), ("y", 1)])];
        let p = plan(&want(&[("x", 2), ("y", 1)]), &cs).expect("plan");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].candidate, 1);
    }

    #[test]
    fn two_locations_each_with_one_sku_split_in_two() {
        let cs = [candidate("a", &[("x", 5)]), candidate("b", &[("y", 5)])];
        let p = plan(&want(&[("x", 1), ("y", 1)]), &cs).expect("plan");
        assert_eq!(p.len(), 2);
        assert_eq!(plan(&want(&[("x", 6)]), &cs), None);
    }

    #[test]
    fn a_line_can_be_split_and_ties_follow_the_callers_order() {
        let cs = [
            candidate("near", &[("x", 2)]),
            candidate("far", &[("x", 2)]),
            candidate("z", &[("x", 1)]),
        ];
        let p = plan(&want(&[("x", 3)]), &cs).expect("plan");
        assert_eq!(p.iter().map(|p| p.candidate).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(p[0].items["x"] + p[1].items["x"], 3);
    }

    /// The fewest locations whose stock together covers the demand (brute force).
    fn optimum(demand: &BTreeMap<String, i64>, cs: &[Candidate]) -> Option<usize> {
        let n = cs.len();
        (0u32..(1 << n))
            .filter(|mask| {
                demand.iter().all(|(item, q)| {
                    (0..n)
                        .filter(|i| mask & (1 << i) != 0)
                        .map(|i| spare(&cs[i], item))
                        .sum::<i64>()
                        >= *q
                })
            })
            .map(|mask| mask.count_ones() as usize)
            .min()
    }

    fn instance() -> impl Strategy<Value = (BTreeMap<String, i64>, Vec<Candidate>)> {
        let items = ["a", "b", "c", "d"];
        let demand = proptest::collection::vec(0i64..5, items.len());
        let stocks = proptest::collection::vec(proptest::collection::vec(0i64..5, items.len()), 1..6);
        (demand, stocks).prop_map(move |(d, s)| {
            let demand = items
                .iter()
                .zip(d)
                .filter(|(_, q)| *q > 0)
                .map(|(i, q)| ((*i).to_owned(), q))
                .collect();
            let candidates = s
                .into_iter()
                .enumerate()
                .map(|(n, row)| Candidate {
                    id: format!("loc{n}"),
                    stock: items.iter().zip(row).map(|(i, q)| ((*i).to_owned(), q)).collect(),
                })
                .collect();
            (demand, candidates)
        })
    }

    proptest! {
        /// The plan covers the demand exactly, takes no more than a location has, uses each
        /// location once, is one shipment when one location can send everything, and is
        /// within the greedy set-cover bound of the optimum (found by brute force).
        #[test]
        fn plans_cover_exactly_within_stock_and_near_the_fewest_shipments((demand, cs) in instance()) {
            let best = optimum(&demand, &cs);
            let Some(parts) = plan(&demand, &cs) else {
                prop_assert!(best.is_none(), "a plan exists ({best:?}) but none was found");
                return Ok(());
            };
            let mut covered: BTreeMap<String, i64> = BTreeMap::new();
            let mut seen = std::collections::BTreeSet::new();
            for part in &parts {
                prop_assert!(seen.insert(part.candidate), "a location used twice");
                prop_assert!(!part.items.is_empty());
                for (item, q) in &part.items {
                    prop_assert!(*q > 0);
                    prop_assert!(*q <= spare(&cs[part.candidate], item), "more than the location has");
                    *covered.entry(item.clone()).or_default() += q;
                }
            }
            prop_assert_eq!(&covered, &demand);
            let best = best.expect("a plan was found, so one exists");
            if best <= 1 {
                prop_assert_eq!(parts.len(), best);
            }
            let units: i64 = demand.values().sum();
            let bound = (best as f64) * ((units.max(1) as f64).ln() + 1.0);
            prop_assert!(parts.len() >= best);
            prop_assert!((parts.len() as f64) <= bound, "{} shipments, optimum {best}", parts.len());
        }
    }
}
