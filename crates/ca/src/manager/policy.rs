//! When to renew: the [`RenewalPolicy`], the pure [`renew_at`] rule, the retry backoff, and the
//! manager's [`ManagerConfig`].
//!
//! Owns arithmetic on times and durations only: no clock reads, no randomness (the jitter
//! sample is a parameter), no I/O.

use std::time::{Duration, SystemTime};

use super::ManagerError;

/// When certificates are renewed, and how the background task sleeps and retries.
///
/// The rule, for a certificate valid from `not_before` to `not_after` (lifetime `L`) and a
/// jitter sample `u` drawn once per certificate from `[0, 1)`:
///
/// ```text
/// renew_at = not_after − max( L·(fraction + jitter·u),  min(min_margin, L/2) )
/// ```
///
/// never earlier than `not_before`. So a certificate is renewed when its remaining life falls
/// under `fraction` of its lifetime, a random part earlier to spread a fleet issued at the same
/// moment, and never later than `min_margin` before it expires. A margin cannot take more than
/// half of a short certificate's life: a 2-minute certificate under a 5-minute margin is renewed
/// at mid-life rather than re-issued in a loop. Compare FSM's Tresor, which renewed a fixed 30 s
/// before expiry, so any stall near expiry became an outage.
#[derive(Clone, Debug, PartialEq)]
pub struct RenewalPolicy {
    /// Renew when the remaining life falls under this fraction of the lifetime. Default 1/3
    /// (a 24-hour certificate is renewed after 16 hours). Must lie in (0, 1).
    pub fraction: f64,
    /// Never renew later than this before expiry (capped at half the lifetime). Default 5
    /// minutes.
    pub min_margin: Duration,
    /// Up to this fraction of the lifetime is added, at random, to the early part: renewals of
    /// certificates issued together spread over `jitter · L`. Default 0.1. Must lie in [0, 1),
    /// with `fraction + jitter < 1`.
    pub jitter: f64,
    /// The background task never sleeps longer than this in one go; it wakes, re-reads the
    /// wall clock and goes back to sleep. Bounds how late a renewal comes after a suspend or a
    /// pause (Tokio's timers run on the monotonic clock, which stops meanwhile). Default 30 s.
    pub max_sleep: Duration,
    /// First delay before retrying a failed renewal; also the shortest time a certificate is
    /// kept before it may be renewed (guards against an issuer handing out certificates that
    /// are due at once). Default 1 s.
    pub retry_min: Duration,
    /// The retry delay doubles per consecutive failure up to this, and is also cut to half the
    /// cached certificate's remaining life so retries quicken as expiry nears. Default 5
    /// minutes.
    pub retry_max: Duration,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        Self {
            fraction: 1.0 / 3.0,
            min_margin: Duration::from_secs(5 * 60),
            jitter: 0.1,
            max_sleep: Duration::from_secs(30),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(5 * 60),
        }
    }
}

impl RenewalPolicy {
    /// Checks the ranges documented on each field.
    pub fn validate(&self) -> Result<(), ManagerError> {
        let bad = |setting: &'static str, value: String, rule: &'static str| {
            Err(ManagerError::InvalidConfig {
                setting,
                value,
                rule,
            })
        };
        if !(self.fraction > 0.0 && self.fraction < 1.0) {
            return bad(
                "fraction",
                self.fraction.to_string(),
                "must lie strictly between 0 and 1 (1/3 is the default)",
            );
        }
        if !(self.jitter >= 0.0 && self.jitter < 1.0) {
            return bad(
                "jitter",
                self.jitter.to_string(),
                "must lie in [0, 1) (0.1 is the default)",
            );
        }
        if self.fraction + self.jitter >= 1.0 {
            return bad(
                "fraction + jitter",
                (self.fraction + self.jitter).to_string(),
                "must stay under 1, or certificates would be due as soon as issued",
            );
        }
        if self.max_sleep < Duration::from_millis(1) {
            return bad(
                "max_sleep",
                format!("{:?}", self.max_sleep),
                "must be at least 1 ms",
            );
        }
        if self.retry_min.is_zero() {
            return bad(
                "retry_min",
                format!("{:?}", self.retry_min),
                "must be positive, or a failing issuer would be retried in a loop",
            );
        }
        if self.retry_max < self.retry_min {
            return bad(
                "retry_max",
                format!("{:?}", self.retry_max),
                "must be at least retry_min",
            );
        }
        Ok(())
    }

    /// How long to wait before retrying after `failures` consecutive failed renewals (1 for
    /// the first), given the cached certificate's remaining life when there is one.
    pub fn retry_delay(&self, failures: u32, remaining: Option<Duration>) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        let mut delay = self
            .retry_min
            .saturating_mul(1 << doublings)
            .min(self.retry_max);
        if let Some(remaining) = remaining {
            delay = delay.min(remaining / 2);
        }
        delay.max(self.retry_min)
    }
}

