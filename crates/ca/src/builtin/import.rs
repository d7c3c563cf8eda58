//! Taking a CA over and handing it back: plain PEM files, the Flomesh/Open Service Mesh
//! `fsm-ca-bundle` / `osm-ca-bundle` Secret layout, and the `kubernetes.io/tls` layout.
//!
//! Pure functions over bytes and maps: the CLI reads and writes the files, and
//! `anchorage_k8s::{write_ca_secret, read_ca_secret}` the Secret manifests around these maps
//! (whose data keys, the constants below, are the ones `anchorage_k8s::CaSecretLayout` names). An import refuses certificates that are not CAs, keys that belong to none of the
//! certificates (public keys compared), a CA that is not valid at the given time (with its
//! dates), and a chain that does not end in a self-signed root; a key that does not parse is
//! reported with where it came from, never with its bytes.
//!
//! It does not own reading or writing files, or Secret manifests.

use std::collections::BTreeMap;

use anchorage_x509::{Certificate, Timestamp};
use rcgen::KeyPair;
use secrecy::{SecretSlice, SecretString};

use super::{BuiltinCa, CaError, is_ca, issued_by};
use crate::issued::PrivateKey;
use crate::keys;

/// The Secret name Flomesh Service Mesh keeps its root in.
pub const FSM_SECRET_NAME: &str = "fsm-ca-bundle";
/// The Secret name Open Service Mesh keeps its root in (same data keys).
pub const OSM_SECRET_NAME: &str = "osm-ca-bundle";
/// The data key of the CA certificate (PEM; may hold a chain) in the FSM/OSM Secret.
pub const FSM_CA_CERT_KEY: &str = "ca.crt";
/// The data key of the CA's private key (PEM) in the FSM/OSM Secret.
pub const FSM_PRIVATE_KEY_KEY: &str = "private.key";
/// The data key of the CA's expiry in the OSM Secret (`2006-01-02T15:04:05.000Z` layout);
/// Open Service Mesh requires it when it reads the Secret back. Ignored on import.
pub const FSM_EXPIRATION_KEY: &str = "expiration";

/// One input with a name for messages: a file path, `Secret data ca.crt`, ….
#[derive(Clone, Copy)]
pub struct Source<'a> {
    /// Where the bytes came from.
    pub origin: &'a str,
    /// The content (PEM, or DER).
    pub bytes: &'a [u8],
}

impl<'a> Source<'a> {
    /// A named input.
    pub fn new(origin: &'a str, bytes: &'a [u8]) -> Self {
        Self { origin, bytes }
    }
}

impl std::fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("origin", &self.origin)
            .field("bytes", &format_args!("[{} bytes]", self.bytes.len()))
            .finish()
    }
}

/// A CA as PEM files. `Debug` never shows the keys.
#[derive(Debug)]
pub struct CaPem {
    /// `ca.crt`: the validating roots, the anchoring root first. This is what peers trust.
    pub roots: String,
    /// `ca.key`: the root's key, when held.
    pub root_key: Option<SecretString>,
    /// `intermediate.crt`: the intermediates leaves are sent with, signer first; `None` when
    /// the root signs.
    pub chain: Option<String>,
    /// `intermediate.key`: the signing intermediate's key; `None` when the root signs.
    pub intermediate_key: Option<SecretString>,
}

impl CaPem {
    /// The conventional file names and contents, for writing a directory (`ca.crt`, `ca.key`,
    /// `intermediate.crt`, `intermediate.key`; absent parts are left out). Key files should be
    /// written with mode 0600.
    pub fn files(&self) -> Vec<(&'static str, SecretString)> {
        let mut out = vec![("ca.crt", SecretString::from(self.roots.clone()))];
        if let Some(key) = &self.root_key {
            out.push(("ca.key", key.clone()));
        }
        if let Some(chain) = &self.chain {
            out.push(("intermediate.crt", SecretString::from(chain.clone())));
        }
        if let Some(key) = &self.intermediate_key {
            out.push(("intermediate.key", key.clone()));
        }
        out
    }
}

