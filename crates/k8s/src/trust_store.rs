//! The mount-over-`/etc/ssl/certs` layout as a ConfigMap or a Secret.
//!
//! One key holds the whole bundle as PEM under the name clients look for when they are given no
//! option (`ca-certificates.crt`: Debian's and Alpine's name, which Go, OpenSSL, curl and Python
//! find in `/etc/ssl/certs`), and one `<hash>.<n>` key per certificate holds that certificate,
//! named exactly as `openssl rehash` names it ([`anchorage_bundle::hashed_names`]), so the same
//! volume also works as `SSL_CERT_DIR` / `-CApath` / `curl --capath`.
//!
//! The kubelet projects each key as a symbolic link `key -> ..data/key` into the volume; OpenSSL
//! follows those links, so the hashed lookups work on the mounted directory as they do on a
//! directory written by `anchorage_trust::write_openssl_dir`.
//!
//! # Size
//!
//! Kubernetes refuses a ConfigMap or Secret whose values add up to more than 1 MiB
//! ([`MAX_DATA_BYTES`], decoded bytes for a Secret). The `<hash>.<n>` keys repeat every
//! certificate, so the full layout is twice the PEM bundle. Mozilla's roots (about 120 in
//! webpki-root-certs 1.0, 1.5 KB of PEM each on average) plus a private CA come to 179 KB of PEM and
//! 359 KB in the full layout: a third of the limit, room for about 230 more certificates of that
//! size. [`Layout::bundle_only`] drops the hashed keys (half the size, no `SSL_CERT_DIR`
//! lookups). Building fails with [`crate::K8sError::TooLarge`] naming the sizes and the
//! alternatives rather than returning an object the API server would refuse.
//!
//! Objects past 256 KiB, such as Mozilla's roots in the full layout, are also too big for
//! client-side `kubectl apply`, which copies the whole object into its
//! `kubectl.kubernetes.io/last-applied-configuration` annotation (annotations are limited to
//! 256 KiB): apply them with `kubectl apply --server-side`, or `kubectl create` / `kubectl
//! replace`.
//!
//! # Node and Java
//!
//! Node.js and Deno read their compiled-in Mozilla list plus `NODE_EXTRA_CA_CERTS` / `DENO_CERT`,
//! and a JVM reads only a keystore. [`Layout::with_extra`] adds [`DEFAULT_EXTRA_KEY`], the
//! private CAs only (what Mozilla's roots lack), and [`Layout::with_pkcs12`] adds
//! [`DEFAULT_PKCS12_KEY`], the whole bundle as a password-less PKCS#12 trust store (no
//! encryption, no MAC: Java 9+ loads it with `-Djavax.net.ssl.trustStoreType=PKCS12` and no
//! password), as trust-manager's `additionalFormats` does. The PKCS#12 is binary: a ConfigMap
//! carries it under `binaryData`. `anchorage k8s patch --extra-pem --pkcs12` points
//! `NODE_EXTRA_CA_CERTS`, `DENO_CERT` and `JAVA_TOOL_OPTIONS` at them.
//!
//! # RHEL-family images
//!
//! On RHEL, Fedora, CentOS and UBI, `/etc/ssl/certs` is a symbolic link to `/etc/pki/tls/certs`,
//! so a volume mounted there lands on `/etc/pki/tls/certs`, where curl and Go look for
//! `ca-bundle.crt`. [`Layout::with_rhel_aliases`] adds that key, and `tls-ca-bundle.pem` for a
//! volume mounted at `/etc/pki/ca-trust/extracted/pem`, each holding the bundle again. They are off
//! by default: each costs the whole bundle again against the 1 MiB limit, and Debian-, Alpine- and
//! distroless-based images (the common case) do not read them.

use std::collections::BTreeMap;

