//! Inventory rules with no IO (commerce.md §8): quantity buckets per (item, location), what
//! each operation does to them, and the invariants every balance keeps.
//!
//! `on_hand = available + committed + reserved + damaged + quality_control + safety_stock`;
//! `available` is derived, never stored, and never negative. `incoming` (in transit to the
//! location) is not on hand.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    OnHand,
    Committed,
    Reserved,
    Damaged,
    QualityControl,
    SafetyStock,
    Incoming,
}

impl Bucket {
    pub const ALL: [Bucket; 7] = [
        Bucket::OnHand,
        Bucket::Committed,
        Bucket::Reserved,
        Bucket::Damaged,
        Bucket::QualityControl,
        Bucket::SafetyStock,
        Bucket::Incoming,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::OnHand => "on_hand",
            Bucket::Committed => "committed",
            Bucket::Reserved => "reserved",
            Bucket::Damaged => "damaged",
            Bucket::QualityControl => "quality_control",
            Bucket::SafetyStock => "safety_stock",
            Bucket::Incoming => "incoming",
        }
    }

    pub fn parse(s: &str) -> Option<Bucket> {
        Bucket::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

/// The buckets of one (item, location).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub on_hand: i64,
    pub committed: i64,
    pub reserved: i64,
    pub damaged: i64,
    pub quality_control: i64,
    pub safety_stock: i64,
    pub incoming: i64,
}

impl Balance {
    /// What can still be promised to a customer.
    pub fn available(&self) -> i64 {
        self.on_hand - self.committed - self.reserved - self.damaged - self.quality_control - self.safety_stock
    }

    pub fn get(&self, bucket: Bucket) -> i64 {
        match bucket {
            Bucket::OnHand => self.on_hand,
            Bucket::Committed => self.committed,
            Bucket::Reserved => self.reserved,
            Bucket::Damaged => self.damaged,
            Bucket::QualityControl => self.quality_control,
            Bucket::SafetyStock => self.safety_stock,
            Bucket::Incoming => self.incoming,
        }
    }

    fn slot(&mut self, bucket: Bucket) -> &mut i64 {
        match bucket {
            Bucket::OnHand => &mut self.on_hand,
            Bucket::Committed => &mut self.committed,
            Bucket::Reserved => &mut self.reserved,
            Bucket::Damaged => &mut self.damaged,
            Bucket::QualityControl => &mut self.quality_control,
            Bucket::SafetyStock => &mut self.safety_stock,
            Bucket::Incoming => &mut self.incoming,
        }
    }

    /// The balance after `deltas`, or `None` when it would break an invariant (a negative
    /// bucket, or less than nothing available).
    pub fn after(&self, deltas: &Deltas) -> Option<Balance> {
        let next = self.plus(deltas);
        next.holds().then_some(next)
    }

    /// The balance with `deltas` added, whether or not it holds (for replaying a ledger).
    pub fn plus(&self, deltas: &Deltas) -> Balance {
        let mut next = *self;
        for (bucket, delta) in deltas.iter() {
            *next.slot(bucket) += delta;
        }
        next
    }

    /// Invariants 1–2 of commerce.md §8.4: every bucket ≥ 0 and `available` ≥ 0.
    pub fn holds(&self) -> bool {
        Bucket::ALL.into_iter().all(|b| self.get(b) >= 0) && self.available() >= 0
    }
}

/// Changes to the buckets of one (item, location), summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deltas([i64; 7]);

impl Deltas {
    pub fn add(&mut self, bucket: Bucket, delta: i64) {
        self.0[bucket as usize] += delta;
    }

    pub fn with(mut self, bucket: Bucket, delta: i64) -> Deltas {
        self.add(bucket, delta);
        self
    }

    pub fn get(&self, bucket: Bucket) -> i64 {
        self.0[bucket as usize]
    }

