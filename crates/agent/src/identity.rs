//! The agent's own identity: a key made here (never sent), a certificate from serve's
//! `/v1/sign` (token) then `/v1/renew` (mTLS with the current certificate, a new key each
//! time), written as cert, key (0600), chain and CA files atomically.

use anchorage_ca::{CertificateRequest, Identity, San};
use anchorage_x509::Certificate;
use secrecy::{ExposeSecret as _, SecretString};

use crate::client::Issued;
use crate::config::IdentityConfig;
use crate::error::AgentError;

/// The identity in place.
#[derive(Clone)]
pub struct Current {
    /// The leaf.
    pub leaf: Certificate,
    /// Leaf then intermediates, PEM.
    pub chain_pem: String,
    /// The key, PKCS#8 PEM.
    pub key_pem: SecretString,
    /// The roots it chains to (the CA file).
    pub roots: Vec<Certificate>,
    /// When the agent received it (Unix seconds; the chain file's modification time once
    /// loaded from disk). serve backdates `notBefore` by five minutes for clock skew, so the
    /// renewal point is measured from here, not from `notBefore`.
    pub received_at: i64,
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Current")
            .field("subject", &self.leaf.subject())
            .field("serial", &self.leaf.serial())
            .field("not_after", &self.leaf.not_after())
            .finish_non_exhaustive()
    }
}

impl Current {
    /// The identity's files, when all are there, the key matches, and the leaf is unexpired at
    /// `now`; None otherwise (the agent then asks for a new certificate).
    pub fn load(config: &IdentityConfig, now: i64) -> Option<Self> {
        let chain_pem = std::fs::read_to_string(&config.chain).ok()?;
        let key_pem = SecretString::from(std::fs::read_to_string(&config.key).ok()?);
        let roots_pem = std::fs::read(&config.ca).ok()?;
        let leaf = anchorage_x509::decode(chain_pem.as_bytes())
            .certificates
            .into_iter()
            .next()?
            .certificate;
        let (pair, _) = anchorage_ca::keys::load(key_pem.expose_secret().as_bytes()).ok()?;
        if !anchorage_ca::keys::matches_certificate(&pair, leaf.der())
            || leaf.not_after().unix() <= now
        {
            return None;
        }
        let roots = anchorage_x509::decode(&roots_pem)
            .certificates
            .into_iter()
            .map(|f| f.certificate)
            .collect();
        let received_at = std::fs::metadata(&config.chain)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(now, |d| d.as_secs() as i64);
        Some(Self {
            leaf,
            chain_pem,
            key_pem,
            roots,
            received_at,
        })
    }

    /// When to renew: `fraction` into the validity (from when it was received, or
    /// `notBefore` if later), ± `jitter` of that offset (`unit` in [0, 1) picks the point).
    pub fn renew_at(&self, fraction: f64, jitter: f64, unit: f64) -> i64 {
        let nb = self.leaf.not_before().unix().max(self.received_at);
        let life = (self.leaf.not_after().unix() - nb).max(0) as f64;
        let base = life * fraction;
        let offset = base * (1.0 + jitter * (2.0 * unit - 1.0));
        nb + offset.clamp(0.0, life) as i64
    }

    /// The roots the leaf chains to (those whose subject is the issuer of the chain's top);
    /// every root when none matches.
    pub fn anchors(&self) -> Vec<Certificate> {
        let top_issuer = anchorage_x509::decode(self.chain_pem.as_bytes())
            .certificates
            .last()
            .map(|f| f.certificate.issuer().to_owned());
        let matching: Vec<Certificate> = self
            .roots
            .iter()
            .filter(|r| Some(r.subject()) == top_issuer.as_deref())
            .cloned()
            .collect();
        if matching.is_empty() {
            self.roots.clone()
        } else {
            matching
        }
    }
}

