//! What Anchorage sends: the CSR for a request and the `CertificateRequest` object carrying it.
//!
//! Plain functions, no I/O: the key is made by the caller ([`anchorage_ca::keys::generate`]),
//! the CSR is signed with it here, and the object is built from k8s-openapi and kube-rs types
//! and never formatted by hand. Talking to the cluster is [`crate::CertManagerIssuer`]'s job.

use std::collections::BTreeMap;
use std::time::Duration;

use anchorage_ca::{CertKind, CertificateRequest, IssueError, KeyType};
use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rcgen::KeyPair;

use crate::settings::CertManagerSettings;
use crate::v1::{self, CertificateRequestSpec, KeyUsage};

/// The label every request we make carries, with the value [`MANAGED_BY`] (the same label
/// `anchorage-k8s` puts on its objects): `kubectl delete certificaterequests -l
/// app.kubernetes.io/managed-by=anchorage` clears any a killed process left behind.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "anchorage";
/// Label holding the request's [`CertKind`] (`service`, `webhook`, `client`, `server`).
pub const KIND_LABEL: &str = "anchorage.io/cert-kind";
/// Annotation holding the identity (the CommonName) the request is for. An annotation, not a
/// label: a CommonName may be 64 characters and hold characters label values may not.
pub const IDENTITY_ANNOTATION: &str = "anchorage.io/identity";

/// The usages asked for: `digital signature` always, `key encipherment` only for RSA keys (RFC
/// 5480 and RFC 8410 do not allow it for EC and Ed25519 keys), then `server auth` and
/// `client auth` as [`CertKind`] says.
pub fn usages(kind: CertKind, key_type: KeyType) -> Vec<KeyUsage> {
    let mut out = vec![KeyUsage::DigitalSignature];
    if key_type.is_rsa() {
        out.push(KeyUsage::KeyEncipherment);
    }
    if kind.server_auth() {
        out.push(KeyUsage::ServerAuth);
    }
    if kind.client_auth() {
        out.push(KeyUsage::ClientAuth);
    }
    out
}

/// A duration as Go's `time.Duration.String()` writes it, which is what cert-manager writes
/// and reads in `spec.duration`: `24h0m0s`, `87600h0m0s`, `1h30m0s`, `5m0s`, `45s`, `1.5s`.
pub fn go_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    let nanos = duration.subsec_nanos();
    let seconds = if nanos == 0 {
        (total % 60).to_string()
    } else {
        let fraction = format!("{nanos:09}");
        format!("{}.{}", total % 60, fraction.trim_end_matches('0'))
    };
    match (total / 3600, (total / 60) % 60) {
        (0, 0) if total == 0 && nanos == 0 => "0s".to_owned(),
        (0, 0) => format!("{seconds}s"),
        (0, minutes) => format!("{minutes}m{seconds}s"),
        (hours, minutes) => format!("{hours}h{minutes}m{seconds}s"),
    }
}

/// The object's `generateName`: `anchorage-<slug>-`, where the slug is the identity in
/// lower case with every run of other characters turned into one `-`, cut to 40 characters.
/// The API server appends five random characters.
pub fn generate_name(request: &CertificateRequest) -> String {
    let mut slug = String::new();
    for c in request.identity.as_str().chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "anchorage-cert-".to_owned()
    } else {
        format!("anchorage-{slug}-")
    }
}

/// A PEM PKCS#10 CSR for `request`, signed with `key`: subject `CN=<identity>`, and every SAN
/// of [`CertificateRequest::all_sans`] (the identity as a DNS name when it is one, IPs, URIs
/// including SPIFFE IDs). No key usage or basic constraints extensions: cert-manager takes
/// those from `spec.usages` and `spec.isCA`, and refuses a CSR whose extensions disagree. The
/// one CSR builder of the issuance backends ([`anchorage_ca::csr_pem`]).
pub fn certificate_signing_request(
    request: &CertificateRequest,
    key: &KeyPair,
) -> Result<String, IssueError> {
    anchorage_ca::csr_pem(request, key)
}

/// The `CertificateRequest` to create for `request`: `generateName` from the identity (see
/// [`generate_name`]) in the settings' namespace, the [`MANAGED_BY_LABEL`] and [`KIND_LABEL`]
/// labels and the [`IDENTITY_ANNOTATION`], and a spec naming the settings' issuer with the CSR,
/// the lifetime as a Go duration, `isCA: false` and the [`usages`] of the request's kind.
pub fn build_request(
    request: &CertificateRequest,
    csr_pem: &str,
    settings: &CertManagerSettings,
) -> v1::CertificateRequest {
    let metadata = ObjectMeta {
        generate_name: Some(generate_name(request)),
        namespace: Some(settings.namespace.clone()),
        labels: Some(BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
            (KIND_LABEL.to_owned(), request.kind.as_str().to_owned()),
        ])),
        annotations: Some(BTreeMap::from([(
            IDENTITY_ANNOTATION.to_owned(),
            request.identity.as_str().to_owned(),
        )])),
        ..ObjectMeta::default()
    };
    let spec = CertificateRequestSpec {
        duration: Some(go_duration(request.lifetime)),
        issuer_ref: settings.issuer.clone(),
        request: ByteString(csr_pem.as_bytes().to_vec()),
        is_ca: false,
        usages: usages(request.kind, request.key_type),
        ..CertificateRequestSpec::default()
    };
    v1::CertificateRequest {
        metadata,
        spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use anchorage_ca::Identity;

    use super::*;

    #[test]
    fn go_durations_match_go() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (60, "1m0s"),
            (300, "5m0s"),
            (3600, "1h0m0s"),
            (5400, "1h30m0s"),
            (86_400, "24h0m0s"),
            (90_061, "25h1m1s"),
            (10 * 365 * 86_400, "87600h0m0s"),
        ];
        for (secs, text) in cases {
            assert_eq!(go_duration(Duration::from_secs(secs)), text, "{secs}");
        }
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(61_250)), "1m1.25s");
    }

    #[test]
    fn usages_follow_kind_and_key() {
        use KeyUsage::*;
        assert_eq!(
            usages(CertKind::Service, KeyType::P256),
            [DigitalSignature, ServerAuth, ClientAuth]
        );
        assert_eq!(
            usages(CertKind::Service, KeyType::Rsa2048),
            [DigitalSignature, KeyEncipherment, ServerAuth, ClientAuth]
        );
        assert_eq!(
            usages(CertKind::Webhook, KeyType::Ed25519),
            [DigitalSignature, ServerAuth]
        );
        assert_eq!(
            usages(CertKind::Client, KeyType::P384),
            [DigitalSignature, ClientAuth]
        );
        assert_eq!(
            usages(CertKind::Server, KeyType::Rsa4096),
            [DigitalSignature, KeyEncipherment, ServerAuth]
        );
    }

    #[test]
    fn generate_names_are_valid_prefixes() {
        let name = |id: &str| {
            generate_name(&CertificateRequest::new(
                Identity::new(id).unwrap(),
                CertKind::Service,
            ))
        };
        assert_eq!(
            name("bookstore-v2.bookstore.cluster.local"),
            "anchorage-bookstore-v2-bookstore-cluster-local-"
        );
        assert_eq!(name("My Service!"), "anchorage-my-service-");
        assert_eq!(name("***"), "anchorage-cert-");
        let long = name(&"a.".repeat(32));
        assert!(long.len() <= "anchorage-".len() + 40 + 1, "{long}");
        assert!(!long.contains("--"), "{long}");
    }
}
