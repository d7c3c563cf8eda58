//! The arguments of `anchorage secrets …`.

use std::path::PathBuf;

use anchorage_secrets::DEFAULT_PREFIX;
use anchorage_secrets_server::DEFAULT_BACKEND;
use clap::{Args, Subcommand, ValueEnum};

use crate::exit::Code;
use crate::options::OutputFormat;

/// The variable holding the admin seed when `--admin-seed-file` is not given.
pub(crate) const ADMIN_SEED_ENV: &str = "ANCHORAGE_SECRETS_ADMIN_SEED";

/// The stores and over-NATS help, appended to every store command's `--help` and `-h` (a
/// flattened `after_long_help` would hide the examples from `--help`).
macro_rules! store_help {
    () => {
        "Stores (--store):
  embedded   the default: one redb file <data-dir>/secrets.redb (0600), values sealed with the
             encryption key; one process opens it at a time: while `serve` runs, administer
             it over NATS (--admin-seed-file, below), or stop `serve` first
  jetstream  NATS JetStream KV in the layout of wasmCloud's secrets-nats-kv backend (bucket
             WASMCLOUD_SECRETS, mappings in SECRETS_<backend>_state): an existing deployment
             switches without migrating data
  openbao    Vault/OpenBao KV v2 (key = path, --field-like `field` selects a value); mappings
             are kept in the embedded file
  kubernetes Kubernetes Secrets of one namespace (--k8s-namespace), read-only, as wasmCloud's
             Kubernetes backend reads them: key = Secret name, field = data key, version =
             resourceVersion; mappings in a ConfigMap there (--k8s-mappings-configmap). Use
             --backend kube to answer where wasmCloud's backend did (docs/secrets-kubernetes.md)

Administration over NATS: with --admin-seed-file FILE (or ANCHORAGE_SECRETS_ADMIN_SEED) holding
a user (SU…) or account (SA…) nkey seed whose public key the server allows (serve --admin-key),
the command is sent to the running server on <prefix>.admin.<backend>.<op>, signed and sealed,
instead of opening the store; --store, --data-dir and the encryption seeds are then the
server's business. --nats-url and the other --nats-* options say how to reach NATS.

Seeds and credentials are read from files or the environment, never from arguments:
  ANCHORAGE_SECRETS_TRANSIT_SEED      transit xkey seed (SX…), or --transit-seed-file
                                      (the reference's TRANSIT_XKEY_SEED is read too)
  ANCHORAGE_SECRETS_ENCRYPTION_SEED   encryption xkey seed, or --encryption-seed-file
                                      (the reference's ENCRYPTION_XKEY_SEED is read too)
  ANCHORAGE_SECRETS_PREVIOUS_ENCRYPTION_SEED  an older encryption key still accepted for reading
  ANCHORAGE_SECRETS_ADMIN_SEED        admin nkey seed (SU…/SA…), or --admin-seed-file
  ANCHORAGE_NATS_URL, ANCHORAGE_NATS_PASSWORD, ANCHORAGE_NATS_TOKEN
  ANCHORAGE_OPENBAO_ADDR (or BAO_ADDR, VAULT_ADDR), ANCHORAGE_OPENBAO_TOKEN (or BAO_TOKEN,
  VAULT_TOKEN), ANCHORAGE_OPENBAO_SECRET_ID"
    };
}

/// `anchorage secrets …`
#[derive(Subcommand, Debug)]
pub(crate) enum SecretsCommand {
    /// Answer wasmCloud hosts' secret requests over NATS (server_xkey and get).
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  export ANCHORAGE_SECRETS_TRANSIT_SEED=SXA… \\\n",
            "    ANCHORAGE_SECRETS_ENCRYPTION_SEED=SXA…\n",
            "  anchorage secrets serve --data-dir /var/lib/anchorage --host-issuer CC… \\\n",
            "    --entity-issuer AA…\n",
            "  anchorage secrets serve --store jetstream --nats-url tls://nats:4222 \\\n",
            "    --nats-creds app.creds \\\n",
            "    --tls-ca-path /etc/nats/ca.pem --host-issuer CC… \\\n",
            "    --entity-issuer AA… --entity-issuer AB…\n",
            "  anchorage secrets serve --store openbao --openbao-addr https://bao:8200 \\\n",
            "    --openbao-mount secret \\\n",
            "    --host-issuer CC… --entity-issuer AA…\n",
            "\n",
            "Who may ask: --host-issuer names the lattice's cluster key(s) (C…, the key wasmCloud hosts\n",
            "sign their host JWTs with) and --entity-issuer the account(s) (A…) that sign components and\n",
            "providers; serve refuses to start without both unless --allow-any-issuer is given (then\n",
            "anyone who can publish on the get subject can mint tokens for a mapped entity's key).\n",
            "See docs/secrets-threat-model.md.\n",
            "\n",
            "Hosts find the backend as `<prefix>.v1alpha1.<backend>`; the defaults (wasmcloud.secrets,\n",
            "nats-kv) are those of wasmCloud's reference backend, so existing policies keep working.\n",
            "Instances with the same backend share the queue group and split the requests. Every\n",
            "request is audited on stderr (tracing target anchorage::audit; never the value).\n",
            "\n",
            "With --admin-key (or --admin-keys-file) the server also answers administration on\n",
            "<prefix>.admin.<backend>.<op>, signed by one of those keys and sealed to the transit key;\n",
            "without, those subjects are not subscribed. Let hosts publish only on\n",
            "<prefix>.v1alpha1.<backend>.> and admins on <prefix>.admin.<backend>.>.\n",
            "SIGINT or SIGTERM stops taking requests and drains: requests in flight may finish and\n",
            "their replies are flushed, all within --drain-timeout (also when NATS is gone); what is\n",
            "still running then is abandoned. stderr says which. A second signal exits at once.\n",
            "\n",
            "On a NATS cluster give every server (--nats-url a,b,c or repeated): the client reconnects\n",
            "to any. jetstream buckets get 3 replicas when the cluster has 3 servers (--replicas). A\n",
            "get the store cannot answer within --store-timeout (no quorum, no stream leader) is an\n",
            "upstream error to the host, audited with the reason. See docs/secrets-cluster.md.\n",
            "\n",
        ),
        &[
            (Code::Ok, "stopped by SIGINT/SIGTERM, drain completed"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line (a missing seed, no --host-issuer/--entity-issuer without\n--allow-any-issuer, an issuer that is not a C…/A… key, a bad prefix or backend name)"),
            (Code::BadInput, "a seed, credentials or CA file is unreadable or not what it should be"),
            (Code::Unreachable, "NATS or OpenBao could not be reached"),
            (Code::Store, "the store cannot be used (in use by another process, damaged)"),
            (Code::AuthFailed, "NATS or OpenBao refused the credentials"),
            (Code::DrainCutShort, "stopped by SIGINT/SIGTERM, drain cut short (requests abandoned at --drain-timeout,\nreplies not flushed because NATS was unreachable, or a second signal)"),
        ],
        store_help!(),
    ))]
    Serve(Box<ServeArgs>),
    /// Store a new version of a secret (string, or bytes with --binary).
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage secrets put db-password --value-env DB_PASSWORD\n",
            "  anchorage secrets put db-password --value-env DB_PASSWORD --nats-url \\\n",
            "    nats://nats:4222 \\\n",
            "    --admin-seed-file admin.nk    # to the running server, over NATS\n",
            "  anchorage secrets put tls-key --binary --value-file key.der --output json\n",
            "  printf %s \"$TOKEN\" | anchorage secrets put api-token --value-stdin \\\n",
            "    --store jetstream\n",
            "\n",
            "The value comes from exactly one of --value-env, --value-file, --value-stdin or --value\n",
            "(visible to other users in the process list: avoid it outside tests). Files and stdin are\n",
            "taken byte for byte (a trailing newline is part of the value).\n",
            "\n",
        ),
        &[
            (Code::Ok, "stored (the version is printed)"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line, a missing seed"),
            (Code::BadInput, "the value is unreadable, not UTF-8 without --binary, or the name is invalid"),
            (Code::Unreachable, "NATS or OpenBao could not be reached, or no server answered (over NATS)"),
            (Code::Store, "the store cannot be used"),
            (Code::Conflict, "the store kept changing under the write; retry"),
            (Code::AuthFailed, "the store refused the credential, or\nthe server refused the admin identity (over NATS: unknown key, bad signature,\nexpired or replayed claims)"),
        ],
        store_help!(),
    ))]
    Put(PutArgs),
    /// Show a secret's version and kind; with --reveal, its value.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage secrets get db-password\n",
            "  anchorage secrets get db-password --reveal --version 2\n",
            "  anchorage secrets get tls-key --reveal --output json    # binary as base64\n",
            "\n",
            "Without --reveal the value is not printed. A binary value is written raw to stdout only\n",
            "when stdout is not a terminal.\n",
            "\n",
        ),
        &[
            (Code::Ok, "found"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line, a missing seed, a binary value for a terminal"),
            (Code::Unreachable, "NATS or OpenBao could not be reached, or no server answered (over NATS)"),
            (Code::Store, "the store cannot be used, or the value opens with no encryption key"),
            (Code::NotFound, "no such secret or version"),
            (Code::AuthFailed, "the store refused the credential, or\nthe server refused the admin identity (over NATS: unknown key, bad signature,\nexpired or replayed claims)"),
        ],
        store_help!(),
    ))]
    Get(GetArgs),
    /// Delete a secret with all its versions.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage secrets delete db-password\n",
            "\n",
        ),
        &[
            (Code::Ok, "deleted"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line, a missing seed"),
            (Code::Unreachable, "NATS or OpenBao could not be reached, or no server answered (over NATS)"),
            (Code::Store, "the store cannot be used"),
            (Code::NotFound, "no such secret"),
            (Code::Conflict, "the store kept changing under the write; retry"),
            (Code::AuthFailed, "the store refused the credential, or\nthe server refused the admin identity (over NATS: unknown key, bad signature,\nexpired or replayed claims)"),
        ],
        store_help!(),
    ))]
    Delete(DeleteArgs),
    /// List the secrets' names.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage secrets list --output json\n",
            "\n",
        ),
        &[
            (Code::Ok, "listed"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::Unreachable, "NATS or OpenBao could not be reached, or no server answered (over NATS)"),
            (Code::Store, "the store cannot be used"),
            (Code::AuthFailed, "the store refused the credential, or\nthe server refused the admin identity (over NATS: unknown key, bad signature,\nexpired or replayed claims)"),
        ],
        store_help!(),
    ))]
    List(ListArgs),
    /// Let a component (M…) or provider (V…) read secrets.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage secrets add-mapping MBC…XYZ --secret db-password --secret tls-key\n",
            "  anchorage secrets add-mapping MBC…XYZ --secret db-password --issuer ABC…XYZ\n",
            "  anchorage secrets add-mapping MBC…XYZ --secret db --mount team-b --store \\\n",
            "    openbao\n",
            "  anchorage secrets add-mapping MBC…XYZ --secret db-password \\\n",
            "    --admin-seed-file admin.nk\n",
            "\n",
            "--issuer binds the mapping to the account that signs the component: a token for the same\n",
            "M… key signed by another account is refused. Without --mount an openbao mapping covers the\n",
            "server's --openbao-mount only; --mount lets the entity's policy name that mount\n",
            "(properties.mount_path; the server must also serve it, --openbao-allow-mount). Bound\n",
            "grants are stored as name;issuer=A…;mount=… beside plain names.\n",
            "\n",
        ),
        &[
            (Code::Ok, "added (the entity's secrets are printed)"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::BadInput, "not a component or provider public key, --issuer not an account key, a bad --mount"),
            (Code::Unreachable, "NATS could not be reached, or no server answered (over NATS)"),
            (Code::Store, "the store cannot be used"),
            (Code::Conflict, "the store kept changing under the write; retry"),
            (Code::AuthFailed, "the server refused the admin identity (over NATS: unknown key, bad signature,\nexpired or replayed claims)"),
        ],
        store_help!(),
    ))]
    AddMapping(MappingArgs),
    /// Take secrets away from a component or provider.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage secrets remove-mapping MBC…XYZ --secret tls-key\n",
            "\n",
            "Without --issuer/--mount every grant of the secret is removed (plain or bound); with them,\n",
            "exactly that grant.\n",
            "\n",
        ),
        &[
            (Code::Ok, "removed (the entity's remaining secrets are printed)"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::BadInput, "not a component or provider public key"),
            (Code::Unreachable, "NATS could not be reached, or no server answered (over NATS)"),
            (Code::Store, "the store cannot be used"),
            (Code::Conflict, "the store kept changing under the write; retry"),
            (Code::AuthFailed, "the server refused the admin identity (over NATS: unknown key, bad signature,\nexpired or replayed claims)"),
        ],
        store_help!(),
    ))]
    RemoveMapping(MappingArgs),
    /// Show which secrets each entity may read.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage secrets list-mappings\n",
            "  anchorage secrets list-mappings MBC…XYZ --output json\n",
            "\n",
        ),
        &[
            (Code::Ok, "listed"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::Unreachable, "NATS could not be reached, or no server answered (over NATS)"),
            (Code::Store, "the store cannot be use"),
            (Code::AuthFailed, "the server refused the admin identity (over NATS: unknown key, bad signature,\nexpired or replayed claims)"),
        ],
        store_help!(),
    ))]
    ListMappings(ListMappingsArgs),
    /// Re-seal every stored value with a new encryption key (online, compare-and-swap).
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  ANCHORAGE_SECRETS_NEW_ENCRYPTION_SEED=SXB… anchorage secrets \\\n",
            "    rotate-encryption-key --store jetstream\n",
            "  # online, over NATS:\n",
            "  anchorage secrets rotate-encryption-key --admin-seed-file admin.nk\n",
            "\n",
            "Over NATS (--admin-seed-file) no seed is sent: the running server re-reads its own\n",
            "--encryption-seed-file; when it now holds a new seed, that key becomes current (the old one\n",
            "stays for reading) and every value is re-sealed while the server keeps serving. Write the\n",
            "new seed to that file first. A server whose seed comes from the environment keeps its key.\n",
            "\n",
            "The current key (ANCHORAGE_SECRETS_ENCRYPTION_SEED or --encryption-seed-file) opens the\n",
            "values; the new one (ANCHORAGE_SECRETS_NEW_ENCRYPTION_SEED or --new-seed-file) seals them.\n",
            "For a rotation without a failed request: restart the servers with the new key as\n",
            "ANCHORAGE_SECRETS_ENCRYPTION_SEED and the old one as\n",
            "ANCHORAGE_SECRETS_PREVIOUS_ENCRYPTION_SEED, rotate, then drop the old key. Values written\n",
            "meanwhile are kept (compare-and-swap). With jetstream each re-sealed secret gets a new\n",
            "revision (= version); older revisions still need the old key.\n",
            "\n",
        ),
        &[
            (Code::Ok, "rotated (counts are printed)"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line, a missing seed, the openbao store"),
            (Code::BadInput, "a seed is unreadable or not an xkey seed"),
            (Code::Unreachable, "NATS could not be reached, or no server answered"),
            (Code::Store, "the store cannot be used, or a value opens with neither key"),
            (Code::Conflict, "the store kept changing under the rotation; run it again"),
            (Code::AuthFailed, "the server refused the admin identity (over NATS: unknown key, bad signature,\nexpired or replayed claims)"),
        ],
        store_help!(),
    ))]
    RotateEncryptionKey(RotateArgs),
    /// Generate a seed: a transit or encryption xkey (SX…), or an admin user nkey (SU…).
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage secrets keygen --kind transit --out /etc/anchorage/transit.seed\n",
            "  anchorage secrets keygen --kind encryption --out \\\n",
            "    /etc/anchorage/encryption.seed\n",
            "  anchorage secrets keygen --kind admin --out ~/.config/anchorage/admin.seed \\\n",
            "    --output json\n",
            "\n",
            "The seed is written to --out only (0600, atomically; an existing file is kept unless\n",
            "--force); the public key is printed: X… for transit (what hosts cache from server_xkey)\n",
            "and encryption keys, U… for an admin key (give it to `serve --admin-key`).\n",
            "\n",
        ),
        &[
            (Code::Ok, "written (the public key is printed)"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::Output, "the seed file could not be written, or exists and --force was not given"),
        ],
        "",
    ))]
    Keygen(KeygenArgs),
}

