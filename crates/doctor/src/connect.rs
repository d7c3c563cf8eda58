//! Connecting to a target and capturing the chain it presents.
//!
//! This module owns the network side of the doctor: resolving the host (on a helper thread, so
//! that a resolver that does not answer cannot outlast the deadline), the TCP connection and
//! a TLS handshake completed with [`crate::danger::CaptureOnlyVerifier`], all under one deadline,
//! and telling apart the ways that can fail ([`DoctorError`]). It does not judge the chain (see
//! [`crate::diagnose`]) and sends no application data.
//!
//! It presents no client certificate, but records whether the server asked for one: under TLS
//! 1.3 a server that requires one refuses it only after the client's Finished (with a
//! `certificate_required` alert), when the handshake is already complete for the client, so after
//! such a request it waits briefly for that alert before calling the handshake a success.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anchorage_x509::Certificate;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{
    AlertDescription, ClientConfig, ClientConnection, InvalidMessage, ProtocolVersion,
    SignatureScheme,
};

use crate::danger::{CaptureOnlyVerifier, HandshakeSignature};
use crate::error::DoctorError;
use crate::target::Target;

/// How to connect. Plain data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The name to send as SNI and to verify against; `None` uses the target's host.
    pub server_name: Option<String>,
    /// Limit for the TCP connection and the handshake together.
    pub timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            server_name: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// What one handshake showed.
#[derive(Clone, Debug)]
pub struct Captured {
    /// The address connected to.
    pub address: String,
    /// The name sent as SNI (and to verify against).
    pub server_name: String,
    /// The protocol version negotiated, e.g. `TLSv1_3`.
    pub protocol: Option<String>,
    /// The cipher suite negotiated.
    pub cipher_suite: Option<String>,
    /// The certificates as sent, leaf first, in the order sent.
    pub chain: Vec<Certificate>,
    /// Certificates the server sent that could not be decoded: (position, reason).
    pub undecodable: Vec<(usize, String)>,
    /// Whether the server proved it holds the leaf's key.
    pub handshake_signature_verified: Option<bool>,
    /// The handshake signature's scheme and the outcome of its real check (pass it to
    /// [`crate::DiagnoseParams::handshake_signature`]: a failure is never trusted).
    pub handshake_signature: Option<HandshakeSignature>,
    /// The server asked for a client certificate (a TLS `CertificateRequest`: mutual TLS).
    /// The doctor sends none; when the server then refuses the connection, `handshake_error`
    /// says so.
    pub client_certificate_requested: bool,
    /// Set when the handshake failed after the chain was captured (for example the server
    /// required a client certificate: under TLS 1.2 its alert ends the handshake, under TLS 1.3
    /// it arrives right after it): the chain is still worth diagnosing.
    pub handshake_error: Option<String>,
}

/// How long to wait, at least, for the server to refuse the connection after the handshake when
/// it asked for a client certificate (longer when the handshake itself took longer; never past
/// the deadline).
const CLIENT_CERTIFICATE_REFUSAL_WAIT: Duration = Duration::from_millis(500);

/// Offers no client certificate, and records whether the server asked for one.
#[derive(Debug, Default)]
struct NoClientCertificate {
    requested: AtomicBool,
}

impl NoClientCertificate {
    fn requested(&self) -> bool {
        self.requested.load(Ordering::Relaxed)
    }
}

impl ResolvesClientCert for NoClientCertificate {
    /// Called by rustls when the server sends a `CertificateRequest`.
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.requested.store(true, Ordering::Relaxed);
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}

