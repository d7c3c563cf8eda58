//! `rotation-soak`: issue 16's proof harness — a benchmark-style program, not a timed test.
//!
//! It starts `anchorage serve` and N `anchorage agent` processes, and for each agent an
//! `openssl s_server` and a rustls server of our own, both mTLS, both using only that agent's
//! files; clients of agent i (`openssl s_client`, and rustls) call the servers of agent
//! (i+1) mod N, continuously. Then it rotates the root (`--procedure naive`: replace and
//! restart; `--procedure anchorage`: serve's rotation state machine) and counts every
//! handshake. See docs/benchmarks.md ("Root rotation") for the figures and commands.
//!
//! The subcommands `peer` and `openssl-reload` are its own helpers (the rustls workload of one
//! agent; an agent's on-change command restarting its s_server), started by the harness.

mod error;
mod files;
mod harness;
mod monitor;
mod openssl;
mod peer;
mod procedure;
mod serve;
mod stats;
mod tls;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "rotation-soak",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    about = "Root rotation under mTLS load: anchorage serve, N agents, openssl and rustls peers",
    after_help = "Examples:\n  rotation-soak --procedure naive --short\n  rotation-soak --procedure anchorage --agents 8 --leaf-ttl 3m -o json\n  rotation-soak --procedure anchorage --freeze-agent --restart-serve-in-each-phase\n\nExit: 0 done (naive: failures seen; anchorage: 0 failed handshakes), 1 the target missed, 2 the\nharness could not run."
)]
struct Cli {
    #[command(subcommand)]
    helper: Option<Helper>,
    #[command(flatten)]
    run: Option<harness::RunArgs>,
}

#[derive(Subcommand, Debug)]
enum Helper {
    /// (helper) The rustls workload of one agent.
    #[command(hide = true)]
    Peer(peer::PeerArgs),
    /// (helper) An agent's on-change command: restart its openssl s_server blue/green.
    #[command(hide = true)]
    OpensslReload(openssl::ReloadArgs),
}

#[allow(clippy::print_stderr, clippy::print_stdout)] // the program's output
fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROTATION_SOAK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rotation-soak: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.helper {
        Some(Helper::Peer(args)) => match runtime.block_on(peer::run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rotation-soak peer: {e}");
                ExitCode::from(2)
            }
        },
        Some(Helper::OpensslReload(args)) => match openssl::reload(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rotation-soak openssl-reload: {e}");
                ExitCode::from(2)
            }
        },
        None => {
            let Some(args) = cli.run else {
                eprintln!("rotation-soak: --procedure naive|anchorage is required (see --help)");
                return ExitCode::from(2);
            };
            let json = args.output == harness::Output::Json;
            let procedure = args.procedure;
            match runtime.block_on(harness::run(args)) {
                Ok(summary) => {
                    eprint!("{}", harness::render_text(&summary));
                    if json {
                        match serde_json::to_string_pretty(&summary) {
                            Ok(s) => println!("{s}"),
                            Err(e) => eprintln!("rotation-soak: summary: {e}"),
                        }
                    }
                    if let Some(e) = summary.procedure_error() {
                        eprintln!("rotation-soak: the procedure could not be carried out: {e}");
                        return ExitCode::from(2);
                    }
                    let met = match procedure {
                        procedure::Procedure::Naive => summary.failed() > 0,
                        procedure::Procedure::Anchorage => summary.failed() == 0,
                    };
                    if met {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("rotation-soak: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