impl MappingArgs {
    /// The mapping entries to add or remove: the plain names, or each name bound to
    /// `--issuer` and `--mount` (`name;issuer=A…;mount=…`, see [`anchorage_secrets::Grant`]).
    pub(crate) fn entries(&self) -> Result<Vec<String>, crate::exit::Failure> {
        use crate::exit::{Code, Failure};
        use anchorage_secrets::Grant;
        let bad = |flag: &str, e: anchorage_secrets::GrantError| {
            Failure::new(Code::BadInput, format!("{flag}: {e}"))
        };
        self.secrets
            .iter()
            .map(|name| {
                if name.contains(anchorage_secrets::GRANT_SEPARATOR) {
                    return Err(Failure::new(
                        Code::BadInput,
                        format!(
                            "--secret {name:?}: a secret name must not hold ';' (bind with --issuer and --mount)"
                        ),
                    ));
                }
                let mut grant = Grant::plain(name);
                if let Some(issuer) = &self.issuer {
                    grant = grant.with_issuer(issuer).map_err(|e| bad("--issuer", e))?;
                }
                if let Some(mount) = &self.mount {
                    grant = grant.with_mount(mount).map_err(|e| bad("--mount", e))?;
                }
                Ok(grant.to_string())
            })
            .collect()
    }
}

