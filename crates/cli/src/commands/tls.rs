//! `anchorage tls roots`: the trust behind anchorage's own outbound TLS connections.
//!
//! Every command that connects out (registry, NATS, Vault, `doctor`) builds its trust from the
//! same [`TrustConfig`], resolved once from the global `--tls-ca-path` options
//! ([`crate::globals::Outbound`]): the OS store and
//! Mozilla's roots, plus each path, as wasmCloud's host does.

use anchorage_trust::tls::TrustConfig;

use crate::args::{OutputFormat, TlsRootsArgs};
use crate::exit::{Code, Failure};
use crate::globals::Globals;
use crate::render::print_json;

pub(crate) fn roots(args: TlsRootsArgs, globals: &Globals) -> Result<Code, Failure> {
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
