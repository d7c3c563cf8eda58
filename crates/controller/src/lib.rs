//! The Bundle controller behind `anchorage controller` (issue 17, first slice).
//!
//! - [`crd`]: the cluster-scoped `Bundle` custom resource (`trust.anchorage.dev/v1alpha1`) and its
//!   generated CRD.
//! - [`desired`]: the desired state, pure: (Bundle, source objects, namespaces) → target objects
//!   or typed refusals.
//!
//! Not here yet: the pod-injection webhook, the Kubernetes secrets store, ClusterTrustBundle and
//! Java store targets, `anchorage serve` URL sources.

pub mod crd;
pub mod desired;

pub use crd::{Bundle, BundleSpec, BundleStatus, GROUP, crd_yaml};
pub use desired::{Desired, Namespace, Refusal, Sources, TargetObject, desired};
