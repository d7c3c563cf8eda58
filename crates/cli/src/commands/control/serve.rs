//! `anchorage serve`: the control plane (`anchorage_serve::run`) on the data directory `ca`
//! uses, until SIGTERM/SIGINT, then drained. What it serves is printed once it listens: lines on
//! stderr, or with `--output json` one document on stdout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use anchorage_secrets_server::{NatsAuth, NatsConfig};
use anchorage_serve::nats::NatsApi;
use anchorage_serve::secrets::{SecretsAdmin, SecretsBackend, SecretsSlot, SecretsStores};
use anchorage_serve::{Role, ServeConfig, Serving, StoreChoice, TlsSource};
use anchorage_store_nats::{JetStreamStore, JetStreamStoreConfig};
use clap::{Args, ValueEnum};
use serde::Serialize;

use super::data_dir;
use crate::commands::secrets::{KeyArgs, ProtocolArgs};
use crate::exit::{Classify as _, Code, Failure, with_causes};
use crate::globals::{Globals, Run};
use crate::options::{OutputFormat, parse_duration, read_passphrase};

/// `anchorage serve`.
#[derive(Args, Debug)]
#[command(after_help = crate::exit::help(
    concat!(
        "Examples:\n",
        "  anchorage serve\n",
        "  anchorage serve --listen 0.0.0.0:8443 --tls-name ca.internal \\\n",
        "    --roles roles.json\n",
        "  anchorage serve --tls-cert server.pem --tls-key server.key --output json\n",
        "  # the API on NATS subjects anchorage.v1.<op> too:\n",
        "  anchorage serve --nats-url nats://127.0.0.1:4222\n",
        "  # several instances sharing one JetStream KV bucket:\n",
        "  anchorage serve --store jetstream \\\n",
        "    --nats-url nats://n1:4222,nats://n2:4222,nats://n3:4222\n",
        "\n",
        "A newcomer's first certificate (serve running in another terminal; D is the data dir):\n",
        "  D=~/.local/share/anchorage; S=https://127.0.0.1:8443\n",
        "  curl --cacert $D/ca.pem -H \"Authorization: Bearer $(cat $D/admin.token)\" \\\n",
        "    -X PUT $S/v1/roles/mesh -d '{\"allowed_domains\":[\"mesh.local\"],\"allow_subdomains\":true}'\n",
        "  curl --cacert $D/ca.pem -H \"Authorization: Bearer $(cat $D/admin.token)\" \\\n",
        "    $S/v1/issue -d '{\"common_name\":\"web.mesh.local\",\"role\":\"mesh\",\"ttl\":\"24h\"}'\n",
        "  BAO_ADDR=$S BAO_CACERT=$D/ca.pem BAO_TOKEN=$(cat $D/admin.token) \\\n",
        "    bao write pki/issue/mesh common_name=web.mesh.local ttl=24h\n",
        "  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj \\\n",
        "    /CN=web.mesh.local -keyout web.key -out web.csr\n",
        "  T=$(anchorage token create --role mesh --sub web.mesh.local --server $S)\n",
        "  curl --cacert $D/ca.pem -H \"Authorization: Bearer $T\" $S/v1/sign \\\n",
        "    -d \"$(jq -n --rawfile csr web.csr '{csr: $csr}')\"\n",
        "\n",
        "With no flags it opens (or creates) the CA in DIR/anchorage.redb, the store `anchorage ca`\n",
        "uses (DIR: --data-dir, else $ANCHORAGE_DATA_DIR, $XDG_DATA_HOME/anchorage,\n",
        "~/.local/share/anchorage), issues itself a certificate for localhost, 127.0.0.1 and ::1,\n",
        "writes DIR/ca.pem (what clients trust) and a bootstrap admin token DIR/admin.token (0600),\n",
        "and listens on 127.0.0.1:8443. The store is opened by one process at a time: a second\n",
        "serve (or an `anchorage ca` command) on the same DIR is refused while it runs (exit 11).\n",
        "SIGTERM or SIGINT stops accepting and drains in-flight requests (--drain-timeout), then\n",
        "exits 0. The API (and the Vault-compatible routes) is in docs/serve.md.\n",
        "\n",
        "Several instances: --store jetstream keeps the state (CA, token key, roles, serials,\n",
        "revocations, bundle, acks) in the JetStream KV bucket --bucket on --nats-url, shared by\n",
        "every serve started on it (each with its own --data-dir for ca.pem and admin.token). A\n",
        "replicated bucket needs nats-server 2.9.21 or later on every node (docs/serve.md).\n",
        "\n",
    ),
    &[
        (Code::Ok, "stopped by SIGTERM/SIGINT and drained"),
        (Code::Failure, "unexpected failure"),
        (Code::Usage, "invalid command line, or no data directory (no HOME)"),
        (Code::BadInput, "--tls-cert/--tls-key, --roles or the passphrase file cannot be read or used"),
        (Code::Output, "the data directory, ca.pem or admin.token cannot be written"),
        (Code::Unreachable, "--nats-url: NATS (or, with --store jetstream, the bucket's stream) could not be reached"),
        (Code::Passphrase, "the stored CA key is encrypted and the passphrase is missing or wrong"),
        (Code::Store, "the store cannot be used: in use by another serve or `anchorage ca`, or damaged"),
        (Code::AuthFailed, "--nats-url: NATS refused the credentials"),
        (Code::Unsupported, "--store jetstream: a replicated bucket on nats-server older than 2.9.21"),
        (Code::Listen, "the listen address is in use or not allowed (pick another with --listen)"),
    ],
    "With --output json, one document on stdout once listening: {\"schema\", \"url\", \"listen\",\n\"data_dir\", \"ca_file\", \"ca_subject\", \"ca_created\", \"admin_token_file\", \"admin_token_created\",\n\"store\", \"endpoints\"} (docs/cli.md); a failure prints {\"error\", \"exit_code\"} instead.",
))]
pub(crate) struct ServeArgs {
    /// Directory of the store, the CA (the one `anchorage ca` uses), ca.pem and admin.token
    /// (default: $ANCHORAGE_DATA_DIR, else $XDG_DATA_HOME/anchorage, else
    /// ~/.local/share/anchorage).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub(crate) listen: SocketAddr,
    /// The serving certificate chain (PEM, leaf first) instead of one issued by the CA.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The serving certificate's private key (PEM: PKCS#8, SEC 1 or PKCS#1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// An extra DNS name or IP address on the built-in serving certificate (besides
    /// localhost, 127.0.0.1 and ::1). Repeatable.
    #[arg(long, value_name = "NAME", conflicts_with = "tls_cert")]
    pub(crate) tls_name: Vec<String>,
    /// Roles created at start when absent (JSON: a list of roles with their "name", or an
    /// object from name to role; fields as `PUT /v1/roles/<name>`, docs/serve.md).
    #[arg(long, value_name = "FILE")]
    pub(crate) roles: Option<PathBuf>,
    /// File whose first line is the passphrase of the CA key (default:
    /// $ANCHORAGE_CA_PASSPHRASE), as for `anchorage ca`.
    #[arg(long, value_name = "FILE")]
    pub(crate) passphrase_file: Option<PathBuf>,
    /// Do not write the bootstrap admin token DIR/admin.token.
    #[arg(long)]
    pub(crate) no_admin_token: bool,
    /// How long in-flight requests may finish after SIGTERM/SIGINT.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub(crate) drain_timeout: Duration,
    /// A CRL's validity (it is re-signed at half of it).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub(crate) crl_validity: Duration,
    /// Largest request body accepted, in bytes (413 above).
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub(crate) max_body_bytes: usize,
    /// HTTPS connections open at once (each agent holds one); one past it is closed when
    /// accepted. Lowered at start to fit the open-file limit (`ulimit -n`) less 256.
    #[arg(long, value_name = "N", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) max_connections: u32,
    /// HTTPS connections open at once from one client address (an IPv6 one by its /64); one
    /// past it is closed when accepted. 0: no limit. Agents behind one NAT address each hold
    /// one: raise it for a larger fleet behind one address.
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub(crate) max_connections_per_address: u32,
    /// Also answer the API over NATS request/reply (`<prefix>.v1.<op>`, for wasmCloud
    /// lattices), on these servers (comma-separated or repeated). With --store jetstream, the
    /// store's servers too.
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    pub(crate) nats_url: Vec<String>,
    /// A NATS `.creds` file (user JWT and nkey seed) for --nats-url.
    #[arg(long, value_name = "FILE", requires = "nats_url")]
    pub(crate) nats_creds: Option<PathBuf>,
    /// A requester over NATS identified by its nkey instead of a token: `NKEY=ROLE` (requests
    /// signed by that user or account nkey run as a role token of ROLE) or `NKEY=admin`.
    /// Repeatable. Signed requests carry the key, a timestamp, a nonce and the signature in
    /// headers (docs/serve.md, "NATS identity").
    #[arg(long, value_name = "NKEY=ROLE", requires = "nats_url", value_parser = parse_identity)]
    pub(crate) nats_identity: Vec<(String, anchorage_serve::nats_auth::NatsIdentity)>,
    /// The NATS subject prefix: requests arrive on `<prefix>.v1.<op>`.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "anchorage",
        requires = "nats_url"
    )]
    pub(crate) nats_prefix: String,
    /// Where the state lives: embedded (the redb file in the data directory, one process at a
    /// time) or jetstream (the KV bucket --bucket on --nats-url, shared by several instances).
    #[arg(long, value_enum, default_value_t)]
    pub(crate) store: ServeStore,
    /// --store jetstream: the KV bucket (default: anchorage).
    #[arg(long, value_name = "BUCKET")]
    pub(crate) bucket: Option<String>,
    /// --store jetstream, when creating the bucket: its replicas, auto or 1–5 (auto: 3 when
    /// JetStream can place them, else 1). An existing bucket is used as it is.
    #[arg(long, value_name = "auto|N", value_parser = parse_replicas)]
    pub(crate) replicas: Option<Replicas>,
    /// --store jetstream: how long one store call may take before the request fails (503).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) store_timeout: Option<Duration>,
    /// Root rotation (`anchorage ca rotate`): advance automatically whenever a gate holds and
    /// the dwell passed (one instance drives, through a lease in the store).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) rotation_auto: bool,
    /// Root rotation: how often the driver renews its lease and looks at the gates.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub(crate) rotation_interval: Duration,
    /// Root rotation: the least time spent in a phase before a gate may let it go.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub(crate) rotation_min_dwell: Duration,
    /// Root rotation: the fraction of counted consumers a gate needs (0 < F ≤ 1).
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub(crate) rotation_fraction: f64,
    /// Root rotation: leave consumers silent for longer than this out of the gates (default:
    /// every consumer counts).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) rotation_stale_after: Option<Duration>,
    /// Root rotation: renewals allowed per consumer group and --rotation-window while Signing
    /// pulls renewals forward (above: 429 with Retry-After).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub(crate) rotation_rate: u32,
    /// Root rotation: the rate limit's window.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub(crate) rotation_window: Duration,
    /// Root rotation: the consumer label(s) that form the rate-limit group (repeatable;
    /// default: all labels).
    #[arg(long, value_name = "KEY")]
    pub(crate) rotation_group_label: Vec<String>,
    /// text: what is served, on stderr; json: one document on stdout once listening.
    #[arg(short, long, value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
    /// Also run the wasmCloud secrets backend (what `anchorage secrets serve` runs) in this
    /// process on --nats-url, its secrets in the same store: the redb file of the data
    /// directory, or with --store jetstream the reference layout's buckets. The options below
    /// are those of `secrets serve`.
    #[arg(long, requires = "nats_url", help_heading = SECRETS_HEADING)]
    pub(crate) secrets: bool,
    /// --secrets: the backend name (subjects `<prefix>.v1alpha1.<backend>.*`; with --store
    /// jetstream, the mappings bucket SECRETS_<backend>_state).
    #[arg(long, value_name = "NAME", default_value = anchorage_secrets_server::DEFAULT_BACKEND, requires = "secrets", help_heading = SECRETS_HEADING)]
    pub(crate) secrets_backend: String,
    /// --secrets --store jetstream: the secrets bucket.
    #[arg(long, value_name = "BUCKET", default_value = "WASMCLOUD_SECRETS", requires = "secrets", help_heading = SECRETS_HEADING)]
    pub(crate) secrets_bucket: String,
    #[command(flatten, next_help_heading = SECRETS_HEADING)]
    pub(crate) secrets_protocol: ProtocolArgs,
    #[command(flatten, next_help_heading = SECRETS_HEADING)]
    pub(crate) secrets_keys: KeyArgs,
}

