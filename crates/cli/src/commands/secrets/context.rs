//! Resolving `secrets` options into library values: seeds, NATS and OpenBao settings, the
//! store; and library errors into exit codes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anchorage_secrets::{KeyError, SecretValue, XKey};
use anchorage_secrets_server::{
    BucketReport, ConnectError, EmbeddedSecrets, JetStreamConfig, JetStreamSecrets, Keyring,
    MappingStore, NatsAuth, NatsConfig, OpenBaoAuth, OpenBaoConfig, OpenBaoSecrets, ReplayGuard,
    ReplicaChoice, SecretStore, SeedSource, StoreFailure,
};
use anchorage_store::{EmbeddedStore, StoreError};
use secrecy::SecretString;
use zeroize::Zeroizing;

use anchorage_secrets_store_k8s::KubernetesSecrets;

use super::args::{KeyArgs, KubernetesArgs, NatsArgs, OpenBaoArgs, PutArgs, StoreArgs, StoreKind};
use crate::exit::Classify as _;
use crate::exit::{Code, Failure, with_causes};
use crate::globals::Outbound;

/// The embedded store's file name inside the data directory (apart from the CA's store, so
/// `anchorage ca` and `anchorage secrets serve` never contend for one file).
pub(crate) const STORE_FILE: &str = "secrets.redb";

pub(crate) const ENCRYPTION_ENV: &[&str] =
    &["ANCHORAGE_SECRETS_ENCRYPTION_SEED", "ENCRYPTION_XKEY_SEED"];
pub(crate) const PREVIOUS_ENCRYPTION_ENV: &str = "ANCHORAGE_SECRETS_PREVIOUS_ENCRYPTION_SEED";
pub(crate) const NEW_ENCRYPTION_ENV: &str = "ANCHORAGE_SECRETS_NEW_ENCRYPTION_SEED";
pub(crate) const TRANSIT_ENV: &[&str] = &["ANCHORAGE_SECRETS_TRANSIT_SEED", "TRANSIT_XKEY_SEED"];

/// The stores a command works on.
pub(crate) struct Stores {
    pub(crate) values: Arc<dyn SecretStore>,
    pub(crate) mappings: Arc<dyn MappingStore>,
    /// The NATS connection, when one was made (jetstream).
    pub(crate) nats: Option<anchorage_secrets_server::async_nats::Client>,
    /// The keyring the values are sealed with (not for openbao), for online rotation.
    pub(crate) keyring: Option<Arc<Keyring>>,
    /// Where admin token ids are recorded against replays: the store the instances share
    /// (for openbao, the embedded file that holds the mappings).
    pub(crate) replay: Arc<dyn ReplayGuard>,
    /// jetstream: the replicas chosen and the buckets as opened.
    pub(crate) buckets: Option<(ReplicaChoice, Vec<BucketReport>)>,
}

/// Where a seed comes from: the file if given, else the first variable that is set.
pub(crate) fn seed_source(file: Option<&Path>, vars: &[&str]) -> Option<SeedSource> {
    if let Some(file) = file {
        return Some(SeedSource::File(file.to_path_buf()));
    }
    vars.iter()
        .find(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
        .map(|v| SeedSource::Env((*v).to_owned()))
}

pub(crate) fn key_failure(e: &KeyError) -> Failure {
    Failure::new(e.code(), with_causes(e))
}

/// The encryption keyring: the current key, and the previous one if configured.
pub(crate) fn keyring(args: &KeyArgs) -> Result<Keyring, Failure> {
    let Some(source) = seed_source(args.encryption_seed_file.as_deref(), ENCRYPTION_ENV) else {
        return Err(Failure::new(
            Code::Usage,
            "no encryption seed: set ANCHORAGE_SECRETS_ENCRYPTION_SEED or give --encryption-seed-file (an xkey seed, SX…)",
        ));
    };
    let current = XKey::load(&source).map_err(|e| key_failure(&e))?;
    let mut ring = Keyring::new(current);
    if let Some(previous) = seed_source(
        args.previous_encryption_seed_file.as_deref(),
        &[PREVIOUS_ENCRYPTION_ENV],
    ) {
        ring = ring.with_previous(XKey::load(&previous).map_err(|e| key_failure(&e))?);
    }
    Ok(ring)
}

/// Reads the first line of a credentials file.
pub(crate) fn read_line_file(path: &Path, what: &str) -> Result<SecretString, Failure> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
        Failure::new(
            Code::BadInput,
            format!("cannot read the {what} file {}: {e}", path.display()),
        )
    })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Failure::new(
            Code::BadInput,
            format!("the {what} file {} is not UTF-8", path.display()),
        )
    })?;
    let line = text.lines().next().unwrap_or_default().trim();
    if line.is_empty() {
        return Err(Failure::new(
            Code::BadInput,
            format!("the {what} file {} is empty", path.display()),
        ));
    }
    Ok(SecretString::from(line.to_owned()))
}

