//! **Dangerous: no verification.** A certificate verifier that accepts whatever a server sends,
//! so that the doctor can complete a handshake with a broken server and see its chain.
//!
//! This module owns [`CaptureOnlyVerifier`] and nothing else. It must only ever be used to
//! capture a chain for diagnosis: a connection made with it authenticates nobody, so
//! [`crate::connect`] sends no application data over it and closes it right after the handshake.
//! The chain is judged afterwards by [`crate::diagnose`] against real trust.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Accepts any certificate chain and records it. **Capture only: it verifies nothing.**
///
/// Handshake signatures are checked with the provider when it can (so the record says whether
/// the server holds the key), but a failed or unsupported check does not stop the handshake
/// either: a server with a key the provider cannot verify must still be diagnosable.
#[derive(Debug)]
pub struct CaptureOnlyVerifier {
    provider: Arc<CryptoProvider>,
    captured: Mutex<Captured>,
}

#[derive(Debug, Default)]
struct Captured {
    chain: Vec<CertificateDer<'static>>,
    signature_verified: Option<bool>,
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
        self.lock().signature_verified
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        self.captured.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record_signature(&self, valid: bool) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.lock().signature_verified = Some(valid);
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
        let valid = verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
        .is_ok();
        self.record_signature(valid)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let valid = verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
        .is_ok();
        self.record_signature(valid)
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
