//! One module per command: resolve arguments, call the library, render.

pub(crate) mod build;
pub(crate) mod doctor;
pub(crate) mod env;
pub(crate) mod inspect;
pub(crate) mod k8s;
pub(crate) mod tls;
