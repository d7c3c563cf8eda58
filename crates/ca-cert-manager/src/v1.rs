//! cert-manager's `cert-manager.io/v1` `CertificateRequest`, as a kube-rs custom resource.
//!
//! The fields, their JSON names and their meaning follow cert-manager's API reference
//! (`pkg/apis/certmanager/v1/types_certificaterequest.go` and `pkg/apis/meta/v1`) one to one,
//! so an object read from a cluster round-trips. Byte fields (`spec.request`,
//! `status.certificate`, `status.ca`) are Go `[]byte`: base64 of PEM text in JSON, which
//! [`ByteString`] encodes and decodes.
//!
//! This module owns the shape only; what Anchorage puts in it is [`crate::build_request`], and
//! what it reads from it is [`crate::read_status`]. The type is not used to install the CRD
//! (cert-manager does that), so no JSON schema is generated.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// The API group, `cert-manager.io`: the default `group` of an [`IssuerReference`].
pub const GROUP: &str = "cert-manager.io";

/// The specification of a `CertificateRequest`: a CSR for an issuer to sign. Every field is
/// immutable once created.
///
/// The [`CertificateRequest`] type itself (metadata, spec, status) is generated from this one by
/// kube-rs.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[kube(
    group = "cert-manager.io",
    version = "v1",
    kind = "CertificateRequest",
    plural = "certificaterequests",
    namespaced,
    status = "CertificateRequestStatus",
    derive = "PartialEq",
    schema = "disabled",
    doc = "A cert-manager `CertificateRequest` (`cert-manager.io/v1`): a one-shot request for an issuer to sign a CSR."
)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequestSpec {
    /// The requested lifetime as a Go duration (`24h0m0s`); the issuer may ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// The issuer that should sign.
    pub issuer_ref: IssuerReference,
    /// The PEM-encoded PKCS#10 CSR (base64 of the PEM in JSON).
    pub request: ByteString,
    /// Whether a CA certificate is requested. Anchorage always asks for `false`, and says so.
    #[serde(rename = "isCA", default)]
    pub is_ca: bool,
    /// Requested key usages and extended key usages; cert-manager defaults to
    /// `digital signature` and `key encipherment` when unset.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usages: Vec<KeyUsage>,
    /// Who created the request; filled in by cert-manager's webhook, read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The creator's uid; filled in by cert-manager's webhook, read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The creator's groups; filled in by cert-manager's webhook, read-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The creator's extra attributes; filled in by cert-manager's webhook, read-only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Which issuer signs: `name`, `kind` (`Issuer`, `ClusterIssuer`, or an external issuer's kind)
/// and `group` (`cert-manager.io`, or an external issuer's group). cert-manager's
/// `IssuerReference`, also known as `cmmeta.ObjectReference`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IssuerReference {
    /// The issuer's name.
    pub name: String,
    /// Its kind; cert-manager assumes `Issuer` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Its API group; cert-manager assumes `cert-manager.io` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl IssuerReference {
    /// A namespaced `Issuer` of cert-manager's own group, in the request's namespace.
    pub fn issuer(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: Some("Issuer".to_owned()),
            group: Some(GROUP.to_owned()),
        }
    }

    /// A cluster-wide `ClusterIssuer` of cert-manager's own group.
    pub fn cluster_issuer(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: Some("ClusterIssuer".to_owned()),
            group: Some(GROUP.to_owned()),
        }
    }

    /// An external issuer, e.g. kind `AWSPCAClusterIssuer` in group `awspca.cert-manager.io`.
    pub fn external(
        name: impl Into<String>,
        kind: impl Into<String>,
        group: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            kind: Some(kind.into()),
            group: Some(group.into()),
        }
    }
}

impl fmt::Display for IssuerReference {
    /// `ClusterIssuer.cert-manager.io/name`, as `kubectl` names objects.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}/{}",
            self.kind.as_deref().unwrap_or("Issuer"),
            self.group.as_deref().unwrap_or(GROUP),
            self.name
        )
    }
}

