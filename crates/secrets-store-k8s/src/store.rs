//! [`KubernetesSecrets`]: the [`SecretStore`] and [`MappingStore`] over one namespace's
//! Secrets and one mappings ConfigMap, through kube-rs; [`client`] builds the client from a
//! kubeconfig or the pod's service account.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anchorage_secrets::{SecretLookup, SecretValue, VersionedSecret};
use anchorage_secrets_server::store::check_entity;
use anchorage_secrets_server::{MappingStore, RotationReport, SecretStore, StoreFailure};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::ListParams;

use crate::read::{DEFAULT_MAPPINGS_CONFIGMAP, check_policy, grants_in, is_data_key, value_of};

/// The store's kind, as messages and audit name it.
pub const STORE: &str = "kubernetes";

/// Where the client's configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct ClientSource {
    /// A kubeconfig file; `None`: `KUBECONFIG` or `~/.kube/config`, else the pod's service
    /// account (kube-rs's `Config::infer`).
    pub kubeconfig: Option<PathBuf>,
    /// A context of that kubeconfig (default: its current context).
    pub context: Option<String>,
}

/// Why no Kubernetes client could be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The kubeconfig file given could not be read or used.
    #[error("cannot use the kubeconfig {path}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// Neither a kubeconfig nor a service account was found.
    #[error(
        "no Kubernetes client configuration: run in a pod with a service account, set KUBECONFIG, or give a kubeconfig file"
    )]
    Infer(#[source] kube::config::InferConfigError),
    /// The configuration was found but the client could not be made from it.
    #[error("cannot build a Kubernetes client from the configuration")]
    Build(#[source] kube::Error),
}

/// A client, and the namespace its configuration names (the kubeconfig context's, or the
/// service account's), for a default.
pub async fn client(source: &ClientSource) -> Result<(kube::Client, String), ClientError> {
    let config = match &source.kubeconfig {
        Some(path) => {
            let failed = |source| ClientError::Kubeconfig {
                path: path.clone(),
                source,
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(failed)?;
            let options = kube::config::KubeConfigOptions {
                context: source.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(failed)?
        }
        None if source.context.is_some() => {
            let options = kube::config::KubeConfigOptions {
                context: source.context.clone(),
                ..Default::default()
            };
            kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|source| ClientError::Kubeconfig {
                    path: PathBuf::from("$KUBECONFIG or ~/.kube/config"),
                    source,
                })?
        }
        None => kube::Config::infer().await.map_err(ClientError::Infer)?,
    };
    let namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config).map_err(ClientError::Build)?;
    Ok((client, namespace))
}

/// Which namespace and ConfigMap the store reads.
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    /// The namespace of the Secrets and of the mappings ConfigMap.
    pub namespace: String,
    /// The ConfigMap holding the mappings ([`DEFAULT_MAPPINGS_CONFIGMAP`]).
    pub mappings_configmap: String,
}

impl KubernetesConfig {
    /// `namespace`, with the default mappings ConfigMap.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            mappings_configmap: DEFAULT_MAPPINGS_CONFIGMAP.to_owned(),
        }
    }
}

/// Secrets of one namespace, and the mappings in one ConfigMap there. Read-only.
pub struct KubernetesSecrets {
    secrets: Api<Secret>,
    configmaps: Api<ConfigMap>,
    namespace: String,
    mappings: String,
}

impl std::fmt::Debug for KubernetesSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesSecrets")
            .field("namespace", &self.namespace)
            .field("mappings_configmap", &self.mappings)
            .finish_non_exhaustive()
    }
}

fn unsupported(operation: &'static str) -> StoreFailure {
    StoreFailure::Unsupported {
        store: STORE,
        operation,
    }
}