fn certificates_from(source: &Source<'_>) -> Result<Vec<Certificate>, CaError> {
    let decoded = anchorage_x509::decode(source.bytes);
    // A file holding the certificate and its key is fine: keys are read separately.
    if let Some(problem) = decoded.problems.iter().find(|p| !p.error.is_private_key()) {
        if decoded.certificates.is_empty()
            && matches!(problem.error, anchorage_x509::DecodeError::Empty)
        {
            return Err(CaError::NoCertificate {
                origin: source.origin.to_owned(),
            });
        }
        return Err(CaError::BadCertificate {
            origin: source.origin.to_owned(),
            reason: if problem.position == Default::default() {
                problem.error.to_string()
            } else {
                format!("{}: {}", problem.position, problem.error)
            },
        });
    }
    if decoded.certificates.is_empty() {
        return Err(CaError::NoCertificate {
            origin: source.origin.to_owned(),
        });
    }
    Ok(decoded
        .certificates
        .into_iter()
        .map(|f| f.certificate)
        .collect())
}

fn check_valid(cert: &Certificate, now: Timestamp) -> Result<(), CaError> {
    if cert.is_expired_at(now) || cert.is_not_yet_valid_at(now) {
        return Err(CaError::NotValidNow {
            subject: cert.subject().to_owned(),
            not_before: cert.not_before(),
            not_after: cert.not_after(),
            now,
        });
    }
    Ok(())
}

