//! Roles, after Vault's PKI roles: which names, SPIFFE IDs, kinds, key types and lifetimes a
//! token bound to the role may obtain. A request outside its role is refused with the rule it
//! broke ([`RoleViolation`]). Roles are kept in the store under `serve.roles.<name>`.

use std::time::Duration;

use anchorage_ca::{CertKind, CertificateRequest, KeyType, San};
use anchorage_store::{Store, StoreError};
use serde::{Deserialize, Serialize};

const PREFIX: &str = "serve.roles.";

/// A role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Its name (letters, digits, `-`, `_`).
    #[serde(default)]
    pub name: String,
    /// DNS domains names may be in (`mesh.local`).
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Names below an allowed domain (`web.mesh.local`) are allowed.
    #[serde(default)]
    pub allow_subdomains: bool,
    /// An allowed domain itself (`mesh.local`) is allowed.
    #[serde(default)]
    pub allow_bare_domains: bool,
    /// Any DNS name is allowed.
    #[serde(default)]
    pub allow_any_name: bool,
    /// Wildcard names (`*.mesh.local`) may be issued (still inside the domains).
    #[serde(default)]
    pub allow_wildcards: bool,
    /// IP SANs are allowed.
    #[serde(default)]
    pub allow_ip_sans: bool,
    /// The SPIFFE trust domain URI SANs must be in (`None`: no SPIFFE IDs).
    #[serde(default)]
    pub spiffe_trust_domain: Option<String>,
    /// The SPIFFE path pattern (`/ns/*/sa/*`: `*` matches one segment, a trailing `/**` any
    /// rest); `None` with a trust domain allows any path.
    #[serde(default)]
    pub spiffe_path_pattern: Option<String>,
    /// The certificate kinds allowed (empty: `service` only).
    #[serde(default)]
    pub allowed_kinds: Vec<CertKind>,
    /// The key types allowed (empty: any).
    #[serde(default)]
    pub key_types: Vec<KeyType>,
    /// The longest lifetime, in seconds (0: 24 h).
    #[serde(default)]
    pub max_ttl_seconds: u64,
}

/// A request outside its role: the rule and the value that broke it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("refused by role {role:?}: {detail} (rule {rule})")]
pub struct RoleViolation {
    /// The role.
    pub role: String,
    /// The rule broken (`allowed_domains`, `allowed_kinds`, `key_types`, `max_ttl`,
    /// `allow_ip_sans`, `spiffe_trust_domain`, `spiffe_path_pattern`, `allow_wildcards`).
    pub rule: &'static str,
    /// What was asked and what the rule allows.
    pub detail: String,
}

impl Role {
    /// The longest lifetime.
    pub fn max_ttl(&self) -> Duration {
        Duration::from_secs(if self.max_ttl_seconds == 0 {
            86_400
        } else {
            self.max_ttl_seconds
        })
    }

    /// The kinds allowed.
    pub fn kinds(&self) -> Vec<CertKind> {
        if self.allowed_kinds.is_empty() {
            vec![CertKind::Service]
        } else {
            self.allowed_kinds.clone()
        }
    }

    /// Checks the role's own fields.
    pub fn validate(&self) -> Result<(), String> {
        valid_name(&self.name)?;
        if let Some(p) = &self.spiffe_path_pattern
            && !p.starts_with('/')
        {
            return Err(format!("spiffe_path_pattern {p:?} must start with '/'"));
        }
        Ok(())
    }

