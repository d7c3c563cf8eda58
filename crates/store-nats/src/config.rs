//! [`JetStreamStoreConfig`] and the replica choice for the bucket ([`ReplicaChoice`],
//! [`BucketReport`]), after `anchorage-secrets-server`'s buckets (issue 21): R3 asked for
//! when nothing is configured, R1 when JetStream refuses to place three.

use std::collections::BTreeSet;
use std::time::Duration;

use anchorage_store::StoreError;

/// The bucket used when none is configured.
pub const DEFAULT_BUCKET: &str = "anchorage";

/// Values kept per key when the bucket is created: only the latest, so a replaced value (it
/// may be secret) does not linger in the stream.
pub const DEFAULT_HISTORY: u32 = 1;

/// The most values per key a KV bucket keeps (JetStream's limit).
pub const MAX_HISTORY: u32 = 64;

/// The per-call timeout when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most replicas a JetStream stream can have (the server's own limit).
pub const MAX_REPLICAS: usize = 5;

/// The replicas asked for when none is configured.
pub const AUTO_REPLICAS: usize = 3;

/// Where the bucket is and how to use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamStoreConfig {
    /// The KV bucket ([`DEFAULT_BUCKET`]); its stream is `KV_<bucket>`. Letters, digits, `-`
    /// and `_`.
    pub bucket: String,
    /// Replicas of the bucket when we create it (1 to [`MAX_REPLICAS`]); `None`:
    /// [`AUTO_REPLICAS`] when JetStream can place that many, else 1. An existing bucket is
    /// used as it is (and reported when it has fewer replicas than wanted).
    pub replicas: Option<usize>,
    /// Values kept per key when we create the bucket (1 to [`MAX_HISTORY`];
    /// [`DEFAULT_HISTORY`]).
    pub history: u32,
    /// How long one call may take before it fails with [`StoreError::Timeout`]
    /// ([`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// Read through the stream leader (`STREAM.MSG.GET`) instead of direct gets from any
    /// replica: never stale, but every read goes to one node and none is answered while the
    /// stream has no leader.
    pub consistent_reads: bool,
    /// Create the bucket when it is missing (else opening fails).
    pub create: bool,
    /// Open a replicated bucket even when the server is older than
    /// [`SERIALIZABLE_CAS_SINCE`], whose clustered compare-and-swap is not serializable
    /// (concurrent writers expecting one revision can all succeed, so an acknowledged write can
    /// be lost). Off: such an open fails, naming the version and the fix.
    pub allow_unserializable_cas: bool,
}

/// The first nats-server whose clustered compare-and-swap (`Nats-Expected-Last-Subject-Sequence`)
/// is serializable: 2.9.21 (nats-server#4319; before it the check ran on the leader before the
/// write was replicated, not in order with the writes).
pub const SERIALIZABLE_CAS_SINCE: (u32, u32, u32) = (2, 9, 21);

/// The version in a server's INFO (`2.9.10`, `2.10.25-RC.1`), as numbers.
pub fn parse_server_version(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version.trim().trim_start_matches('v').split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    });
    Some((parts.next()??, parts.next()??, parts.next()??))
}

impl Default for JetStreamStoreConfig {
    fn default() -> Self {
        Self::new(DEFAULT_BUCKET)
    }
}

impl JetStreamStoreConfig {
    /// The defaults for `bucket`.
    pub fn new(bucket: &str) -> Self {
        Self {
            bucket: bucket.to_owned(),
            replicas: None,
            history: DEFAULT_HISTORY,
            timeout: DEFAULT_TIMEOUT,
            consistent_reads: false,
            create: true,
            allow_unserializable_cas: false,
        }
    }

    /// The bucket's stream (`KV_<bucket>`).
    pub fn stream(&self) -> String {
        format!("KV_{}", self.bucket)
    }

