//! `anchorage tls roots`: the trust behind anchorage's own outbound TLS connections.
//!
//! Every command that connects out (registry, NATS, Vault, `doctor`) builds its trust from the
//! same [`TrustConfig`], resolved once from the global `--tls-ca-path` options
//! ([`crate::globals::Outbound`]): the OS store and
//! Mozilla's roots, plus each path, as wasmCloud's host does.

use std::path::PathBuf;

use anchorage_trust::tls::TrustConfig;
use clap::{Args, Subcommand};

use crate::exit::{Code, Failure};
use crate::globals::{Globals, Run};
use crate::options::OutputFormat;
use crate::render::print_json;

impl Run for TlsCommand {
    fn json(&self) -> bool {
        match self {
            TlsCommand::Roots(a) => a.output == OutputFormat::Json,
        }
    }

    fn connects_out(&self) -> bool {
        true
    }

    fn run(self, globals: &Globals) -> Result<Code, Failure> {
        match self {
            TlsCommand::Roots(a) => roots(a, globals),
        }
    }
}

fn roots(args: TlsRootsArgs, globals: &Globals) -> Result<Code, Failure> {
    let config = TrustConfig {
        load_native_certs: !args.no_native_certs,
        load_webpki_certs: !args.no_webpki_certs,
        ssl_certs_file: args.tls_certs_file,
        ..globals.outbound.trust()
    };
    let (_store, report) = config.root_store()?;
    match args.output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => {
            outln!("{report}");
            for detail in report.details() {
                outln!("  {detail}");
            }
        }
    }
    Ok(Code::Ok)
}

// The command line of this command.

#[derive(Subcommand, Debug)]
pub(crate) enum TlsCommand {
    /// List what each trust source contributes to outbound connections: the OS store, Mozilla's
    /// roots and every --tls-ca-path, with what was refused and why.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage tls roots\n",
            "  anchorage --tls-ca-path /etc/corp/ca.pem --tls-ca-path /etc/corp/ca.d tls \\\n",
            "    roots --output json\n",
            "  anchorage tls roots --no-native-certs --tls-certs-file corp.pem\n",
            "\n",
        ),
        &[
            (Code::Ok, "at least one trust anchor"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::BadInput, "a path is missing or holds no certificate, or nothing is trusted at all"),
            (Code::PrivateKey, "a path holds a private key"),
        ],
        "",
    ))]
    Roots(TlsRootsArgs),
}

#[derive(Args, Debug)]
pub(crate) struct TlsRootsArgs {
    /// Leave out the OS store (wasmCloud: load_native_certs = false).
    #[arg(long)]
    pub(crate) no_native_certs: bool,
    /// Leave out Mozilla's roots (wasmCloud: load_webpki_certs = false).
    #[arg(long)]
    pub(crate) no_webpki_certs: bool,
    /// A CA file that must exist (wasmCloud: ssl_certs_file).
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_certs_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}