/// When a certificate valid from `not_before` to `not_after` is due for renewal under `policy`,
/// with `jitter_sample` drawn from `[0, 1)` (out-of-range values are clamped, NaN counts as 0).
///
/// See [`RenewalPolicy`] for the formula. A certificate whose validity is empty or inverted is
/// due at once. Pure: the caller supplies the sample, so the result is reproducible.
pub fn renew_at(
    not_before: SystemTime,
    not_after: SystemTime,
    policy: &RenewalPolicy,
    jitter_sample: f64,
) -> SystemTime {
    let Ok(lifetime) = not_after.duration_since(not_before) else {
        return not_after;
    };
    let sample = if jitter_sample.is_nan() {
        0.0
    } else {
        jitter_sample.clamp(0.0, 1.0)
    };
    let early_fraction =
        (clamp_unit(policy.fraction) + clamp_unit(policy.jitter) * sample).min(1.0);
    let by_fraction = lifetime.mul_f64(early_fraction);
    let margin = policy.min_margin.min(lifetime / 2);
    let early = by_fraction.max(margin).min(lifetime);
    not_after - early
}

fn clamp_unit(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

/// Settings of a [`super::CertManager`].
#[derive(Clone, Debug, PartialEq)]
pub struct ManagerConfig {
    /// When to renew, how to sleep and retry.
    pub renewal: RenewalPolicy,
    /// How many issuances a bulk renewal ([`super::CertManager::reissue_all`], the background
    /// task) runs at once. Bounds the load on the issuer (a Vault server, or the cores signing
    /// for the built-in CA). Default 16.
    pub concurrency: usize,
    /// How many events the firehose keeps for a slow auditor before it sees
    /// [`tokio::sync::broadcast::error::RecvError::Lagged`]. Default 4096.
    pub firehose_capacity: usize,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            renewal: RenewalPolicy::default(),
            concurrency: 16,
            firehose_capacity: 4096,
        }
    }
}

