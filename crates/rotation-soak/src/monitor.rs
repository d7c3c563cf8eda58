//! What the harness watches while it runs: every peer's handshake counts, the openssl client
//! loops, each agent's certificate serial (re-issues), and the phases with the counts at their
//! start, printed as a progress line every two seconds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::files::AgentFiles;
use crate::stats::{Counts, PeerReport};

/// The counters of one agent's workloads.
#[derive(Default)]
pub(crate) struct Sources {
    /// The rustls peer's last report.
    pub(crate) rustls: Vec<Arc<Mutex<PeerReport>>>,
    /// The openssl client loop's counts.
    pub(crate) openssl: Vec<Arc<Mutex<Counts>>>,
}

/// All handshakes at one moment, by client kind.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Snapshot {
    pub(crate) rustls: Counts,
    pub(crate) openssl: Counts,
    pub(crate) server_failed: BTreeMap<String, u64>,
    pub(crate) reloads: u64,
    pub(crate) reload_errors: u64,
    pub(crate) reissues: u64,
}

impl Snapshot {
    pub(crate) fn all(&self) -> Counts {
        let mut c = self.rustls.clone();
        c.add(&self.openssl);
        c
    }
}

/// One phase of the run.
#[derive(Clone, Debug)]
pub(crate) struct Mark {
    pub(crate) name: String,
    pub(crate) at: Instant,
    pub(crate) snapshot: Snapshot,
}

/// Shared between the procedure (which names phases) and the progress task.
pub(crate) struct Monitor {
    pub(crate) sources: Sources,
    agents: Vec<AgentFiles>,
    serials: Mutex<Vec<Option<String>>>,
    reissues: Mutex<u64>,
    pub(crate) marks: Mutex<Vec<Mark>>,
    first_failure: Mutex<Option<Instant>>,
    pub(crate) started: Instant,
    /// Whether progress lines are printed (text output; JSON keeps stderr quiet but for errors).
    pub(crate) verbose: bool,
}

impl Monitor {
    pub(crate) fn new(sources: Sources, agents: Vec<AgentFiles>, verbose: bool) -> Arc<Self> {
        let n = agents.len();
        Arc::new(Self {
            sources,
            agents,
            serials: Mutex::new(vec![None; n]),
            reissues: Mutex::new(0),
            marks: Mutex::new(Vec::new()),
            first_failure: Mutex::new(None),
            started: Instant::now(),
            verbose,
        })
    }

    /// Counts now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for r in &self.sources.rustls {
            if let Ok(r) = r.lock() {
                s.rustls.add(&r.client);
                for (k, v) in &r.server_failed {
                    *s.server_failed.entry(k.clone()).or_default() += v;
                }
                s.reloads += r.reloads;
                s.reload_errors += r.reload_errors;
            }
        }
        for c in &self.sources.openssl {
            if let Ok(c) = c.lock() {
                s.openssl.add(&c);
            }
        }
        s.reissues = self.reissues.lock().map(|r| *r).unwrap_or(0);
        s
    }

    /// Reads each agent's status for its certificate serial; a new one is a re-issue.
    pub(crate) fn poll_serials(&self) {
        let Ok(mut serials) = self.serials.lock() else {
            return;
        };
        for (i, a) in self.agents.iter().enumerate() {
            let serial = std::fs::read(a.status())
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| {
                    v.get("cert_serial")
                        .and_then(|s| s.as_str())
                        .map(str::to_owned)
                });
            if let Some(s) = serial {
                if serials[i].as_ref().is_some_and(|old| *old != s)
                    && let Ok(mut r) = self.reissues.lock()
                {
                    *r += 1;
                }
                serials[i] = Some(s);
            }
        }
    }

    /// When the progress task first saw a failed handshake.
    pub(crate) fn first_failure(&self) -> Option<Instant> {
        self.first_failure.lock().ok().and_then(|f| *f)
    }

    /// Starts the phase `name` (the previous one ends now). Serials are not read here: a
    /// renewal serve pulled forward in the new phase's first instant, before this harness saw
    /// the phase change, belongs to the new phase (the next progress tick counts it).
    pub(crate) fn phase(&self, name: &str) {
        let mark = Mark {
            name: name.to_owned(),
            at: Instant::now(),
            snapshot: self.snapshot(),
        };
        self.say(&format!("phase {name}"));
        if let Ok(mut m) = self.marks.lock() {
            m.push(mark);
        }
    }

    pub(crate) fn current_phase(&self) -> String {
        self.marks
            .lock()
            .ok()
            .and_then(|m| m.last().map(|m| m.name.clone()))
            .unwrap_or_else(|| "setup".into())
    }

    /// A progress line on stderr (text output only).
    #[allow(clippy::print_stderr)] // progress is this program's output
    pub(crate) fn say(&self, line: &str) {
        if self.verbose {
            eprintln!("[{:>6.1}s] {line}", self.started.elapsed().as_secs_f64());
        }
    }

    /// Every two seconds: a progress line (handshakes/s, failures, phase); until `stop`.
    pub(crate) async fn progress(self: Arc<Self>, stop: Arc<std::sync::atomic::AtomicBool>) {
        let mut last = (Instant::now(), self.snapshot());
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.tick().await;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            tick.tick().await;
            self.poll_serials();
            for a in &self.agents {
                crate::openssl::retire(a, Duration::from_secs(2), false);
            }
            let now = (Instant::now(), self.snapshot());
            let d = now.1.all().since(&last.1.all());
            let secs = now.0.duration_since(last.0).as_secs_f64().max(0.001);
            let total = now.1.all();
            let mut line = format!(
                "{:<9} {:>5.0} handshakes/s (rustls {:.0}/s, openssl {:.0}/s), {} in all, {} failed",
                self.current_phase(),
                d.total() as f64 / secs,
                now.1.rustls.since(&last.1.rustls).total() as f64 / secs,
                now.1.openssl.since(&last.1.openssl).total() as f64 / secs,
                total.total(),
                total.failures(),
            );
            if d.failures() > 0
                && let Ok(mut f) = self.first_failure.lock()
                && f.is_none()
            {
                *f = Some(now.0);
            }
            if d.failures() > 0 {
                let worst = d.failed.iter().max_by_key(|(_, n)| **n);
                if let Some((r, n)) = worst {
                    line.push_str(&format!(" (+{} now; most: {n}× {r})", d.failures()));
                }
            }
            line.push_str(&format!(", {} re-issues", now.1.reissues));
            self.say(&line);
            last = now;
        }
    }
}
