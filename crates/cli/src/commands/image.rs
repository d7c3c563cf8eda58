//! `anchorage image`: add private CAs to container images without Docker.

use std::path::PathBuf;

use clap::Subcommand;

use crate::exit::{Code, Failure};

/// `anchorage image …` (work in progress).
#[derive(Subcommand, Debug)]
pub(crate) enum ImageCommand {}

/// Runs `anchorage image …`.
pub(crate) fn run(cmd: ImageCommand, _tls_ca_paths: &[PathBuf]) -> Result<Code, Failure> {
    match cmd {}
}