    /// The non-zero changes, in bucket order.
    pub fn iter(&self) -> impl Iterator<Item = (Bucket, i64)> + '_ {
        Bucket::ALL
            .into_iter()
            .map(|b| (b, self.get(b)))
            .filter(|(_, d)| *d != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|d| *d == 0)
    }
}

/// What happens to stock at one location, and the buckets it moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Movement {
    /// Goods arrive (a delivery, a transfer received): on hand.
    Receive { quantity: i64 },
    /// A correction: on hand changes by `delta` (either sign).
    Adjust { delta: i64 },
    /// A physical count: `counted` units found on the shelf where the system had `expected`
    /// on hand. Applies only while on hand is still `expected` (compare-and-set, as Shopify's
    /// `compareQuantity`): a sale or delivery since the count began makes it stale, and the
    /// counter counts again rather than overwrite a movement they did not see.
    Count { counted: i64, expected: i64 },
    /// Sellable units set aside as damaged or for quality control (still on hand).
    SetAside { bucket: Bucket, quantity: i64 },
    /// Units set aside come back as sellable, or leave (written off).
    Resolve {
        bucket: Bucket,
        quantity: i64,
        write_off: bool,
    },
    /// Stock kept back from sale at this location.
    SafetyStock { delta: i64 },
    /// A hold during checkout.
    Reserve { quantity: i64 },
    /// A hold ends unused (released or expired).
    Unreserve { quantity: i64 },
    /// A hold becomes a commitment to an order.
    Commit { quantity: i64 },
    /// An order takes stock without a hold first.
    CommitDirect { quantity: i64 },
    /// A commitment is cancelled: the units are sellable again.
    Uncommit { quantity: i64 },
    /// A committed unit leaves the building (shipped, handed over).
    Fulfil { quantity: i64 },
    /// A returned unit is received here, into `bucket` (`on_hand` = restocked).
    ReturnIn { bucket: Bucket, quantity: i64 },
    /// Units leave for another location (they become `incoming` there).
    TransferOut { quantity: i64 },
    /// Units announced as on their way here.
    Expect { quantity: i64 },
    /// Units on their way arrive (`received`) or are lost (`lost`).
    TransferIn { received: i64, lost: i64 },
    /// Units announced as on their way here will not come (the transfer was cancelled and
    /// they go back to where they were sent from).
    Unexpect { quantity: i64 },
}

impl Movement {
    /// The on-hand quantity this movement was decided on, when it only applies to that
    /// (a count).
    pub fn expected_on_hand(&self) -> Option<i64> {
        match *self {
            Movement::Count { expected, .. } => Some(expected),
            _ => None,
        }
    }