    /// Checks every field, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |what: &'static str, value: String, reason: String| {
            Err(StoreError::Config {
                what,
                value,
                reason,
            })
        };
        if self.bucket.is_empty()
            || !self
                .bucket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(
                "bucket name",
                self.bucket.clone(),
                "a bucket name is one or more letters, digits, '-' or '_'".to_owned(),
            );
        }
        if !(1..=MAX_HISTORY).contains(&self.history) {
            return bad(
                "history",
                self.history.to_string(),
                format!("must be 1 to {MAX_HISTORY} (JetStream's limit)"),
            );
        }
        if let Some(n) = self.replicas
            && !(1..=MAX_REPLICAS).contains(&n)
        {
            return bad(
                "replica count",
                n.to_string(),
                format!("must be 1 to {MAX_REPLICAS} (JetStream's limit)"),
            );
        }
        if self.timeout.is_zero() {
            return bad(
                "timeout",
                format!("{:?}", self.timeout),
                "must be above zero".to_owned(),
            );
        }
        Ok(())
    }
}

/// The replicas the bucket gets when we create it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaChoice {
    /// The replica count.
    pub replicas: usize,
    /// Whether it was chosen automatically (no `replicas` configured).
    pub automatic: bool,
    /// Why, for the start-up line.
    pub reason: String,
    /// The cluster members the connected server advertised (1 when not clustered).
    pub cluster_servers: usize,
}

impl ReplicaChoice {
    /// The replicas for `configured` (validated by [`JetStreamStoreConfig::validate`]), or
    /// automatically [`AUTO_REPLICAS`], to be tried first (JetStream refuses them unless that
    /// many JetStream servers are up, and the bucket is then created with 1).
    /// `cluster_servers` counts the cluster members the connected server advertises (INFO
    /// `connect_urls`), to judge an existing bucket.
    pub fn choose(configured: Option<usize>, client: &async_nats::Client) -> Self {
        let cluster_servers = client
            .server_info()
            .connect_urls
            .iter()
            .collect::<BTreeSet<_>>()
            .len()
            .max(1);
        match configured {
            Some(n) => Self {
                replicas: n,
                automatic: false,
                reason: "configured".to_owned(),
                cluster_servers,
            },
            None => Self {
                replicas: AUTO_REPLICAS,
                automatic: true,
                reason: format!("automatic: {cluster_servers} cluster server(s) advertised"),
                cluster_servers,
            },
        }
    }

    /// The replicas an existing bucket should have: those configured, or automatically
    /// [`AUTO_REPLICAS`] when the cluster advertises that many servers (else 1).
    pub fn wanted_for_existing(&self) -> usize {
        if !self.automatic {
            self.replicas
        } else if self.cluster_servers >= AUTO_REPLICAS {
            AUTO_REPLICAS
        } else {
            1
        }
    }
}

/// The bucket as opened: its replicas against those wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketReport {
    /// The bucket.
    pub bucket: String,
    /// Its replicas.
    pub replicas: usize,
    /// The replicas asked for ([`ReplicaChoice`]).
    pub wanted: usize,
    /// Whether we created it now.
    pub created: bool,
    /// Values it keeps per key.
    pub history: i64,
    /// The version of the server the store is connected to.
    pub server_version: String,
    /// Whether compare-and-swap on it is serializable: one replica, or a server of at least
    /// [`SERIALIZABLE_CAS_SINCE`].
    pub serializable_cas: bool,
}

impl BucketReport {
    /// True when it has fewer replicas than wanted.
    pub fn under_replicated(&self) -> bool {
        self.replicas < self.wanted
    }

    /// The `nats` command that gives it the replicas wanted.
    pub fn fix_command(&self) -> String {
        format!(
            "nats stream edit KV_{} --replicas {} --force",
            self.bucket, self.wanted
        )
    }
}

impl std::fmt::Display for BucketReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bucket {} ({}): {} replica(s), history {}",
            self.bucket,
            if self.created { "created" } else { "existing" },
            self.replicas,
            self.history
        )?;
        if self.under_replicated() {
            write!(
                f,
                ", fewer than the {} wanted: it does not survive the loss of its node(s); fix it with `{}`",
                self.wanted,
                self.fix_command()
            )?;
        }
        if !self.serializable_cas {
            let (a, b, c) = SERIALIZABLE_CAS_SINCE;
            write!(
                f,
                "; nats-server {} does not serialize compare-and-swap on a replicated bucket \
                 (concurrent writers can all win): upgrade every server to {a}.{b}.{c} or later",
                self.server_version
            )?;
        }
        Ok(())
    }
}

/// How long an automatic R3 bucket creation is asked again when JetStream refuses to place
/// the replicas although the cluster advertises enough servers (their JetStream may not be
/// registered yet: a freshly started cluster), before falling back to 1 for good. Generous,
/// because the fall-back is permanent: on a loaded machine a fresh 3-node cluster took more
/// than 5 s to accept an R3 stream (a CI run fell back to 1 replica).
pub const PLACEMENT_WAIT: Duration = Duration::from_secs(30);