/// The help heading of the `--secrets` options.
const SECRETS_HEADING: &str = "Secrets backend (--secrets)";

/// `serve --store`.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ServeStore {
    /// The redb file in the data directory.
    #[default]
    Embedded,
    /// A JetStream KV bucket, shared by several instances.
    Jetstream,
}

/// `serve --nats-identity NKEY=ROLE|admin`.
fn parse_identity(
    text: &str,
) -> Result<(String, anchorage_serve::nats_auth::NatsIdentity), String> {
    use anchorage_serve::nats_auth::NatsIdentity;
    let (key, role) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NKEY=ROLE (or NKEY=admin)"))?;
    let key = key.trim();
    let valid = (key.starts_with('U') || key.starts_with('A'))
        && nkeys::KeyPair::from_public_key(key).is_ok();
    if !valid {
        return Err(format!(
            "{key:?} is not a user (U…) or account (A…) public nkey"
        ));
    }
    let role = role.trim();
    if role == "admin" {
        return Ok((key.to_owned(), NatsIdentity::admin(key)));
    }
    anchorage_serve::roles::valid_name(role).map_err(|m| format!("role {role:?}: {m}"))?;
    Ok((key.to_owned(), NatsIdentity::role(role, key)))
}

/// `serve --replicas`: `auto` (`None`) or a count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Replicas(Option<usize>);

