//! The second of the CLI's two stages (as ripgrep's): the global options, parsed by clap in
//! [`crate::cli`], resolved once into [`Globals`], the one value every command receives.
//!
//! This is the only place that reads `--tls-ca-path`, picks the rustls crypto provider, sets
//! `-q/--quiet` and `-v` (the tracing filter) and decides whether stdout carries JSON.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;

use anchorage_trust::tls::TrustConfig;
use rustls::crypto::CryptoProvider;

use crate::exit::{Code, Failure, with_causes};

/// A command: its arguments as clap parsed them, and how it runs with the resolved [`Globals`].
/// Every command's arguments type implements it, beside the command; [`crate::cli::Command`]
/// lists them.
pub(crate) trait Run {
    /// `--output json` (or `env --format json`) was asked for: stdout carries exactly one JSON
    /// document, a failure's too.
    fn json(&self) -> bool {
        false
    }

    /// The command may make outbound TLS connections (so `--tls-ca-path` applies to it).
    fn connects_out(&self) -> bool {
        false
    }

    /// Runs the command: the exit code of a success (warnings, if any, were printed), or the
    /// failure (`main` prints it, on stdout too as a JSON document under `--output json`).
    fn run(self, globals: &Globals) -> Result<Code, Failure>;
}

/// The global options as typed, handed over by the parser (nothing read yet).
pub(crate) struct GlobalArgs {
    pub(crate) verbose: u8,
    pub(crate) quiet: bool,
    pub(crate) tls_ca_paths: Vec<PathBuf>,
}

/// What a command needs to know about the command line before it runs.
pub(crate) struct CommandTraits {
    /// `--output json` (or `env --format json`): stdout carries exactly one JSON document, a
    /// failure's too.
    pub(crate) json: bool,
    /// The command may make outbound TLS connections, so `--tls-ca-path` applies to it.
    pub(crate) connects_out: bool,
}

/// The global options resolved: what every command receives.
pub(crate) struct Globals {
    /// The trust and crypto provider of every outbound TLS connection.
    pub(crate) outbound: Outbound,
    /// Stdout carries JSON (a failure prints its document there too).
    pub(crate) json: bool,
    /// The command may make outbound TLS connections.
    connects_out: bool,
    /// The `-v` count (0 without it).
    pub(crate) verbose: u8,
}

impl Globals {
    /// Resolves the global options for a command: sets `--quiet` for [`crate::render`] and
    /// starts tracing; [`Globals::check`] then says whether they can be honoured.
    pub(crate) fn resolve(args: GlobalArgs, command: &CommandTraits) -> Self {
        crate::render::set_quiet(args.quiet);
        init_tracing(if args.quiet { None } else { Some(args.verbose) });
        Self {
            outbound: Outbound {
                tls_ca_paths: args.tls_ca_paths,
                provider: Arc::new(rustls::crypto::ring::default_provider()),
            },
            json: command.json,
            connects_out: command.connects_out,
            verbose: args.verbose,
        }
    }

    /// `--tls-ca-path` only where a TLS connection can be made (exit 2), and every path
    /// readable (exit 3), before the command starts.
    pub(crate) fn check(&self) -> Result<(), Failure> {
        if self.outbound.tls_ca_paths.is_empty() {
            return Ok(());
        }
        if !self.connects_out {
            return Err(Failure::new(
                Code::Usage,
                "--tls-ca-path has no effect here: it is the trust of commands that make TLS connections (doctor, tls roots, image inject, ca issue --backend vault, secrets); to put a CA in a bundle, name it as a SOURCE",
            ));
        }
        crate::io::check_inputs(
            self.outbound
                .tls_ca_paths
                .iter()
                .map(|p| ("--tls-ca-path", p.as_path())),
        )
    }
}

/// Outbound TLS: the OS store, Mozilla's roots and every `--tls-ca-path` (as wasmCloud's host
/// does), with ring as the crypto provider, for every client anchorage makes (registry, NATS,
/// OpenBao/Vault, `doctor`, `tls roots`).
pub(crate) struct Outbound {
    tls_ca_paths: Vec<PathBuf>,
    provider: Arc<CryptoProvider>,
}

impl Outbound {
    /// Whether `--tls-ca-path` was given.
    pub(crate) fn has_tls_ca_paths(&self) -> bool {
        !self.tls_ca_paths.is_empty()
    }

    /// The trust with the defaults of wasmCloud's HTTP client: the OS store and Mozilla's
    /// roots, plus `--tls-ca-path`.
    pub(crate) fn trust(&self) -> TrustConfig {
        self.over(TrustConfig::default())
    }

    /// `base` (the stores a command chose, e.g. `doctor --bundle`), plus `--tls-ca-path`: the
    /// one place the option becomes trust.
    pub(crate) fn over(&self, base: TrustConfig) -> TrustConfig {
        TrustConfig {
            extra_ca_paths: self.tls_ca_paths.clone(),
            ..base
        }
    }

    /// The crypto provider (ring, as everywhere in anchorage).
    pub(crate) fn provider(&self) -> Arc<CryptoProvider> {
        Arc::clone(&self.provider)
    }

    /// The rustls client configuration of [`Outbound::trust`] (NATS, OpenBao); a path that
    /// holds no certificate is exit 3.
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, Failure> {
        self.trust()
            .client_config(self.provider())
            .map(|(config, _)| config)
            .map_err(|e| {
                Failure::new(
                    Code::BadInput,
                    format!("--tls-ca-path: {}", with_causes(&e)),
                )
            })
    }

    /// Installs the provider as the process default, for clients that take it (reqwest in the
    /// registry client). Already installed is fine.
    pub(crate) fn install_process_default(&self) {
        let _ = CryptoProvider::install_default(CryptoProvider::clone(&self.provider));
    }
}

/// `None`: `--quiet`, errors only (audit events of `secrets serve` stay on: they are its
/// record, not progress).
fn init_tracing(verbose: Option<u8>) {
    let default = match verbose {
        None => "error,anchorage::audit=info",
        // Audit events of `secrets serve` (target anchorage::audit) are on by default.
        Some(0) => "warn,anchorage::audit=info",
        Some(1) => "info",
        Some(2) => "debug",
        Some(_) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ANCHORAGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
