//! **Dangerous: no verification.** A certificate verifier that accepts whatever a server sends,
//! so that the doctor can complete a handshake with a broken server and see its chain.
//!
//! This module owns [`CaptureOnlyVerifier`] (and the record of its real handshake signature
//! check, [`HandshakeSignature`]) and nothing else. It must only ever be used to
//! capture a chain for diagnosis: a connection made with it authenticates nobody, so
//! [`crate::connect`] sends no application data over it and closes it right after the handshake.
//! The chain is judged afterwards by [`crate::diagnose`] against real trust.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The outcome of the real check of the server's handshake signature (`CertificateVerify` in
/// TLS 1.3, `ServerKeyExchange` in TLS 1.2), made with the provider's own verification
/// functions, as a rustls client would.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HandshakeSignature {
    /// The signature scheme the server used, as rustls names it (e.g. `RSA_PKCS1_SHA1`).
    pub scheme: String,
    /// Whether it verified with the leaf's key and is a scheme the provider accepts.
    pub verified: bool,
    /// Why it did not verify (rustls's words), when it did not.
    pub error: Option<String>,
}

impl HandshakeSignature {
    /// True when the scheme hashes with SHA-1 (or is otherwise one rustls refuses to verify
    /// for TLS): the failure is the algorithm, not the key.
    pub fn weak_scheme(&self) -> bool {
        self.scheme.contains("SHA1") || self.scheme.contains("MD5")
    }
}

/// Accepts any certificate chain and records it. **Capture only: it verifies nothing.**
///
/// Handshake signatures are checked with the provider's real verification functions and the
/// outcome recorded ([`CaptureOnlyVerifier::handshake_signature`]), but a failed or unsupported
/// check does not stop the handshake either: a server with a key or signature scheme the
/// provider cannot verify must still be diagnosable. The diagnosis never calls such a server
/// trusted.
#[derive(Debug)]
pub struct CaptureOnlyVerifier {
    provider: Arc<CryptoProvider>,
    captured: Mutex<Captured>,
}

#[derive(Debug, Default)]
struct Captured {
    chain: Vec<CertificateDer<'static>>,
    signature: Option<HandshakeSignature>,
}

impl CaptureOnlyVerifier {
    /// A verifier that uses `provider` only to list and check signature schemes.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self {
            provider,
            captured: Mutex::new(Captured::default()),
        }
    }

    /// The chain the server presented (leaf first, in the order sent); empty before the
    /// server's certificate message.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.lock().chain.clone()
    }

    /// Whether the server proved it holds the leaf's key (`None`: not checked yet).
    pub fn handshake_signature_verified(&self) -> Option<bool> {
        self.lock().signature.as_ref().map(|s| s.verified)
    }

    /// The outcome of the handshake signature check (`None`: not checked yet).
    pub fn handshake_signature(&self) -> Option<HandshakeSignature> {
        self.lock().signature.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        self.captured.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record_signature(
        &self,
        scheme: SignatureScheme,
        outcome: Result<HandshakeSignatureValid, rustls::Error>,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let error = outcome.err().map(|e| e.to_string());
        tracing::debug!(?scheme, ?error, "handshake signature checked");
        // A later check (there is one per handshake) never hides an earlier failure.
        let mut captured = self.lock();
        if captured.signature.as_ref().is_none_or(|s| s.verified) {
            captured.signature = Some(HandshakeSignature {
                scheme: format!("{scheme:?}"),
                verified: error.is_none(),
                error,
            });
        }
        Ok(HandshakeSignatureValid::assertion())
    }
}

impl ServerCertVerifier for CaptureOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut captured = self.lock();
        captured.chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let outcome = verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        );
        self.record_signature(dss.scheme, outcome)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let outcome = verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        );
        self.record_signature(dss.scheme, outcome)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        let mut schemes = self
            .provider
            .signature_verification_algorithms
            .supported_schemes();
        // Offer the legacy schemes too, so a server with only an old key still completes the
        // handshake and can be diagnosed.
        for legacy in [
            SignatureScheme::RSA_PKCS1_SHA1,
            SignatureScheme::ECDSA_SHA1_Legacy,
        ] {
            if !schemes.contains(&legacy) {
                schemes.push(legacy);
            }
        }
        schemes
    }
}
