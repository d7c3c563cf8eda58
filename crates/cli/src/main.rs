//! `anchorage`: the command-line front end. It parses arguments, resolves them into settings,
//! calls the libraries and renders their results as text or JSON; it has no logic of its own.

// The binary is the one place that talks to the user.
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// `print!` that ends the process quietly when stdout is a closed pipe (`anchorage … | head`),
/// as ripgrep does, instead of panicking; any other write error exits 1 with a message.
macro_rules! out {
    ($($arg:tt)*) => { $crate::render::write_stdout(format_args!($($arg)*)) };
}

/// [`out!`] with a newline.
macro_rules! outln {
    () => { $crate::render::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::render::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprintln!` for progress, notes and warnings: silent under `-q/--quiet`. Errors use
/// `eprintln!` and are never silenced.
macro_rules! diagln {
    ($($arg:tt)*) => {
        if !$crate::render::quiet() {
            eprintln!($($arg)*);
        }
    };
}

mod args;
mod commands;
mod exit;
mod harden;
mod render;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    render::set_quiet(cli.quiet);
    init_tracing(if cli.quiet { None } else { Some(cli.verbose) });
    let result = match cli.command {
        args::Command::Bundle(args::BundleCommand::Build(a)) => commands::build::run(*a),
        args::Command::Bundle(args::BundleCommand::Inspect(a)) => {
            commands::inspect::run(a, cli.verbose)
        }
        args::Command::Env(a) => commands::env::run(a),
        args::Command::Doctor(a) => commands::doctor::run(a, &cli.tls_ca_path),
        args::Command::K8s(args::K8sCommand::Patch(a)) => commands::k8s::patch(a),
        args::Command::Tls(args::TlsCommand::Roots(a)) => commands::tls::roots(a, &cli.tls_ca_path),
        args::Command::Ca(a) => commands::ca::run(a, &cli.tls_ca_path),
        args::Command::Secrets(a) => commands::secrets::run(a, &cli.tls_ca_path),
        args::Command::Image(a) => commands::image::run(a, &cli.tls_ca_path),
        args::Command::Trust(a) => commands::trust::run(a),
        args::Command::Completions(a) => commands::completions(&a),
        args::Command::Man => commands::man(),
    };
    match result {
        Ok(code) => code.into(),
        Err(failure) => {
            eprintln!("anchorage: error: {}", failure.message);
            failure.code.into()
        }
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