/// Connects to `target`, completes a TLS handshake whatever certificate the server sends, and
/// returns the chain it sent. Uses `provider` for the handshake; installs nothing process-wide.
pub fn connect(
    target: &Target,
    options: &ConnectOptions,
    provider: Arc<CryptoProvider>,
) -> Result<Captured, DoctorError> {
    let name_text = options
        .server_name
        .clone()
        .unwrap_or_else(|| target.host.clone());
    let server_name =
        ServerName::try_from(name_text.clone()).map_err(|_| DoctorError::BadServerName {
            name: name_text.clone(),
        })?;
    let verifier = Arc::new(CaptureOnlyVerifier::new(provider.clone()));
    let client_certificate = Arc::new(NoClientCertificate::default());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| DoctorError::Provider { source })?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_client_cert_resolver(client_certificate.clone());

    let deadline = Instant::now() + options.timeout;
    let (mut sock, addr) = tcp_connect(target, options.timeout, deadline)?;
    let address = addr.to_string();
    let _span =
        tracing::debug_span!("doctor_connect", %address, server_name = %name_text).entered();

    let mut conn = ClientConnection::new(Arc::new(config), server_name)
        .map_err(|source| DoctorError::Provider { source })?;
    let mut io = Recording {
        sock: &mut sock,
        first: Vec::new(),
    };
    let started = Instant::now();
    let mut outcome = handshake(&mut conn, &mut io, deadline);
    let first = io.first;
    let chain_der = verifier.chain();
    let client_certificate_requested = client_certificate.requested();
    if outcome.is_ok()
        && client_certificate_requested
        && conn.protocol_version() == Some(ProtocolVersion::TLSv1_3)
    {
        // TLS 1.3: a server that requires a client certificate refuses our empty one only
        // after our Finished, when the handshake is over for us. Give its alert time to arrive.
        let wait = CLIENT_CERTIFICATE_REFUSAL_WAIT.max(started.elapsed());
        let until = deadline.min(Instant::now() + wait);
        outcome = await_refusal(&mut conn, &mut sock, until);
    }
    let handshake_error = match outcome {
        Ok(()) => {
            conn.send_close_notify();
            let _ = conn.write_tls(&mut sock);
            None
        }
        Err(failure) => {
            let context = Context {
                address: &address,
                server_name: &name_text,
                timeout: options.timeout,
                first: &first,
                chain_received: !chain_der.is_empty(),
                client_certificate_requested,
            };
            let error = classify(failure, &context);
            if chain_der.is_empty() {
                return Err(error);
            }
            tracing::debug!(%error, "handshake failed after the chain was captured");
            Some(error.to_string())
        }
    };
    let (chain, undecodable) = decode_chain(&chain_der);
    Ok(Captured {
        address,
        server_name: name_text,
        protocol: conn.protocol_version().map(|v| format!("{v:?}")),
        cipher_suite: conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite())),
        chain,
        undecodable,
        handshake_signature_verified: verifier.handshake_signature_verified(),
        handshake_signature: verifier.handshake_signature(),
        client_certificate_requested,
        handshake_error,
    })
}

fn decode_chain(ders: &[CertificateDer<'_>]) -> (Vec<Certificate>, Vec<(usize, String)>) {
    let mut chain = Vec::new();
    let mut undecodable = Vec::new();
    for (i, der) in ders.iter().enumerate() {
        match Certificate::from_der(der.as_ref()) {
            Ok(c) => chain.push(c),
            Err(e) => undecodable.push((i, e.to_string())),
        }
    }
    (chain, undecodable)
}

/// Resolves the target's host before `deadline`. The system resolver cannot be interrupted, so
/// it runs on a thread of its own: when it has not answered in time, the thread is left to end
/// by itself and this returns a [`DoctorError::Resolve`] that says it timed out.
fn resolve(target: &Target, deadline: Instant) -> Result<Vec<SocketAddr>, DoctorError> {
    let resolve_error = |source| DoctorError::Resolve {
        host: target.host.clone(),
        source,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let (host, port) = (target.host.clone(), target.port);
    std::thread::Builder::new()
        .name("doctor-resolve".into())
        .spawn(move || {
            let result = (host.as_str(), port)
                .to_socket_addrs()
                .map(Iterator::collect::<Vec<SocketAddr>>);
            // The receiver is gone when the caller stopped waiting: nothing to report to.
            let _ = tx.send(result);
        })
        .map_err(resolve_error)?;
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(result) => result.map_err(resolve_error),
        Err(_) => Err(resolve_error(io::Error::new(
            io::ErrorKind::TimedOut,
            "the resolver did not answer in time",
        ))),
    }
}

/// Resolves and connects to each address in turn until one answers.
fn tcp_connect(
    target: &Target,
    timeout: Duration,
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr), DoctorError> {
    let addrs = resolve(target, deadline)?;
    let mut last = None;
    for addr in &addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(sock) => return Ok((sock, *addr)),
            Err(e) => last = Some((*addr, e)),
        }
    }
    let (addr, e) = match last {
        Some(last) => last,
        None => {
            return Err(DoctorError::Resolve {
                host: target.host.clone(),
                source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
            });
        }
    };
    let address = addr.to_string();
    Err(match e.kind() {
        io::ErrorKind::ConnectionRefused => DoctorError::Refused { address },
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => DoctorError::Timeout {
            address,
            stage: "connect",
            timeout,
        },
        _ => DoctorError::Io {
            address,
            stage: "connect",
            source: e,
        },
    })
}