fn parse_replicas(text: &str) -> Result<Replicas, String> {
    if text == "auto" {
        return Ok(Replicas(None));
    }
    match text.parse::<usize>() {
        Ok(n) if (1..=anchorage_store_nats::MAX_REPLICAS).contains(&n) => Ok(Replicas(Some(n))),
        _ => Err(format!(
            "{text:?} is not auto nor a replica count from 1 to {}",
            anchorage_store_nats::MAX_REPLICAS
        )),
    }
}

/// How long `serve --store jetstream` keeps trying to open the bucket while JetStream has no
/// leader yet (a cluster starting with it).
const OPEN_PATIENCE: Duration = Duration::from_secs(30);

/// What `serve --output json` prints once listening (docs/cli.md).
#[derive(Serialize)]
struct ServingView<'a> {
    url: &'a str,
    listen: String,
    data_dir: &'a Path,
    ca_file: &'a Path,
    ca_subject: &'a str,
    ca_created: bool,
    admin_token_file: Option<&'a Path>,
    admin_token_created: bool,
    store: &'a str,
    endpoints: &'a [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    secrets: Option<SecretsView<'a>>,
}

/// `--secrets` in `serve --output json`.
#[derive(Serialize)]
struct SecretsView<'a> {
    subject: &'a str,
    server_xkey: &'a str,
    store: &'a str,
    admin_subject: Option<&'a str>,
}