impl SecretsCommand {
    /// Whether `--output json` was asked for.
    pub(crate) fn json_output(&self) -> bool {
        let output = match self {
            SecretsCommand::Serve(_) => OutputFormat::Text,
            SecretsCommand::Put(a) => a.output,
            SecretsCommand::Get(a) => a.output,
            SecretsCommand::Delete(a) => a.output,
            SecretsCommand::List(a) => a.output,
            SecretsCommand::AddMapping(a) | SecretsCommand::RemoveMapping(a) => a.output,
            SecretsCommand::ListMappings(a) => a.output,
            SecretsCommand::RotateEncryptionKey(a) => a.output,
            SecretsCommand::Keygen(a) => a.output,
        };
        output == OutputFormat::Json
    }

    /// The over-NATS options (not for serve).
    pub(crate) fn remote(&self) -> Option<&RemoteArgs> {
        match self {
            SecretsCommand::Serve(_) | SecretsCommand::Keygen(_) => None,
            SecretsCommand::Put(a) => Some(&a.remote),
            SecretsCommand::Get(a) => Some(&a.remote),
            SecretsCommand::Delete(a) => Some(&a.remote),
            SecretsCommand::List(a) => Some(&a.remote),
            SecretsCommand::AddMapping(a) | SecretsCommand::RemoveMapping(a) => Some(&a.remote),
            SecretsCommand::ListMappings(a) => Some(&a.remote),
            SecretsCommand::RotateEncryptionKey(a) => Some(&a.remote),
        }
    }