    /// The bucket changes, or why the request itself is invalid.
    pub fn deltas(&self) -> Result<Deltas, &'static str> {
        use Bucket::*;
        let positive = |q: i64| {
            if (1..=MAX_MOVEMENT).contains(&q) {
                Ok(q)
            } else {
                Err("quantity must be between 1 and 1,000,000,000")
            }
        };
        let bounded = |q: i64| (-MAX_MOVEMENT..=MAX_MOVEMENT).contains(&q);
        match *self {
            Movement::Adjust { delta } | Movement::SafetyStock { delta } if !bounded(delta) => {
                return Err("delta must be between −1,000,000,000 and 1,000,000,000");
            }
            Movement::Count { counted, expected } if !bounded(counted) || !bounded(expected) => {
                return Err("counted and expected must be at most 1,000,000,000");
            }
            Movement::TransferIn { received, lost } if !bounded(received) || !bounded(lost) => {
                return Err("received and lost must be at most 1,000,000,000");
            }
            _ => {}
        }
        let d = Deltas::default();
        Ok(match *self {
            Movement::Receive { quantity } => d.with(OnHand, positive(quantity)?),
            Movement::Adjust { delta } if delta != 0 => d.with(OnHand, delta),
            Movement::Adjust { .. } => return Err("delta must not be zero"),
            Movement::Count { counted, expected } if counted >= 0 && expected >= 0 => {
                d.with(OnHand, counted - expected)
            }
            Movement::Count { .. } => return Err("counted and expected must be ≥ 0"),
            Movement::SetAside { bucket, quantity } => match bucket {
                Damaged | QualityControl => d.with(bucket, positive(quantity)?),
                _ => return Err("units can be set aside as damaged or quality_control only"),
            },
            Movement::Resolve {
                bucket,
                quantity,
                write_off,
            } => match bucket {
                Damaged | QualityControl => {
                    let q = positive(quantity)?;
                    let d = d.with(bucket, -q);
                    if write_off { d.with(OnHand, -q) } else { d }
                }
                _ => return Err("only damaged or quality_control units can be resolved"),
            },
            Movement::SafetyStock { delta } if delta != 0 => d.with(SafetyStock, delta),
            Movement::SafetyStock { .. } => return Err("delta must not be zero"),
            Movement::Reserve { quantity } => d.with(Reserved, positive(quantity)?),
            Movement::Unreserve { quantity } => d.with(Reserved, -positive(quantity)?),
            Movement::Commit { quantity } => {
                let q = positive(quantity)?;
                d.with(Reserved, -q).with(Committed, q)
            }
            Movement::CommitDirect { quantity } => d.with(Committed, positive(quantity)?),
            Movement::Uncommit { quantity } => d.with(Committed, -positive(quantity)?),
            Movement::Fulfil { quantity } => {
                let q = positive(quantity)?;
                d.with(Committed, -q).with(OnHand, -q)
            }
            Movement::ReturnIn { bucket, quantity } => {
                let q = positive(quantity)?;
                match bucket {
                    OnHand => d.with(OnHand, q),
                    Damaged | QualityControl => d.with(OnHand, q).with(bucket, q),
                    _ => return Err("a return goes to on_hand, damaged or quality_control"),
                }
            }
            Movement::TransferOut { quantity } => d.with(OnHand, -positive(quantity)?),
            Movement::Expect { quantity } => d.with(Incoming, positive(quantity)?),
            Movement::TransferIn { received, lost } => {
                if received < 0 || lost < 0 || received + lost == 0 {
                    return Err("received and lost must be ≥ 0 and not both zero");
                }
                d.with(Incoming, -(received + lost)).with(OnHand, received)
            }
            Movement::Unexpect { quantity } => d.with(Incoming, -positive(quantity)?),
        })
    }
}

/// The most units one movement may move (a count may state). Balances are sums of movements,
/// so with this bound no balance comes near the 64-bit limit.
pub const MAX_MOVEMENT: i64 = 1_000_000_000;

/// The most units of one variant a cart line, order line or return line may hold.
pub const MAX_LINE_QUANTITY: i64 = 100_000;

/// The highest unit price in minor units (a thousand million in major units). With
/// `MAX_LINE_QUANTITY` a line total stays below 10^17, and order totals are summed checked.
pub const MAX_PRICE_MINOR: i64 = 100_000_000_000;

/// What a shopper is told about a location's stock: a level, not a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StockLevel {
    InStock,
    Low,
    OutOfStock,
}

pub fn level(available: i64, low_at: i64) -> StockLevel {
    match available {
        a if a <= 0 => StockLevel::OutOfStock,
        a if a <= low_at => StockLevel::Low,
        _ => StockLevel::InStock,
    }
}