impl Run for ServeArgs {
    fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }

    /// `--nats-url` connects out (trusting --tls-ca-path).
    fn connects_out(&self) -> bool {
        !self.nats_url.is_empty()
    }

    fn run(self, globals: &Globals) -> Result<Code, Failure> {
        // The CA keys are in memory for as long as it runs.
        crate::harden::harden()?;
        let dir = data_dir(self.data_dir.clone())?;
        let mut config = ServeConfig::new(&dir);
        config.listen = self.listen;
        config.tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                crate::io::check_inputs([
                    ("--tls-cert", cert.as_path()),
                    ("--tls-key", key.as_path()),
                ])?;
                TlsSource::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                }
            }
            _ => TlsSource::Builtin {
                names: self.tls_name.clone(),
            },
        };
        config.passphrase = read_passphrase(self.passphrase_file.as_deref())?.0;
        if let Some(path) = &self.roles {
            config.roles = read_roles(path)?;
        }
        config.bootstrap_admin_token = !self.no_admin_token;
        config.crl_validity = self.crl_validity;
        if !(self.rotation_fraction > 0.0 && self.rotation_fraction <= 1.0) {
            return Err(Failure::new(
                Code::Usage,
                format!(
                    "--rotation-fraction {} is not in (0, 1]",
                    self.rotation_fraction
                ),
            ));
        }
        config.rotation = anchorage_serve::rotation::RotationConfig {
            auto: self.rotation_auto,
            interval: self.rotation_interval.max(Duration::from_secs(1)),
            lease_ttl: self.rotation_interval.max(Duration::from_secs(1)) * 3,
            min_dwell: self.rotation_min_dwell,
            fraction: self.rotation_fraction,
            stale_after: self.rotation_stale_after,
            rate_limit: self.rotation_rate.max(1),
            rate_window: self.rotation_window.max(Duration::from_secs(1)),
            group_labels: self.rotation_group_label.clone(),
            ..anchorage_serve::rotation::RotationConfig::default()
        };
        config.limits.drain_timeout = self.drain_timeout;
        config.limits.max_body_bytes = self.max_body_bytes;
        config.limits.max_connections = usize::try_from(self.max_connections).unwrap_or(usize::MAX);
        config.limits.max_connections_per_address =
            usize::try_from(self.max_connections_per_address).unwrap_or(usize::MAX);

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::new(Code::Failure, format!("cannot start a runtime: {e}")))?;
        let json = self.json();
        let jetstream = self.store == ServeStore::Jetstream;
        if jetstream && self.nats_url.is_empty() {
            return Err(Failure::new(
                Code::Usage,
                "--store jetstream needs --nats-url URL (the NATS servers of the bucket)",
            ));
        }
        if !jetstream {
            for (given, flag) in [
                (self.bucket.is_some(), "--bucket"),
                (self.replicas.is_some(), "--replicas"),
                (self.store_timeout.is_some(), "--store-timeout"),
            ] {
                if given {
                    return Err(Failure::new(
                        Code::Usage,
                        format!("{flag} is for --store jetstream (the store is embedded)"),
                    ));
                }
            }
        }
        let mut store_config = JetStreamStoreConfig::new(
            self.bucket
                .as_deref()
                .unwrap_or(anchorage_store_nats::DEFAULT_BUCKET),
        );
        store_config.replicas = self.replicas.and_then(|r| r.0);
        if let Some(t) = self.store_timeout {
            store_config.timeout = t;
        }
        if jetstream {
            store_config
                .validate()
                .map_err(|e| Failure::new(Code::Usage, with_causes(&e)))?;
        }
        let nats = if self.nats_url.is_empty() {
            None
        } else {
            if let Some(creds) = &self.nats_creds {
                crate::io::check_input("--nats-creds", creds)?;
            }
            let mut nats = NatsConfig::new(self.nats_url.clone());
            nats.auth = self
                .nats_creds
                .clone()
                .map_or(NatsAuth::None, NatsAuth::CredsFile);
            nats.tls = Some(globals.outbound.client_config()?);
            nats.name = "anchorage-serve".to_owned();
            Some(nats)
        };
        let mut secrets = self.secrets_parts(jetstream)?;
        let identities = self.nats_identity.clone();
        let prefix = self.nats_prefix;
        let nats_prefix = nats.is_some().then(|| prefix.clone());
        let result = runtime.block_on(async {
            let mut store_desc = None;
            if let Some(nats) = nats {
                let urls = nats.servers.join(",");
                let client = anchorage_secrets_server::connect(nats).await.map_err(|e| {
                    Failure::new(e.code(), format!("--nats-url {urls}: {}", with_causes(&e)))
                })?;
                if jetstream {
                    let store = open_jetstream(client.clone(), &store_config).await?;
                    let report = store.report();
                    store_desc = Some(format!(
                        "jetstream bucket {} ({} replica(s), nats-server {})",
                        report.bucket, report.replicas, report.server_version
                    ));
                    config.store = StoreChoice::Shared(Arc::new(store));
                }
                if let Some(parts) = secrets.take() {
                    config.secrets = Some(SecretsSlot::new(parts.backend(client.clone())));
                }
                let mut api = NatsApi::new(client);
                api.prefix = prefix;
                api.identities = identities.into_iter().collect();
                config.nats = Some(api);
            }
            anchorage_serve::run(config, anchorage_serve::shutdown_signal(), |serving| {
                let mut serving = serving.clone();
                if let Some(desc) = store_desc.take() {
                    serving.store = desc;
                }
                print_serving(&serving, &dir, json, nats_prefix.as_deref());
            })
            .await
            .map_err(|e| serve_failure(&e, &dir))
        });
        result?;
        diagln!("anchorage: stopped (drained)");
        Ok(Code::Ok)
    }
}

