//! Sign-in attempts limited per account and per client IP (GCRA via governor).

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

#[derive(Debug, Clone)]
pub struct LoginLimits {
    /// Attempts per minute for one account (e-mail address).
    pub per_account_per_minute: u32,
    /// Attempts per minute from one IP address.
    pub per_ip_per_minute: u32,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_account_per_minute: 10,
            per_ip_per_minute: 30,
        }
    }
}

pub struct LoginLimiter {
    account: DefaultKeyedRateLimiter<String>,
    ip: DefaultKeyedRateLimiter<String>,
}

/// A limiter per key (an IP, a visitor): a burst of `burst`, then `per_second`.
pub fn keyed_per_second(per_second: u32, burst: u32) -> DefaultKeyedRateLimiter<String> {
    let quota = Quota::per_second(NonZeroU32::new(per_second.max(1)).expect("at least one"))
        .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least one"));
    RateLimiter::keyed(quota)
}

fn quota(per_minute: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(per_minute.max(1)).expect("at least one"))
}

impl LoginLimiter {
    pub fn new(limits: &LoginLimits) -> Self {
        LoginLimiter {
            account: RateLimiter::keyed(quota(limits.per_account_per_minute)),
            ip: RateLimiter::keyed(quota(limits.per_ip_per_minute)),
        }
    }

    /// `Err(seconds to wait)` when either limit is exhausted.
    pub fn check(&self, account: &str, ip: Option<&str>) -> Result<(), u64> {
        let wait =
            |not_until: governor::NotUntil<_>| not_until.wait_time_from(DefaultClock::default().now()).as_secs() + 1;
        if let Some(ip) = ip {
            self.ip.check_key(&ip.to_owned()).map_err(wait)?;
        }
        self.account.check_key(&account.to_owned()).map_err(wait)?;
        Ok(())
    }
}
