//! Leader election for the Bundle controller (`anchorage controller --leader-elect`): several
//! replicas run, one reconciles. The lease is a `coordination.k8s.io/v1` Lease in the trust
//! namespace, taken and renewed through the `kube-lease-manager` crate (kube-rs has no leader
//! election of its own): server-side apply with one field manager per candidate, so on a real
//! API server two candidates cannot both take a free lease.
//!
//! What a replica does:
//!
//! - It waits as a candidate until it holds the lease, then runs [`crate::run`].
//! - It renews the lease `grace` before it expires. When it learns that it lost the lease (another
//!   candidate took it after a missed renewal), it stops reconciling at once and [`run_elected`]
//!   returns [`LeaderError::Lost`]: the process exits and Kubernetes restarts it as a candidate,
//!   as client-go's leader election does.
//! - On SIGTERM/SIGINT it stops reconciling and releases the lease, so another replica takes over
//!   without waiting for it to expire. A replica that is killed holds it until it expires.
//!
//! Not fenced: like client-go's, this election has no fencing token. A leader cut off from the
//! API server learns it lost the lease only when it reaches the API server again, so for up to a
//! lease duration two replicas may both write. Their writes are the same server-side apply of the
//! same desired state (and the status only when it changed), so the overlap costs writes, not
//! correctness.

use std::future::Future;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};

use crate::reconcile::{Settings, run};

/// The Lease's default name.
pub const DEFAULT_LEASE_NAME: &str = "anchorage-controller";
/// How long a lease holds without a renewal, by default (client-go's default is 15 s too).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long before the lease expires the holder renews it, by default.
pub const DEFAULT_RENEW_GRACE: Duration = Duration::from_secs(5);

/// Where and as whom to take the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderElection {
    /// The Lease's name.
    pub lease_name: String,
    /// Its namespace (the trust namespace by default: the controller's own).
    pub namespace: String,
    /// This candidate (the pod's name: `POD_NAME`, else the host name).
    pub identity: String,
    /// How long the lease holds without a renewal (whole seconds, at least 2).
    pub duration: Duration,
    /// How long before it expires the holder renews it (whole seconds, less than `duration`).
    pub grace: Duration,
}

impl LeaderElection {
    /// The defaults for `identity` in `namespace`.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            lease_name: DEFAULT_LEASE_NAME.to_owned(),
            namespace: namespace.into(),
            identity: identity.into(),
            duration: DEFAULT_LEASE_DURATION,
            grace: DEFAULT_RENEW_GRACE,
        }
    }
}

/// Why [`run_elected`] ended other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// `grace` is not shorter than `duration`, or either is under a second.
    #[error(
        "the lease renewal grace ({grace:?}) must be at least 1 s and shorter than the lease duration ({duration:?})"
    )]
    Timing {
        /// The lease duration asked for.
        duration: Duration,
        /// The grace asked for.
        grace: Duration,
    },
    /// The Lease could not be read or created.
    #[error("cannot take part in the election on Lease {namespace}/{name}")]
    Lease {
        /// The Lease's namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The cause.
        #[source]
        source: LeaseManagerError,
    },
    /// No Kubernetes client configuration could be found or used.
    #[error("no Kubernetes client")]
    Client(#[source] kube::Error),
    /// Another candidate holds the lease now: this replica stopped reconciling.
    #[error(
        "lost the lease {namespace}/{name} to another replica; stopped reconciling (restart to stand again)"
    )]
    Lost {
        /// The Lease's namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// Takes part in the election and runs the controller (see [`run`]) while this replica holds
/// the lease, until `shutdown` completes or the lease is lost. On `shutdown` the lease is
/// released.
///
/// # Errors
///
/// The timings are invalid, the Lease cannot be read or created, or the lease was lost.
pub async fn run_elected(
    client: Client,
    settings: Settings,
    election: LeaderElection,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LeaderError> {
    let (duration, grace) = (election.duration.as_secs(), election.grace.as_secs());
    if grace == 0 || grace >= duration {
        return Err(LeaderError::Timing {
            duration: election.duration,
            grace: election.grace,
        });
    }
    let lease_error = |source| LeaderError::Lease {
        namespace: election.namespace.clone(),
        name: election.lease_name.clone(),
        source,
    };
    let manager = LeaseManagerBuilder::new(client.clone(), &election.lease_name)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(duration)
        .with_grace(grace)
        .build()
        .await
        .map_err(lease_error)?;
    let (mut leading, task) = manager.watch().await;
    tracing::info!(
        identity = %election.identity,
        lease = %format!("{}/{}", election.namespace, election.lease_name),
        "candidate: waiting for the lease"
    );
    let mut shutdown = std::pin::pin!(shutdown);
    // A candidate until it holds the lease, or until shutdown.
    while !*leading.borrow_and_update() {
        tokio::select! {
            changed = leading.changed() => {
                if changed.is_err() {
                    // The manager's task ended (it only does on a send error): stand again.
                    return Err(LeaderError::Lost {
                        namespace: election.namespace.clone(),
                        name: election.lease_name.clone(),
                    });
                }
            }
            () = &mut shutdown => {
                release(leading, task).await;
                return Ok(());
            }
        }
    }
    tracing::info!(identity = %election.identity, "leading: reconciling");
    let lost = async {
        loop {
            if leading.changed().await.is_err() || !*leading.borrow_and_update() {
                return;
            }
        }
    };
    let outcome = tokio::select! {
        () = run(client, settings) => Ok(()),
        () = &mut shutdown => Ok(()),
        () = lost => Err(LeaderError::Lost {
            namespace: election.namespace.clone(),
            name: election.lease_name.clone(),
        }),
    };
    match &outcome {
        Ok(()) => tracing::info!(identity = %election.identity, "stopping: releasing the lease"),
        Err(e) => tracing::error!(identity = %election.identity, "{e}"),
    }
    release(leading, task).await;
    outcome
}

/// Closes the channel, which makes the manager's task release the lease (if held) and end.
async fn release(
    leading: tokio::sync::watch::Receiver<bool>,
    task: tokio::task::JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
) {
    drop(leading);
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "could not release the lease; it expires"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the lease task failed; the lease expires"),
        Err(_) => tracing::warn!("the lease was not released within 5 s; it expires"),
    }
}

/// [`run_elected`] with the client from the environment: the in-cluster service account, else
/// `KUBECONFIG` / `~/.kube/config`.
///
/// # Errors
///
/// As [`run_elected`], and [`LeaderError::Client`] without a client configuration.
pub async fn run_elected_with_default_client(
    settings: Settings,
    election: LeaderElection,
    shutdown: impl Future<Output = ()>,
) -> Result<(), LeaderError> {
    let client = Client::try_default().await.map_err(LeaderError::Client)?;
    run_elected(client, settings, election, shutdown).await
}

/// This candidate's default identity: `POD_NAME` (set from the downward API in the manifests),
/// else the host name and the process id.
pub fn default_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.is_empty()
    {
        return pod;
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "anchorage-controller".to_owned());
    format!("{host}-{}", std::process::id())
}
