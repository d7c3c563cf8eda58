//! The HTTPS listener: rustls (ring) with an optional client certificate, hyper's HTTP/1
//! connections with a header timeout, the client certificate handed to the handlers as a
//! request extension, and a graceful drain on shutdown.
//!
//! Connections are capped ([`Limits::max_connections`], fitted under the open-file limit by
//! `connection_cap`): one accepted past the cap is closed at once, so an attacker holding
//! connections cannot make `accept` fail with `EMFILE` for everyone, and the server's memory
//! stays bounded; a slot frees as soon as any connection ends (handshake, header, body and
//! idle keep-alive are all bounded by the timeouts in [`Limits`]).
//!
//! Two more bounds keep one client from holding slots (issue 18, row 7 of docs/faults.md):
//! connections from one address are capped too ([`Limits::max_connections_per_address`],
//! counted by IPv4 address or IPv6 /64), and a write of an answer that makes no progress for
//! [`Limits::write_timeout`] (a client that sent requests and never reads the answers, once
//! the kernel's buffers are full) fails, which closes the connection (`WriteTimeout`).

use std::collections::HashMap;
use std::future::Future as _;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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

/// The address a client's connections are counted under: an IPv4 address (an IPv4-mapped
/// IPv6 one as IPv4), or an IPv6 address's /64 (one host is usually given a whole /64).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(octets.into())
        }
        v4 => v4,
    }
}

/// Connections open per client address (see [`address_key`]); an entry exists only while one
/// of its connections is open.
#[derive(Debug, Default)]
struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted against its address until dropped (its task ended).
#[derive(Debug)]
struct AddressSlot {
    counts: Arc<PerAddress>,
    key: IpAddr,
}

impl PerAddress {
    /// Counts one more connection from `key`, or `None` when it already has `limit`.
    fn admit(this: &Arc<Self>, key: IpAddr, limit: usize) -> Option<AddressSlot> {
        let mut counts = this
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(key).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: Arc::clone(this),
            key,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A stream whose writes (and flushes) fail with [`io::ErrorKind::TimedOut`] once they made no
/// progress for `timeout`: the peer stopped reading and the kernel's buffers are full. Any
/// progress rearms it; reads are untouched. Under TLS, so the TLS layer's own writes count.
pub(crate) struct WriteTimeout<S> {
    inner: S,
    timeout: Duration,
    /// Armed when a write could not proceed; cleared when one does.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteTimeout<S> {
    pub(crate) fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
        }
    }

    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing of the answer for {} s (write timeout)",
                    timeout.as_secs_f64()
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progress(cx, poll)
    }
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
    let per_address = Arc::new(PerAddress::default());
    let address_limit = limits.max_connections_per_address;
    tracing::debug!(
        max_connections_per_address = address_limit,
        "HTTPS connection limit per client address (0: none)"
    );
    let mut refused_per_address: u64 = 0;
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
        let address_slot = if address_limit == 0 {
            None
        } else {
            let key = address_key(peer.ip());
            let Some(slot) = PerAddress::admit(&per_address, key, address_limit) else {
                refused_per_address += 1;
                if refused_per_address.is_power_of_two() {
                    tracing::warn!(
                        address = %key,
                        max_connections_per_address = address_limit,
                        refused = refused_per_address,
                        "HTTPS connection closed: its client address has as many open as allowed"
                    );
                }
                drop(tcp);
                continue;
            };
            Some(slot)
        };
        let _ = tcp.set_nodelay(true);
        let tcp = WriteTimeout::new(tcp, limits.write_timeout);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let _address_slot = address_slot;
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

    #[test]
    fn connections_are_counted_per_address_and_ipv6_per_64() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), v4);
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(other));

        let counts = Arc::new(PerAddress::default());
        let held: Vec<_> = (0..3)
            .map(|_| PerAddress::admit(&counts, address_key(a), 3).unwrap())
            .collect();
        assert!(PerAddress::admit(&counts, address_key(b), 3).is_none());
        // Another address is not affected (control).
        assert!(PerAddress::admit(&counts, address_key(other), 3).is_some());
        drop(held);
        assert!(PerAddress::admit(&counts, address_key(b), 3).is_some());
        assert!(counts.0.lock().unwrap().is_empty());
    }
}
