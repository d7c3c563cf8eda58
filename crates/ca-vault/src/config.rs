//! What to connect to and how: [`VaultConfig`], [`VaultAuth`], [`AppRole`], [`KeyLocation`].
//!
//! This module owns the plain-data settings of a [`crate::VaultIssuer`] and their checks. It
//! reads no environment variable and no file: the caller resolves those (the CLI from flags and
//! `VAULT_*`/`BAO_*` variables, the server from its config file) and hands the result here.
//! Secrets (the token, the AppRole secret ID) are [`SecretString`]s and every `Debug` here
//! prints a placeholder for them.

use std::fmt;
use std::time::Duration;

use anchorage_trust::tls::TrustConfig;
use secrecy::SecretString;

/// Where the private key of a new certificate is made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeyLocation {
    /// OpenBao makes the key: `POST <mount>/issue/<role>`. The key crosses the network (inside
    /// TLS) in the response. The request's key type is sent as `key_type`/`key_bits`; a role
    /// with a fixed key type ignores them, and the issuer then refuses the result with
    /// [`anchorage_ca::IssueError::UnsupportedKeyType`].
    #[default]
    Server,
    /// The key is made here and never leaves the process: a CSR is sent to
    /// `POST <mount>/sign/<role>`. The role's `key_type` must be `any` or match the request.
    Local,
}

impl KeyLocation {
    /// The PKI endpoint used: `issue` or `sign`.
    pub fn endpoint(self) -> &'static str {
        match self {
            KeyLocation::Server => "issue",
            KeyLocation::Local => "sign",
        }
    }
}

/// AppRole credentials: `POST auth/<mount>/login` with the role ID and secret ID gives a client
/// token, which is renewed by logging in again before its lease ends (at two thirds of it) or
/// when OpenBao answers 403.
#[derive(Clone)]
pub struct AppRole {
    /// Where the AppRole auth method is mounted, without `auth/`. Default `approle`.
    pub mount: String,
    /// The role ID (an identifier, shown in `Debug`).
    pub role_id: String,
    /// The secret ID (never shown).
    pub secret_id: SecretString,
}

impl AppRole {
    /// AppRole at the default mount `approle`.
    pub fn new(role_id: impl Into<String>, secret_id: SecretString) -> Self {
        Self {
            mount: "approle".to_owned(),
            role_id: role_id.into(),
            secret_id,
        }
    }
}

impl fmt::Debug for AppRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppRole")
            .field("mount", &self.mount)
            .field("role_id", &self.role_id)
            .field("secret_id", &"[redacted]")
            .finish()
    }
}

/// How the issuer authenticates to OpenBao.
#[derive(Clone)]
pub enum VaultAuth {
    /// A token sent as `X-Vault-Token` as it is (a periodic or long-lived token; this crate does
    /// not renew it).
    Token(SecretString),
    /// AppRole login; the resulting client token is cached and renewed by logging in again.
    AppRole(AppRole),
}

impl VaultAuth {
    /// `token` or `approle`, for logs and errors.
    pub fn method(&self) -> &'static str {
        match self {
            VaultAuth::Token(_) => "token",
            VaultAuth::AppRole(_) => "approle",
        }
    }
}

impl fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultAuth::Token(_) => f.write_str("Token([redacted])"),
            VaultAuth::AppRole(approle) => f.debug_tuple("AppRole").field(approle).finish(),
        }
    }
}

/// Everything a [`crate::VaultIssuer`] needs. Plain data: build it, hand it to
/// [`crate::VaultIssuer::new`], which checks it.
#[derive(Clone)]
pub struct VaultConfig {
    /// The server, `https://vault.example:8200` (plain `http://` is allowed and then used as
    /// given; nothing is ever downgraded from https). A path is allowed (behind a proxy).
    pub address: String,
    /// Where the PKI secrets engine is mounted, without slashes at the ends. Default `pki`.
    pub mount: String,
    /// The PKI role that issues (`<mount>/issue/<role>` or `<mount>/sign/<role>`). Required.
    pub role: String,
    /// How to authenticate.
    pub auth: VaultAuth,
    /// `X-Vault-Namespace` (Vault Enterprise, OpenBao namespaces), when set.
    pub namespace: Option<String>,
    /// Where keys are made. Default: by OpenBao ([`KeyLocation::Server`]).
    pub key_location: KeyLocation,
    /// The issuer the role signs with, for reading the CA chain (`<mount>/issuer/<ref>/json`).
    /// Default `default`; set it when the role has an `issuer_ref` of its own.
    pub issuer_ref: String,
    /// Which CAs to trust for an `https://` address (ignored for `http://`). Default: the OS
    /// store and Mozilla's roots; add `ssl_certs_file`/`extra_ca_paths` for a private CA.
    pub trust: TrustConfig,
    /// Limit for establishing the TCP connection. Default 5 s.
    pub connect_timeout: Duration,
    /// Limit for a whole request, answer included. Default 30 s (RSA-4096 keys made by OpenBao
    /// take seconds).
    pub request_timeout: Duration,
}