fn env_secret(vars: &[&str]) -> Option<SecretString> {
    vars.iter()
        .find_map(|v| std::env::var(v).ok().filter(|x| !x.is_empty()))
        .map(SecretString::from)
}

/// The NATS settings.
pub(crate) fn nats_config(args: &NatsArgs, outbound: &Outbound) -> Result<NatsConfig, Failure> {
    let mut urls = args.urls.clone();
    if urls.is_empty() {
        urls = std::env::var("ANCHORAGE_NATS_URL")
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_else(|| vec!["nats://127.0.0.1:4222".to_owned()]);
    }
    let chosen = [
        args.creds.is_some(),
        args.nkey_file.is_some(),
        args.user.is_some(),
        args.token_file.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if chosen > 1 {
        return Err(Failure::new(
            Code::Usage,
            "give one of --nats-creds, --nats-nkey-file, --nats-user and --nats-token-file",
        ));
    }
    let auth = if let Some(creds) = &args.creds {
        NatsAuth::CredsFile(creds.clone())
    } else if let Some(file) = &args.nkey_file {
        NatsAuth::NkeySeed(read_line_file(file, "NATS nkey seed")?)
    } else if let Some(user) = &args.user {
        let password = match &args.password_file {
            Some(f) => read_line_file(f, "NATS password")?,
            None => env_secret(&["ANCHORAGE_NATS_PASSWORD"]).ok_or_else(|| {
                Failure::new(
                    Code::Usage,
                    "--nats-user needs a password: --nats-password-file or ANCHORAGE_NATS_PASSWORD",
                )
            })?,
        };
        NatsAuth::UserPassword {
            user: user.clone(),
            password,
        }
    } else if let Some(file) = &args.token_file {
        NatsAuth::Token(read_line_file(file, "NATS token")?)
    } else if let Some(token) = env_secret(&["ANCHORAGE_NATS_TOKEN"]) {
        NatsAuth::Token(token)
    } else {
        NatsAuth::None
    };
    let mut config = NatsConfig::new(urls);
    config.auth = auth;
    config.require_tls = args.require_tls;
    config.tls = Some(outbound.client_config()?);
    Ok(config)
}

pub(crate) fn connect_failure(e: &ConnectError) -> Failure {
    Failure::new(e.code(), with_causes(e))
}

pub(crate) fn store_failure(e: &StoreFailure) -> Failure {
    Failure::new(e.code(), with_causes(e))
}

fn data_dir(args: &StoreArgs) -> Result<PathBuf, Failure> {
    args.data_dir
        .clone()
        .or_else(anchorage_ca::persist::data_dir)
        .ok_or_else(|| {
            Failure::new(
                Code::Usage,
                "no data directory for the secrets store: give --data-dir DIR or set ANCHORAGE_DATA_DIR (HOME is not set either)",
            )
        })
}

/// Opens the embedded file (`create`: make it when absent).
fn open_embedded(args: &StoreArgs, create: bool) -> Result<EmbeddedStore, Failure> {
    let path = data_dir(args)?.join(STORE_FILE);
    if !create && !path.exists() {
        return Err(Failure::new(
            Code::NotFound,
            format!(
                "there is no secrets store {}: `anchorage secrets put` or `add-mapping` creates it, or point --data-dir (or ANCHORAGE_DATA_DIR) at its directory",
                path.display()
            ),
        ));
    }
    EmbeddedStore::open(&path).map_err(|e| {
        let mut message = with_causes(&e);
        if matches!(e, StoreError::Database { .. }) {
            message.push_str(
                "; the embedded store is opened by one process at a time: is `anchorage secrets serve` running on it? Then administer it through that server: add --admin-seed-file FILE (an admin seed from `anchorage secrets keygen --kind admin`, allowed with `serve --admin-key`) and the command goes over NATS as a signed admin request; or use --store jetstream",
            );
        }
        Failure::new(e.code(), message)
    })
}

/// Opens a values store (embedded or jetstream) with the given keyring, for a rotation.
pub(crate) async fn open_with_keyring(
    args: &StoreArgs,
    outbound: &Outbound,
    ring: Keyring,
) -> Result<Stores, Failure> {
    open_inner(args, outbound, Some(ring), false, false).await
}

/// Opens the store. `needs_values_key`: false for mapping-only commands (no encryption seed
/// is needed to read or write mappings). `create`: the embedded file may be created.
pub(crate) async fn open(
    args: &StoreArgs,
    outbound: &Outbound,
    needs_values_key: bool,
    create: bool,
) -> Result<Stores, Failure> {
    open_inner(args, outbound, None, needs_values_key, create).await
}

async fn open_inner(
    args: &StoreArgs,
    outbound: &Outbound,
    ring: Option<Keyring>,
    needs_values_key: bool,
    create: bool,
) -> Result<Stores, Failure> {
    let mut ring = ring;
    let real_keys = needs_values_key || ring.is_some();
    let mut keys = |needed: bool| -> Result<Arc<Keyring>, Failure> {
        if let Some(ring) = ring.take() {
            Ok(Arc::new(ring))
        } else if needed {
            keyring(&args.keys).map(Arc::new)
        } else {
            // Mappings are not encrypted; a throwaway key is never used.
            Ok(Arc::new(Keyring::new(XKey::generate())))
        }
    };

    match args.store {
        StoreKind::Embedded => {
            let store = open_embedded(args, create)?;
            let ring = keys(needs_values_key)?;
            let secrets = Arc::new(
                EmbeddedSecrets::new(Arc::new(store), Arc::clone(&ring)).with_history(args.history),
            );
            Ok(Stores {
                values: secrets.clone(),
                mappings: secrets.clone(),
                nats: None,
                keyring: real_keys.then_some(ring),
                replay: secrets,
                buckets: None,
            })
        }
        StoreKind::Jetstream => {
            let keys = keys(needs_values_key)?;
            let client = anchorage_secrets_server::connect(nats_config(&args.nats, outbound)?)
                .await
                .map_err(|e| connect_failure(&e))?;
            let mut config = JetStreamConfig::new(&args.backend);
            config.bucket.clone_from(&args.bucket);
            config.history = args.history;
            config.replicas = args.replicas.map(usize::from);
            config.consistent_reads = args.consistent_reads;
            config.allow_unserializable_cas = args.allow_unserializable_cas;
            let secrets = Arc::new(
                JetStreamSecrets::open(client.clone(), &config, Arc::clone(&keys))
                    .await
                    .map_err(|e| store_failure(&e))?,
            );
            Ok(Stores {
                buckets: Some((
                    secrets.replicas().clone(),
                    secrets.bucket_reports().to_vec(),
                )),
                values: secrets.clone(),
                mappings: secrets.clone(),
                nats: Some(client),
                keyring: real_keys.then_some(keys),
                replay: secrets,
            })
        }
        StoreKind::Kubernetes => {
            let store = Arc::new(kubernetes(&args.kubernetes).await?);
            // Nothing is administered through this store (it is read-only and `serve` refuses
            // admin keys with it): an in-memory record satisfies the type.
            let replay = Arc::new(EmbeddedSecrets::new(
                Arc::new(anchorage_store::MemoryStore::new()),
                keys(false)?,
            ));
            Ok(Stores {
                values: store.clone(),
                mappings: store,
                nats: None,
                keyring: None,
                replay,
                buckets: None,
            })
        }
        StoreKind::Openbao => {
            let values = Arc::new(openbao(&args.openbao, outbound)?);
            let mappings = Arc::new(EmbeddedSecrets::new(
                Arc::new(open_embedded(args, create)?),
                keys(false)?,
            ));
            Ok(Stores {
                values,
                mappings: mappings.clone(),
                nats: None,
                keyring: None,
                replay: mappings,
                buckets: None,
            })
        }
    }
}

/// The Kubernetes store: the client from the kubeconfig or the service account, the namespace
/// given or the configuration's.
async fn kubernetes(args: &KubernetesArgs) -> Result<KubernetesSecrets, Failure> {
    use anchorage_secrets_store_k8s::{ClientError, ClientSource, KubernetesConfig};
    let source = ClientSource {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    };
    let (client, default_namespace) =
        anchorage_secrets_store_k8s::client(&source)
            .await
            .map_err(|e| {
                let code = match e {
                    ClientError::Kubeconfig { .. } => Code::BadInput,
                    _ => Code::Unreachable,
                };
                Failure::new(code, with_causes(&e))
            })?;
    let mut config = KubernetesConfig::new(args.namespace.clone().unwrap_or(default_namespace));
    config
        .mappings_configmap
        .clone_from(&args.mappings_configmap);
    KubernetesSecrets::new(client, config).map_err(|e| store_failure(&e))
}

fn openbao(args: &OpenBaoArgs, outbound: &Outbound) -> Result<OpenBaoSecrets, Failure> {
    let address = args
        .addr
        .clone()
        .or_else(|| {
            ["ANCHORAGE_OPENBAO_ADDR", "BAO_ADDR", "VAULT_ADDR"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|x| !x.is_empty()))
        })
        .ok_or_else(|| {
            Failure::new(
                Code::Usage,
                "--store openbao needs --openbao-addr (or ANCHORAGE_OPENBAO_ADDR)",
            )
        })?;
    let auth = if let Some(role_id) = &args.role_id {
        let secret_id = match &args.secret_id_file {
            Some(f) => read_line_file(f, "AppRole secret ID")?,
            None => env_secret(&["ANCHORAGE_OPENBAO_SECRET_ID"]).ok_or_else(|| {
                Failure::new(
                    Code::Usage,
                    "--openbao-role-id needs a secret ID: --openbao-secret-id-file or ANCHORAGE_OPENBAO_SECRET_ID",
                )
            })?,
        };
        OpenBaoAuth::AppRole {
            mount: args.approle_mount.clone(),
            role_id: role_id.clone(),
            secret_id,
        }
    } else {
        let token = match &args.token_file {
            Some(f) => read_line_file(f, "OpenBao token")?,
            None => env_secret(&["ANCHORAGE_OPENBAO_TOKEN", "BAO_TOKEN", "VAULT_TOKEN"])
                .ok_or_else(|| {
                    Failure::new(
                        Code::Usage,
                        "--store openbao needs a token (--openbao-token-file or ANCHORAGE_OPENBAO_TOKEN) or an AppRole (--openbao-role-id)",
                    )
                })?,
        };
        OpenBaoAuth::Token(token)
    };
    OpenBaoSecrets::new(OpenBaoConfig {
        address,
        mount: args.mount.trim_matches('/').to_owned(),
        extra_mounts: args
            .allow_mounts
            .iter()
            .map(|m| m.trim_matches('/').to_owned())
            .collect(),
        auth,
        namespace: args.namespace.clone(),
        tls: outbound.client_config()?,
        timeout: Duration::from_secs(30),
    })
    .map_err(|e| store_failure(&e))
}

