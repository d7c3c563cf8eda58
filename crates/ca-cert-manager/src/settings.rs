//! [`CertManagerSettings`]: where requests are made, which issuer signs them, how long to wait;
//! checked once, before any request reaches the API server.

use std::time::Duration;

use crate::v1::IssuerReference;

/// How long [`crate::CertManagerIssuer`] waits for a request by default: one minute, enough for
/// the CA, Vault and Venafi issuers, and short enough that a stuck approver is noticed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and how certificates are requested from cert-manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertManagerSettings {
    /// The namespace the `CertificateRequest` objects are made in (and where an `Issuer`, as
    /// opposed to a `ClusterIssuer`, must live).
    pub namespace: String,
    /// The issuer that signs.
    pub issuer: IssuerReference,
    /// How long to wait for one request, from creation to a certificate, denial or failure.
    pub timeout: Duration,
}

impl CertManagerSettings {
    /// Requests in `namespace` signed by `issuer`, waiting [`DEFAULT_TIMEOUT`].
    pub fn new(namespace: impl Into<String>, issuer: IssuerReference) -> Self {
        Self {
            namespace: namespace.into(),
            issuer,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same settings with another timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks what the API server would refuse later, with a clearer message: the namespace is
    /// a DNS-1123 label, the issuer has a name (a DNS-1123 subdomain), and the timeout is not
    /// zero.
    pub fn validate(&self) -> Result<(), SettingsError> {
        dns1123_label(&self.namespace).map_err(|reason| SettingsError::InvalidNamespace {
            namespace: self.namespace.clone(),
            reason,
        })?;
        dns1123_subdomain(&self.issuer.name).map_err(|reason| {
            SettingsError::InvalidIssuerName {
                name: self.issuer.name.clone(),
                reason,
            }
        })?;
        if self.timeout.is_zero() {
            return Err(SettingsError::ZeroTimeout);
        }
        Ok(())
    }
}

/// Settings that cannot work, found before anything is sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The namespace is not a DNS-1123 label.
    #[error("namespace {namespace:?} is not a valid Kubernetes namespace: {reason}")]
    InvalidNamespace {
        /// What was given.
        namespace: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The issuer's name is empty or not a DNS-1123 subdomain.
    #[error("issuer name {name:?} is not a valid Kubernetes object name: {reason}")]
    InvalidIssuerName {
        /// What was given.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A zero timeout would fail every request before cert-manager saw it.
    #[error("the cert-manager timeout is zero: give at least a few seconds (default 60 s)")]
    ZeroTimeout,
}

/// RFC 1123 label: 1-63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub(crate) fn dns1123_label(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("use 1 to 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("use only lower-case letters, digits and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("start and end with a letter or digit");
    }
    Ok(())
}

/// RFC 1123 subdomain: at most 253 characters, labels as above separated by dots.
fn dns1123_subdomain(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 253 {
        return Err("use 1 to 253 characters");
    }
    name.split('.').try_for_each(dns1123_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_rule() {
        let ok = CertManagerSettings::new("mesh-system", IssuerReference::cluster_issuer("ca"));
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.timeout, DEFAULT_TIMEOUT);

        let bad_ns = CertManagerSettings::new("Mesh_System", IssuerReference::issuer("ca"));
        assert!(matches!(
            bad_ns.validate(),
            Err(SettingsError::InvalidNamespace { .. })
        ));
        let no_name = CertManagerSettings::new("mesh", IssuerReference::issuer(""));
        assert!(matches!(
            no_name.validate(),
            Err(SettingsError::InvalidIssuerName { .. })
        ));
        let zero = ok.with_timeout(Duration::ZERO);
        assert_eq!(zero.validate(), Err(SettingsError::ZeroTimeout));
        let dotted = CertManagerSettings::new("mesh", IssuerReference::issuer("ca.internal"));
        assert_eq!(dotted.validate(), Ok(()));
    }
}
