//! rustls configurations built only from one agent's files: its chain and key, and its trust
//! bundle for both directions (mTLS: the server requires a client certificate).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::SoakError;
use crate::files::AgentFiles;

fn tls_error(path: &Path, message: impl std::fmt::Display) -> SoakError {
    SoakError::Tls {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, SoakError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, e))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no certificate"));
    }
    Ok(certs)
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, SoakError> {
    let mut store = RootCertStore::empty();
    for c in certs(path)? {
        store.add(c).map_err(|e| tls_error(path, e))?;
    }
    Ok(Arc::new(store))
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, SoakError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| tls_error(path, e))
}

/// Both sides of one agent's workload, as read at one moment.
pub(crate) struct Configs {
    /// The server: its chain and key; client certificates required, checked against the
    /// bundle.
    pub(crate) server: Arc<ServerConfig>,
    /// The client: its chain and key as the client certificate; servers checked against the
    /// bundle.
    pub(crate) client: Arc<ClientConfig>,
}

/// Reads the agent's files into both configurations.
pub(crate) fn configs(files: &AgentFiles) -> Result<Configs, SoakError> {
    let bundle = files.bundle();
    let trust = roots(&bundle)?;
    let chain = certs(&files.chain())?;
    let key_path = files.key();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::clone(&trust), provider())
            .build()
            .map_err(|e| tls_error(&bundle, e))?;
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&bundle, e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key(&key_path)?)
        .map_err(|e| tls_error(&key_path, e))?;
    let mut client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(&bundle, e))?
        .with_root_certificates(trust)
        .with_client_auth_cert(chain, key(&key_path)?)
        .map_err(|e| tls_error(&key_path, e))?;
    // Every handshake is a full one: a resumed session would skip the certificate checks
    // this soak is about.
    server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    client.resumption = rustls::client::Resumption::disabled();
    Ok(Configs {
        server: Arc::new(server),
        client: Arc::new(client),
    })
}