/// `--secrets`: the backend but for its NATS client.
struct SecretsParts {
    protocol: crate::commands::secrets::Protocol,
    keyring: Arc<anchorage_secrets_server::Keyring>,
    stores: SecretsStores,
    encryption_source: Option<anchorage_secrets_server::SeedSource>,
}

impl SecretsParts {
    fn backend(self, client: anchorage_secrets_server::async_nats::Client) -> SecretsBackend {
        let crate::commands::secrets::Protocol {
            transit,
            jwt,
            admin_keys,
            config,
        } = self.protocol;
        let admin = (!admin_keys.is_empty()).then(|| SecretsAdmin {
            policy: anchorage_secrets::admin::AdminPolicy::new(admin_keys),
            encryption_source: self.encryption_source,
        });
        SecretsBackend {
            client,
            handler: anchorage_secrets::GetHandler::new(transit, jwt),
            config,
            keyring: self.keyring,
            stores: self.stores,
            admin,
        }
    }
}

impl ServeArgs {
    /// `--secrets`: the transit key, allow-lists and encryption keys read and checked before
    /// anything starts, with the same options and checks as `anchorage secrets serve`; the
    /// secrets options without `--secrets` are refused.
    fn secrets_parts(&self, jetstream: bool) -> Result<Option<SecretsParts>, Failure> {
        let p = &self.secrets_protocol;
        let k = &self.secrets_keys;
        if !self.secrets {
            for (given, flag) in [
                (p.transit_seed_file.is_some(), "--transit-seed-file"),
                (p.queue_group.is_some(), "--queue-group"),
                (!p.entity_issuer.is_empty(), "--entity-issuer"),
                (!p.host_issuer.is_empty(), "--host-issuer"),
                (p.allow_any_issuer, "--allow-any-issuer"),
                (!p.admin_key.is_empty(), "--admin-key"),
                (p.admin_keys_file.is_some(), "--admin-keys-file"),
                (k.encryption_seed_file.is_some(), "--encryption-seed-file"),
                (
                    k.previous_encryption_seed_file.is_some(),
                    "--previous-encryption-seed-file",
                ),
            ] {
                if given {
                    return Err(Failure::new(
                        Code::Usage,
                        format!("{flag} is for the secrets backend: add --secrets"),
                    ));
                }
            }
            return Ok(None);
        }
        let files: Vec<(&str, &Path)> = [
            ("--transit-seed-file", p.transit_seed_file.as_deref()),
            ("--admin-keys-file", p.admin_keys_file.as_deref()),
            ("--encryption-seed-file", k.encryption_seed_file.as_deref()),
            (
                "--previous-encryption-seed-file",
                k.previous_encryption_seed_file.as_deref(),
            ),
        ]
        .into_iter()
        .filter_map(|(flag, path)| path.map(|p| (flag, p)))
        .collect();
        crate::io::check_inputs(files)?;
        let mut protocol = crate::commands::secrets::protocol(p, &self.secrets_backend)?;
        protocol.config.drain_timeout = self.drain_timeout;
        crate::commands::secrets::warn_any_issuer(&protocol.jwt, &protocol.config);
        let keyring = Arc::new(crate::commands::secrets::keyring(k)?);
        let stores = if jetstream {
            let mut config = anchorage_secrets_server::JetStreamConfig::new(&self.secrets_backend);
            config.bucket.clone_from(&self.secrets_bucket);
            config.replicas = self.replicas.and_then(|r| r.0);
            SecretsStores::JetStream(config)
        } else {
            SecretsStores::Serve {
                history: anchorage_secrets_server::store::DEFAULT_HISTORY,
            }
        };
        let encryption_source = crate::commands::secrets::seed_source(
            k.encryption_seed_file.as_deref(),
            crate::commands::secrets::ENCRYPTION_ENV,
        );
        Ok(Some(SecretsParts {
            protocol,
            keyring,
            stores,
            encryption_source,
        }))
    }
}