/// Whether compare-and-swap on a bucket of `replicas` replicas served by a nats-server of
/// `server_version` (its INFO version) is serializable: one replica, or a server of at least
/// [`SERIALIZABLE_CAS_SINCE`]. An unparsable version counts as too old.
pub fn cas_serializable(server_version: &str, replicas: usize) -> bool {
    replicas <= 1
        || parse_server_version(server_version).is_some_and(|v| v >= SERIALIZABLE_CAS_SINCE)
}

/// Whether JetStream refused a stream create for want of servers to place its replicas on
/// (10074: not clustered; 10005: no suitable peers; 10023: insufficient resources), as opposed
/// to a transient failure (no meta leader yet), which must not lower the replicas. `error` is
/// the error's text with its sources.
pub fn placement_refused(error: &str) -> bool {
    ["10074", "10005", "10023"]
        .iter()
        .any(|code| error.contains(&format!("error code {code}")))
        || error.contains("replicas > 1 not supported")
        || error.contains("insufficient resources")
        || error.contains("no suitable peers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_placement_refusals_lower_the_automatic_replicas() {
        assert!(placement_refused(
            "JetStream error: replicas > 1 not supported in non-clustered mode (code 400, error code 10074)"
        ));
        assert!(placement_refused(
            "JetStream error: insufficient resources (code 503, error code 10023)"
        ));
        assert!(!placement_refused(
            "JetStream error: JetStream system temporarily unavailable (code 503, error code 10008)"
        ));
        assert!(!placement_refused("timed out"));
    }

    #[test]
    fn under_replicated_buckets_name_the_fix() {
        let report = BucketReport {
            bucket: "anchorage".into(),
            replicas: 1,
            wanted: 3,
            created: false,
            history: 1,
            server_version: "2.10.25".into(),
            serializable_cas: true,
        };
        assert!(report.under_replicated());
        assert!(
            report
                .to_string()
                .contains("nats stream edit KV_anchorage --replicas 3 --force")
        );
        let fine = BucketReport {
            replicas: 3,
            ..report
        };
        assert!(!fine.under_replicated() && !fine.to_string().contains("nats stream edit"));
    }

    #[test]
    fn server_versions() {
        assert_eq!(parse_server_version("2.9.10"), Some((2, 9, 10)));
        assert_eq!(parse_server_version("v2.10.25-RC.1"), Some((2, 10, 25)));
        assert_eq!(parse_server_version("2.x"), None);
        assert!(parse_server_version("2.9.10").unwrap() < SERIALIZABLE_CAS_SINCE);
        assert!(parse_server_version("2.9.21").unwrap() >= SERIALIZABLE_CAS_SINCE);
        assert!(parse_server_version("2.10.0").unwrap() >= SERIALIZABLE_CAS_SINCE);
        assert!(cas_serializable("2.9.10", 1) && cas_serializable("2.10.25", 3));
        assert!(!cas_serializable("2.9.10", 3) && !cas_serializable("garbage", 3));
    }

    #[test]
    fn invalid_settings_are_named() {
        let ok = JetStreamStoreConfig::default();
        assert!(ok.validate().is_ok());
        let cases = [
            (
                JetStreamStoreConfig::new("a.b"),
                "bucket name",
                "letters, digits",
            ),
            (JetStreamStoreConfig::new(""), "bucket name", "one or more"),
            (
                JetStreamStoreConfig {
                    history: 65,
                    ..ok.clone()
                },
                "history",
                "1 to 64",
            ),
            (
                JetStreamStoreConfig {
                    replicas: Some(6),
                    ..ok.clone()
                },
                "replica count",
                "1 to 5",
            ),
            (
                JetStreamStoreConfig {
                    timeout: Duration::ZERO,
                    ..ok
                },
                "timeout",
                "above zero",
            ),
        ];
        for (config, field, rule) in cases {
            match config.validate() {
                Err(StoreError::Config { what, reason, .. }) => {
                    assert_eq!(what, field);
                    assert!(reason.contains(rule), "{reason}");
                }
                other => panic!("{config:?}: {other:?}"),
            }
        }
    }
}