    /// The store options (none for keygen).
    pub(crate) fn store(&self) -> Option<&StoreArgs> {
        Some(match self {
            SecretsCommand::Keygen(_) => return None,
            SecretsCommand::Serve(a) => &a.store,
            SecretsCommand::Put(a) => &a.store,
            SecretsCommand::Get(a) => &a.store,
            SecretsCommand::Delete(a) => &a.store,
            SecretsCommand::List(a) => &a.store,
            SecretsCommand::AddMapping(a) | SecretsCommand::RemoveMapping(a) => &a.store,
            SecretsCommand::ListMappings(a) => &a.store,
            SecretsCommand::RotateEncryptionKey(a) => &a.store,
        })
    }
}

/// Which store holds the secrets.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// A local redb file (default).
    #[default]
    Embedded,
    /// NATS JetStream KV, reference layout.
    Jetstream,
    /// Vault/OpenBao KV v2.
    Openbao,
    /// Kubernetes Secrets of one namespace, read-only.
    Kubernetes,
}

/// Where the store is and how to reach it.
#[derive(Args, Debug)]
pub(crate) struct StoreArgs {
    /// The store: embedded (default), jetstream, openbao or kubernetes.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) store: StoreKind,
    /// Directory of the embedded store file secrets.redb (default: $ANCHORAGE_DATA_DIR, else
    /// $XDG_DATA_HOME/anchorage, else ~/.local/share/anchorage).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) keys: KeyArgs,
    /// The backend name: subjects `<prefix>.v1alpha1.<backend>.*` and, for jetstream, the
    /// mappings bucket SECRETS_<backend>_state.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_BACKEND)]
    pub(crate) backend: String,
    /// jetstream: the secrets bucket.
    #[arg(long, value_name = "BUCKET", default_value = "WASMCLOUD_SECRETS")]
    pub(crate) bucket: String,
    /// embedded and jetstream (when creating the bucket): versions kept per secret (1–64).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub(crate) history: u32,
    /// jetstream (when creating buckets): replicas of every bucket created (secrets, mappings,
    /// admin token ids), 1–5 (default: 3 when the cluster advertises at least 3 servers, else
    /// 1). Existing buckets are used as they are; one with fewer replicas is reported with the
    /// `nats` command that fixes it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=5))]
    pub(crate) replicas: Option<u8>,
    /// jetstream: read through the stream leader instead of direct gets from any replica: never
    /// an older value from a replica that is catching up, but every read goes to one node and
    /// none is answered while the stream has no leader (see docs/secrets-cluster.md).
    #[arg(long)]
    pub(crate) consistent_reads: bool,
    /// jetstream: use replicated buckets even on a nats-server older than 2.9.21, whose
    /// clustered compare-and-swap is not serializable (nats-server#4320: concurrent writers
    /// can all succeed, losing acknowledged mapping changes). Without it such a store is
    /// refused; upgrade the servers or use --replicas 1 instead.
    #[arg(long)]
    pub(crate) allow_unserializable_cas: bool,
    #[command(flatten)]
    pub(crate) nats: NatsArgs,
    #[command(flatten)]
    pub(crate) openbao: Box<OpenBaoArgs>,
    #[command(flatten)]
    pub(crate) kubernetes: KubernetesArgs,
}