/// A kube-rs error as a store failure: 401/403 as refused credentials (naming the RBAC the
/// store needs), an answer that does not parse without the parser's text (serde quotes the
/// offending input, which may be a value), anything else with its cause.
fn failure(action: String, e: kube::Error) -> StoreFailure {
    match e {
        kube::Error::Api(status) if status.code == 401 || status.code == 403 => {
            StoreFailure::AuthFailed {
                store: STORE,
                action: format!(
                    "{action} ({} {}: the service account needs get, list and watch on secrets and get on the mappings ConfigMap in this namespace, deploy/kubernetes/secrets-kubernetes/role.yaml)",
                    status.code, status.reason
                ),
            }
        }
        kube::Error::Api(status) => StoreFailure::Backend {
            store: STORE,
            action,
            source: format!(
                "the API server answered {} {}: {}",
                status.code, status.reason, status.message
            )
            .into(),
        },
        kube::Error::SerdeError(_) => StoreFailure::Backend {
            store: STORE,
            action,
            source: "the API server's answer does not parse as the expected object".into(),
        },
        other => StoreFailure::Backend {
            store: STORE,
            action,
            source: Box::new(other),
        },
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    // Any 404: some servers (and test emulators) use other reasons than `NotFound`.
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

impl KubernetesSecrets {
    /// The store over `client` (no request is sent yet).
    pub fn new(client: kube::Client, config: KubernetesConfig) -> Result<Self, StoreFailure> {
        if !crate::is_secret_name(&config.namespace)
            || config.namespace.contains('.')
            || config.namespace.len() > 63
        {
            return Err(StoreFailure::InvalidName {
                what: "namespace",
                name: config.namespace,
                reason: "a Kubernetes namespace name (at most 63 lowercase letters, digits and -)"
                    .to_owned(),
            });
        }
        if !crate::is_secret_name(&config.mappings_configmap) {
            return Err(StoreFailure::InvalidName {
                what: "mappings ConfigMap",
                name: config.mappings_configmap,
                reason: "a Kubernetes object name (lowercase letters, digits, - and .)".to_owned(),
            });
        }
        Ok(Self {
            secrets: Api::namespaced(client.clone(), &config.namespace),
            configmaps: Api::namespaced(client, &config.namespace),
            namespace: config.namespace,
            mappings: config.mappings_configmap,
        })
    }

    /// The namespace read.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The mappings ConfigMap's data (empty when it does not exist).
    async fn mapping_data(&self) -> Result<BTreeMap<String, String>, StoreFailure> {
        match self.configmaps.get(&self.mappings).await {
            Ok(cm) => Ok(cm.data.unwrap_or_default()),
            Err(e) if is_not_found(&e) => {
                tracing::debug!(
                    namespace = %self.namespace,
                    configmap = %self.mappings,
                    "no mappings ConfigMap: nothing is granted"
                );
                Ok(BTreeMap::new())
            }
            Err(e) => Err(failure(
                format!(
                    "read the mappings ConfigMap {}/{}",
                    self.namespace, self.mappings
                ),
                e,
            )),
        }
    }

    fn grants(&self, entity: &str, text: &str) -> BTreeSet<String> {
        let (grants, skipped) = grants_in(text);
        for entry in skipped {
            tracing::warn!(
                namespace = %self.namespace,
                configmap = %self.mappings,
                entity,
                entry,
                "mapping entry skipped: not a Secret name, optionally with ;issuer=A… (mounts do not apply to Kubernetes Secrets)"
            );
        }
        grants
    }
}

#[async_trait]
impl SecretStore for KubernetesSecrets {
    fn kind(&self) -> &'static str {
        STORE
    }

    async fn get(&self, lookup: SecretLookup<'_>) -> Result<Option<VersionedSecret>, StoreFailure> {
        check_policy(lookup.policy, &self.namespace)?;
        let Some(field) = lookup.field.filter(|f| !f.is_empty()) else {
            return Err(StoreFailure::InvalidName {
                what: "field",
                name: String::new(),
                reason: format!(
                    "a Kubernetes Secret is read one data key at a time: give the secret's `field` (a key of {}'s data), as wasmCloud's Kubernetes backend requires",
                    lookup.key
                ),
            });
        };
        if !crate::is_secret_name(lookup.key) || !is_data_key(field) {
            return Ok(None);
        }
        match self.secrets.get(lookup.key).await {
            Ok(secret) => Ok(value_of(secret, field, lookup.version)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(failure(
                format!("read Secret {}/{}", self.namespace, lookup.key),
                e,
            )),
        }
    }

    async fn put(&self, _key: &str, _value: SecretValue) -> Result<String, StoreFailure> {
        Err(unsupported(
            "writing secrets (it reads Kubernetes Secrets; write them with kubectl or the API)",
        ))
    }

    async fn delete(&self, _key: &str) -> Result<bool, StoreFailure> {
        Err(unsupported(
            "deleting secrets (it reads Kubernetes Secrets; delete them with kubectl or the API)",
        ))
    }

    async fn keys(&self) -> Result<Vec<String>, StoreFailure> {
        let list = self
            .secrets
            .list_metadata(&ListParams::default())
            .await
            .map_err(|e| failure(format!("list the Secrets in {}", self.namespace), e))?;
        let mut names: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|item| item.metadata.name)
            .collect();
        names.sort();
        Ok(names)
    }

    async fn reencrypt(&self) -> Result<RotationReport, StoreFailure> {
        Err(unsupported(
            "rotate-encryption-key (the API server encrypts Secrets at rest with its own configuration)",
        ))
    }
}

#[async_trait]
impl MappingStore for KubernetesSecrets {
    async fn secrets_of(&self, entity: &str) -> Result<BTreeSet<String>, StoreFailure> {
        let data = self.mapping_data().await?;
        Ok(data
            .get(entity)
            .map(|text| self.grants(entity, text))
            .unwrap_or_default())
    }

    async fn add_mapping(
        &self,
        _entity: &str,
        _names: &[String],
    ) -> Result<BTreeSet<String>, StoreFailure> {
        Err(unsupported(
            "mapping changes (edit the mappings ConfigMap: one line per Secret name under the entity's key)",
        ))
    }

    async fn remove_mapping(
        &self,
        _entity: &str,
        _names: &[String],
    ) -> Result<BTreeSet<String>, StoreFailure> {
        Err(unsupported(
            "mapping changes (edit the mappings ConfigMap: one line per Secret name under the entity's key)",
        ))
    }

    async fn list_mappings(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StoreFailure> {
        let data = self.mapping_data().await?;
        Ok(data
            .iter()
            .filter(|(entity, _)| check_entity(entity).is_ok())
            .map(|(entity, text)| (entity.clone(), self.grants(entity, text)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(e: &StoreFailure) -> String {
        let mut s = e.to_string();
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            s.push_str(": ");
            s.push_str(&c.to_string());
            cause = c.source();
        }
        s
    }

    #[test]
    fn a_parse_failure_never_quotes_the_answer() {
        // serde's message quotes the input it could not use, e.g. a value.
        let serde = serde_json::from_str::<u32>("\"hunter2\"").unwrap_err();
        assert!(
            serde.to_string().contains("hunter2"),
            "the control: {serde}"
        );
        let e = failure("read Secret apps/db".into(), kube::Error::SerdeError(serde));
        let message = text(&e);
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("apps/db"), "{message}");
    }

    #[test]
    fn forbidden_names_the_rbac() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 403, "reason": "Forbidden",
            "message": "secrets \"db\" is forbidden: User \"system:serviceaccount:x:y\" cannot get resource \"secrets\""
        }))
        .unwrap();
        let e = failure(
            "read Secret apps/db".into(),
            kube::Error::Api(Box::new(status)),
        );
        assert!(matches!(e, StoreFailure::AuthFailed { .. }), "{e:?}");
        assert!(text(&e).contains("role.yaml"), "{}", text(&e));
    }
}