impl VaultConfig {
    /// A configuration with the defaults: mount `pki`, no namespace, keys made by OpenBao,
    /// issuer `default`, the default trust store, 5 s to connect and 30 s per request.
    pub fn new(address: impl Into<String>, role: impl Into<String>, auth: VaultAuth) -> Self {
        Self {
            address: address.into(),
            mount: "pki".to_owned(),
            role: role.into(),
            auth,
            namespace: None,
            key_location: KeyLocation::default(),
            issuer_ref: "default".to_owned(),
            trust: TrustConfig::default(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Sets the PKI mount.
    pub fn with_mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = mount.into();
        self
    }

    /// Sets the namespace.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets where keys are made.
    pub fn with_key_location(mut self, key_location: KeyLocation) -> Self {
        self.key_location = key_location;
        self
    }

    /// Sets the issuer reference used to read the CA chain.
    pub fn with_issuer_ref(mut self, issuer_ref: impl Into<String>) -> Self {
        self.issuer_ref = issuer_ref.into();
        self
    }

    /// Sets the trust store for `https://` addresses.
    pub fn with_trust(mut self, trust: TrustConfig) -> Self {
        self.trust = trust;
        self
    }

    /// Sets both timeouts.
    pub fn with_timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }
}

impl fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultConfig")
            .field("address", &self.address)
            .field("mount", &self.mount)
            .field("role", &self.role)
            .field("auth", &self.auth)
            .field("namespace", &self.namespace)
            .field("key_location", &self.key_location)
            .field("issuer_ref", &self.issuer_ref)
            .field("trust", &self.trust)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// Checks one path segment setting (role, issuer reference, AppRole mount) or a mount path
/// (segments separated by `/`): no empty segment, no `.`/`..`, only characters that need no
/// escaping in a URL path.
pub(crate) fn check_path(value: &str, allow_slash: bool) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("must not be empty");
    }
    let segments: Vec<&str> = if allow_slash {
        value.split('/').collect()
    } else {
        vec![value]
    };
    for segment in segments {
        if segment.is_empty() {
            return Err("must not start or end with '/' or hold '//'");
        }
        if segment == "." || segment == ".." {
            return Err("must not hold '.' or '..' segments");
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        {
            return Err(if allow_slash {
                "may hold only letters, digits, '-', '_', '.', '@' and '/'"
            } else {
                "may hold only letters, digits, '-', '_', '.' and '@'"
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let config = VaultConfig::new(
            "https://vault.example:8200",
            "web",
            VaultAuth::Token(SecretString::from("hvs.super-secret-token")),
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("super-secret"), "{shown}");
        assert!(shown.contains("redacted") && shown.contains("vault.example"));

        let approle = VaultAuth::AppRole(AppRole::new(
            "role-id-1234",
            SecretString::from("secret-id-5678"),
        ));
        let shown = format!("{:?}", config.with_mount("pki_int").auth);
        assert!(!shown.contains("super-secret"), "{shown}");
        let shown = format!("{approle:?}");
        assert!(shown.contains("role-id-1234"), "{shown}");
        assert!(!shown.contains("5678"), "{shown}");
        assert_eq!(approle.method(), "approle");
    }

    #[test]
    fn path_checks() {
        assert!(check_path("pki", true).is_ok());
        assert!(check_path("team-a/pki_int", true).is_ok());
        assert!(check_path("web", false).is_ok());
        const SLASHES: &str = "must not start or end with '/' or hold '//'";
        const CHARACTERS: &str = "may hold only letters, digits, '-', '_', '.', '@' and '/'";
        for (bad, why) in [
            ("", "must not be empty"),
            ("/pki", SLASHES),
            ("pki/", SLASHES),
            ("a//b", SLASHES),
            ("a/../b", "must not hold '.' or '..' segments"),
            ("p ki", CHARACTERS),
            ("pki?x=1", CHARACTERS),
            ("pk#i", CHARACTERS),
        ] {
            assert_eq!(check_path(bad, true), Err(why), "{bad}");
        }
        assert_eq!(
            check_path("a/b", false),
            Err("may hold only letters, digits, '-', '_', '.' and '@'")
        );
    }
}
