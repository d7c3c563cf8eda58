//! What the user asked to connect to: `host:port`, an `https://` URL, or an OCI reference reduced
//! to its registry host.
//!
//! This module owns turning that text into a host and a port. It does not resolve names or
//! connect (see [`crate::connect`]).

use std::fmt;

use serde::Serialize;

use crate::error::DoctorError;

/// The port a target without one gets: HTTPS, as registries and `https://` URLs use.
pub const DEFAULT_PORT: u16 = 443;

/// A host and port to connect to, and the name to ask for (SNI and verification) by default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The host: a DNS name, or an IP address (IPv6 without brackets).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl Target {
    /// Parses `host:port`, `host` (port 443), `[::1]:443`, `https://host[:port]/…`,
    /// `oci://registry[:port]/…` and image references such as `registry.example/repo:tag` or
    /// `registry.example:5000/repo@sha256:…` (the registry host, port 443 unless given).
    pub fn parse(input: &str) -> Result<Self, DoctorError> {
        let bad = |reason: &str| DoctorError::BadTarget {
            target: input.to_owned(),
            reason: reason.to_owned(),
        };
        let text = input.trim();
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        let (rest, scheme) = match text.split_once("://") {
            Some((scheme, rest)) => (rest, Some(scheme.to_ascii_lowercase())),
            None => (text, None),
        };
        match scheme.as_deref() {
            None | Some("https") | Some("oci") | Some("docker") | Some("tls") => {}
            Some("http") => {
                return Err(bad(
                    "http:// is plain text, there is no TLS to diagnose; use https:// or host:port",
                ));
            }
            Some(other) => {
                return Err(bad(&format!(
                    "unknown scheme {other}://; use host:port, https://host[:port]/... or oci://registry/..."
                )));
            }
        }
        // The authority ends at the first '/', '?' or '#'.
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        // Drop user information (`user:pass@host`), which URLs allow; an image reference
        // (`repo@sha256:…`) has its '@' after the first '/', so it never reaches here.
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if authority.is_empty() {
            return Err(bad("no host in it"));
        }
        let (host, port) = split_host_port(authority).map_err(|reason| bad(&reason))?;
        if host.is_empty() {
            return Err(bad("no host in it"));
        }
        if !host.contains(':')
            && !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(bad(&format!(
                "{host:?} is not a host name (letters, digits, '-', '.' only)"
            )));
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(DEFAULT_PORT),
        })
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; a bare IPv6 address (several colons) is a host.
fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "an IPv6 address opened with '[' is never closed with ']'".to_owned())?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("[{host}] is not an IPv6 address"));
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(parse_port(port)?))),
                None => Err(format!("unexpected {after:?} after the IPv6 address")),
            },
        };
    }
    if authority.matches(':').count() > 1 {
        return match authority.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok((authority, None)),
            Err(_) => Err(format!(
                "{authority:?} has several ':'; write an IPv6 address with a port as [addr]:port"
            )),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => Ok((host, Some(parse_port(port)?))),
        None => Ok((authority, None)),
    }
}

fn parse_port(port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(0) => Err("port 0 cannot be connected to".to_owned()),
        Ok(p) => Ok(p),
        Err(_) => Err(format!("port {port:?} is not a number from 1 to 65535")),
    }
}

impl fmt::Display for Target {
    /// `host:port`, with IPv6 addresses in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> (String, u16) {
        let t = Target::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        (t.host, t.port)
    }

    fn err(input: &str) -> String {
        Target::parse(input).expect_err(input).to_string()
    }

    #[test]
    fn host_and_port_forms() {
        assert_eq!(ok("example.com:8443"), ("example.com".into(), 8443));
        assert_eq!(ok("example.com"), ("example.com".into(), 443));
        assert_eq!(ok("Example.COM:443"), ("example.com".into(), 443));
        assert_eq!(ok("127.0.0.1:4433"), ("127.0.0.1".into(), 4433));
        assert_eq!(ok("[::1]:443"), ("::1".into(), 443));
        assert_eq!(ok("[::1]"), ("::1".into(), 443));
        assert_eq!(ok("::1"), ("::1".into(), 443));
    }

    #[test]
    fn urls_reduce_to_their_authority() {
        assert_eq!(
            ok("https://example.com/a/b?c#d"),
            ("example.com".into(), 443)
        );
        assert_eq!(ok("https://example.com:8443"), ("example.com".into(), 8443));
        assert_eq!(
            ok("HTTPS://user:pw@example.com:9/x"),
            ("example.com".into(), 9)
        );
        assert_eq!(
            ok("https://[2001:db8::1]:8443/"),
            ("2001:db8::1".into(), 8443)
        );
    }

    #[test]
    fn oci_references_reduce_to_the_registry() {
        assert_eq!(ok("oci://ghcr.io/org/repo:1.0"), ("ghcr.io".into(), 443));
        assert_eq!(
            ok("registry.corp:5000/team/app:v2"),
            ("registry.corp".into(), 5000)
        );
        assert_eq!(
            ok("registry.corp/app@sha256:0123abcd"),
            ("registry.corp".into(), 443)
        );
        assert_eq!(ok("localhost:5000/app"), ("localhost".into(), 5000));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(err("").contains("it is empty"));
        assert!(err("http://example.com").contains("plain text"));
        assert!(err("ftp://example.com").contains("unknown scheme ftp://"));
        assert!(err("example.com:http").contains("port \"http\" is not a number"));
        assert!(err("example.com:0").contains("port 0"));
        assert!(err("example.com:70000").contains("not a number from 1 to 65535"));
        assert!(err("[::1").contains("never closed"));
        assert!(err("[nope]:1").contains("not an IPv6 address"));
        assert!(err("https:///path").contains("no host"));
        assert!(err("exa mple.com").contains("is not a host name"));
        let message = err("bad:port:here");
        assert!(
            message.starts_with("target \"bad:port:here\" "),
            "{message}"
        );
    }

    #[test]
    fn display_brackets_ipv6() {
        assert_eq!(ok_target("[::1]:8443").to_string(), "[::1]:8443");
        assert_eq!(ok_target("example.com").to_string(), "example.com:443");
    }

    fn ok_target(input: &str) -> Target {
        Target::parse(input).expect("parse")
    }
}
