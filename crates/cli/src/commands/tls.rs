//! `anchorage tls roots`: the trust behind anchorage's own outbound TLS connections.
//!
//! Every command that connects out (registry, NATS, Vault, `doctor`) builds its trust from the
//! same [`TrustConfig`], resolved here from the global `--tls-ca-path` options: the OS store and
//! Mozilla's roots, plus each path, as wasmCloud's host does.

use std::path::PathBuf;

use anchorage_trust::tls::TrustConfig;

use crate::args::{OutputFormat, TlsRootsArgs};
use crate::exit::{Code, Failure};
use crate::render::print_json;

/// The outbound trust for `--tls-ca-path` (global) with the defaults of wasmCloud's HTTP client.
pub(crate) fn outbound_trust(tls_ca_paths: &[PathBuf]) -> TrustConfig {
    TrustConfig {
        extra_ca_paths: tls_ca_paths.to_vec(),
        ..TrustConfig::default()
    }
}

pub(crate) fn roots(args: TlsRootsArgs, tls_ca_paths: &[PathBuf]) -> Result<Code, Failure> {
    let config = TrustConfig {
        load_native_certs: !args.no_native_certs,
        load_webpki_certs: !args.no_webpki_certs,
        ssl_certs_file: args.tls_certs_file,
        ..outbound_trust(tls_ca_paths)
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