/// Great-circle distance in kilometres (haversine), for "the branch nearest to me".
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lng1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lng2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * ((lng2 - lng1) / 2.0).sin().powi(2);
    2.0 * 6_371.0 * h.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn available_is_derived_and_never_negative() {
        let b = Balance {
            on_hand: 10,
            committed: 2,
            reserved: 3,
            damaged: 1,
            safety_stock: 1,
            ..Balance::default()
        };
        assert_eq!(b.available(), 3);
        assert!(b.after(&Movement::Reserve { quantity: 3 }.deltas().unwrap()).is_some());
        assert!(b.after(&Movement::Reserve { quantity: 4 }.deltas().unwrap()).is_none());
        // Fulfilling more than is committed is refused even with stock on hand.
        assert!(b.after(&Movement::Fulfil { quantity: 3 }.deltas().unwrap()).is_none());
    }

    #[test]
    fn movements_move_the_right_buckets() {
        let b = Balance {
            on_hand: 5,
            ..Balance::default()
        };
        let b = b.after(&Movement::Reserve { quantity: 2 }.deltas().unwrap()).unwrap();
        let b = b.after(&Movement::Commit { quantity: 2 }.deltas().unwrap()).unwrap();
        assert_eq!((b.reserved, b.committed, b.available()), (0, 2, 3));
        let b = b.after(&Movement::Fulfil { quantity: 2 }.deltas().unwrap()).unwrap();
        assert_eq!((b.on_hand, b.committed, b.available()), (3, 0, 3));
        let b = b
            .after(
                &Movement::ReturnIn {
                    bucket: Bucket::Damaged,
                    quantity: 1,
                }
                .deltas()
                .unwrap(),
            )
            .unwrap();
        assert_eq!((b.on_hand, b.damaged, b.available()), (4, 1, 3));
        assert!(Movement::Receive { quantity: 0 }.deltas().is_err());
        assert!(
            Movement::SetAside {
                bucket: Bucket::Reserved,
                quantity: 1
            }
            .deltas()
            .is_err()
        );
    }

    #[test]
    fn distances_and_levels() {
        // Madrid → Barcelona is about 505 km.
        let d = distance_km((40.4168, -3.7038), (41.3874, 2.1686));
        assert!((d - 505.0).abs() < 5.0, "{d}");
        assert_eq!(level(0, 3), StockLevel::OutOfStock);
        assert_eq!(level(2, 3), StockLevel::Low);
        assert_eq!(level(9, 3), StockLevel::InStock);
    }

    fn movement() -> impl Strategy<Value = Movement> {
        let q = 1i64..6;
        prop_oneof![
            q.clone().prop_map(|quantity| Movement::Receive { quantity }),
            (-5i64..6)
                .prop_filter("non-zero", |d| *d != 0)
                .prop_map(|delta| Movement::Adjust { delta }),
            q.clone().prop_map(|quantity| Movement::Reserve { quantity }),
            q.clone().prop_map(|quantity| Movement::Unreserve { quantity }),
            q.clone().prop_map(|quantity| Movement::Commit { quantity }),
            q.clone().prop_map(|quantity| Movement::CommitDirect { quantity }),
            q.clone().prop_map(|quantity| Movement::Uncommit { quantity }),
            q.clone().prop_map(|quantity| Movement::Fulfil { quantity }),
            q.clone().prop_map(|quantity| Movement::SetAside {
                bucket: Bucket::Damaged,
                quantity
            }),
            q.clone().prop_map(|quantity| Movement::ReturnIn {
                bucket: Bucket::OnHand,
                quantity
            }),
            q.clone().prop_map(|quantity| Movement::TransferOut { quantity }),
            q.clone().prop_map(|quantity| Movement::Expect { quantity }),
            q.clone().prop_map(|quantity| Movement::Unexpect { quantity }),
            (0i64..4, 0i64..2).prop_map(|(received, lost)| Movement::TransferIn { received, lost }),
        ]
    }

    proptest! {
        /// Invariants 1–2 under any sequence: a movement either applies and leaves a
        /// balance that holds, or is refused and changes nothing.
        #[test]
        fn any_sequence_keeps_every_bucket_and_available_non_negative(moves in proptest::collection::vec(movement(), 0..60)) {
            let mut balance = Balance::default();
            for m in moves {
                let Ok(deltas) = m.deltas() else { continue };
                if let Some(next) = balance.after(&deltas) {
                    prop_assert!(next.holds());
                    balance = next;
                }
                prop_assert!(balance.holds());
            }
        }
    }
}
