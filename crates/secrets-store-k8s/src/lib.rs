//! Kubernetes Secrets as a store of the anchorage secrets server: `anchorage secrets serve
//! --store kubernetes`.
//!
//! Secrets are read the way wasmCloud's own Kubernetes backend reads them
//! (`wasmCloud/wasmCloud-contrib`, `secrets/secrets-kubernetes/main.go`, `Get`): the request's
//! `key` is the **name of a Secret**, its `field` the **key in the Secret's `data`** (required:
//! the reference answers "missing secret key/field" without one), and the version reported to
//! the host is the Secret's **`metadata.resourceVersion`**. The Secret is looked up in one
//! namespace; wasmCloud's backend takes it from the application policy's `namespace` property
//! (default `default`), this store serves the one namespace it is configured with, and a policy
//! naming another namespace, or asking for the reference's `impersonate`, is refused rather than
//! served from somewhere the operator did not choose.
//!
//! Where this store differs from the reference, and why:
//!
//! - **Versions.** The reference ignores the requested version. Kubernetes keeps no history
//!   of a Secret, so a request naming a version is answered only when it is the current
//!   `resourceVersion`, and is "not found" otherwise (never another version's value).
//! - **Binary data.** The reference turns `data` bytes into a Go string, so bytes that are not
//!   UTF-8 reach the host mangled. Here a UTF-8 value is sent as `string_secret` and anything
//!   else as `binary_secret`, byte for byte.
//! - **Mappings.** The reference checks the host and entity JWTs only: any component may read
//!   any Secret the backend's service account can read. Here, as with every other store, an
//!   entity reads only what its mapping grants ([`anchorage_secrets::Grant`]: a Secret name,
//!   optionally `;issuer=A…`). Mappings live in **one ConfigMap** in the same namespace
//!   (default `anchorage-secrets-mappings`): each data key is an entity's public key (`M…`
//!   component, `V…` provider), its value the grants, one per line (`#` starts a comment). A
//!   ConfigMap rather than labels or annotations on each Secret: a lookup is one GET of one
//!   object instead of a LIST of every Secret in the namespace (which would carry every value
//!   through this process on each request), and who may grant access (write that ConfigMap)
//!   is separate from who may write values. No mapping, no access.
//!
//! The store is read-only (`get`, `list` and `watch` on Secrets in its namespace and `get` on
//! the mappings ConfigMap: `deploy/kubernetes/secrets-kubernetes/role.yaml`); writes, mapping
//! changes and key rotation are refused with [`StoreFailure::Unsupported`]: Secrets are written
//! with the Kubernetes API, and encrypted at rest by the API server's own configuration.
//!
//! Values leave the Kubernetes answer into secrecy types; the other data values of the same
//! Secret are overwritten once read. kube-rs's own response buffers are not under this crate's
//! control and are not wiped. Errors name the namespace, Secret and key, never a value; a
//! Secret that does not parse is reported without the parser's message (which may quote a
//! value).
//!
//! What this crate does not do: serve the protocol (`anchorage-secrets-server`), parse
//! arguments (the CLI), watch or cache Secrets (every `get` is one API call, so a changed
//! Secret is served at once).

mod read;
mod store;

pub use read::{DEFAULT_MAPPINGS_CONFIGMAP, grants_in, is_secret_name, value_of};
pub use store::{ClientError, ClientSource, KubernetesConfig, KubernetesSecrets, STORE, client};

/// The store error type, shared with the other stores.
pub use anchorage_secrets_server::StoreFailure;