use anchorage_bundle::{
    Bundle, PemOptions, Pkcs12Options, hashed_names, render_jks, render_pem, render_pkcs12,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::error::K8sError;
use crate::meta::{ObjectName, bundle_annotations};
use crate::validate;

/// Kubernetes' limit on the data of one ConfigMap or Secret (and on a ClusterTrustBundle's
/// `spec.trustBundle`): 1 MiB. An object holding exactly this many bytes is accepted.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// The bundle key clients find without being told: Debian's and Alpine's
/// `/etc/ssl/certs/ca-certificates.crt`.
pub const DEFAULT_BUNDLE_KEY: &str = "ca-certificates.crt";

/// Bundle names of the RHEL family: `ca-bundle.crt` (in `/etc/pki/tls/certs`, where
/// `/etc/ssl/certs` points) and `tls-ca-bundle.pem` (in `/etc/pki/ca-trust/extracted/pem`).
pub const RHEL_BUNDLE_ALIASES: [&str; 2] = ["ca-bundle.crt", "tls-ca-bundle.pem"];

/// The key of the private CAs only ([`Layout::with_extra`]), for `NODE_EXTRA_CA_CERTS` and
/// `DENO_CERT`.
pub const DEFAULT_EXTRA_KEY: &str = "extra-ca.pem";

/// The key of the password-less PKCS#12 trust store ([`Layout::with_pkcs12`]), for
/// `JAVA_TOOL_OPTIONS=-Djavax.net.ssl.trustStore=…`.
pub const DEFAULT_PKCS12_KEY: &str = "truststore.p12";

/// The key of the JKS trust store ([`Layout::jks_key`]), for Java 8 and tools that still read
/// only JKS.
pub const DEFAULT_JKS_KEY: &str = "truststore.jks";

/// The password a JKS trust store is sealed with: Java's default (`changeit`), as trust-manager
/// writes it. A JKS password only guards the store's integrity; the certificates are public.
pub const JKS_PASSWORD: &str = "changeit";

/// Which keys a trust ConfigMap or Secret holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Key of the whole bundle as PEM; default [`DEFAULT_BUNDLE_KEY`].
    pub bundle_key: String,
    /// More keys holding the same bundle (see [`RHEL_BUNDLE_ALIASES`]); each costs the bundle's
    /// size again against [`MAX_DATA_BYTES`].
    pub aliases: Vec<String>,
    /// Whether each certificate also gets its `<hash>.<n>` key (default `true`), for
    /// `SSL_CERT_DIR`, `-CApath` and `curl --capath`.
    pub hashed_keys: bool,
    /// Key of the private CAs only (the certificates Mozilla's roots lack, or the whole bundle
    /// when it holds nothing else), for `NODE_EXTRA_CA_CERTS` and `DENO_CERT`; default none.
    pub extra_key: Option<String>,
    /// Key of the bundle as a password-less PKCS#12 trust store (binary: `binaryData` in a
    /// ConfigMap), for Java; default none.
    pub pkcs12_key: Option<String>,
    /// Key of the bundle as a JKS trust store sealed with [`JKS_PASSWORD`] (binary); default
    /// none.
    pub jks_key: Option<String>,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            bundle_key: DEFAULT_BUNDLE_KEY.to_owned(),
            aliases: Vec::new(),
            hashed_keys: true,
            extra_key: None,
            pkcs12_key: None,
            jks_key: None,
        }
    }
}

impl Layout {
    /// The bundle key alone, no `<hash>.<n>` keys: half the size, for a bundle too big for the
    /// full layout. Clients that only look up `<hash>.<n>` names in a directory (`SSL_CERT_DIR`,
    /// `-CApath` without a CA file) find nothing in it.
    pub fn bundle_only() -> Self {
        Self {
            hashed_keys: false,
            ..Self::default()
        }
    }

    /// The same layout plus the [`RHEL_BUNDLE_ALIASES`].
    #[must_use]
    pub fn with_rhel_aliases(mut self) -> Self {
        self.aliases
            .extend(RHEL_BUNDLE_ALIASES.iter().map(|a| (*a).to_owned()));
        self
    }