impl BuiltinCa {
    /// Takes a CA over from PEM (or DER) inputs: `certificates` hold the root and any
    /// intermediates (in any order, one or several per input), `keys` the signing CA's key
    /// and optionally the root's. PKCS#8, SEC 1 and PKCS#1 keys are accepted.
    ///
    /// The certificates must form one chain from the CA that signs (the one no other given
    /// certificate was issued by) to a self-signed root; the signing CA's key must be among
    /// `keys`; every key must belong to one of the certificates; every certificate must be a
    /// CA valid at `now`.
    pub fn from_pem(
        certificates: &[Source<'_>],
        keys: &[Source<'_>],
        now: Timestamp,
    ) -> Result<Self, CaError> {
        let mut certs: Vec<(String, Certificate)> = Vec::new();
        for source in certificates {
            for cert in certificates_from(source)? {
                if !certs.iter().any(|(_, c)| *c == cert) {
                    certs.push((source.origin.to_owned(), cert));
                }
            }
        }
        if certs.is_empty() {
            return Err(CaError::NoCertificate {
                origin: "the inputs".to_owned(),
            });
        }
        for (origin, cert) in &certs {
            if !is_ca(cert) {
                return Err(CaError::NotACa {
                    origin: origin.clone(),
                    subject: cert.subject().to_owned(),
                });
            }
            check_valid(cert, now)?;
        }

        // Each key must belong to one of the certificates.
        let mut matched: Vec<(usize, KeyPair, PrivateKey)> = Vec::new();
        for source in keys {
            let (key_pair, key) = keys::load(source.bytes).map_err(|e| CaError::Key {
                origin: source.origin.to_owned(),
                source: e,
            })?;
            let Some(index) = certs
                .iter()
                .position(|(_, c)| keys::matches_certificate(&key_pair, c.der()))
            else {
                return Err(CaError::KeyMismatch {
                    origin: source.origin.to_owned(),
                    subjects: certs.iter().map(|(_, c)| c.subject().to_owned()).collect(),
                });
            };
            matched.push((index, key_pair, key));
        }

        let path = chain_of(&certs)?;
        let signer = path[0];
        let root = path[path.len() - 1];
        let Some(position) = matched.iter().position(|(i, _, _)| *i == signer) else {
            return Err(CaError::MissingKey {
                subject: certs[signer].1.subject().to_owned(),
            });
        };
        let (_, key_pair, key) = matched.swap_remove(position);
        let root_key = if root == signer {
            None
        } else {
            matched
                .into_iter()
                .find(|(i, _, _)| *i == root)
                .map(|(_, _, k)| k)
        };
        let path: Vec<Certificate> = path.iter().map(|&i| certs[i].1.clone()).collect();
        Self::assemble(path, (key_pair, key), root_key)
    }

    /// Takes over a Flomesh (`fsm-ca-bundle`) or Open Service Mesh (`osm-ca-bundle`) CA from
    /// the Secret's decoded `data`: `ca.crt` and `private.key` (PKCS#1 RSA in older meshes,
    /// PKCS#8 in others). Other entries (`expiration`) are ignored.
    pub fn from_fsm_secret_data(
        data: &BTreeMap<String, Vec<u8>>,
        now: Timestamp,
    ) -> Result<Self, CaError> {
        let layout = "fsm-ca-bundle/osm-ca-bundle Secret";
        let cert = entry(data, layout, FSM_CA_CERT_KEY)?;
        let key = entry(data, layout, FSM_PRIVATE_KEY_KEY)?;
        Self::from_pem(
            &[Source::new("Secret data ca.crt", cert)],
            &[Source::new("Secret data private.key", key)],
            now,
        )
    }

    /// Takes over a CA from a `kubernetes.io/tls` Secret's decoded `data` (as cert-manager's CA
    /// issuer keeps it): `tls.crt` (the signing CA, possibly with its chain), `tls.key`, and
    /// optionally `ca.crt` (the root, when `tls.crt` is an intermediate).
    pub fn from_tls_secret_data(
        data: &BTreeMap<String, Vec<u8>>,
        now: Timestamp,
    ) -> Result<Self, CaError> {
        let layout = "kubernetes.io/tls Secret";
        let cert = entry(data, layout, "tls.crt")?;
        let key = entry(data, layout, "tls.key")?;
        let mut certs = vec![Source::new("Secret data tls.crt", cert)];
        if let Some(ca) = data.get("ca.crt").filter(|v| !v.is_empty()) {
            certs.push(Source::new("Secret data ca.crt", ca));
        }
        Self::from_pem(&certs, &[Source::new("Secret data tls.key", key)], now)
    }

    /// The CA as PEM files (see [`CaPem::files`]).
    pub fn to_pem(&self) -> CaPem {
        let roots = self.roots().iter().map(Certificate::to_pem).collect();
        if self.chain().is_empty() {
            CaPem {
                roots,
                root_key: Some(self.signing_key_pem()),
                chain: None,
                intermediate_key: None,
            }
        } else {
            CaPem {
                roots,
                root_key: self.root_key().map(PrivateKey::to_pkcs8_pem),
                chain: Some(self.chain().iter().map(Certificate::to_pem).collect()),
                intermediate_key: Some(self.signing_key_pem()),
            }
        }
    }

    /// The `data` of an `fsm-ca-bundle` (or `osm-ca-bundle`) Secret: `ca.crt` (the root),
    /// `private.key` (its PKCS#8 PEM key) and `expiration` (the root's notAfter, in the layout
    /// Open Service Mesh parses). The values hold the key, hence the secret type.
    ///
    /// Refused when the CA signs through an intermediate: those meshes sign with the key in
    /// `private.key` and trust `ca.crt` as a root. Note that Open Service Mesh v1 reads only
    /// RSA keys from this Secret: hand it a CA made with an RSA key type.
    pub fn to_fsm_secret_data(&self) -> Result<BTreeMap<String, SecretSlice<u8>>, CaError> {
        if !self.chain().is_empty() {
            return Err(CaError::Layout {
                layout: "fsm-ca-bundle Secret",
                reason: format!(
                    "this CA signs with the intermediate {}, but the layout holds one root that signs directly; export with --format pem instead",
                    self.signing_certificate().subject()
                ),
            });
        }
        let root = self.root();
        let mut data = BTreeMap::new();
        data.insert(
            FSM_CA_CERT_KEY.to_owned(),
            SecretSlice::from(root.to_pem().into_bytes()),
        );
        data.insert(
            FSM_PRIVATE_KEY_KEY.to_owned(),
            secret_bytes(&self.signing_key_pem()),
        );
        data.insert(
            FSM_EXPIRATION_KEY.to_owned(),
            SecretSlice::from(osm_expiration(root.not_after()).into_bytes()),
        );
        Ok(data)
    }

    /// The `data` of a `kubernetes.io/tls` Secret for this CA (cert-manager's CA issuer
    /// layout): `tls.crt` (the signing CA and its chain), `tls.key` (its key), `ca.crt` (the
    /// roots).
    pub fn to_tls_secret_data(&self) -> BTreeMap<String, SecretSlice<u8>> {
        let mut tls_crt = self.signing_certificate().to_pem();
        for cert in self.chain().iter().skip(1) {
            tls_crt.push_str(&cert.to_pem());
        }
        let roots: String = self.roots().iter().map(Certificate::to_pem).collect();
        let mut data = BTreeMap::new();
        data.insert(
            "tls.crt".to_owned(),
            SecretSlice::from(tls_crt.into_bytes()),
        );
        data.insert("tls.key".to_owned(), secret_bytes(&self.signing_key_pem()));
        data.insert("ca.crt".to_owned(), SecretSlice::from(roots.into_bytes()));
        data
    }
}

fn secret_bytes(text: &SecretString) -> SecretSlice<u8> {
    use secrecy::ExposeSecret as _;
    SecretSlice::from(text.expose_secret().as_bytes().to_vec())
}

/// `2006-01-02T15:04:05.000Z`, Go's layout in Open Service Mesh's `TimeDateLayout`.
fn osm_expiration(at: Timestamp) -> String {
    let text = at.rfc3339(); // 2030-01-01T00:00:00Z
    match text.strip_suffix('Z') {
        Some(base) if base.len() == 19 => format!("{base}.000Z"),
        _ => text,
    }
}

fn entry<'a>(
    data: &'a BTreeMap<String, Vec<u8>>,
    layout: &'static str,
    key: &'static str,
) -> Result<&'a [u8], CaError> {
    data.get(key)
        .filter(|v| !v.is_empty())
        .map(Vec::as_slice)
        .ok_or_else(|| CaError::MissingEntry {
            layout,
            key,
            found: data.keys().cloned().collect(),
        })
}

