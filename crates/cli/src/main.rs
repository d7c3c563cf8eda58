//! `anchorage`: the command-line front end. It parses arguments, resolves them into settings,
//! calls the libraries and renders their results as text or JSON; it has no logic of its own.
//!
//! Two stages, as ripgrep: [`cli`] parses (clap), [`globals`] resolves the global options once
//! into the [`globals::Globals`] every command receives; then the command runs
//! ([`globals::Run`]) and `main` reports its failure (stderr, and the JSON failure document).
//! Modules, each importing only those after it: `cli` → `commands::*` → `globals`, `options`,
//! `harden` → `render` → `io` → `exit`.

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

mod cli;
mod commands;
mod exit;
mod globals;
mod harden;
mod io;
mod options;
mod render;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // Stage one: parse.
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    // Stage two: resolve the global options once, then run the command with them.
    let globals = globals::Globals::resolve(cli.global_args(), &cli.command.traits());
    let result = globals.check().and_then(|()| cli.command.run(&globals));
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

/// A command line clap refused: its message (help and version are not errors), and with
/// `--output json` (or `-o json`) in it the failure document on stdout as every other failure.
fn usage_error(e: &clap::Error) -> ExitCode {
    // Help and version go to stdout, errors to stderr; a stdout that cannot take them is exit 5,
    // except help or version read by a pager or `head` that hung up once it had enough: that
    // reader has what it asked for, so it ends quietly (exit 0), as ripgrep does.
    if let Err(write) = e.print() {
        if write.kind() == std::io::ErrorKind::BrokenPipe
            && matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            )
        {
            return ExitCode::SUCCESS;
        }
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