    /// The same layout plus [`DEFAULT_EXTRA_KEY`]: the private CAs only, for Node and Deno.
    #[must_use]
    pub fn with_extra(mut self) -> Self {
        self.extra_key = Some(DEFAULT_EXTRA_KEY.to_owned());
        self
    }

    /// The same layout plus [`DEFAULT_PKCS12_KEY`]: a password-less PKCS#12 trust store, for
    /// Java.
    #[must_use]
    pub fn with_pkcs12(mut self) -> Self {
        self.pkcs12_key = Some(DEFAULT_PKCS12_KEY.to_owned());
        self
    }
}

/// The keys and values of the layout, checked: valid and distinct keys, data within the limit.
struct Planned {
    metadata: ObjectMeta,
    data: BTreeMap<String, String>,
    /// Binary values (the PKCS#12 trust store): `binaryData` in a ConfigMap.
    binary: BTreeMap<String, Vec<u8>>,
}

impl Planned {
    fn size(&self) -> usize {
        self.data.values().map(String::len).sum::<usize>()
            + self.binary.values().map(Vec::len).sum::<usize>()
    }
}

/// Plans the layout; `limit` is [`MAX_DATA_BYTES`] except in tests of the boundary.
fn plan(
    bundle: &Bundle,
    meta: &ObjectName,
    layout: &Layout,
    kind: &'static str,
    limit: usize,
) -> Result<Planned, K8sError> {
    if bundle.is_empty() {
        return Err(K8sError::EmptyBundle { kind });
    }
    let pem = render_pem(bundle, &PemOptions::default());
    let metadata = meta.object_meta(kind, false, bundle_annotations(&pem, bundle.len()))?;
    let mut data = BTreeMap::new();
    let mut binary = BTreeMap::new();
    let mut insert = |key: String, value: Value| {
        validate::config_map_key(&key).map_err(|reason| K8sError::InvalidKey {
            key: key.clone(),
            reason,
        })?;
        if data.contains_key(&key) || binary.contains_key(&key) {
            return Err(K8sError::DuplicateKey {
                key,
                object: meta.describe(kind),
            });
        }
        match value {
            Value::Text(text) => data.insert(key, text),
            Value::Binary(bytes) => binary.insert(key, bytes).map(|_| String::new()),
        };
        Ok(())
    };
    for key in std::iter::once(&layout.bundle_key).chain(&layout.aliases) {
        insert(key.clone(), Value::Text(pem.clone()))?;
    }
    let mut hashed_bytes = 0;
    if layout.hashed_keys {
        for name in hashed_names(bundle) {
            let cert_pem = bundle.entries()[name.entry].certificate.to_pem();
            hashed_bytes += cert_pem.len();
            insert(name.file_name(), Value::Text(cert_pem))?;
        }
    }
    if let Some(key) = &layout.extra_key {
        let private = bundle.without_mozilla_roots();
        // A bundle of Mozilla roots only: the whole bundle (adding roots Node already has is
        // harmless, and an empty file would make Node warn).
        let extra = if private.is_empty() { bundle } else { &private };
        insert(
            key.clone(),
            Value::Text(render_pem(extra, &PemOptions::default())),
        )?;
    }
    if let Some(key) = &layout.pkcs12_key {
        let bytes = render_pkcs12(bundle, &Pkcs12Options::unprotected()).map_err(|source| {
            K8sError::Keystore {
                key: key.clone(),
                source,
            }
        })?;
        insert(key.clone(), Value::Binary(bytes))?;
    }
    if let Some(key) = &layout.jks_key {
        let password = secrecy::SecretString::from(JKS_PASSWORD);
        let bytes = render_jks(bundle, &password).map_err(|source| K8sError::Keystore {
            key: key.clone(),
            source,
        })?;
        insert(key.clone(), Value::Binary(bytes))?;
    }
    let planned = Planned {
        metadata,
        data,
        binary,
    };
    let size = planned.size();
    if size > limit {
        return Err(K8sError::TooLarge {
            object: meta.describe(kind),
            size,
            limit,
            certificates: bundle.len(),
            advice: advice(pem.len(), layout.aliases.len(), hashed_bytes, limit),
        });
    }
    Ok(planned)
}