/// Kubernetes options (the kubernetes store).
#[derive(Args, Debug)]
pub(crate) struct KubernetesArgs {
    /// The namespace whose Secrets are served (default: the kubeconfig context's namespace, or
    /// the pod's own).
    #[arg(id = "k8s_namespace", long = "k8s-namespace", value_name = "NS")]
    pub(crate) namespace: Option<String>,
    /// A kubeconfig file (default: $KUBECONFIG or ~/.kube/config, else the pod's service
    /// account).
    #[arg(long = "kubeconfig", value_name = "FILE")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig (default: its current context).
    #[arg(id = "k8s_context", long = "k8s-context", value_name = "NAME")]
    pub(crate) context: Option<String>,
    /// The ConfigMap in that namespace holding the mappings (entity key -> Secret names, one
    /// per line).
    #[arg(long = "k8s-mappings-configmap", value_name = "NAME", default_value = anchorage_secrets_store_k8s::DEFAULT_MAPPINGS_CONFIGMAP)]
    pub(crate) mappings_configmap: String,
}

/// The encryption seeds values are sealed with (every store command, and `anchorage serve
/// --secrets`).
#[derive(Args, Debug)]
pub(crate) struct KeyArgs {
    /// File holding the encryption xkey seed (default: $ANCHORAGE_SECRETS_ENCRYPTION_SEED).
    #[arg(long, value_name = "FILE")]
    pub(crate) encryption_seed_file: Option<PathBuf>,
    /// File holding an older encryption seed still accepted for reading (default:
    /// $ANCHORAGE_SECRETS_PREVIOUS_ENCRYPTION_SEED).
    #[arg(long, value_name = "FILE")]
    pub(crate) previous_encryption_seed_file: Option<PathBuf>,
}

/// NATS connection options (serve, and the jetstream store).
#[derive(Args, Debug)]
pub(crate) struct NatsArgs {
    /// NATS server URL, repeatable or comma-separated: give every server of a cluster (default:
    /// $ANCHORAGE_NATS_URL, else nats://127.0.0.1:4222).
    /// TLS trusts the OS store, Mozilla's roots and every --tls-ca-path.
    #[arg(long = "nats-url", value_name = "URL")]
    pub(crate) urls: Vec<String>,
    /// A NATS .creds file (user JWT and nkey seed).
    #[arg(long = "nats-creds", value_name = "FILE")]
    pub(crate) creds: Option<PathBuf>,
    /// A file holding a NATS user nkey seed (SU…).
    #[arg(long = "nats-nkey-file", value_name = "FILE")]
    pub(crate) nkey_file: Option<PathBuf>,
    /// NATS user; the password comes from --nats-password-file or $ANCHORAGE_NATS_PASSWORD.
    #[arg(long = "nats-user", value_name = "USER")]
    pub(crate) user: Option<String>,
    /// File whose first line is the NATS password.
    #[arg(long = "nats-password-file", value_name = "FILE", requires = "user")]
    pub(crate) password_file: Option<PathBuf>,
    /// File whose first line is a NATS token (default: $ANCHORAGE_NATS_TOKEN).
    #[arg(id = "nats_token_file", long = "nats-token-file", value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Refuse to talk to NATS without TLS.
    #[arg(long = "nats-require-tls")]
    pub(crate) require_tls: bool,
}

