//! Overload protection for the serve loop (issue 18: 10,000 requests a second with bad
//! signatures must not stop good gets).
//!
//! Opening a request costs an X25519 agreement and up to two Ed25519 verifications, so a
//! requester can make the server spend far more than it spends itself. Two defences, both
//! applied before any cryptography:
//!
//! - Per requester xkey (the `WasmCloud-Host-Xkey` header, a one-time key for a real host): at
//!   most [`MAX_IN_FLIGHT_PER_REQUESTER`] requests in flight, and a budget of failed
//!   verifications. A key that caused
//!   [`REQUESTER_FAILURE_BURST`] failures is refused unopened ("retry in N ms") until its budget
//!   refills ([`REQUESTER_FAILURE_REFILL`] a failure). A flood that reuses keys then costs one
//!   hash-map lookup a request. A good host, drawing a fresh key for every request, never meets
//!   the limits; since the key is used once, another requester cannot spend a good host's budget
//!   before it is used.
//! - A bounded queue in front of the in-flight limit ([`crate::ServerConfig::max_queued`],
//!   [`crate::ServerConfig::max_queue_wait`]): the loop keeps reading the subscription while all
//!   permits are taken, and a request that waited longer than `max_queue_wait` (its host has as
//!   good as given up), or that the full queue pushes out (the oldest goes), is answered at
//!   once with a "server busy" failure instead of being opened. A flood that draws a fresh key
//!   per request cannot be told from good requests before opening; it then costs good requests
//!   a prompt "busy" answer in proportion to the flood, never a wait behind a backlog that only
//!   grows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Failed verifications (a request that did not open, or whose JWTs did not verify) one
/// requester xkey may cause in a burst before its requests are refused unopened.
pub const REQUESTER_FAILURE_BURST: u32 = 8;

/// How fast a requester xkey's failure budget refills: one failure per this interval.
pub const REQUESTER_FAILURE_REFILL: Duration = Duration::from_secs(1);

/// Requests from one requester xkey read and not yet answered. A host draws a new xkey for
/// every request, so only a requester reusing its key meets this; past it the request is
/// answered at once, unopened.
pub const MAX_IN_FLIGHT_PER_REQUESTER: u32 = 4;

/// Requester xkeys whose failures are tracked at once. Past it (a flood of fresh keys) new
/// keys are not tracked until old ones refill; the queue bounds the cost of those.
pub const MAX_TRACKED_REQUESTERS: usize = 65_536;

/// Requests waiting for a free slot, beyond those in flight, unless configured otherwise
/// (`ServerConfig::max_queued`). When full, the oldest is answered "busy".
pub const DEFAULT_MAX_QUEUED: usize = 4_096;

/// The longest a request waits for a free slot before it is answered "busy" unopened, unless
/// configured otherwise (`ServerConfig::max_queue_wait`). Below the hosts' request timeout, so
/// the host gets an answer rather than its own timeout.
pub const DEFAULT_MAX_QUEUE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
struct Budget {
    /// Failures still allowed (fractional while refilling).
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn refilled(self, now: Instant) -> f64 {
        let per_sec = 1.0 / REQUESTER_FAILURE_REFILL.as_secs_f64();
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * per_sec).min(f64::from(REQUESTER_FAILURE_BURST))
    }
}

/// Failure budgets per requester xkey (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct RequesterLimiter {
    budgets: Mutex<HashMap<String, Budget>>,
    /// Requests in flight per requester key (entries only while some are: bounded by the
    /// requests in flight and queued).
    in_flight: Mutex<HashMap<String, u32>>,
}

/// One request of a requester key in flight; counted until dropped.
#[derive(Debug)]
pub(crate) struct InFlight {
    limiter: Arc<RequesterLimiter>,
    requester: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut in_flight = self
            .limiter
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = in_flight.get_mut(&self.requester) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.requester);
            }
        }
    }
}

