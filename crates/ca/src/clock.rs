//! Wall-clock time for expiry and renewal decisions: the [`Clock`] trait, the real
//! [`SystemClock`] and a [`ManualClock`] for tests.
//!
//! This module owns the one rule about time in the certificate manager: certificates expire on
//! the **wall clock**, so every decision reads [`SystemTime`], never [`std::time::Instant`].
//! `Instant` is `CLOCK_MONOTONIC` on Linux, which stops while the machine is suspended (and a
//! paused VM or a `SIGSTOP`ped process sees the same): a deadline computed on it arrives late
//! by the length of the pause, which is how a mesh ends up serving expired certificates after a
//! laptop wakes. Sleeping is done elsewhere, in bounded chunks, re-reading this clock each time.
//!
//! It does not own sleeping, scheduling or certificate validity rules.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anchorage_x509::Timestamp;

/// A source of wall-clock time. Shared across tasks, so `Send + Sync`.
pub trait Clock: Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;

    /// The current time in whole seconds, as certificates count validity.
    fn timestamp(&self) -> Timestamp {
        to_timestamp(self.now())
    }
}

/// The real wall clock ([`SystemTime::now`]). Keeps counting through suspend, unlike
/// [`std::time::Instant`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to: for tests here and in other crates.
///
/// Jumping it forward is how a test plays a suspended machine waking up, or a day passing.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
}

impl ManualClock {
    /// A clock stopped at `now`.
    pub fn new(now: SystemTime) -> Self {
        Self {
            now: Mutex::new(now),
        }
    }

    /// A clock stopped at `seconds` after the Unix epoch (negative: before it).
    pub fn at_unix(seconds: i64) -> Self {
        Self::new(to_system_time(Timestamp::from_unix(seconds)))
    }

    /// A clock stopped at the real current time, rounded down to a whole second so that it
    /// agrees exactly with certificate validity times.
    pub fn starting_now() -> Self {
        Self::new(to_system_time(to_timestamp(SystemTime::now())))
    }

    /// Sets the time (forwards or backwards).
    pub fn set(&self, now: SystemTime) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`Timestamp`] as a [`SystemTime`].
pub fn to_system_time(t: Timestamp) -> SystemTime {
    let seconds = t.unix();
    if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(seconds.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
    }
}

/// A [`SystemTime`] as a [`Timestamp`], rounded down to the whole second (towards the past,
/// also before 1970).
pub fn to_timestamp(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => Timestamp::from_unix(i64::try_from(after.as_secs()).unwrap_or(i64::MAX)),
        Err(before) => {
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            let round_down = i64::from(before.subsec_nanos() > 0);
            Timestamp::from_unix(whole.saturating_neg().saturating_sub(round_down))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::at_unix(1_000);
        assert_eq!(clock.timestamp(), Timestamp::from_unix(1_000));
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.timestamp(), Timestamp::from_unix(1_090));
        clock.set(UNIX_EPOCH);
        assert_eq!(clock.timestamp(), Timestamp::from_unix(0));
    }

    #[test]
    fn starting_now_is_a_whole_second_near_the_real_time() {
        let clock = ManualClock::starting_now();
        let now = clock.now();
        assert_eq!(to_system_time(to_timestamp(now)), now);
        let real = SystemClock.now();
        let gap = real.duration_since(now).unwrap_or_default();
        assert!(gap < Duration::from_secs(5), "{gap:?}");
    }

    #[test]
    fn timestamps_round_trip_and_round_down() {
        for seconds in [-86_400, -1, 0, 1, 1_893_456_000] {
            let t = Timestamp::from_unix(seconds);
            assert_eq!(to_timestamp(to_system_time(t)), t);
        }
        let half = Duration::from_millis(500);
        assert_eq!(
            to_timestamp(UNIX_EPOCH + half),
            Timestamp::from_unix(0),
            "after 1970: down"
        );
        assert_eq!(
            to_timestamp(UNIX_EPOCH - half),
            Timestamp::from_unix(-1),
            "before 1970: down too"
        );
    }
}
