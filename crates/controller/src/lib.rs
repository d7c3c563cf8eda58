//! The Bundle controller behind `anchorage controller` (issue 17, first slice).
//!
//! - [`crd`]: the cluster-scoped `Bundle` custom resource (`trust.anchorage.dev/v1alpha1`) and its
//!   generated CRD.
//! - [`desired`](mod@desired): the desired state, pure: (Bundle, source objects, namespaces) → target objects
//!   or typed refusals.
//! - [`reconcile`]: the kube-rs `Controller` that writes them (server-side apply, content hash,
//!   owner labels and cleanup, status conditions, Events).
//! - [`trust_manager`]: trust-manager's `Bundle` (`trust.cert-manager.io/v1alpha1`) read and
//!   turned into an anchorage one (pure); reconciled by [`reconcile`] with
//!   `Settings::trust_manager_bundles`.
//! - [`inject`]: pod injection, pure: an AdmissionReview → the JSON patch mounting the trust
//!   volume and setting the runtime variables (the same ones `anchorage k8s patch` sets).
//! - [`webhook`]: the mutating admission webhook around it (HTTPS, serving certificate from
//!   Anchorage's CA, the `MutatingWebhookConfiguration`).
//!
//! - [`leader`]: leader election on a Lease (`--leader-elect`): one of several replicas
//!   reconciles, another takes over when it stops or dies.
//!
//! Not here: the Kubernetes secrets store (`anchorage-secrets-store-k8s`).

pub mod crd;
pub mod desired;
pub mod inject;
pub mod leader;
pub mod reconcile;
pub mod trust_manager;
pub mod webhook;

pub use crd::{Bundle, BundleSpec, BundleStatus, GROUP, crd_yaml};
pub use desired::{Desired, Namespace, Refusal, Sources, TargetObject, desired};
pub use inject::{INJECT_LABEL, INJECTED_ANNOTATION, InjectSettings};
pub use leader::{LeaderElection, LeaderError, run_elected, run_elected_with_default_client};
pub use reconcile::{FIELD_MANAGER, Settings, run, run_with_default_client};
pub use webhook::{WebhookService, webhook_configuration};