/// Warns about each mapped secret the values store does not hold (yet), as the executor
/// found them (in-process, or in the admin reply): the mapping is kept (a secret may be put
/// later), but a typo would otherwise only show as a host's "not found".
pub(crate) fn warn_missing_secrets(entity: &str, store: &str, missing: &[String]) {
    for name in missing {
        warnln!(
            "no secret {name:?} in the {store} store (yet): {entity} may read it once it is put (`anchorage secrets put {name} ...`); check the name"
        );
    }
}

pub(crate) fn read_value(a: &PutArgs) -> Result<SecretValue, Failure> {
    let bad = |m: String| Failure::new(Code::BadInput, m);
    let bytes: Zeroizing<Vec<u8>> = if let Some(var) = &a.value_env {
        let v = std::env::var_os(var)
            .ok_or_else(|| bad(format!("environment variable {var} is not set")))?;
        Zeroizing::new(v.into_encoded_bytes())
    } else if let Some(path) = &a.value_file {
        // `--value-file -` is standard input, as `--value-stdin`.
        crate::io::read_input("--value-file", path)?
    } else if a.value_stdin {
        crate::io::read_stdin("--value-stdin")?
    } else if let Some(v) = &a.value {
        Zeroizing::new(v.as_bytes().to_vec())
    } else {
        return Err(Failure::new(
            Code::Usage,
            "give the value with --value-env, --value-file, --value-stdin or --value",
        ));
    };
    if a.binary {
        return Ok(SecretValue::Binary(Box::<[u8]>::from(&bytes[..]).into()));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        bad("the value is not UTF-8 text: add --binary to store it as bytes".to_owned())
    })?;
    Ok(SecretValue::String(SecretString::from(text.to_owned())))
}
