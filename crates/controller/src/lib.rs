//! The Bundle controller behind `anchorage controller` (issue 17, first slice).
//!
//! - [`crd`]: the cluster-scoped `Bundle` custom resource (`trust.anchorage.dev/v1alpha1`) and its
//!   generated CRD.
//!
//! Not here yet: the pod-injection webhook, the Kubernetes secrets store, ClusterTrustBundle and
//! Java store targets, `anchorage serve` URL sources.

pub mod crd;

pub use crd::{Bundle, BundleSpec, BundleStatus, GROUP, crd_yaml};