/// OpenBao options (the openbao store).
#[derive(Args, Debug)]
pub(crate) struct OpenBaoArgs {
    /// OpenBao/Vault address (default: $ANCHORAGE_OPENBAO_ADDR, $BAO_ADDR, $VAULT_ADDR).
    #[arg(long = "openbao-addr", value_name = "URL")]
    pub(crate) addr: Option<String>,
    /// The KV v2 mount.
    #[arg(long = "openbao-mount", value_name = "PATH", default_value = "secret")]
    pub(crate) mount: String,
    /// Another mount an application's policy may name (properties.mount_path), repeatable.
    #[arg(long = "openbao-allow-mount", value_name = "PATH")]
    pub(crate) allow_mounts: Vec<String>,
    /// Namespace (X-Vault-Namespace).
    #[arg(long = "openbao-namespace", value_name = "NS")]
    pub(crate) namespace: Option<String>,
    /// File whose first line is the token (default: $ANCHORAGE_OPENBAO_TOKEN, $BAO_TOKEN,
    /// $VAULT_TOKEN).
    #[arg(
        id = "openbao_token_file",
        long = "openbao-token-file",
        value_name = "FILE"
    )]
    pub(crate) token_file: Option<PathBuf>,
    /// AppRole role ID (instead of a token); the secret ID comes from
    /// --openbao-secret-id-file or $ANCHORAGE_OPENBAO_SECRET_ID.
    #[arg(long = "openbao-role-id", value_name = "ID")]
    pub(crate) role_id: Option<String>,
    /// File whose first line is the AppRole secret ID.
    #[arg(
        long = "openbao-secret-id-file",
        value_name = "FILE",
        requires = "role_id"
    )]
    pub(crate) secret_id_file: Option<PathBuf>,
    /// The AppRole auth mount.
    #[arg(
        long = "openbao-approle-mount",
        value_name = "PATH",
        default_value = "approle"
    )]
    pub(crate) approle_mount: String,
}

/// `secrets serve`.
#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) protocol: ProtocolArgs,
    /// On SIGINT/SIGTERM, how long to wait in all for requests in flight and their replies
    /// before abandoning them, in seconds (fractions allowed).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_drain_timeout)]
    pub(crate) drain_timeout: std::time::Duration,
    /// How long one get may wait on the store (mapping and value) before the host is answered
    /// with an upstream error saying so, in seconds (fractions allowed, 0.1 to 60).
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_store_timeout)]
    pub(crate) store_timeout: std::time::Duration,
}

/// The secrets protocol's options: transit key, subjects, limits, who may ask and who may
/// administer (`secrets serve`, and `anchorage serve --secrets`).
#[derive(Args, Debug)]
pub(crate) struct ProtocolArgs {
    /// File holding the transit xkey seed (default: $ANCHORAGE_SECRETS_TRANSIT_SEED). Hosts
    /// cache its public key for their whole life: keep it stable.
    #[arg(long, value_name = "FILE")]
    pub(crate) transit_seed_file: Option<PathBuf>,
    /// Subject prefix.
    #[arg(long, value_name = "PREFIX", default_value = DEFAULT_PREFIX)]
    pub(crate) prefix: String,
    /// Queue group shared by the instances (default: wasmcloud_secrets.<backend>, as the
    /// reference backend).
    #[arg(long, value_name = "NAME")]
    pub(crate) queue_group: Option<String>,
    /// Requests handled at once.
    #[arg(long, value_name = "N", default_value_t = anchorage_secrets_server::DEFAULT_MAX_IN_FLIGHT)]
    pub(crate) max_in_flight: usize,
    /// Largest sealed request accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = anchorage_secrets::DEFAULT_MAX_REQUEST_BYTES)]
    pub(crate) max_request_bytes: usize,
    /// Account (A…) allowed to sign entity JWTs (components, providers), repeatable. Required
    /// unless --allow-any-issuer.
    #[arg(long, value_name = "KEY")]
    pub(crate) entity_issuer: Vec<String>,
    /// The lattice's cluster key (C…) allowed to sign host JWTs, repeatable. Required unless
    /// --allow-any-issuer.
    #[arg(long, value_name = "KEY")]
    pub(crate) host_issuer: Vec<String>,
    /// Accept entity and host JWTs signed by any key where no --entity-issuer/--host-issuer is
    /// given. Anyone who can publish on the get subject can then mint tokens for a mapped
    /// entity's key and read its secrets (unless its mapping is bound with add-mapping
    /// --issuer). For tests and closed networks only; logged as a warning.
    #[arg(long)]
    pub(crate) allow_any_issuer: bool,
    /// Admin public key (user U… or account A…) allowed to administer over NATS on
    /// <prefix>.admin.<backend>.*, repeatable. Without any, those subjects are not subscribed.
    #[arg(long, value_name = "KEY")]
    pub(crate) admin_key: Vec<String>,
    /// File of admin public keys, one per line (# comments allowed).
    #[arg(long, value_name = "FILE")]
    pub(crate) admin_keys_file: Option<PathBuf>,
}