impl ManagerConfig {
    /// Checks the policy and that the counts are at least 1.
    pub fn validate(&self) -> Result<(), ManagerError> {
        self.renewal.validate()?;
        for (setting, value) in [
            ("concurrency", self.concurrency),
            ("firehose_capacity", self.firehose_capacity),
        ] {
            if value == 0 {
                return Err(ManagerError::InvalidConfig {
                    setting,
                    value: value.to_string(),
                    rule: "must be at least 1",
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3_600);
    const MINUTE: Duration = Duration::from_secs(60);

    fn t(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    fn at(lifetime: Duration, policy: &RenewalPolicy, sample: f64) -> Duration {
        renew_at(t(0), t(0) + lifetime, policy, sample)
            .duration_since(t(0))
            .unwrap()
    }

    fn no_jitter() -> RenewalPolicy {
        RenewalPolicy {
            jitter: 0.0,
            ..RenewalPolicy::default()
        }
    }

    #[test]
    fn a_day_long_certificate_is_renewed_with_a_third_left() {
        assert_eq!(at(24 * HOUR, &no_jitter(), 0.5), 16 * HOUR);
    }

    #[test]
    fn jitter_only_ever_renews_earlier_and_by_at_most_its_share() {
        let policy = RenewalPolicy::default();
        assert_eq!(at(24 * HOUR, &policy, 0.0), 16 * HOUR);
        let latest = at(24 * HOUR, &policy, 0.0);
        let earliest = at(24 * HOUR, &policy, 0.999_999);
        assert!(earliest < latest);
        // 10 % of 24 h = 2.4 h of spread.
        let spread = latest - earliest;
        assert!(
            spread > Duration::from_secs(8_630) && spread <= Duration::from_secs(8_640),
            "{spread:?}"
        );
        // Out-of-range and NaN samples are clamped, never panic.
        assert_eq!(at(24 * HOUR, &policy, f64::NAN), 16 * HOUR);
        assert_eq!(at(24 * HOUR, &policy, -3.0), 16 * HOUR);
        assert_eq!(
            at(24 * HOUR, &policy, 7.0),
            24 * HOUR - (24 * HOUR).mul_f64(1.0 / 3.0 + 0.1)
        );
    }

    #[test]
    fn the_margin_wins_for_short_lifetimes() {
        // 12 minutes: a third is 4 minutes, under the 5-minute margin.
        assert_eq!(at(12 * MINUTE, &no_jitter(), 0.0), 7 * MINUTE);
        // 10 minutes: the margin is exactly half.
        assert_eq!(at(10 * MINUTE, &no_jitter(), 0.0), 5 * MINUTE);
        // 15 minutes: a third is 5 minutes, the same as the margin.
        assert_eq!(at(15 * MINUTE, &no_jitter(), 0.0), 10 * MINUTE);
        // An hour: the fraction (20 minutes) wins over the margin.
        assert_eq!(at(HOUR, &no_jitter(), 0.0), 40 * MINUTE);
    }

    #[test]
    fn a_margin_longer_than_the_lifetime_renews_at_mid_life_not_at_once() {
        let policy = RenewalPolicy {
            min_margin: 48 * HOUR,
            ..no_jitter()
        };
        assert_eq!(at(24 * HOUR, &policy, 0.0), 12 * HOUR);
        assert_eq!(at(2 * MINUTE, &no_jitter(), 0.0), MINUTE);
        // A large fraction still wins over the half-life cap.
        let eager = RenewalPolicy {
            fraction: 0.8,
            min_margin: 48 * HOUR,
            ..no_jitter()
        };
        assert_eq!(at(10 * HOUR, &eager, 0.0), 2 * HOUR);
    }

    #[test]
    fn very_short_and_degenerate_lifetimes() {
        // The margin is capped at half the life: mid-life for anything shorter than 10 minutes.
        assert_eq!(
            at(Duration::from_secs(1), &no_jitter(), 0.0),
            Duration::from_millis(500)
        );
        assert_eq!(
            at(Duration::from_secs(3), &no_jitter(), 0.0),
            Duration::from_millis(1_500)
        );
        assert_eq!(at(Duration::ZERO, &no_jitter(), 0.0), Duration::ZERO);
        // Inverted validity: due at once (at its not_after, which is already before not_before).
        assert_eq!(renew_at(t(10), t(5), &no_jitter(), 0.0), t(5));
    }

    #[test]
    fn never_before_not_before_even_with_a_policy_that_skipped_validation() {
        let silly = RenewalPolicy {
            fraction: 0.9,
            jitter: 0.9,
            ..RenewalPolicy::default()
        };
        assert!(silly.validate().is_err());
        assert_eq!(at(HOUR, &silly, 0.99), Duration::ZERO);
        let negative = RenewalPolicy {
            fraction: -1.0,
            jitter: f64::NAN,
            min_margin: Duration::ZERO,
            ..RenewalPolicy::default()
        };
        assert_eq!(at(HOUR, &negative, 0.5), HOUR);
    }

    #[test]
    fn ten_year_certificates_do_not_overflow() {
        let ten_years = Duration::from_secs(10 * 365 * 86_400);
        let due = at(ten_years, &no_jitter(), 0.0);
        assert_eq!(due, ten_years - ten_years.mul_f64(1.0 / 3.0));
    }

    #[test]
    fn validation_names_the_setting_and_the_rule() {
        assert!(ManagerConfig::default().validate().is_ok());
        let cases = [
            (
                RenewalPolicy {
                    fraction: 0.0,
                    ..RenewalPolicy::default()
                },
                "fraction",
            ),
            (
                RenewalPolicy {
                    fraction: 1.0,
                    ..RenewalPolicy::default()
                },
                "fraction",
            ),
            (
                RenewalPolicy {
                    jitter: -0.1,
                    ..RenewalPolicy::default()
                },
                "jitter",
            ),
            (
                RenewalPolicy {
                    fraction: 0.7,
                    jitter: 0.3,
                    ..RenewalPolicy::default()
                },
                "fraction + jitter",
            ),
            (
                RenewalPolicy {
                    max_sleep: Duration::ZERO,
                    ..RenewalPolicy::default()
                },
                "max_sleep",
            ),
            (
                RenewalPolicy {
                    retry_min: Duration::ZERO,
                    ..RenewalPolicy::default()
                },
                "retry_min",
            ),
            (
                RenewalPolicy {
                    retry_max: Duration::from_millis(1),
                    ..RenewalPolicy::default()
                },
                "retry_max",
            ),
        ];
        for (policy, want) in cases {
            match policy.validate() {
                Err(ManagerError::InvalidConfig { setting, .. }) => assert_eq!(setting, want),
                other => panic!("{want}: {other:?}"),
            }
        }
        let zero = ManagerConfig {
            concurrency: 0,
            ..ManagerConfig::default()
        };
        let err = zero.validate().unwrap_err();
        assert!(err.to_string().contains("concurrency"), "{err}");
    }

    #[test]
    fn retries_back_off_and_quicken_near_expiry() {
        let policy = RenewalPolicy::default();
        let s = Duration::from_secs;
        assert_eq!(policy.retry_delay(1, None), s(1));
        assert_eq!(policy.retry_delay(2, None), s(2));
        assert_eq!(policy.retry_delay(5, None), s(16));
        assert_eq!(policy.retry_delay(40, None), s(300));
        assert_eq!(policy.retry_delay(40, Some(s(100))), s(50));
        assert_eq!(policy.retry_delay(40, Some(Duration::ZERO)), s(1));
    }
}
