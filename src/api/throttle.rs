//! The guessing throttle: failed token attempts limited per client address with a token bucket.
//!
//! Each address may fail [`GUESS_FAILURES_BURST`] times at once, and earns one more attempt
//! every [`GUESS_REFILL_INTERVAL_MS`]. An address with an empty bucket gets Moodle's
//! `invalidtoken` envelope without a lookup (Moodle itself has no web-service throttle; the
//! answer is the one it gives to a wrong token, so a guesser learns nothing new). IPv6 clients
//! are counted per /64, the block one host usually holds. Time is passed in: the bucket
//! arithmetic is pure and tested below.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts an address may make in a burst.
pub const GUESS_FAILURES_BURST: u32 = 10;
/// One more attempt per this many milliseconds (1/s).
pub const GUESS_REFILL_INTERVAL_MS: u64 = 1000;
/// Addresses remembered at most; beyond, addresses whose bucket is full again are forgotten,
/// and while that is not enough a new address is refused (fail closed under an attack from
/// more addresses than this).
pub const GUESS_ADDRESSES_MAX: usize = 100_000;

/// One address's bucket: attempts left (in refill steps) as of `at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    left: u32,
    at: Instant,
}

impl Bucket {
    pub fn full(now: Instant) -> Self {
        Self { left: GUESS_FAILURES_BURST, at: now }
    }

    /// The bucket as of `now`: one attempt back per elapsed refill interval, up to the burst.
    pub fn refilled(self, now: Instant) -> Self {
        let step = Duration::from_millis(GUESS_REFILL_INTERVAL_MS);
        let elapsed = now.saturating_duration_since(self.at);
        let earned = (elapsed.as_millis() / step.as_millis()).min(u128::from(GUESS_FAILURES_BURST)) as u32;
        if earned == 0 {
            return self;
        }
        let left = (self.left + earned).min(GUESS_FAILURES_BURST);
        // Keep the part of an interval not yet earned, unless the bucket is full.
        let at = if left == GUESS_FAILURES_BURST { now } else { self.at + step * earned };
        Self { left, at }
    }

    pub fn may_try(self) -> bool {
        self.left > 0
    }

    pub fn is_full(self) -> bool {
        self.left == GUESS_FAILURES_BURST
    }

    pub fn after_failure(self) -> Self {
        Self { left: self.left.saturating_sub(1), ..self }
    }
}

/// The key an address is counted under: IPv4 as is, IPv6 by its /64. `None` (no connection
/// information, in-process router tests) is one key of its own.
fn key(ip: Option<IpAddr>) -> Option<IpAddr> {
    ip.map(|ip| match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !(u128::MAX >> 64)).into()),
        },
    })
}

#[derive(Default)]
pub struct GuessThrottle {
    state: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    by_key: HashMap<Option<IpAddr>, Bucket>,
    last_prune: Option<Instant>,
}

impl Buckets {
    /// Room for one more address: forgets full buckets (at most once per refill interval, so
    /// an attack cannot make every call scan the map).
    fn has_room(&mut self, now: Instant) -> bool {
        if self.by_key.len() < GUESS_ADDRESSES_MAX {
            return true;
        }
        let step = Duration::from_millis(GUESS_REFILL_INTERVAL_MS);
        if self.last_prune.is_none_or(|at| now.saturating_duration_since(at) >= step) {
            self.last_prune = Some(now);
            self.by_key.retain(|_, bucket| !bucket.refilled(now).is_full());
        }
        self.by_key.len() < GUESS_ADDRESSES_MAX
    }
}

impl GuessThrottle {
    /// Whether `ip` may have its token looked up now.
    pub fn may_try(&self, ip: Option<IpAddr>, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match state.by_key.get(&key(ip)) {
            Some(bucket) => bucket.refilled(now).may_try(),
            None => state.has_room(now),
        }
    }

    /// Records a failed attempt (an unknown token) from `ip`.
    pub fn failed(&self, ip: Option<IpAddr>, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.by_key.contains_key(&key(ip)) && !state.has_room(now) {
            tracing::warn!(addresses = GUESS_ADDRESSES_MAX, "guessing throttle full: new addresses are refused");
            return;
        }
        let bucket = state.by_key.entry(key(ip)).or_insert_with(|| Bucket::full(now));
        *bucket = bucket.refilled(now).after_failure();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn given_a_full_bucket_when_the_burst_is_used_then_the_address_waits_one_interval() {
        let throttle = GuessThrottle::default();
        let t0 = Instant::now();
        for _ in 0..GUESS_FAILURES_BURST {
            assert!(throttle.may_try(ip("10.0.0.1"), t0));
            throttle.failed(ip("10.0.0.1"), t0);
        }
        assert!(!throttle.may_try(ip("10.0.0.1"), t0), "burst used up");
        assert!(throttle.may_try(ip("10.0.0.2"), t0), "another address is not affected");
        let later = t0 + Duration::from_millis(GUESS_REFILL_INTERVAL_MS);
        assert!(throttle.may_try(ip("10.0.0.1"), later), "one attempt earned");
        throttle.failed(ip("10.0.0.1"), later);
        assert!(!throttle.may_try(ip("10.0.0.1"), later + Duration::from_millis(GUESS_REFILL_INTERVAL_MS / 2)));
    }

    #[test]
    fn given_an_empty_bucket_when_time_passes_then_it_refills_to_the_burst_only() {
        let t0 = Instant::now();
        let mut bucket = Bucket::full(t0);
        for _ in 0..GUESS_FAILURES_BURST {
            bucket = bucket.after_failure();
        }
        assert!(!bucket.may_try());
        let step = Duration::from_millis(GUESS_REFILL_INTERVAL_MS);
        assert_eq!(bucket.refilled(t0 + step * 3 + step / 2).left, 3);
        assert!(bucket.refilled(t0 + step * 1000).is_full());
        // Partial intervals are kept: 2.5 steps then 0.5 more make three.
        let partial = bucket.refilled(t0 + step * 2 + step / 2);
        assert_eq!(partial.left, 2);
        assert_eq!(partial.refilled(t0 + step * 3).left, 3);
    }

    #[test]
    fn given_ipv6_addresses_when_keyed_then_one_slash_64_is_one_client() {
        assert_eq!(key(ip("2001:db8::1")), key(ip("2001:db8::ffff:1")));
        assert_ne!(key(ip("2001:db8::1")), key(ip("2001:db8:0:1::1")));
        assert_eq!(key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }
}
