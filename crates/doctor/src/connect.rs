//! Connecting to a target and capturing the chain it presents.
//!
//! This module owns the network side of the doctor: resolving the host (on a helper thread, so
//! that a resolver that does not answer cannot outlast the deadline), the TCP connection and
//! a TLS handshake completed with [`crate::danger::CaptureOnlyVerifier`], all under one deadline,
//! and telling apart the ways that can fail ([`DoctorError`]). It does not judge the chain (see
//! [`crate::diagnose`]) and sends no application data.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorage_x509::Certificate;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{AlertDescription, ClientConfig, ClientConnection, InvalidMessage};

use crate::danger::CaptureOnlyVerifier;
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
    /// Set when the handshake failed after the chain was captured (for example the server then
    /// asked for a client certificate): the chain is still worth diagnosing.
    pub handshake_error: Option<String>,
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
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| DoctorError::Provider { source })?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();

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
    let outcome = handshake(&mut conn, &mut io, deadline);
    let first = io.first;
    let chain_der = verifier.chain();
    let handshake_error = match outcome {
        Ok(()) => {
            conn.send_close_notify();
            let _ = conn.write_tls(&mut sock);
            None
        }
        Err(failure) => {
            let error = classify(failure, &address, &name_text, options.timeout, &first);
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

/// Turns a handshake failure into the error that names it.
fn classify(
    failure: io::Error,
    address: &str,
    server_name: &str,
    timeout: Duration,
    first: &[u8],
) -> DoctorError {
    let address = address.to_owned();
    match failure.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            return DoctorError::Timeout {
                address,
                stage: "handshake",
                timeout,
            };
        }
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => {
            return DoctorError::Closed {
                address,
                server_name: server_name.to_owned(),
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
        },
        rustls::Error::InvalidMessage(
            InvalidMessage::InvalidContentType
            | InvalidMessage::UnknownProtocolVersion
            | InvalidMessage::MessageTooLarge
            | InvalidMessage::InvalidEmptyPayload,
        ) => DoctorError::NotTls {
            address,
            first_bytes: printable(first),
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