/// One value of the layout.
enum Value {
    Text(String),
    Binary(Vec<u8>),
}

/// What to do about a layout over the limit, with the sizes of what would fit.
fn advice(pem: usize, aliases: usize, hashed: usize, limit: usize) -> String {
    let mut parts = vec![format!(
        "the bundle key takes {pem} bytes{}{}",
        if aliases > 0 {
            format!(
                ", its {} {} more",
                if aliases == 1 {
                    "alias".to_owned()
                } else {
                    format!("{aliases} aliases")
                },
                pem * aliases
            )
        } else {
            String::new()
        },
        if hashed > 0 {
            format!(" and the <hash>.<n> keys {hashed} more (they repeat every certificate)")
        } else {
            String::new()
        }
    )];
    if (aliases > 0 || hashed > 0) && pem <= limit {
        parts.push(format!(
            "the bundle-file-only layout (no aliases, no <hash>.<n> keys) would hold {pem} bytes and fit"
        ));
    }
    parts.push(
        "or keep only the private CAs in the object (drop --mozilla) and rely on the image's own public roots, mounting it beside them and adding its directory to SSL_CERT_DIR".into(),
    );
    if pem <= limit {
        parts.push(format!(
            "or publish a ClusterTrustBundle ({pem} bytes of PEM, within its own 1 MiB limit)"
        ));
    }
    parts.push("or split the certificates over several objects".into());
    parts.join("; ")
}

/// The trust store as a ConfigMap: the bundle key (and aliases) with the PEM bundle, and a
/// `<hash>.<n>` key per certificate (unless [`Layout::hashed_keys`] is off). Mount it over
/// `/etc/ssl/certs` (see [`crate::workload_patch`]).
///
/// Labelled [`crate::MANAGED_BY_LABEL`]` = anchorage` and annotated with
/// [`crate::BUNDLE_SHA256_ANNOTATION`] and [`crate::CERTIFICATES_ANNOTATION`].
///
/// # Errors
///
/// An invalid name, namespace, label or key, an empty bundle, or data over [`MAX_DATA_BYTES`]
/// ([`K8sError::TooLarge`], which says what would fit).
pub fn trust_configmap(
    bundle: &Bundle,
    meta: &ObjectName,
    layout: &Layout,
) -> Result<ConfigMap, K8sError> {
    let planned = plan(bundle, meta, layout, "ConfigMap", MAX_DATA_BYTES)?;
    Ok(ConfigMap {
        metadata: planned.metadata,
        data: Some(planned.data),
        binary_data: (!planned.binary.is_empty()).then(|| {
            planned
                .binary
                .into_iter()
                .map(|(k, v)| (k, ByteString(v)))
                .collect()
        }),
        ..ConfigMap::default()
    })
}