/// Orders the certificates into one path: index of the signing CA first, the root last.
fn chain_of(certs: &[(String, Certificate)]) -> Result<Vec<usize>, CaError> {
    let n = certs.len();
    // parent[i] = the certificate that issued i (not itself).
    let parent: Vec<Option<usize>> = (0..n)
        .map(|i| (0..n).find(|&j| j != i && issued_by(&certs[i].1, &certs[j].1)))
        .collect();
    let bottoms: Vec<usize> = (0..n).filter(|&i| !parent.contains(&Some(i))).collect();
    let &[bottom] = bottoms.as_slice() else {
        return Err(CaError::BrokenChain {
            reason: format!(
                "several unrelated CA certificates were given ({}); give one chain",
                bottoms
                    .iter()
                    .map(|&i| certs[i].1.subject())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    };
    let mut path = vec![bottom];
    let mut current = bottom;
    while let Some(next) = parent[current] {
        if path.contains(&next) {
            return Err(CaError::BrokenChain {
                reason: "the certificates sign each other in a loop".to_owned(),
            });
        }
        path.push(next);
        current = next;
    }
    let top = &certs[current].1;
    if !top.is_self_signed() {
        return Err(CaError::BrokenChain {
            reason: format!(
                "{} is not a self-signed root and its issuer {} was not given; add the root certificate",
                top.subject(),
                top.issuer()
            ),
        });
    }
    if path.len() != n {
        let extra: Vec<&str> = (0..n)
            .filter(|i| !path.contains(i))
            .map(|i| certs[i].1.subject())
            .collect();
        return Err(CaError::BrokenChain {
            reason: format!("{} not part of the chain", extra.join(", ")),
        });
    }
    Ok(path)
}