/// Opens the bucket and reads from it, waiting (up to [`OPEN_PATIENCE`]) while JetStream or
/// the bucket's stream (a leader being elected) cannot answer yet.
async fn open_jetstream(
    client: anchorage_secrets_server::async_nats::Client,
    config: &JetStreamStoreConfig,
) -> Result<JetStreamStore, Failure> {
    let started = std::time::Instant::now();
    loop {
        match JetStreamStore::open(client.clone(), config).await {
            Ok(store) => {
                // A bucket just created answers once its stream has elected a leader.
                while let Err(e) = anchorage_store::Store::get(&store, "serve.bundle").await {
                    if !(crate::exit::store_retryable(&e) && started.elapsed() < OPEN_PATIENCE) {
                        return Err(Failure::new(
                            crate::exit::jetstream_code(&e),
                            format!("--store jetstream: {}", with_causes(&e)),
                        ));
                    }
                    tracing::warn!(error = %with_causes(&e), "the state bucket does not answer yet; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                let report = store.report();
                if report.under_replicated() {
                    warnln!(
                        "bucket {} has {} replica(s), fewer than the {} wanted: {}",
                        report.bucket,
                        report.replicas,
                        report.wanted,
                        report.fix_command()
                    );
                }
                return Ok(store);
            }
            Err(e) if crate::exit::store_retryable(&e) && started.elapsed() < OPEN_PATIENCE => {
                tracing::warn!(error = %with_causes(&e), "the state bucket cannot be opened yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(Failure::new(
                    crate::exit::jetstream_code(&e),
                    format!("--store jetstream: {}", with_causes(&e)),
                ));
            }
        }
    }
}

/// Roles from a JSON file: a list of roles, or an object from name to role.
fn read_roles(path: &Path) -> Result<Vec<Role>, Failure> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Roles {
        List(Vec<Role>),
        Map(std::collections::BTreeMap<String, Role>),
    }
    crate::io::check_input("--roles", path)?;
    let bad = |what: String| {
        Failure::new(
            Code::BadInput,
            format!("--roles {}: {what}", path.display()),
        )
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot be read ({e})")))?;
    let roles = match serde_json::from_str::<Roles>(&text) {
        Ok(Roles::List(list)) => list,
        Ok(Roles::Map(map)) => map
            .into_iter()
            .map(|(name, mut role)| {
                role.name = name;
                role
            })
            .collect(),
        Err(_) => {
            // Say what is wrong with the list form, the one documented first.
            let detail = serde_json::from_str::<Vec<Role>>(&text)
                .err()
                .map_or_else(String::new, |e| e.to_string());
            return Err(bad(format!(
                "not a JSON list of roles nor an object of roles: {detail}"
            )));
        }
    };
    Ok(roles)
}

/// Prints what is served, once listening.
fn print_serving(serving: &Serving, dir: &Path, json: bool, nats_prefix: Option<&str>) {
    if json {
        crate::render::print_json(&ServingView {
            url: &serving.url,
            listen: serving.addr.to_string(),
            data_dir: dir,
            ca_file: &serving.ca_file,
            ca_subject: &serving.ca_subject,
            ca_created: serving.ca_created,
            admin_token_file: serving.admin_token_file.as_deref(),
            admin_token_created: serving.admin_token_created,
            store: &serving.store,
            endpoints: &serving.endpoints,
            secrets: serving.secrets.as_ref().map(|s| SecretsView {
                subject: &s.subject,
                server_xkey: &s.server_xkey,
                store: &s.store,
                admin_subject: s.admin_subject.as_deref(),
            }),
        });
        return;
    }
    diagln!("anchorage serve: listening on {}", serving.url);
    diagln!(
        "  CA:          {} ({}{})",
        serving.ca_file.display(),
        serving.ca_subject,
        if serving.ca_created {
            ", created now"
        } else {
            ""
        }
    );
    if let Some(token) = &serving.admin_token_file {
        diagln!(
            "  admin token: {} (mode 0600{})",
            token.display(),
            if serving.admin_token_created {
                ", new"
            } else {
                ""
            }
        );
    }
    diagln!("  store:       {}", serving.store);
    if let Some(prefix) = nats_prefix {
        diagln!("  NATS:        {prefix}.v1.<op>");
    }
    if let Some(s) = &serving.secrets {
        diagln!(
            "  secrets:     {}.> (server xkey {}, {}{})",
            s.subject,
            s.server_xkey,
            s.store,
            s.admin_subject
                .as_deref()
                .map_or_else(String::new, |a| format!(", administration on {a}"))
        );
    }
    diagln!("  endpoints:   {}", serving.endpoints.join(" "));
    diagln!(
        "  try:         curl --cacert {} {}/readyz",
        serving.ca_file.display(),
        serving.url
    );
}

/// Why serve did not start, with what to do.
fn serve_failure(e: &anchorage_serve::ServeError, dir: &Path) -> Failure {
    use anchorage_serve::ServeError as E;
    let mut message = with_causes(e);
    match e {
        E::Store(_) if message.contains("already open") || message.contains("lock") => {
            message.push_str(&format!(
                "; another process (a running `anchorage serve`, or an `anchorage ca` command) is using the data directory {}: stop it, or give this one another --data-dir",
                dir.display()
            ));
        }
        E::Ca(anchorage_ca::CaError::PassphraseRequired) => {
            message.push_str(&format!(
                "; give the passphrase with --passphrase-file FILE or {}",
                crate::options::PASSPHRASE_ENV
            ));
        }
        _ => {}
    }
    Failure::new(e.code(), message)
}