impl RequesterLimiter {
    /// `Err(wait)` when `requester` has no failure left: refuse its request unopened; `wait`
    /// is how long until it has one again.
    pub(crate) fn check(&self, requester: &str, now: Instant) -> Result<(), Duration> {
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(budget) = budgets.get(requester).copied() else {
            return Ok(());
        };
        let tokens = budget.refilled(now);
        if tokens >= 1.0 {
            if tokens >= f64::from(REQUESTER_FAILURE_BURST) {
                budgets.remove(requester);
            }
            return Ok(());
        }
        Err(REQUESTER_FAILURE_REFILL.mul_f64(1.0 - tokens))
    }

    /// Counts one more request of `requester` in flight, or `None` when it already has
    /// [`MAX_IN_FLIGHT_PER_REQUESTER`].
    pub(crate) fn admit(this: &Arc<Self>, requester: &str) -> Option<InFlight> {
        let mut in_flight = this.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let count = in_flight.entry(requester.to_owned()).or_default();
        if *count >= MAX_IN_FLIGHT_PER_REQUESTER {
            return None;
        }
        *count += 1;
        Some(InFlight {
            limiter: Arc::clone(this),
            requester: requester.to_owned(),
        })
    }

    /// Counts a failed verification against `requester`.
    pub(crate) fn failed(&self, requester: &str, now: Instant) {
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        if !budgets.contains_key(requester) && budgets.len() >= MAX_TRACKED_REQUESTERS {
            budgets.retain(|_, b| b.refilled(now) < f64::from(REQUESTER_FAILURE_BURST));
            if budgets.len() >= MAX_TRACKED_REQUESTERS {
                return;
            }
        }
        let budget = budgets.entry(requester.to_owned()).or_insert(Budget {
            tokens: f64::from(REQUESTER_FAILURE_BURST),
            at: now,
        });
        budget.tokens = budget.refilled(now) - 1.0;
        budget.at = now;
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.budgets.lock().map(|b| b.len()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requester_is_refused_after_its_burst_and_allowed_again_after_the_refill() {
        let limiter = RequesterLimiter::default();
        let start = Instant::now();
        for _ in 0..REQUESTER_FAILURE_BURST {
            assert!(limiter.check("XA", start).is_ok());
            limiter.failed("XA", start);
        }
        let wait = limiter.check("XA", start).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= REQUESTER_FAILURE_REFILL,
            "{wait:?}"
        );
        // Another key is not affected (control).
        assert!(limiter.check("XB", start).is_ok());
        // One refill interval later: one more failure allowed, then refused again.
        let later = start + REQUESTER_FAILURE_REFILL;
        assert!(limiter.check("XA", later).is_ok());
        limiter.failed("XA", later);
        assert!(limiter.check("XA", later).is_err());
        // Fully refilled: forgotten.
        let much_later = later + REQUESTER_FAILURE_REFILL * (REQUESTER_FAILURE_BURST + 1);
        assert!(limiter.check("XA", much_later).is_ok());
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn a_requester_has_a_bounded_number_of_requests_in_flight() {
        let limiter = Arc::new(RequesterLimiter::default());
        let held: Vec<_> = (0..MAX_IN_FLIGHT_PER_REQUESTER)
            .map(|_| RequesterLimiter::admit(&limiter, "XA").unwrap())
            .collect();
        assert!(RequesterLimiter::admit(&limiter, "XA").is_none());
        // Another key is not affected (control).
        assert!(RequesterLimiter::admit(&limiter, "XB").is_some());
        drop(held);
        let again = RequesterLimiter::admit(&limiter, "XA");
        assert!(again.is_some());
        drop(again);
        assert!(limiter.in_flight.lock().unwrap().is_empty());
    }

    #[test]
    fn the_tracked_keys_are_bounded() {
        let limiter = RequesterLimiter::default();
        let now = Instant::now();
        for i in 0..MAX_TRACKED_REQUESTERS + 10 {
            limiter.failed(&format!("X{i}"), now);
        }
        assert_eq!(limiter.tracked(), MAX_TRACKED_REQUESTERS);
        // Once the old ones refilled, new keys are tracked again.
        limiter.failed("Xnew", now + REQUESTER_FAILURE_REFILL * 2);
        assert_eq!(limiter.tracked(), 1);
    }
}