/// Drives the handshake to its end or `deadline`.
fn handshake(
    conn: &mut ClientConnection,
    sock: &mut Recording<'_>,
    deadline: Instant,
) -> Result<(), io::Error> {
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        sock.sock.set_read_timeout(Some(left))?;
        sock.sock.set_write_timeout(Some(left))?;
        let (read, written) = conn.complete_io(sock)?;
        if read == 0 && written == 0 && conn.is_handshaking() && !conn.wants_write() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    // Flush our last handshake message (TLS 1.3 client Finished).
    while conn.wants_write() {
        conn.write_tls(sock)?;
    }
    Ok(())
}

/// After a completed handshake, reads what the server sends until `until`: `Err` with the
/// alert (as a rustls error) when it refuses the connection, `Ok` when nothing but session
/// tickets or data arrives, or the connection is closed without an alert.
fn await_refusal(
    conn: &mut ClientConnection,
    sock: &mut TcpStream,
    until: Instant,
) -> Result<(), io::Error> {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        sock.set_read_timeout(Some(left))?;
        match conn.read_tls(sock) {
            Ok(0) => {
                tracing::debug!("connection closed after the handshake without an alert");
                return Ok(());
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(());
            }
            Err(e) => {
                tracing::debug!(error = %e, "connection lost after the handshake");
                return Ok(());
            }
        }
        let state = conn
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if state.plaintext_bytes_to_read() > 0 {
            // Nothing is ever asked for, so nothing is read either.
            let _ = io::copy(&mut conn.reader(), &mut io::sink());
        }
        if state.peer_has_closed() {
            return Ok(());
        }
    }
}

/// What is known about a handshake when it fails, for the error that names the failure.
struct Context<'a> {
    address: &'a str,
    server_name: &'a str,
    timeout: Duration,
    /// The peer's first bytes.
    first: &'a [u8],
    /// The server's certificate chain had arrived.
    chain_received: bool,
    /// The server had asked for a client certificate.
    client_certificate_requested: bool,
}

/// Turns a handshake failure into the error that names it.
fn classify(failure: io::Error, context: &Context<'_>) -> DoctorError {
    let address = context.address.to_owned();
    match failure.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            return DoctorError::Timeout {
                address,
                stage: "handshake",
                timeout: context.timeout,
            };
        }
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => {
            return DoctorError::Closed {
                address,
                server_name: context.server_name.to_owned(),
            };
        }
        _ => {}
    }
    let text = failure.to_string();
    let Some(tls) = failure
        .into_inner()
        .and_then(|inner| inner.downcast::<rustls::Error>().ok())
    else {
        return DoctorError::Io {
            address,
            stage: "handshake",
            source: io::Error::other(text),
        };
    };
    match *tls {
        rustls::Error::AlertReceived(alert) => DoctorError::Alert {
            address,
            alert: alert_name(alert),
            chain_received: context.chain_received,
            client_certificate_requested: context.client_certificate_requested,
        },
        rustls::Error::InvalidMessage(
            InvalidMessage::InvalidContentType
            | InvalidMessage::UnknownProtocolVersion
            | InvalidMessage::MessageTooLarge
            | InvalidMessage::InvalidEmptyPayload,
        ) => DoctorError::NotTls {
            address,
            first_bytes: printable(context.first),
        },
        source => DoctorError::Tls { address, source },
    }
}

fn alert_name(alert: AlertDescription) -> String {
    format!("{alert:?}")
}

/// The socket, keeping the first bytes the peer sent for a "not TLS" message.
struct Recording<'a> {
    sock: &'a mut TcpStream,
    first: Vec<u8>,
}

/// How many of the peer's first bytes to keep.
const FIRST_BYTES: usize = 40;

impl Read for Recording<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        let room = FIRST_BYTES.saturating_sub(self.first.len()).min(n);
        self.first.extend_from_slice(&buf[..room]);
        Ok(n)
    }
}

impl Write for Recording<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// The bytes as printable ASCII, with `\r`, `\n` and `\xNN` escapes.
fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'\r' => "\\r".to_owned(),
            b'\n' => "\\n".to_owned(),
            0x20..=0x7e => char::from(b).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_bytes() {
        assert_eq!(
            printable(b"HTTP/1.1 400\r\n\x16"),
            "HTTP/1.1 400\\r\\n\\x16"
        );
    }
}
