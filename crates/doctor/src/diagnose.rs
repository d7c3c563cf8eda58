//! Judging a presented chain: one primary [`Diagnosis`], secondary [`Finding`]s, and the [`Fix`].
//!
//! This module owns the verdict. Trust is decided by rustls's `WebPkiServerVerifier` against the
//! caller's `RootCertStore` (so the doctor agrees with every rustls client built from the same
//! trust); [`classify`] then explains that verdict from the certificates themselves (a refused
//! SHA-1 signature or short RSA key becomes a weak-crypto diagnosis rather than a bad signature,
//! webpki's `CaUsedAsEndEntity` a CA-as-leaf one, or a self-signed-leaf one marked `is_ca` when
//! the CA certificate is its own issuer; a leaf whose RSA key is too
//! short for rustls to check the handshake signature with is not trusted even when its chain
//! verifies) and looks for what rustls does not report (weak certificates off the path, order,
//! extra certificates, near expiry). Both [`Diagnosis`] and [`Finding`] display as one sentence
//! naming the certificate as `[index] subject`. It does no I/O: candidate CA files come in
//! already read.
//!
//! Split by job:
//!
//! - [`diagnosis`]: the types ([`Diagnosis`], [`Finding`]) and their sentences (`Display`);
//! - [`classify`]: deciding the diagnosis and the findings from the chain and the verifier's
//!   answer;
//! - [`fix`]: the [`Fix`], what to do about them.
//!
//! This module holds the inputs ([`DiagnoseParams`]), the output ([`Report`]) and [`diagnose`],
//! which runs the three in order.

mod classify;
mod diagnosis;
mod fix;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anchorage_x509::{Certificate, Timestamp};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use serde::Serialize;

use crate::chain::{self, ChainEntry};
use crate::danger::HandshakeSignature;

pub use diagnosis::{Diagnosis, Finding};
pub use fix::Fix;

/// Everything [`diagnose`] judges a chain by, besides the chain. Plain data.
#[derive(Clone, Copy, Debug)]
pub struct DiagnoseParams<'a> {
    /// The target as the user typed it, for commands in the fix (`anchorage doctor TARGET …`).
    pub target: &'a str,
    /// The name the chain must be valid for (SNI / `--servername`).
    pub server_name: &'a str,
    /// The trust to verify against (e.g. from `anchorage_trust::tls::TrustConfig::root_store`).
    pub roots: &'a RootCertStore,
    /// Root certificates behind `roots`, when the caller has them: used only for the validity
    /// dates of the root a chain ends at, to warn that it expires soon (a `RootCertStore` keeps
    /// no validity dates). A root is warned about only when `roots` holds it as a trust anchor.
    pub root_certificates: &'a [Certificate],
    /// CA files the user offered (`--ca`), already read: which of them would fix the chain.
    pub candidates: &'a [(PathBuf, Vec<Certificate>)],
    /// The time to judge validity at.
    pub now: Timestamp,
    /// Warn when a certificate on the path expires within this window.
    pub expiry_window: Duration,
    /// The outcome of the real check of the server's handshake signature, from
    /// [`crate::Captured::handshake_signature`] (`None`: not known, e.g. a chain read from a
    /// file). A failed one is never trusted, whatever the chain.
    pub handshake_signature: Option<&'a HandshakeSignature>,
}

/// The default `expiry_window`: 30 days.
pub const DEFAULT_EXPIRY_WINDOW: Duration = Duration::from_secs(30 * 86_400);

/// The doctor's report on one chain. Serialises to the stable JSON of `--output json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The name the chain was judged for.
    pub server_name: String,
    /// The time it was judged at.
    pub now: Timestamp,
    /// True when a rustls client would accept the server: its verifier accepts the chain for
    /// the name, and the leaf's key is one rustls can check the handshake signature with.
    pub trusted: bool,
    /// Trusted and without findings.
    pub healthy: bool,
    /// The verdict.
    pub primary: Diagnosis,
    /// Secondary observations.
    pub findings: Vec<Finding>,
    /// The chain as sent.
    pub chain: Vec<ChainEntry>,
    /// The issuing path, as indices into `chain` starting at the leaf.
    pub path: Vec<usize>,
    /// The name constraints of the trusted root the path ends at, when it has them (a root
    /// made by `ca init --permitted-*`): the names it can vouch for. Constraints of
    /// certificates the server sent are on their [`ChainEntry`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_name_constraints: Option<anchorage_x509::NameConstraints>,
    /// What to do.
    pub fix: Fix,
}

/// Judges `chain` (leaf first, as sent) with `provider`'s signature algorithms.
pub fn diagnose(
    chain: &[Certificate],
    params: &DiagnoseParams<'_>,
    provider: Arc<CryptoProvider>,
) -> Report {
    let now = params.now;
    let entries = chain::describe(chain, now);
    let path = chain::issuing_path(chain);
    let verdict = classify::verify(chain, params, provider);
    tracing::debug!(server_name = params.server_name, ?verdict, "rustls verdict");
    let primary = classify::primary(chain, &path, params, &verdict);
    let findings = classify::findings(chain, &path, params, &primary);
    let fix = fix::fix(chain, params, &primary, &findings);
    let trusted = matches!(primary, Diagnosis::Trusted { .. });
    let root_name_constraints = classify::path_root(chain, &path, params)
        .and_then(Certificate::name_constraints)
        .cloned();
    Report {
        server_name: params.server_name.to_owned(),
        now,
        trusted,
        healthy: trusted && findings.is_empty(),
        primary,
        findings,
        chain: entries,
        path,
        root_name_constraints,
        fix,
    }
}
