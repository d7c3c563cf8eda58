//! [`K8sError`]: why an object or a patch could not be built.

/// Why a Kubernetes object or patch could not be built. Each variant carries what a fix needs;
/// nothing is returned that the API server would refuse for a reason we can check here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum K8sError {
    /// An object name the API server would refuse.
    #[error("invalid {kind} name `{name}`: {reason}")]
    InvalidName {
        /// The kind of object (`ConfigMap`, `Secret`, `ClusterTrustBundle`, workload kind).
        kind: &'static str,
        /// The name given.
        name: String,
        /// The rule it breaks and where.
        reason: String,
    },
    /// A namespace the API server would refuse.
    #[error("invalid namespace `{namespace}`: {reason}")]
    InvalidNamespace {
        /// The namespace given.
        namespace: String,
        /// The rule it breaks and where.
        reason: String,
    },
    /// A namespace was given for a cluster-scoped object.
    #[error(
        "a {kind} is cluster-scoped, but namespace `{namespace}` was given; leave the namespace out"
    )]
    NamespaceNotAllowed {
        /// The cluster-scoped kind.
        kind: &'static str,
        /// The namespace given.
        namespace: String,
    },
    /// A ConfigMap or Secret key (a file name in the mounted volume) the API server would refuse.
    #[error("invalid key `{key}`: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// The rule it breaks and where.
        reason: String,
    },
    /// Two entries of one object would have the same key.
    #[error(
        "key `{key}` is used twice in {object}; give the bundle file and its aliases distinct names that are not `<hash>.<n>` names"
    )]
    DuplicateKey {
        /// The key.
        key: String,
        /// The object, `Kind namespace/name`.
        object: String,
    },
    /// A label key or value the API server would refuse.
    #[error("invalid label `{key}: {value}`: {reason}")]
    InvalidLabel {
        /// The label key.
        key: String,
        /// The label value.
        value: String,
        /// The rule it breaks and where.
        reason: String,
    },
    /// A label or annotation we set ourselves was also given by the caller.
    #[error("`{key}` is set by anchorage itself; remove it from the labels and annotations given")]
    Reserved {
        /// The label or annotation key.
        key: String,
    },
    /// An annotation key the API server would refuse.
    #[error("invalid annotation key `{key}`: {reason}")]
    InvalidAnnotation {
        /// The annotation key.
        key: String,
        /// The rule it breaks and where.
        reason: String,
    },
    /// The annotations add up to more than the API server accepts.
    #[error(
        "the annotations of {object} add up to {size} bytes, over Kubernetes' limit of {limit} bytes; shorten or drop some"
    )]
    AnnotationsTooLarge {
        /// The object, `Kind namespace/name`.
        object: String,
        /// Bytes of keys and values.
        size: usize,
        /// The limit (256 KiB).
        limit: usize,
    },
    /// The object's data is over Kubernetes' 1 MiB limit; the API server would refuse it.
    #[error(
        "{object} would hold {size} bytes of data for {}, over Kubernetes' limit of {limit} bytes (1 MiB) for one object; {advice}",
        anchorage_bundle::plural(*certificates, "certificate")
    )]
    TooLarge {
        /// The object, `Kind namespace/name`.
        object: String,
        /// Bytes of data the API server would count.
        size: usize,
        /// The limit (1048576).
        limit: usize,
        /// Certificates in the bundle.
        certificates: usize,
        /// What to do, with the numbers of the alternatives that would fit.
        advice: String,
    },
    /// The PKCS#12 or JKS trust store could not be encoded.
    #[error("cannot encode the Java trust store for key `{key}`")]
    Keystore {
        /// The key it was for.
        key: String,
        /// Why.
        #[source]
        source: anchorage_keystore::KeystoreError,
    },
    /// The bundle holds no certificate.
    #[error("the bundle is empty: a {kind} needs at least one certificate")]
    EmptyBundle {
        /// The kind being built.
        kind: &'static str,
    },
    /// A ClusterTrustBundle may only hold CA certificates; the API server refuses any other.
    #[error(
        "`{subject}` (SHA-256 {sha256}) is not a CA certificate (no basic constraints with CA:TRUE), which a ClusterTrustBundle refuses; leave it out of the bundle (it is a leaf or an old v1 certificate), or use a ConfigMap"
    )]
    NotCa {
        /// The certificate's subject.
        subject: String,
        /// Its SHA-256 fingerprint.
        sha256: String,
    },
    /// A signer name the API server would refuse.
    #[error("invalid signer name `{signer_name}`: {reason}")]
    InvalidSignerName {
        /// The signer name.
        signer_name: String,
        /// The rule it breaks.
        reason: String,
    },
    /// A ClusterTrustBundle with a signer name must be named after it.
    #[error(
        "ClusterTrustBundle `{name}` has signer name `{signer_name}`, so its name must start with `{prefix}` (the signer name with `/` replaced by `:`, then `:`), for example `{prefix}{example}`"
    )]
    SignerPrefix {
        /// The name given.
        name: String,
        /// The signer name.
        signer_name: String,
        /// The prefix the name must start with.
        prefix: String,
        /// A valid name suggestion's suffix.
        example: String,
    },
    /// A ClusterTrustBundle without a signer name may not have `:` in its name.
    #[error(
        "ClusterTrustBundle `{name}` has no signer name, so its name must not contain `:` (names with `:` are reserved for signer-linked bundles); pass the signer name or rename it"
    )]
    ColonWithoutSigner {
        /// The name given.
        name: String,
    },
    /// A field of a [`crate::PatchRequest`] the API server would refuse.
    #[error("invalid {field} `{value}` in the workload patch: {reason}")]
    InvalidPatch {
        /// Which field.
        field: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        reason: String,
    },
    /// No container was named; a patch must say which containers get the mount.
    #[error(
        "no container named for the workload patch: name the containers (and init containers) that should trust the bundle; strategic merge matches containers by name, so an unnamed one cannot be patched"
    )]
    NoContainers,
    /// A container named in the request is not in the workload given for a JSON patch.
    #[error(
        "container `{container}` is not among the {field} of the workload ({available}); use one of those names"
    )]
    ContainerNotFound {
        /// The name asked for.
        container: String,
        /// `containers` or `initContainers`.
        field: &'static str,
        /// The names present, comma-separated, or `none`.
        available: String,
    },
    /// The workload given for a JSON patch is not of the kind asked for.
    #[error(
        "the workload given is a {found}, not a {expected}; pass the object the patch is for (as `kubectl get -o json` prints it)"
    )]
    WrongKind {
        /// The kind asked for.
        expected: &'static str,
        /// The `kind` of the object given, or `no kind`.
        found: String,
    },
    /// The workload given for a JSON patch has no pod spec where its kind keeps it.
    #[error(
        "the {kind} given has no pod spec at `{path}`; pass the whole object as `kubectl get -o json` prints it"
    )]
    NoPodSpec {
        /// The workload kind.
        kind: &'static str,
        /// The JSON pointer looked at.
        path: String,
    },
    /// The object given has something else than the expected shape at `path`.
    #[error(
        "the {object} given holds something other than {expected} at `{path}`; pass the object as `kubectl get -o json` prints it"
    )]
    MalformedObject {
        /// The kind of object.
        object: &'static str,
        /// The JSON pointer.
        path: String,
        /// What belongs there.
        expected: &'static str,
    },
    /// A host config's authority of that name already names another object.
    #[error(
        "the WasmCloudHostConfig already has an authority `{authority}`, for {existing}, not {wanted}; give another name (--authority) or remove that entry first"
    )]
    AuthorityConflict {
        /// The volume name.
        authority: String,
        /// The object asked for.
        wanted: String,
        /// The object the existing entry names.
        existing: String,
    },
    /// Serialising to YAML failed.
    #[error("cannot render the objects as YAML")]
    Yaml(#[source] serde_yaml_ng::Error),
    /// Serialising to JSON failed.
    #[error("cannot render the objects as JSON")]
    Json(#[source] serde_json::Error),
}