/// A new key and a CSR for the identity.
pub fn new_request(config: &IdentityConfig) -> Result<(SecretString, String), AgentError> {
    let crypto = |e: &dyn std::fmt::Display| AgentError::Crypto(e.to_string());
    let identity = Identity::new(config.name.clone()).map_err(|e| crypto(&e))?;
    let mut request = CertificateRequest::new(identity, config.kind);
    for san in &config.sans {
        request = request.with_san(San::parse(san).map_err(|e| crypto(&e))?);
    }
    let (pair, private) = anchorage_ca::keys::generate(config.key_type).map_err(|e| crypto(&e))?;
    let csr = anchorage_ca::csr_pem(&request, &pair).map_err(|e| crypto(&e))?;
    Ok((private.to_pkcs8_pem(), csr))
}

fn output_error(path: &std::path::Path, e: &std::io::Error) -> AgentError {
    AgentError::Output {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// The name a file of the identity is staged under, beside it, before the set is swapped in.
fn staged_path(path: &std::path::Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.anchorage-staged"))
}

/// Writes the identity's files as a set: each is first written whole beside its target
/// ([`staged_path`], through the atomic writers: 0600 for private ones), and only when every
/// one is there are they renamed over their targets (a rename needs no space). A failure while
/// staging (a full disk) removes what was staged and leaves every previous file as it was, so
/// a new key never sits beside an old certificate. A target that is a device or FIFO (not a
/// file to swap) is written through last, as `anchorage_trust::atomic::write_file` does.
fn write_set(files: &[(&std::path::Path, &[u8], bool)]) -> Result<(), AgentError> {
    let mut staged: Vec<(std::path::PathBuf, &std::path::Path)> = Vec::new();
    let mut through = Vec::new();
    let unstage = |staged: &[(std::path::PathBuf, &std::path::Path)]| {
        for (tmp, _) in staged {
            let _ = std::fs::remove_file(tmp);
        }
    };
    // As `write_private_file` does: a private target that is a link, FIFO, device, socket or
    // directory is refused before anything is written.
    for &(path, _, private) in files {
        if private
            && let Ok(meta) = std::fs::symlink_metadata(path)
            && !meta.is_file()
        {
            return Err(AgentError::Output {
                path: path.to_owned(),
                message: "the path is not a regular file: private keys are written only as a \
                          regular file, never through a link or into a FIFO, device, socket or \
                          directory; remove it or give another path"
                    .into(),
            });
        }
    }
    for &(path, bytes, private) in files {
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) && !private {
            through.push((path, bytes));
            continue;
        }
        let tmp = staged_path(path);
        let written = if private {
            anchorage_trust::atomic::write_private_file(&tmp, bytes)
        } else {
            anchorage_trust::atomic::write_file(&tmp, bytes)
        };
        if let Err(e) = written {
            // What is left is the staged copy of a file whose write failed part way, if any.
            let _ = std::fs::remove_file(&tmp);
            unstage(&staged);
            return Err(output_error(path, &e));
        }
        staged.push((tmp, path));
    }
    for (i, (tmp, path)) in staged.iter().enumerate() {
        if let Err(e) = std::fs::rename(tmp, path) {
            unstage(&staged[i..]);
            return Err(output_error(path, &e));
        }
        if let Some(parent) = path.parent() {
            let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
        }
    }
    for (path, bytes) in through {
        anchorage_trust::atomic::write_file(path, bytes).map_err(|e| output_error(path, &e))?;
    }
    Ok(())
}

/// Checks serve's answer against the key and writes the files as a set (`write_set`): the
/// key (0600) and the chain first, then the leaf and the roots.
pub fn install(
    config: &IdentityConfig,
    issued: &Issued,
    key_pem: SecretString,
    now: i64,
) -> Result<Current, AgentError> {
    let protocol = |message: String| AgentError::Protocol {
        what: "the issued certificate",
        message,
    };
    let leaf = anchorage_x509::decode(issued.certificate.as_bytes())
        .certificates
        .into_iter()
        .next()
        .ok_or_else(|| protocol("no certificate in the answer".into()))?
        .certificate;
    let (pair, _) = anchorage_ca::keys::load(key_pem.expose_secret().as_bytes())
        .map_err(|e| AgentError::Crypto(e.to_string()))?;
    if !anchorage_ca::keys::matches_certificate(&pair, leaf.der()) {
        return Err(protocol(
            "the certificate is not for the key this agent made".into(),
        ));
    }
    let mut chain_pem = leaf.to_pem();
    for c in &issued.chain {
        chain_pem.push_str(c.trim_end());
        chain_pem.push('\n');
    }
    let mut roots_pem = String::new();
    for c in &issued.ca {
        roots_pem.push_str(c.trim_end());
        roots_pem.push('\n');
    }
    let roots = anchorage_x509::decode(roots_pem.as_bytes())
        .certificates
        .into_iter()
        .map(|f| f.certificate)
        .collect();
    let mut pkcs12 = None;
    if let Some((path, password)) = &config.pkcs12 {
        let private = anchorage_ca::keys::load(key_pem.expose_secret().as_bytes())
            .map_err(|e| AgentError::Crypto(e.to_string()))?
            .1;
        let chain: Vec<Vec<u8>> = anchorage_x509::decode(chain_pem.as_bytes())
            .certificates
            .into_iter()
            .map(|f| f.certificate.der().to_vec())
            .collect();
        let mut random = |buf: &mut [u8]| {
            use ring::rand::SecureRandom as _;
            // The system source does not fail on Linux; a zero salt would still be a valid file.
            let _ = ring::rand::SystemRandom::new().fill(buf);
        };
        let store = anchorage_keystore::encode_pkcs12_identity(
            private.pkcs8_der(),
            &chain,
            &config.name,
            password,
            anchorage_keystore::DEFAULT_ITERATIONS,
            &mut random,
        )
        .map_err(|e| AgentError::Output {
            path: path.clone(),
            message: e.to_string(),
        })?;
        pkcs12 = Some((path, store));
    }
    let leaf_pem = leaf.to_pem();
    // The key and the chain first, then the leaf and the roots, all staged before any is
    // replaced.
    let mut files: Vec<(&std::path::Path, &[u8], bool)> =
        vec![(&config.key, key_pem.expose_secret().as_bytes(), true)];
    if let Some((path, store)) = &pkcs12 {
        files.push((path.as_path(), store.as_slice(), true));
    }
    files.push((&config.chain, chain_pem.as_bytes(), false));
    files.push((&config.cert, leaf_pem.as_bytes(), false));
    files.push((&config.ca, roots_pem.as_bytes(), false));
    write_set(&files)?;
    Ok(Current {
        leaf,
        chain_pem,
        key_pem,
        roots,
        received_at: now,
    })
}

#[cfg(test)]
mod tests {
    use anchorage_test_support::pki;

    use super::*;

    #[test]
    fn renewal_is_two_thirds_from_receipt_with_ten_percent_jitter() {
        let root = pki::root_ca("Agent Renew Root");
        let leaf = Certificate::from_der(&pki::server_leaf(&["a.test"], &root).der).unwrap();
        let (nb, na) = (leaf.not_before().unix(), leaf.not_after().unix());
        let current = |received_at| Current {
            leaf: leaf.clone(),
            chain_pem: String::new(),
            key_pem: SecretString::from(String::new()),
            roots: Vec::new(),
            received_at,
        };
        // Received before notBefore: measured from notBefore.
        let c = current(nb - 10);
        let life = (na - nb) as f64;
        let at = |unit| c.renew_at(2.0 / 3.0, 0.1, unit);
        assert_eq!(at(0.5), nb + (life * 2.0 / 3.0) as i64);
        assert_eq!(at(0.0), nb + (life * 2.0 / 3.0 * 0.9) as i64);
        let top = nb + (life * 2.0 / 3.0 * 1.1) as i64;
        assert!((at(0.999_999) - top).abs() <= (life * 1e-5) as i64 + 1);
        // Received later (serve backdates notBefore): measured from receipt.
        let later = nb + 3_600;
        let c = current(later);
        assert_eq!(
            c.renew_at(2.0 / 3.0, 0.0, 0.5),
            later + ((na - later) as f64 * 2.0 / 3.0) as i64
        );
    }
}
