//! The one error type of this crate: why a target could not be parsed or reached.

use std::io;
use std::time::Duration;

/// Why the doctor could not get a certificate chain to diagnose. Each variant says what failed
/// and carries what the user needs to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DoctorError {
    /// The target text is not `host:port`, an `https://` URL or an OCI reference.
    #[error("target {target:?} {reason}")]
    BadTarget {
        /// The text as given.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The name to ask for (the target host or `servername`) cannot be sent as SNI.
    #[error("{name:?} is not a DNS name or IP address that TLS can ask for")]
    BadServerName {
        /// The name.
        name: String,
    },
    /// The host name did not resolve, or the resolver did not answer before the timeout.
    #[error("cannot resolve {host}: check the name, or the DNS settings of this machine")]
    Resolve {
        /// The host name.
        host: String,
        /// What the resolver said.
        #[source]
        source: io::Error,
    },
    /// Nothing listens on the port (a TCP reset).
    #[error(
        "connection refused by {address}: nothing listens on that port, or a firewall rejects it"
    )]
    Refused {
        /// The address tried (`ip:port`).
        address: String,
    },
    /// The TCP connection or the TLS handshake did not finish in time.
    #[error("timed out after {timeout:?} during {stage} with {address}")]
    Timeout {
        /// The address tried.
        address: String,
        /// `connect` or `handshake`.
        stage: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// Another network failure while connecting or during the handshake.
    #[error("network error during {stage} with {address}")]
    Io {
        /// The address tried.
        address: String,
        /// `connect` or `handshake`.
        stage: &'static str,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The peer answered with something that is not TLS (for example plain HTTP).
    #[error(
        "{address} does not speak TLS on this port: it answered \"{first_bytes}\"{}; check the port, or use the TLS port of the service",
        if looks_like_http(first_bytes) { " (plain HTTP)" } else { "" }
    )]
    NotTls {
        /// The address tried.
        address: String,
        /// The start of what the peer sent, when it could be read (printable ASCII, escaped).
        first_bytes: String,
    },
    /// The server closed the connection before the handshake completed, without an alert.
    #[error(
        "{address} closed the connection during the handshake without a TLS alert: it may not speak TLS, or it may refuse our server name {server_name:?}"
    )]
    Closed {
        /// The address tried.
        address: String,
        /// The name sent as SNI.
        server_name: String,
    },
    /// The server ended the handshake with a TLS alert (under TLS 1.3, possibly right after
    /// it: a refused client certificate is reported after the client's Finished).
    #[error(
        "{address} sent TLS alert {alert} during the handshake{}",
        alert_hint(alert, *chain_received, *client_certificate_requested)
    )]
    Alert {
        /// The address tried.
        address: String,
        /// The alert description, as rustls names it (e.g. `HandshakeFailure`).
        alert: String,
        /// The server had sent its certificate chain before the alert: a protocol version and
        /// cipher suite were agreed.
        chain_received: bool,
        /// The server had asked for a client certificate (mutual TLS), and none was sent.
        client_certificate_requested: bool,
    },
    /// Another TLS failure before a chain was captured.
    #[error("TLS handshake with {address} failed")]
    Tls {
        /// The address tried.
        address: String,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// The crypto provider cannot make a TLS client (no suites or groups).
    #[error(
        "the crypto provider supports neither TLS 1.3 nor TLS 1.2; pass a complete provider such as rustls::crypto::ring::default_provider()"
    )]
    Provider {
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
}

fn looks_like_http(first_bytes: &str) -> bool {
    first_bytes.starts_with("HTTP/") || first_bytes.starts_with("<")
}

/// What an alert most likely means. Once the server has sent its chain (so a version and a
/// cipher suite were agreed) or asked for a client certificate, a refusal is about the client's
/// certificate, which the doctor does not send.
fn alert_hint(
    alert: &str,
    chain_received: bool,
    client_certificate_requested: bool,
) -> &'static str {
    let about_client_certificate = matches!(
        alert,
        "HandshakeFailure"
            | "CertificateRequired"
            | "BadCertificate"
            | "UnsupportedCertificate"
            | "CertificateUnknown"
            | "CertificateRevoked"
            | "CertificateExpired"
            | "UnknownCA"
            | "AccessDenied"
    );
    if about_client_certificate && client_certificate_requested {
        return ": the server requires a client certificate (mutual TLS) and refuses a client without one; the doctor sends none and checks the server's certificate chain only. Clients of this server need a certificate and key from a CA the server trusts";
    }
    if about_client_certificate && chain_received {
        return ": the server ended the handshake after sending its certificate chain, so a protocol version and cipher suite were agreed; it most likely requires a client certificate (mutual TLS), which the doctor does not send: it checks the server's certificate chain only";
    }
    match alert {
        "HandshakeFailure" | "InsufficientSecurity" => {
            ": no protocol version, cipher suite or key exchange in common, or the server requires something this client did not offer"
        }
        "ProtocolVersion" => {
            ": the server accepts no protocol version this client offers (TLS 1.2 and 1.3)"
        }
        "UnrecognisedName" => {
            ": the server has no certificate for the name asked for; try --servername"
        }
        "CertificateRequired" | "BadCertificate" => ": the server requires a client certificate",
        "AccessDenied" => ": the server refused this client",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, chain_received: bool, requested: bool) -> String {
        DoctorError::Alert {
            address: "127.0.0.1:443".into(),
            alert: name.into(),
            chain_received,
            client_certificate_requested: requested,
        }
        .to_string()
    }

    #[test]
    fn a_handshake_failure_before_the_chain_is_about_what_is_in_common() {
        let text = alert("HandshakeFailure", false, false);
        assert!(
            text.contains("no protocol version, cipher suite or key exchange in common"),
            "{text}"
        );
    }

    #[test]
    fn a_handshake_failure_after_the_chain_or_a_certificate_request_is_about_mutual_tls() {
        for (chain_received, requested) in [(true, true), (true, false), (false, true)] {
            let text = alert("HandshakeFailure", chain_received, requested);
            assert!(
                !text.contains("cipher suite or key exchange in common"),
                "{text}"
            );
            assert!(text.contains("client certificate (mutual TLS)"), "{text}");
            assert!(text.contains("server's certificate chain only"), "{text}");
            let lower = text.to_ascii_lowercase();
            for banned in ["insecure", "disable", "verify=false"] {
                assert!(!lower.contains(banned), "{text}");
            }
        }
        let text = alert("CertificateRequired", true, true);
        assert!(
            text.contains("requires a client certificate (mutual TLS)"),
            "{text}"
        );
    }
}