    /// Checks `request` (with `key_type` the key the certificate will certify).
    pub fn check(&self, request: &CertificateRequest) -> Result<(), RoleViolation> {
        let refuse = |rule: &'static str, detail: String| RoleViolation {
            role: self.name.clone(),
            rule,
            detail,
        };
        let kinds = self.kinds();
        if !kinds.contains(&request.kind) {
            return Err(refuse(
                "allowed_kinds",
                format!(
                    "kind {} is not allowed; allowed: {}",
                    request.kind,
                    kinds
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if !self.key_types.is_empty() && !self.key_types.contains(&request.key_type) {
            return Err(refuse(
                "key_types",
                format!(
                    "key type {} is not allowed; allowed: {}",
                    request.key_type,
                    self.key_types
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if request.lifetime > self.max_ttl() {
            return Err(refuse(
                "max_ttl",
                format!(
                    "a lifetime of {} s exceeds the role's max_ttl of {} s",
                    request.lifetime.as_secs(),
                    self.max_ttl().as_secs()
                ),
            ));
        }
        if !request.identity.is_dns_name() && !self.name_allowed_cn(request.identity.as_str()) {
            return Err(refuse(
                "allowed_domains",
                format!(
                    "common name {:?} is not a DNS name the role allows",
                    request.identity.as_str()
                ),
            ));
        }
        for san in request.all_sans() {
            match &san {
                San::Dns(name) => self.check_dns(name).map_err(|(rule, d)| refuse(rule, d))?,
                San::Ip(ip) => {
                    if !self.allow_ip_sans {
                        return Err(refuse(
                            "allow_ip_sans",
                            format!("IP SAN {ip} is not allowed"),
                        ));
                    }
                }
                San::Uri(uri) => self.check_uri(uri).map_err(|(rule, d)| refuse(rule, d))?,
            }
        }
        Ok(())
    }

    /// A non-DNS common name (a SPIFFE-style workload name) passes only with allow_any_name.
    fn name_allowed_cn(&self, _cn: &str) -> bool {
        self.allow_any_name
    }

    fn check_dns(&self, name: &str) -> Result<(), (&'static str, String)> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, base) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, name.clone()),
        };
        if wildcard && !self.allow_wildcards {
            return Err((
                "allow_wildcards",
                format!("wildcard name {name} is not allowed"),
            ));
        }
        if self.allow_any_name {
            return Ok(());
        }
        for domain in &self.allowed_domains {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            // A wildcard covers the names below its base: *.d needs subdomains of d, or bare d
            // as its base only with allow_subdomains too (as Vault).
            if !wildcard && self.allow_bare_domains && base == domain {
                return Ok(());
            }
            if self.allow_subdomains
                && (base.ends_with(&format!(".{domain}")) || (wildcard && base == domain))
            {
                return Ok(());
            }
        }
        Err((
            "allowed_domains",
            format!(
                "name {name} is outside allowed_domains [{}] (allow_subdomains = {}, allow_bare_domains = {})",
                self.allowed_domains.join(", "),
                self.allow_subdomains,
                self.allow_bare_domains
            ),
        ))
    }

    fn check_uri(&self, uri: &str) -> Result<(), (&'static str, String)> {
        let Some(rest) = uri.strip_prefix("spiffe://") else {
            return Err((
                "spiffe_trust_domain",
                format!("URI SAN {uri} is not a SPIFFE ID; only SPIFFE IDs may be issued"),
            ));
        };
        let (domain, path) = rest.split_once('/').map_or((rest, ""), |(d, p)| (d, p));
        let Some(allowed) = &self.spiffe_trust_domain else {
            return Err((
                "spiffe_trust_domain",
                format!("SPIFFE ID {uri} is not allowed: the role has no spiffe_trust_domain"),
            ));
        };
        if !domain.eq_ignore_ascii_case(allowed) {
            return Err((
                "spiffe_trust_domain",
                format!("SPIFFE ID {uri} is outside trust domain {allowed}"),
            ));
        }
        if let Some(pattern) = &self.spiffe_path_pattern
            && !path_matches(pattern, &format!("/{path}"))
        {
            return Err((
                "spiffe_path_pattern",
                format!("SPIFFE path /{path} does not match {pattern}"),
            ));
        }
        Ok(())
    }
}

/// `*` matches one segment; a trailing `/**` matches any rest (including nothing).
fn path_matches(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let s: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if p.last() == Some(&"**") {
        let head = &p[..p.len() - 1];
        return s.len() >= head.len()
            && head
                .iter()
                .zip(&s)
                .all(|(a, b)| *a == "*" && !b.is_empty() || a == b);
    }
    p.len() == s.len()
        && p.iter()
            .zip(&s)
            .all(|(a, b)| *a == "*" && !b.is_empty() || a == b)
}

/// A role or consumer name: 1 to 64 of letters, digits, `-`, `_`.
pub fn valid_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be 1 to 64 letters, digits, '-' or '_'"
        ))
    }
}

/// Reads a role.
pub async fn get_role(store: &dyn Store, name: &str) -> Result<Option<Role>, StoreError> {
    if valid_name(name).is_err() {
        return Ok(None);
    }
    Ok(store
        .get(&format!("{PREFIX}{name}"))
        .await?
        .and_then(|e| serde_json::from_slice(&e.value).ok()))
}

/// Writes a role (replacing one of the same name).
pub async fn put_role(store: &dyn Store, role: &Role) -> Result<(), StoreError> {
    let value = serde_json::to_vec(role).unwrap_or_default();
    store.put(&format!("{PREFIX}{}", role.name), value).await?;
    Ok(())
}

/// Deletes a role.
pub async fn delete_role(store: &dyn Store, name: &str) -> Result<(), StoreError> {
    store.delete(&format!("{PREFIX}{name}"), None).await
}

/// Every role, by name.
pub async fn list_roles(store: &dyn Store) -> Result<Vec<Role>, StoreError> {
    let mut out = Vec::new();
    for key in store.keys(PREFIX).await? {
        if let Some(e) = store.get(&key).await?
            && let Ok(role) = serde_json::from_slice(&e.value)
        {
            out.push(role);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchorage_ca::Identity;

    fn role() -> Role {
        Role {
            name: "mesh".into(),
            allowed_domains: vec!["mesh.local".into()],
            allow_subdomains: true,
            allow_bare_domains: false,
            allow_any_name: false,
            allow_wildcards: false,
            allow_ip_sans: false,
            spiffe_trust_domain: Some("example.org".into()),
            spiffe_path_pattern: Some("/ns/*/sa/*".into()),
            allowed_kinds: vec![CertKind::Service, CertKind::Server],
            key_types: vec![KeyType::P256],
            max_ttl_seconds: 3600,
        }
    }

    fn req(cn: &str) -> CertificateRequest {
        CertificateRequest::new(Identity::new(cn).unwrap(), CertKind::Service)
            .with_lifetime(Duration::from_secs(600))
    }

    #[test]
    fn each_rule_refuses_and_names_itself() {
        let r = role();
        r.check(&req("web.mesh.local")).unwrap();
        let rule = |q: CertificateRequest| r.check(&q).unwrap_err().rule;
        assert_eq!(rule(req("web.evil.com")), "allowed_domains");
        assert_eq!(rule(req("mesh.local")), "allowed_domains");
        assert_eq!(rule(req("*.mesh.local")), "allow_wildcards");
        assert_eq!(
            rule(req("a.mesh.local").with_lifetime(Duration::from_secs(7200))),
            "max_ttl"
        );
        assert_eq!(
            rule(req("a.mesh.local").with_key_type(KeyType::P384)),
            "key_types"
        );
        let mut client = req("a.mesh.local");
        client.kind = CertKind::Client;
        assert_eq!(rule(client), "allowed_kinds");
        let ip = req("a.mesh.local").with_san(San::parse("10.0.0.1").unwrap());
        assert_eq!(rule(ip), "allow_ip_sans");
        let ok =
            req("a.mesh.local").with_san(San::parse("spiffe://example.org/ns/a/sa/b").unwrap());
        r.check(&ok).unwrap();
        let td = req("a.mesh.local").with_san(San::parse("spiffe://other.org/ns/a/sa/b").unwrap());
        assert_eq!(rule(td), "spiffe_trust_domain");
        let path = req("a.mesh.local").with_san(San::parse("spiffe://example.org/ns/a").unwrap());
        assert_eq!(rule(path), "spiffe_path_pattern");
    }

    #[test]
    fn patterns() {
        assert!(path_matches("/ns/*/sa/*", "/ns/a/sa/b"));
        assert!(!path_matches("/ns/*/sa/*", "/ns/a/sa/b/c"));
        assert!(path_matches("/ns/**", "/ns/a/b"));
        assert!(!path_matches("/ns/*", "/ns/"));
    }
}
