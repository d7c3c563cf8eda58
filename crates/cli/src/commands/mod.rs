//! One module per command: its arguments (clap) beside the code that resolves them, calls the
//! library and renders; each arguments type implements [`crate::globals::Run`]. Commands do not
//! import each other, nor [`crate::cli`]: they depend only on the shared leaves (`globals`,
//! `options`, `exit`, `io`, `render`, `harden`).

pub(crate) mod agent;
pub(crate) mod build;
pub(crate) mod bundle;
pub(crate) mod ca;
pub(crate) mod control;
pub(crate) mod controller;
pub(crate) mod doctor;
pub(crate) mod env;
pub(crate) mod image;
pub(crate) mod inspect;
pub(crate) mod k8s;
pub(crate) mod secrets;
pub(crate) mod tls;
pub(crate) mod trust;
