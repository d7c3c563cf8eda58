//! `anchorage secrets`: serve the wasmCloud secrets protocol over NATS, and administer the store.

use std::path::PathBuf;

use clap::Subcommand;

use crate::exit::{Code, Failure};

/// `anchorage secrets …` (work in progress).
#[derive(Subcommand, Debug)]
pub(crate) enum SecretsCommand {}

/// Runs `anchorage secrets …`.
pub(crate) fn run(cmd: SecretsCommand, _tls_ca_paths: &[PathBuf]) -> Result<Code, Failure> {
    match cmd {}
}