/// A key usage or extended key usage, spelled as cert-manager spells it (`digital signature`,
/// `server auth`, …). The full list of cert-manager's `KeyUsage` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KeyUsage {
    /// `signing`
    #[serde(rename = "signing")]
    Signing,
    /// `digital signature`
    #[serde(rename = "digital signature")]
    DigitalSignature,
    /// `content commitment`
    #[serde(rename = "content commitment")]
    ContentCommitment,
    /// `key encipherment` (RSA key transport; not meaningful for EC or Ed25519 keys)
    #[serde(rename = "key encipherment")]
    KeyEncipherment,
    /// `key agreement`
    #[serde(rename = "key agreement")]
    KeyAgreement,
    /// `data encipherment`
    #[serde(rename = "data encipherment")]
    DataEncipherment,
    /// `cert sign`
    #[serde(rename = "cert sign")]
    CertSign,
    /// `crl sign`
    #[serde(rename = "crl sign")]
    CrlSign,
    /// `encipher only`
    #[serde(rename = "encipher only")]
    EncipherOnly,
    /// `decipher only`
    #[serde(rename = "decipher only")]
    DecipherOnly,
    /// `any`
    #[serde(rename = "any")]
    Any,
    /// `server auth` (EKU serverAuth)
    #[serde(rename = "server auth")]
    ServerAuth,
    /// `client auth` (EKU clientAuth)
    #[serde(rename = "client auth")]
    ClientAuth,
    /// `code signing`
    #[serde(rename = "code signing")]
    CodeSigning,
    /// `email protection`
    #[serde(rename = "email protection")]
    EmailProtection,
    /// `s/mime`
    #[serde(rename = "s/mime")]
    Smime,
    /// `ipsec end system`
    #[serde(rename = "ipsec end system")]
    IpsecEndSystem,
    /// `ipsec tunnel`
    #[serde(rename = "ipsec tunnel")]
    IpsecTunnel,
    /// `ipsec user`
    #[serde(rename = "ipsec user")]
    IpsecUser,
    /// `timestamping`
    #[serde(rename = "timestamping")]
    Timestamping,
    /// `ocsp signing`
    #[serde(rename = "ocsp signing")]
    OcspSigning,
    /// `microsoft sgc`
    #[serde(rename = "microsoft sgc")]
    MicrosoftSgc,
    /// `netscape sgc`
    #[serde(rename = "netscape sgc")]
    NetscapeSgc,
}

/// What cert-manager and the issuer have done with a request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequestStatus {
    /// `Ready`, `Approved`, `Denied`, `InvalidRequest`; at most one of each type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<CertificateRequestCondition>,
    /// The signed certificate, PEM, followed by any intermediates (base64 in JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<ByteString>,
    /// The signing CA, PEM, set on a best-effort basis by each issuer (base64 in JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<ByteString>,
    /// When the request failed for good (set with `Ready=False` reason `Failed` or `Denied`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_time: Option<Time>,
}

/// One condition of a [`CertificateRequestStatus`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRequestCondition {
    /// `Ready`, `InvalidRequest`, `Approved` or `Denied`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// A machine-readable reason: `Issued`, `Pending`, `Failed`, `Denied`, or an approver's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The condition types cert-manager defines for a `CertificateRequest`.
pub mod condition {
    /// The certificate is in `status.certificate` (`True`), or not yet or never (`False`).
    pub const READY: &str = "Ready";
    /// An approver allowed the request to be signed.
    pub const APPROVED: &str = "Approved";
    /// An approver refused the request; it will never be signed.
    pub const DENIED: &str = "Denied";
    /// The issuer refused the request's parameters.
    pub const INVALID_REQUEST: &str = "InvalidRequest";
}

/// The reasons cert-manager sets on the `Ready` condition.
pub mod reason {
    /// Still in progress.
    pub const PENDING: &str = "Pending";
    /// Failed for good (`status.failureTime` is set).
    pub const FAILED: &str = "Failed";
    /// Signed; `status.certificate` is set.
    pub const ISSUED: &str = "Issued";
    /// Denied by an approver (`status.failureTime` is set).
    pub const DENIED: &str = "Denied";
}

impl CertificateRequestStatus {
    /// The condition of type `type_`, if any.
    pub fn condition(&self, type_: &str) -> Option<&CertificateRequestCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// True when the condition of type `type_` has status `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }
}
