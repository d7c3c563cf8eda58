//! Kubernetes objects that carry a trust bundle to workloads.