/// `--store-timeout`: seconds, 0.1 to 60.
fn parse_store_timeout(text: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.1..=60.0).contains(&secs) {
        return Err(format!(
            "{secs} s is outside 0.1 to 60 s (the store timeout limit)"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// The longest `--drain-timeout` accepted: an hour (a stop that waits longer is a hang).
pub(crate) const MAX_DRAIN_TIMEOUT_SECS: f64 = 3600.0;

/// `--drain-timeout`: seconds, 0 to [`MAX_DRAIN_TIMEOUT_SECS`].
fn parse_drain_timeout(text: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.0..=MAX_DRAIN_TIMEOUT_SECS).contains(&secs) {
        return Err(format!(
            "{secs} s is outside 0 to {MAX_DRAIN_TIMEOUT_SECS} s (the drain timeout limit)"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Sending an admin command to the running server over NATS instead of opening the store.
#[derive(Args, Debug)]
pub(crate) struct RemoteArgs {
    /// File holding an admin nkey seed (SU… or SA…; default: $ANCHORAGE_SECRETS_ADMIN_SEED).
    /// Given, the command goes to the running server over NATS.
    #[arg(long, value_name = "FILE")]
    pub(crate) admin_seed_file: Option<PathBuf>,
    /// Over NATS: the server's subject prefix.
    #[arg(long, value_name = "PREFIX", default_value = DEFAULT_PREFIX)]
    pub(crate) prefix: String,
    /// Over NATS: seconds to wait for the server's answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub(crate) timeout: u64,
}

/// `secrets put`.
#[derive(Args, Debug)]
pub(crate) struct PutArgs {
    /// The secret's name.
    pub(crate) name: String,
    /// Read the value from this environment variable.
    #[arg(long, value_name = "VAR", group = "source")]
    pub(crate) value_env: Option<String>,
    /// Read the value from this file.
    #[arg(long, value_name = "FILE", group = "source")]
    pub(crate) value_file: Option<PathBuf>,
    /// Read the value from standard input.
    #[arg(long, group = "source")]
    pub(crate) value_stdin: bool,
    /// The value itself (visible in the process list: tests only).
    #[arg(long, value_name = "TEXT", group = "source")]
    pub(crate) value: Option<String>,
    /// Store the bytes as a binary secret (default: a UTF-8 string).
    #[arg(long)]
    pub(crate) binary: bool,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

/// `secrets get`.
#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    /// The secret's name.
    pub(crate) name: String,
    /// A version (default: the latest).
    #[arg(long, value_name = "VERSION")]
    pub(crate) version: Option<String>,
    /// openbao: one field of the secret's map.
    #[arg(long, value_name = "FIELD")]
    pub(crate) field: Option<String>,
    /// Print the value.
    #[arg(long)]
    pub(crate) reveal: bool,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

/// `secrets delete`.
#[derive(Args, Debug)]
pub(crate) struct DeleteArgs {
    /// The secret's name.
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

/// `secrets list`.
#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

/// `secrets add-mapping` / `remove-mapping`.
#[derive(Args, Debug)]
pub(crate) struct MappingArgs {
    /// The component (M…) or provider (V…) public key.
    pub(crate) entity: String,
    /// A secret name, repeatable.
    #[arg(long = "secret", value_name = "NAME", required = true)]
    pub(crate) secrets: Vec<String>,
    /// Bind the mapping to this account (A…): only an entity JWT it signed reads the secrets
    /// (remove-mapping: remove exactly the grants bound to it).
    #[arg(long, value_name = "ACCOUNT")]
    pub(crate) issuer: Option<String>,
    /// openbao: let the entity read the secrets from this mount when its policy names it
    /// (default: the server's --openbao-mount only).
    #[arg(id = "mapping_mount", long = "mount", value_name = "PATH")]
    pub(crate) mount: Option<String>,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

/// `secrets list-mappings`.
#[derive(Args, Debug)]
pub(crate) struct ListMappingsArgs {
    /// Only this entity.
    pub(crate) entity: Option<String>,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

/// `secrets rotate-encryption-key`.
#[derive(Args, Debug)]
pub(crate) struct RotateArgs {
    /// File holding the new encryption seed (default: $ANCHORAGE_SECRETS_NEW_ENCRYPTION_SEED).
    #[arg(long, value_name = "FILE")]
    pub(crate) new_seed_file: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

/// What `secrets keygen` makes.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// The transit xkey hosts seal requests to (`server_xkey`).
    Transit,
    /// The xkey values are sealed with at rest.
    Encryption,
    /// An admin user nkey for signed administration over NATS.
    Admin,
    /// A component (module) nkey, M…: the entity `add-mapping` grants secrets to, and the key
    /// `wash` signs a component with.
    Component,
    /// An account nkey, A…: an issuer (`add-mapping --issuer`, `serve --entity-issuer`).
    Account,
}

/// `anchorage secrets keygen`.
#[derive(Args, Debug)]
pub(crate) struct KeygenArgs {
    /// Which key.
    #[arg(long, value_enum)]
    pub(crate) kind: KeyKind,
    /// Where to write the seed (0600).
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
    /// Replace an existing seed file (the old key is gone: hosts and stored values need it).
    #[arg(long)]
    pub(crate) force: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

impl SecretsCommand {
    /// Every file this command line names to be read, by its option: each must exist and be
    /// readable before anything is opened or written (issue 13).
    pub(crate) fn input_paths(&self) -> Vec<(&'static str, &std::path::Path)> {
        let mut paths: Vec<(&'static str, Option<&PathBuf>)> = Vec::new();
        if let Some(store) = self.store() {
            paths.extend([
                (
                    "--encryption-seed-file",
                    store.keys.encryption_seed_file.as_ref(),
                ),
                (
                    "--previous-encryption-seed-file",
                    store.keys.previous_encryption_seed_file.as_ref(),
                ),
                ("--nats-creds", store.nats.creds.as_ref()),
                ("--nats-nkey-file", store.nats.nkey_file.as_ref()),
                ("--nats-password-file", store.nats.password_file.as_ref()),
                ("--nats-token-file", store.nats.token_file.as_ref()),
                ("--openbao-token-file", store.openbao.token_file.as_ref()),
                (
                    "--openbao-secret-id-file",
                    store.openbao.secret_id_file.as_ref(),
                ),
            ]);
        }
        if let Some(remote) = self.remote() {
            paths.push(("--admin-seed-file", remote.admin_seed_file.as_ref()));
        }
        match self {
            SecretsCommand::Serve(a) => paths.extend([
                ("--transit-seed-file", a.protocol.transit_seed_file.as_ref()),
                ("--admin-keys-file", a.protocol.admin_keys_file.as_ref()),
            ]),
            SecretsCommand::Put(a) => paths.push(("--value-file", a.value_file.as_ref())),
            SecretsCommand::RotateEncryptionKey(a) => {
                paths.push(("--new-seed-file", a.new_seed_file.as_ref()));
            }
            _ => {}
        }
        paths
            .into_iter()
            .filter_map(|(option, path)| path.map(|p| (option, p.as_path())))
            .collect()
    }
}

impl SecretsCommand {
    /// Refuses (exit 2) store options that the chosen store or mode would ignore: `--openbao-*`
    /// without `--store openbao`, `--nats-*` when nothing talks to NATS (the embedded or
    /// openbao store, not `serve`, not over NATS). (`--data-dir` is let through: scripts pass it
    /// with every store, as they set ANCHORAGE_DATA_DIR.)
    pub(crate) fn check_store_flags(&self) -> Result<(), crate::exit::Failure> {
        let usage = |m: String| crate::exit::Failure::new(crate::exit::Code::Usage, m);
        let Some(store) = self.store() else {
            return Ok(());
        };
        let bao = &store.openbao;
        let openbao_given = [
            ("--openbao-addr", bao.addr.is_some()),
            ("--openbao-allow-mount", !bao.allow_mounts.is_empty()),
            ("--openbao-namespace", bao.namespace.is_some()),
            ("--openbao-token-file", bao.token_file.is_some()),
            ("--openbao-role-id", bao.role_id.is_some()),
        ];
        if store.store != StoreKind::Openbao
            && let Some((option, _)) = openbao_given.iter().find(|(_, set)| *set)
        {
            return Err(usage(format!("{option} needs --store openbao")));
        }
        let k8s = &store.kubernetes;
        let k8s_given = [
            ("--k8s-namespace", k8s.namespace.is_some()),
            ("--kubeconfig", k8s.kubeconfig.is_some()),
            ("--k8s-context", k8s.context.is_some()),
            (
                "--k8s-mappings-configmap",
                k8s.mappings_configmap != anchorage_secrets_store_k8s::DEFAULT_MAPPINGS_CONFIGMAP,
            ),
        ];
        if store.store != StoreKind::Kubernetes
            && let Some((option, _)) = k8s_given.iter().find(|(_, set)| *set)
        {
            return Err(usage(format!("{option} needs --store kubernetes")));
        }
        let nats = &store.nats;
        let nats_given = [
            ("--nats-url", !nats.urls.is_empty()),
            ("--nats-creds", nats.creds.is_some()),
            ("--nats-nkey-file", nats.nkey_file.is_some()),
            ("--nats-user", nats.user.is_some()),
            ("--nats-token-file", nats.token_file.is_some()),
            ("--nats-require-tls", nats.require_tls),
        ];
        let over_nats = matches!(self, SecretsCommand::Serve(_))
            || store.store == StoreKind::Jetstream
            || self.remote().is_some_and(|r| r.admin_seed_file.is_some())
            || std::env::var_os(ADMIN_SEED_ENV).is_some();
        if !over_nats && let Some((option, _)) = nats_given.iter().find(|(_, set)| *set) {
            return Err(usage(format!(
                "{option} needs NATS: --store jetstream, `secrets serve`, or an admin seed (--admin-seed-file) to administer over NATS"
            )));
        }
        Ok(())
    }
}
