//! `anchorage`: the command-line front end. It parses arguments, resolves them into settings,
//! calls the libraries and renders their results as text or JSON; it has no logic of its own.

// The binary is the one place that talks to the user.
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// `print!` that ends the process with exit 5 and a message when stdout cannot be written (a
/// full disk, a closed pipe or descriptor), instead of panicking or reporting success.
macro_rules! out {
    ($($arg:tt)*) => { $crate::io::write_stdout(format_args!($($arg)*)) };
}

/// [`out!`] with a newline.
macro_rules! outln {
    () => { $crate::io::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::io::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
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

/// A warning on stderr (`anchorage: warning: …`), silent under `-q/--quiet`: the one printer
/// is [`render::warning`].
macro_rules! warnln {
    ($($arg:tt)*) => { $crate::render::warning(format_args!($($arg)*)) };
}

mod args;
mod commands;
mod exit;
mod globals;
mod harden;
mod io;
mod render;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // Stage one: parse.
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let traits = globals::CommandTraits {
        json: wants_json(&cli.command),
        connects_out: connects_out(&cli.command),
    };
    let global_args = globals::GlobalArgs {
        verbose: cli.verbose,
        quiet: cli.quiet,
        tls_ca_paths: cli.tls_ca_path,
    };
    // Stage two: resolve the global options once, then run the command with them.
    let globals = globals::Globals::resolve(global_args, &traits);
    let result = globals.check().and_then(|()| run(cli.command, &globals));
    match result {
        Ok(code) => code.into(),
        Err(failure) => {
            eprintln!("anchorage: error: {}", failure.message);
            // With --output json, stdout carries exactly one document, a failure too.
            if globals.json && !io::json_printed() {
                render::print_failure_json(&failure);
            }
            failure.code.into()
        }
    }
}

/// Whether the command may make outbound TLS connections (`--tls-ca-path` applies).
fn connects_out(command: &args::Command) -> bool {
    use args::{CaAction, Command};
    match command {
        Command::Doctor(_) | Command::Tls(_) | Command::Secrets(_) | Command::Image(_) => true,
        Command::Ca(a) => matches!(a.action, CaAction::Issue(_)),
        Command::Bundle(_)
        | Command::Env(_)
        | Command::K8s(_)
        | Command::Trust(_)
        | Command::Completions(_)
        | Command::Man => false,
    }
}

fn run(command: args::Command, globals: &globals::Globals) -> Result<exit::Code, exit::Failure> {
    match command {
        args::Command::Bundle(args::BundleCommand::Build(a)) => commands::build::run(*a),
        args::Command::Bundle(args::BundleCommand::Inspect(a)) => {
            commands::inspect::run(a, globals)
        }
        args::Command::Env(a) => commands::env::run(a),
        args::Command::Doctor(a) => commands::doctor::run(a, globals),
        args::Command::K8s(args::K8sCommand::Patch(a)) => commands::k8s::patch(a),
        args::Command::Tls(args::TlsCommand::Roots(a)) => commands::tls::roots(a, globals),
        args::Command::Ca(a) => commands::ca::run(a, globals),
        args::Command::Secrets(a) => commands::secrets::run(a, globals),
        args::Command::Image(a) => commands::image::run(a, globals),
        args::Command::Trust(a) => commands::trust::run(a),
        args::Command::Completions(a) => commands::completions(&a),
        args::Command::Man => commands::man(),
    }
}

/// Whether the command asked for JSON on stdout (`--output json`, `env --format json`).
fn wants_json(command: &args::Command) -> bool {
    use args::{BundleCommand, CaAction, Command, EnvFormat, K8sCommand, OutputFormat, TlsCommand};
    let output = match command {
        Command::Bundle(BundleCommand::Build(a)) => a.output,
        Command::Bundle(BundleCommand::Inspect(a)) => a.output,
        Command::Env(a) => {
            return a.format == EnvFormat::Json;
        }
        Command::Doctor(a) => a.output,
        // The patch is JSON itself; a failure prints nothing on stdout.
        Command::K8s(K8sCommand::Patch(_)) => OutputFormat::Text,
        Command::Tls(TlsCommand::Roots(a)) => a.output,
        Command::Ca(a) => match &a.action {
            CaAction::Init(a) => a.output,
            CaAction::Issue(a) => a.output,
            CaAction::Show(a) => a.output,
            CaAction::Export(a) => a.output,
            CaAction::Import(a) => a.output,
        },
        Command::Secrets(a) => return a.json_output(),
        Command::Image(a) => return a.json_output(),
        Command::Trust(
            crate::commands::trust::TrustCommand::Install(a)
            | crate::commands::trust::TrustCommand::Uninstall(a),
        ) => a.output,
        Command::Completions(_) | Command::Man => OutputFormat::Text,
    };
    output == OutputFormat::Json
}

/// A command line clap refused: its message (help and version are not errors), and with
/// `--output json` (or `-o json`) in it the failure document on stdout as every other failure.
fn usage_error(e: &clap::Error) -> ExitCode {
    // Help and version go to stdout, errors to stderr; a stdout that cannot take them is exit 5.
    if let Err(write) = e.print() {
        eprintln!("anchorage: error: cannot write to stdout: {write}");
        return exit::Code::Output.into();
    }
    let code = u8::try_from(e.exit_code()).unwrap_or(exit::Code::Usage as u8);
    if code == exit::Code::Usage as u8 && asked_json() {
        let rendered = e.render().to_string();
        let first = rendered.lines().next().unwrap_or_default();
        let message = first.strip_prefix("error: ").unwrap_or(first);
        render::print_failure_json(&exit::Failure::new(exit::Code::Usage, message));
    }
    ExitCode::from(code)
}

/// `--output json` (or `-o json`, `--format json`) among the raw arguments, for a command line
/// clap refused before it could say.
fn asked_json() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    args.iter().enumerate().any(|(i, a)| {
        matches!(
            a.as_str(),
            "--output=json" | "-ojson" | "-o=json" | "--format=json"
        ) || (matches!(a.as_str(), "--output" | "-o" | "--format")
            && args.get(i + 1).is_some_and(|v| v == "json"))
    })
}
