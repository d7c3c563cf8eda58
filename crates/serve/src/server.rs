//! The HTTPS listener: rustls (ring) with an optional client certificate, hyper's HTTP/1
//! connections with a header timeout, the client certificate handed to the handlers as a
//! request extension, and a graceful drain on shutdown.
//!
//! Connections are capped ([`Limits::max_connections`], fitted under the open-file limit by
//! `connection_cap`): one accepted past the cap is closed at once, so an attacker holding
//! connections cannot make `accept` fail with `EMFILE` for everyone, and the server's memory
//! stays bounded; a slot frees as soon as any connection ends (handshake, header, body and
//! idle keep-alive are all bounded by the timeouts in [`Limits`]).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anchorage_x509::Certificate;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::http::PeerCertificate;
use crate::state::{Limits, RESERVED_FDS};

/// The connection cap to apply: `wanted`, lowered so that it and [`RESERVED_FDS`] fit under the
/// soft `RLIMIT_NOFILE`, which is first raised towards the hard limit when it is lower (as Go
/// and nginx's `worker_rlimit_nofile` do). At least 1.
pub(crate) fn connection_cap(wanted: usize) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let wanted = wanted.max(1);
    let needed = (wanted as u64).saturating_add(RESERVED_FDS);
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|soft| soft < needed) {
        let raised = Rlimit {
            current: Some(limit.maximum.map_or(needed, |hard| hard.min(needed))),
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = getrlimit(Resource::Nofile);
        }
    }
    let Some(soft) = limit.current else {
        return wanted;
    };
    let room = usize::try_from(soft.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
    if room < wanted {
        tracing::warn!(
            wanted,
            applied = room.max(1),
            open_file_limit = soft,
            "the HTTPS connection cap is lowered to fit the open-file limit (raise `ulimit -n` / \
             LimitNOFILE= to allow more)"
        );
    }
    wanted.min(room).max(1)
}

/// The serving certificate, swappable while running (the built-in one is renewed).
#[derive(Debug)]
pub(crate) struct CertSlot(pub(crate) RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|k| Arc::clone(&k))
    }
}

/// Asks for a client certificate without requiring one, and accepts whatever is presented
/// once the handshake proved possession of its key: the handlers that use it check that it is
/// ours and valid, so an expired or foreign certificate gets a JSON error instead of a TLS
/// alert.
#[derive(Debug)]
struct OptionalClientCert {
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for OptionalClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls server configuration.
pub(crate) fn tls_config(
    slot: Arc<CertSlot>,
    ca_subjects: Vec<Vec<u8>>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = OptionalClientCert {
        hints: ca_subjects
            .into_iter()
            .map(DistinguishedName::from)
            .collect(),
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(slot);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts connections until `shutdown` turns true, then drains: in-flight requests get up to
/// `limits.drain_timeout` to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Every connection task, so that when this returns none is left holding the app (and
    // through it the store): an embedded store reopened right after a shutdown was refused
    // "database already open" while a finished connection's task was still being dropped.
    let mut connections = tokio::task::JoinSet::new();
    let cap = connection_cap(limits.max_connections);
    tracing::debug!(max_connections = cap, "HTTPS connection cap");
    let mut refusing = false;
    let mut refused: u64 = 0;
    loop {
        while connections.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Reap what ended while we waited, then count.
        while connections.try_join_next().is_some() {}
        if connections.len() >= cap {
            refused += 1;
            if !refusing {
                refusing = true;
                tracing::warn!(
                    max_connections = cap,
                    "HTTPS connection cap reached: new connections are closed until one ends"
                );
            }
            tracing::debug!(%peer, "connection closed: the connection cap is reached");
            // Closed at once: no handshake, no task, the descriptor given back.
            drop(tcp);
            continue;
        }
        if refusing {
            refusing = false;
            tracing::info!(
                max_connections = cap,
                refused,
                "HTTPS connections accepted again (below the cap)"
            );
        }
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let stream =
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let peer_cert = PeerCertificate(
                stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|d| Certificate::from_der(d).ok()),
            );
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(peer_cert.clone());
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "shutdown: requests still in flight after {} s were cut",
            limits.drain_timeout.as_secs()
        );
    }
    // Drained (or cut): what is left is handshakes in progress and tasks finishing.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_fits_under_the_open_file_limit() {
        use rustix::process::{Resource, getrlimit};
        assert_eq!(connection_cap(0), 1);
        let applied = connection_cap(usize::MAX);
        let soft = getrlimit(Resource::Nofile).current;
        if let Some(soft) = soft {
            assert!(
                applied as u64 <= soft.saturating_sub(RESERVED_FDS).max(1),
                "{applied}"
            );
            // Control: a cap that fits is kept as it is.
            if soft > RESERVED_FDS + 10 {
                assert_eq!(connection_cap(10), 10);
            }
        }
    }
}
