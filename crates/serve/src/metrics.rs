//! Prometheus text metrics: issuances by role, operation and outcome, an issuance latency
//! histogram, the bundle version and consumers by staleness (computed at scrape time), and
//! whether this instance holds the root rotation's driver lease.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Latency bucket bounds, seconds.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The process's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    issuances: Mutex<BTreeMap<(String, &'static str, &'static str), u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    rate_limited: AtomicU64,
    lease_held: AtomicBool,
    lease_taken: AtomicU64,
}

impl Metrics {
    /// Counts one issuance attempt (`outcome`: `issued` or `refused` or `error`).
    pub fn issuance(&self, role: &str, operation: &'static str, outcome: &'static str) {
        if let Ok(mut map) = self.issuances.lock() {
            *map.entry((role.to_owned(), operation, outcome))
                .or_default() += 1;
        }
    }

    /// Counts one renewal refused by the rotation's rate limit (429).
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// Renewals refused by the rotation's rate limit so far.
    pub fn rate_limited_total(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    /// Records whether this instance holds the rotation's driver lease after a renewal
    /// attempt (`taken`: it did not hold it before).
    pub fn rotation_lease(&self, held: bool, taken: bool) {
        self.lease_held.store(held, Ordering::Relaxed);
        if taken {
            self.lease_taken.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records the latency of one issuance request.
    pub fn latency(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Renders the text format with the gauges given.
    pub fn render(&self, bundle_version: u64, consumers: &BTreeMap<&'static str, u64>) -> String {
        let mut out = String::new();
        out.push_str("# HELP anchorage_issuances_total Certificate issuances by role, operation and outcome.\n# TYPE anchorage_issuances_total counter\n");
        if let Ok(map) = self.issuances.lock() {
            for ((role, op, outcome), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "anchorage_issuances_total{{role=\"{}\",operation=\"{op}\",outcome=\"{outcome}\"}} {n}",
                    escape(role)
                );
            }
        }
        out.push_str("# HELP anchorage_issuance_duration_seconds Time to answer an issuance request.\n# TYPE anchorage_issuance_duration_seconds histogram\n");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "anchorage_issuance_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "anchorage_issuance_duration_seconds_bucket{{le=\"+Inf\"}} {count}\nanchorage_issuance_duration_seconds_sum {}\nanchorage_issuance_duration_seconds_count {count}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# HELP anchorage_bundle_version The trust bundle version served.\n# TYPE anchorage_bundle_version gauge\nanchorage_bundle_version {bundle_version}"
        );
        let _ = writeln!(
            out,
            "# HELP anchorage_rotation_rate_limited_total Renewals refused (429) by the root rotation's per-group rate limit.\n# TYPE anchorage_rotation_rate_limited_total counter\nanchorage_rotation_rate_limited_total {}",
            self.rate_limited.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP anchorage_rotation_lease_held 1 when this instance holds the root rotation's driver lease (it alone advances the rotation).\n# TYPE anchorage_rotation_lease_held gauge\nanchorage_rotation_lease_held {}",
            u8::from(self.lease_held.load(Ordering::Relaxed))
        );
        let _ = writeln!(
            out,
            "# HELP anchorage_rotation_lease_taken_total Times this instance took the root rotation's driver lease (at start, or over from an expired holder).\n# TYPE anchorage_rotation_lease_taken_total counter\nanchorage_rotation_lease_taken_total {}",
            self.lease_taken.load(Ordering::Relaxed)
        );
        out.push_str("# HELP anchorage_consumers Consumers by staleness (current: acked the served bundle; stale: an older one; silent: no ack for an hour).\n# TYPE anchorage_consumers gauge\n");
        for (state, n) in consumers {
            let _ = writeln!(out, "anchorage_consumers{{state=\"{state}\"}} {n}");
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