/// The same layout as [`trust_configmap`] as an `Opaque` Secret (`data` base64-encoded), for
/// clusters where policy puts mounted files in Secrets. The 1 MiB limit counts decoded bytes, so
/// what fits in one fits in the other.
///
/// # Errors
///
/// As [`trust_configmap`].
pub fn trust_secret(
    bundle: &Bundle,
    meta: &ObjectName,
    layout: &Layout,
) -> Result<Secret, K8sError> {
    let planned = plan(bundle, meta, layout, "Secret", MAX_DATA_BYTES)?;
    Ok(Secret {
        metadata: planned.metadata,
        data: Some(
            planned
                .data
                .into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .chain(planned.binary.into_iter().map(|(k, v)| (k, ByteString(v))))
                .collect(),
        ),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{bundle_of, pem_len, prefix_past, roots, roots_past_one_mib};

    fn name() -> ObjectName {
        ObjectName::new("trust").in_namespace("apps")
    }

    #[test]
    fn the_layout_holds_the_bundle_and_one_hashed_key_per_certificate() {
        // Two roots with one subject share a hash: `.0` and `.1`, numbered as openssl rehash does.
        let b = roots(&["Same Root", "Same Root", "Other Root"]);
        let cm = trust_configmap(&b, &name(), &Layout::default()).unwrap();
        let data = cm.data.unwrap();
        assert_eq!(
            data[DEFAULT_BUNDLE_KEY],
            render_pem(&b, &PemOptions::default())
        );
        let hashed = hashed_names(&b);
        assert_eq!(data.len(), 1 + hashed.len());
        for h in &hashed {
            assert_eq!(
                data[&h.file_name()],
                b.entries()[h.entry].certificate.to_pem()
            );
        }
        let numbers: Vec<_> = hashed.iter().map(|h| h.n).collect();
        assert_eq!(
            numbers.iter().filter(|&&n| n == 1).count(),
            1,
            "{numbers:?}"
        );

        let meta = cm.metadata;
        assert_eq!(meta.labels.unwrap()[crate::MANAGED_BY_LABEL], "anchorage");
        let annotations = meta.annotations.unwrap();
        assert_eq!(
            annotations[crate::BUNDLE_SHA256_ANNOTATION],
            crate::bundle_sha256(&b)
        );
        assert_eq!(annotations[crate::CERTIFICATES_ANNOTATION], "3");
    }

    #[test]
    fn layouts_choose_the_keys() {
        let b = roots(&["Layout A", "Layout B"]);
        let keys = |layout: &Layout| -> Vec<String> {
            let cm = trust_configmap(&b, &name(), layout).unwrap();
            cm.data.unwrap().into_keys().collect()
        };
        assert_eq!(keys(&Layout::bundle_only()), ["ca-certificates.crt"]);
        let with_aliases = keys(&Layout::bundle_only().with_rhel_aliases());
        assert_eq!(
            with_aliases,
            ["ca-bundle.crt", "ca-certificates.crt", "tls-ca-bundle.pem"]
        );
        let custom = Layout {
            bundle_key: "bundle.pem".into(),
            ..Layout::default()
        };
        let k = keys(&custom);
        assert_eq!(k.len(), 3);
        assert!(k.contains(&"bundle.pem".to_owned()));

        let dup = Layout {
            aliases: vec!["ca-certificates.crt".into()],
            ..Layout::default()
        };
        let e = trust_configmap(&b, &name(), &dup).unwrap_err();
        assert_eq!(
            e.to_string(),
            "key `ca-certificates.crt` is used twice in ConfigMap apps/trust; give the bundle file and its aliases distinct names that are not `<hash>.<n>` names"
        );
        let bad = Layout {
            bundle_key: "certs/ca.crt".into(),
            ..Layout::default()
        };
        let e = trust_configmap(&b, &name(), &bad).unwrap_err();
        assert!(
            matches!(e, K8sError::InvalidKey { ref key, .. } if key == "certs/ca.crt"),
            "{e}"
        );
    }

    #[test]
    fn a_secret_holds_the_same_bytes() {
        let b = roots(&["Secret A", "Secret B"]);
        let cm = trust_configmap(&b, &name(), &Layout::default()).unwrap();
        let secret = trust_secret(&b, &name(), &Layout::default()).unwrap();
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        let data = secret.data.unwrap();
        let cm_data = cm.data.unwrap();
        assert_eq!(data.len(), cm_data.len());
        for (k, v) in &cm_data {
            assert_eq!(data[k].0, v.as_bytes(), "{k}");
        }
        assert_eq!(secret.metadata, cm.metadata);
    }

    #[test]
    fn the_limit_is_inclusive() {
        let b = roots(&["Edge A", "Edge B", "Edge C"]);
        let layout = Layout::default();
        let exact: usize = plan(&b, &name(), &layout, "ConfigMap", usize::MAX)
            .unwrap()
            .size();
        assert!(plan(&b, &name(), &layout, "ConfigMap", exact).is_ok());
        let Err(K8sError::TooLarge {
            size,
            limit,
            certificates,
            advice,
            ..
        }) = plan(&b, &name(), &layout, "ConfigMap", exact - 1)
        else {
            panic!("one byte over the limit must be refused");
        };
        assert_eq!((size, limit, certificates), (exact, exact - 1, 3));
        assert!(advice.contains("bundle-file-only layout"), "{advice}");
    }

    /// Real certificates just under and just over 1 MiB in the full layout.
    #[test]
    fn a_bundle_just_over_one_mib_is_refused_with_the_alternatives() {
        // The full layout holds every certificate twice (the bundle and its hashed key).
        let certs = prefix_past(roots_past_one_mib(), MAX_DATA_BYTES / 2);
        let pem_bytes = pem_len(certs);
        let over = bundle_of(certs.iter().cloned());
        let under = bundle_of(certs[..certs.len() - 1].iter().cloned());
        let cm = trust_configmap(&under, &name(), &Layout::default()).unwrap();
        let size = crate::Object::from(cm).data_bytes();
        assert!(
            size <= MAX_DATA_BYTES && size > MAX_DATA_BYTES - 2000,
            "{size}"
        );

        let e = trust_configmap(&over, &name(), &Layout::default()).unwrap_err();
        let K8sError::TooLarge {
            size, certificates, ..
        } = &e
        else {
            panic!("{e}");
        };
        assert_eq!((*size, *certificates), (2 * pem_bytes, over.len()));
        let message = e.to_string();
        for fact in [
            format!(
                "ConfigMap apps/trust would hold {size} bytes of data for {} certificates",
                over.len()
            ),
            "over Kubernetes' limit of 1048576 bytes (1 MiB)".to_owned(),
            format!(
                "the bundle key takes {pem_bytes} bytes and the <hash>.<n> keys {pem_bytes} more"
            ),
            format!(
                "the bundle-file-only layout (no aliases, no <hash>.<n> keys) would hold {pem_bytes} bytes and fit"
            ),
            "drop --mozilla".to_owned(),
            "ClusterTrustBundle".to_owned(),
            "split".to_owned(),
        ] {
            assert!(message.contains(&fact), "{message}\n  lacks: {fact}");
        }
        // A Secret of the same data is refused the same way, naming itself.
        let e = trust_secret(&over, &name(), &Layout::default()).unwrap_err();
        assert!(
            matches!(
                &e,
                K8sError::TooLarge { object, size, limit, certificates, .. }
                    if object == "Secret apps/trust"
                        && *size == 2 * pem_bytes
                        && *limit == MAX_DATA_BYTES
                        && *certificates == over.len()
            ),
            "{e:?}"
        );
        // Without the hashed keys it fits.
        let small = trust_configmap(&over, &name(), &Layout::bundle_only()).unwrap();
        assert_eq!(crate::Object::from(small).data_bytes(), pem_bytes);
    }

    /// Our two private roots plus Mozilla's.
    fn private_and_mozilla() -> (Bundle, Bundle) {
        use anchorage_trust::{LoadOptions, Policy, Source, load};
        let private = roots(&["Extra A", "Extra B"]);
        let (mozilla, _) = Policy::default()
            .apply(load(&[Source::Mozilla], &LoadOptions::default()))
            .unwrap();
        let all = bundle_of(
            private
                .certificates()
                .chain(mozilla.certificates())
                .cloned(),
        );
        (private, all)
    }

    #[test]
    fn the_extra_key_holds_the_private_cas_only_and_the_pkcs12_the_whole_bundle() {
        let (private, all) = private_and_mozilla();
        let layout = Layout::default().with_extra().with_pkcs12();
        let cm = trust_configmap(&all, &name(), &layout).unwrap();
        let data = cm.data.unwrap();
        assert_eq!(
            data[DEFAULT_EXTRA_KEY],
            render_pem(&private, &PemOptions::default()),
            "the private CAs only"
        );
        assert_eq!(
            data[DEFAULT_BUNDLE_KEY],
            render_pem(&all, &PemOptions::default())
        );
        // The PKCS#12 is binary: binaryData, not data.
        assert!(!data.contains_key(DEFAULT_PKCS12_KEY));
        let binary = cm.binary_data.unwrap();
        assert_eq!(binary.keys().collect::<Vec<_>>(), [DEFAULT_PKCS12_KEY]);
        let store = anchorage_keystore::decode(&binary[DEFAULT_PKCS12_KEY].0, None).unwrap();
        assert_eq!(store.certificates.len(), all.len());
        assert!(store.key_entries.is_empty());

        // The Secret carries the same bytes under data.
        let secret = trust_secret(&all, &name(), &layout).unwrap();
        let sdata = secret.data.unwrap();
        assert_eq!(sdata[DEFAULT_PKCS12_KEY].0, binary[DEFAULT_PKCS12_KEY].0);
        assert_eq!(
            sdata[DEFAULT_EXTRA_KEY].0,
            data[DEFAULT_EXTRA_KEY].as_bytes()
        );

        // Negative control: the default layout has neither key.
        let plain = trust_configmap(&all, &name(), &Layout::default()).unwrap();
        assert!(plain.binary_data.is_none());
        let plain = plain.data.unwrap();
        assert!(!plain.contains_key(DEFAULT_EXTRA_KEY) && !plain.contains_key(DEFAULT_PKCS12_KEY));
    }

    #[test]
    fn the_jks_key_holds_the_whole_bundle_sealed_with_changeit() {
        let (_, all) = private_and_mozilla();
        let layout = Layout {
            jks_key: Some(DEFAULT_JKS_KEY.into()),
            ..Layout::default()
        };
        let cm = trust_configmap(&all, &name(), &layout).unwrap();
        let binary = cm.binary_data.unwrap();
        assert_eq!(binary.keys().collect::<Vec<_>>(), [DEFAULT_JKS_KEY]);
        let password = secrecy::SecretString::from(JKS_PASSWORD);
        let store =
            anchorage_keystore::decode(&binary[DEFAULT_JKS_KEY].0, Some(&password)).unwrap();
        assert_eq!(store.certificates.len(), all.len());
        // Deterministic: the same bundle gives the same bytes (the controller's content hash
        // relies on it), and the Secret carries them under data.
        let again = trust_secret(&all, &name(), &layout).unwrap();
        assert_eq!(
            again.data.unwrap()[DEFAULT_JKS_KEY].0,
            binary[DEFAULT_JKS_KEY].0
        );
        // Negative control: another password does not open it.
        let wrong = secrecy::SecretString::from("not-changeit");
        assert!(anchorage_keystore::decode(&binary[DEFAULT_JKS_KEY].0, Some(&wrong)).is_err());
    }

    #[test]
    fn the_binary_key_counts_against_the_limit_and_clashes_with_a_text_key() {
        let b = roots(&["Bin A"]);
        let text_only = plan(&b, &name(), &Layout::default(), "ConfigMap", usize::MAX)
            .unwrap()
            .size();
        let with_p12 = Layout::default().with_pkcs12();
        let size = plan(&b, &name(), &with_p12, "ConfigMap", usize::MAX)
            .unwrap()
            .size();
        assert!(size > text_only);
        assert!(matches!(
            plan(&b, &name(), &with_p12, "ConfigMap", size - 1),
            Err(K8sError::TooLarge { .. })
        ));
        let clash = Layout {
            pkcs12_key: Some(DEFAULT_BUNDLE_KEY.into()),
            ..Layout::default()
        };
        assert!(matches!(
            trust_configmap(&b, &name(), &clash),
            Err(K8sError::DuplicateKey { .. })
        ));
    }

    #[test]
    fn an_empty_bundle_is_refused() {
        let e = trust_configmap(&Bundle::default(), &name(), &Layout::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the bundle is empty: a ConfigMap needs at least one certificate"
        );
    }
}
