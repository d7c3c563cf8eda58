//! Handshake counters: what each peer reports (one JSON line per second on stdout) and what the
//! harness adds up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Cumulative counts of one client loop (or of all of them).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Handshakes that completed, both sides verified (and one exchange over them).
    pub(crate) ok: u64,
    /// Failed handshakes by reason.
    pub(crate) failed: BTreeMap<String, u64>,
}

impl Counts {
    pub(crate) fn failures(&self) -> u64 {
        self.failed.values().sum()
    }

    pub(crate) fn total(&self) -> u64 {
        self.ok + self.failures()
    }

    pub(crate) fn fail(&mut self, reason: String) {
        *self.failed.entry(reason).or_default() += 1;
    }

    pub(crate) fn add(&mut self, other: &Counts) {
        self.ok += other.ok;
        for (r, n) in &other.failed {
            *self.failed.entry(r.clone()).or_default() += n;
        }
    }

    /// `self - earlier` (counts only grow).
    pub(crate) fn since(&self, earlier: &Counts) -> Counts {
        let mut failed = BTreeMap::new();
        for (r, n) in &self.failed {
            let d = n.saturating_sub(earlier.failed.get(r).copied().unwrap_or(0));
            if d > 0 {
                failed.insert(r.clone(), d);
            }
        }
        Counts {
            ok: self.ok.saturating_sub(earlier.ok),
            failed,
        }
    }
}

/// One line a rustls peer prints: its client's counts, its server's rejected handshakes, its
/// reloads.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct PeerReport {
    /// The client loop (towards the next agent's server).
    pub(crate) client: Counts,
    /// Handshakes this peer's server failed (the client side counts them too, by its reason).
    pub(crate) server_failed: BTreeMap<String, u64>,
    /// SIGHUP reloads done.
    pub(crate) reloads: u64,
    /// SIGHUP reloads that failed (the old configuration kept).
    pub(crate) reload_errors: u64,
}

/// Shortens an error message to a stable reason: no addresses, ports, PIDs or source lines.
pub(crate) fn reason(stage: &str, message: &str) -> String {
    let mut m = message.trim().to_owned();
    if let Some(i) = m.find(" (os error") {
        m.truncate(i);
    }
    if m.len() > 160 {
        let mut end = 160;
        while !m.is_char_boundary(end) {
            end -= 1;
        }
        m.truncate(end);
    }
    format!("{stage}: {m}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_subtracts_and_drops_zeroes() {
        let mut a = Counts {
            ok: 10,
            ..Counts::default()
        };
        a.fail("x".into());
        let mut b = a.clone();
        b.ok = 15;
        b.fail("y".into());
        let d = b.since(&a);
        assert_eq!(d.ok, 5);
        assert_eq!(d.failed.len(), 1);
        assert_eq!(d.failed["y"], 1);
        assert_eq!(b.failures(), 2);
    }

    #[test]
    fn reasons_drop_os_error_numbers() {
        assert_eq!(
            reason("connect", "Connection refused (os error 111)"),
            "connect: Connection refused"
        );
    }
}
