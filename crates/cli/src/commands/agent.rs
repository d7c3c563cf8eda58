//! `anchorage agent`: thin wiring over `anchorage-agent` (docs/agent.md). It keeps the trust
//! bundle (and optionally an identity) that a running `anchorage serve` hands out current on
//! disk, runs the on-change actions, acknowledges, and writes a status file; `--once` does one
//! pass and exits (an init container); without it, it runs until SIGTERM/SIGINT (a sidecar or a
//! host service), with `/healthz` when `--healthz-listen` is given. `anchorage agent status`
//! reads the status file. Every decision is the library's; this module resolves options,
//! prints, and takes exit codes from [`crate::exit`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anchorage_agent::{
    Action, Agent, AgentConfig, AgentError, IdentityConfig, Outcome, Status, read_status,
};
use anchorage_ca::{CertKind, KeyType};
use anchorage_trust::{DirLayout, OpensslDirOptions, Pkcs12Options, Source};
use clap::{Args, Subcommand};
use secrecy::SecretString;
use serde::Serialize;

use crate::exit::{Classify as _, Code, Failure, with_causes};
use crate::globals::{Globals, Run};
use crate::options::{OutputFormat, parse_duration};

/// The status file when `--status-file` is not given.
const DEFAULT_STATUS_FILE: &str = "anchorage-agent-status.json";

/// `anchorage agent`.
#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage agent --server https://anchorage.internal:8443 --server-ca ca.pem \\\n",
            "    --token-file agent.token --consumer web-1 --label app=web \\\n",
            "    --pem /etc/ssl/certs/ca-certificates.crt --openssl-dir /etc/ssl/certs \\\n",
            "    --on-change-pidfile /run/nginx.pid --status-file /run/anchorage/status.json\n",
            "  # an init container:\n",
            "  anchorage agent --once --server $S --server-ca ca.pem --token-file t \\\n",
            "    --consumer init --pem /out/ca.pem --status-file /out/status.json\n",
            "  anchorage agent status --status-file /run/anchorage/status.json --output json\n",
            "\n",
            "It fetches the bundle (GET /v1/bundle, long-poll with the ETag), refuses a bundle that\n",
            "parses to nothing, holds no CA, or drops the root its own certificate chains to (unless\n",
            "serve marks a deliberate rotation), writes every output atomically with `bundle build`'s\n",
            "writers, runs the --on-change-* actions (a failure means not installed), then acks\n",
            "(POST /v1/acks) and repeats the ack every --heartbeat. SIGTERM/SIGINT stops it (exit 0);\n",
            "the files stay. docs/agent.md is the guide.\n",
            "\n",
        ),
        &[
            (Code::Ok, "--once: everything written and acknowledged (or already current); else stopped by a signal"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::BadInput, "a named file (--server-ca, --token-file, a source) is missing or unusable"),
            (Code::Output, "an output could not be written (the previous files are kept)"),
            (Code::Unreachable, "--once: serve could not be reached"),
            (Code::Refused, "--once: the bundle was refused (the files are kept), or serve refused a request"),
            (Code::Listen, "--healthz-listen cannot be bound"),
        ],
        "With --output json, --once prints one document {\"schema\", \"summary\", \"bundle_version\",\n\"outputs\", \"identity_changed\", \"refused\", \"acked\"}; a failure prints {\"error\", \"exit_code\"}.",
    )
)]
pub(crate) struct AgentArgs {
    #[command(subcommand)]
    pub(crate) command: Option<AgentCommand>,
    /// serve's URL, e.g. https://anchorage-serve.anchorage.svc:8443.
    #[arg(long, value_name = "URL")]
    pub(crate) server: Option<String>,
    /// The CA file serve's certificate is checked against (serve's ca.pem).
    #[arg(long, value_name = "FILE")]
    pub(crate) server_ca: Option<PathBuf>,
    /// Reach serve over NATS instead of HTTPS (a wasmCloud lattice): these servers
    /// (comma-separated or repeated), serve's subjects `<prefix>.v1.<op>`. The bundle is
    /// fetched when serve announces a change on `<prefix>.v1.bundle.changed` (or after
    /// --wait); sign and acks use --token-file (no mTLS over NATS). --server and --server-ca
    /// are then not needed.
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    pub(crate) nats_url: Vec<String>,
    /// A NATS `.creds` file (user JWT and nkey seed) for --nats-url.
    #[arg(long, value_name = "FILE", requires = "nats_url")]
    pub(crate) nats_creds: Option<PathBuf>,
    /// A file holding the agent's nkey seed (SU… or SA…): every NATS request is signed with
    /// it and serve maps the key to a role (`serve --nats-identity`), so sign and acks need no
    /// --token-file.
    #[arg(long, value_name = "FILE", requires = "nats_url")]
    pub(crate) nats_nkey_file: Option<PathBuf>,
    /// serve's NATS subject prefix.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "anchorage",
        requires = "nats_url"
    )]
    pub(crate) nats_prefix: String,
    /// A token file (for /v1/sign, and for acks while there is no identity certificate).
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// The consumer name reported in acks (pod, host or instance) [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub(crate) consumer: Option<String>,
    /// A label KEY=VALUE reported in acks. Repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label)]
    pub(crate) label: Vec<(String, String)>,
    /// Write the bundle as one PEM file.
    #[arg(long, value_name = "FILE")]
    pub(crate) pem: Option<PathBuf>,
    /// Write an OpenSSL hashed directory (for -CApath, SSL_CERT_DIR).
    #[arg(long, value_name = "DIR")]
    pub(crate) openssl_dir: Option<PathBuf>,
    /// Hashed directory layout: files (<hash>.N regular files) or links (<sha256>.pem plus
    /// <hash>.N symbolic links, like Debian's /etc/ssl/certs).
    #[arg(long, value_enum, default_value = "files", value_name = "LAYOUT")]
    pub(crate) openssl_dir_layout: LayoutArg,
    /// Also write the whole bundle as this file name inside --openssl-dir (e.g.
    /// ca-certificates.crt, to mount the directory over /etc/ssl/certs).
    #[arg(long, value_name = "NAME", requires = "openssl_dir")]
    pub(crate) openssl_dir_bundle: Option<String>,
    /// Write the bundle without Mozilla's roots (for NODE_EXTRA_CA_CERTS).
    #[arg(long, value_name = "FILE")]
    pub(crate) extra_pem: Option<PathBuf>,
    /// Write a password-less PKCS#12 trust store.
    #[arg(long, value_name = "FILE")]
    pub(crate) pkcs12: Option<PathBuf>,
    /// Write a JKS trust store (needs --jks-password-file).
    #[arg(long, value_name = "FILE", requires = "jks_password_file")]
    pub(crate) jks: Option<PathBuf>,
    /// File whose first line is the JKS store password.
    #[arg(long, value_name = "FILE", requires = "jks")]
    pub(crate) jks_password_file: Option<PathBuf>,
    /// Write serve's CRL (PEM).
    #[arg(long, value_name = "FILE")]
    pub(crate) crl: Option<PathBuf>,
    /// Write one <name>_<sha256>.crt per CA into DIR, for wasmCloud's --tls-ca-path.
    #[arg(long, value_name = "DIR")]
    pub(crate) wasmcloud_dir: Option<PathBuf>,
    /// Merge a local file or directory into the served bundle, as `bundle build` does.
    /// Repeatable.
    #[arg(long, value_name = "PATH")]
    pub(crate) source: Vec<PathBuf>,
    /// Merge the operating system's trust store.
    #[arg(long)]
    pub(crate) system: bool,
    /// Merge Mozilla's root program (compiled in).
    #[arg(long)]
    pub(crate) mozilla: bool,
    /// Keep an identity certificate with this CommonName (its key is made here and never
    /// sent; the role is the token's).
    #[arg(long, value_name = "NAME", requires = "identity_dir")]
    pub(crate) identity: Option<String>,
    /// Where the identity goes: cert.pem, key.pem (0600), chain.pem, ca.pem.
    #[arg(long, value_name = "DIR", requires = "identity")]
    pub(crate) identity_dir: Option<PathBuf>,
    /// An extra SAN on the identity (dns:, ip:, uri: or by shape). Repeatable.
    #[arg(long, value_name = "SAN", requires = "identity")]
    pub(crate) identity_san: Vec<String>,
    /// The certificate kind asked for (service, client, server, ...).
    #[arg(
        long,
        value_name = "KIND",
        default_value = "service",
        requires = "identity"
    )]
    pub(crate) identity_kind: String,
    /// The key type made locally (p256, p384, ed25519, rsa2048, ...).
    #[arg(
        long,
        value_name = "TYPE",
        default_value = "p256",
        requires = "identity"
    )]
    pub(crate) identity_key_type: String,
    /// The certificate lifetime asked for [default: the role's].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "identity")]
    pub(crate) identity_ttl: Option<Duration>,
    /// The serve role the identity is issued under [default: the token's]; a token bound to
    /// another role is refused by serve (`token_role_mismatch`).
    #[arg(long, value_name = "ROLE", requires = "identity")]
    pub(crate) role: Option<String>,
    /// Also write the identity as a PKCS#12 key store (key and chain, mode 0600; for Java),
    /// protected by the password in --identity-pkcs12-password-file.
    #[arg(long, value_name = "FILE", requires_all = ["identity", "identity_pkcs12_password_file"])]
    pub(crate) identity_pkcs12: Option<PathBuf>,
    /// File whose first line is the identity key store's password.
    #[arg(long, value_name = "FILE", requires = "identity_pkcs12")]
    pub(crate) identity_pkcs12_password_file: Option<PathBuf>,
    /// After a change: SIGHUP this process ID. Repeatable.
    #[arg(long, value_name = "PID")]
    pub(crate) on_change_signal_pid: Vec<i32>,
    /// After a change: SIGHUP the process whose ID this file holds. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub(crate) on_change_pidfile: Vec<PathBuf>,
    /// After a change: run this command (split on whitespace, no shell; wrap in `sh -c` for
    /// one). Repeatable.
    #[arg(long, value_name = "COMMAND")]
    pub(crate) on_change_command: Vec<String>,
    /// How long an --on-change-command may run before it is killed (a failure).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub(crate) on_change_timeout: Duration,
    /// After a change: touch this file. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub(crate) on_change_touch: Vec<PathBuf>,
    /// The local status file (JSON), read by `anchorage agent status` and /healthz.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_STATUS_FILE)]
    pub(crate) status_file: PathBuf,
    /// Serve /healthz on this address (200 once a bundle is installed, 503 before).
    #[arg(long, value_name = "ADDR", conflicts_with = "once")]
    pub(crate) healthz_listen: Option<SocketAddr>,
    /// One pass: write everything, ack, exit (0 when written or already current).
    #[arg(long)]
    pub(crate) once: bool,
    /// The long-poll wait asked of serve (serve caps it).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub(crate) wait: Duration,
    /// How often the ack is repeated while nothing changes.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub(crate) heartbeat: Duration,
    /// text: a line on stderr; json: --once prints one document on stdout.
    #[arg(short, long, value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

/// The hashed directory's layout.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(crate) enum LayoutArg {
    /// `<hash>.N` regular files.
    Files,
    /// `<sha256>.pem` files and `<hash>.N` symbolic links.
    Links,
}

/// `anchorage agent …`.
#[derive(Subcommand, Debug)]
pub(crate) enum AgentCommand {
    /// What the agent installed, when, and its last error (from its status file).
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage agent status --status-file /run/anchorage/status.json\n",
            "  anchorage agent status --status-file /out/status.json -o json \\\n",
            "    | jq .bundle_version\n",
            "\n",
        ),
        &[
            (Code::Ok, "a bundle is installed, serve was reached lately and the last bundle was accepted"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::BadInput, "the status file is missing or unreadable"),
            (Code::Unreachable, "stale: serve has not been reached lately (the files stay usable)"),
            (Code::Refused, "the last bundle served was refused (the previous files are kept)"),
            (Code::NotFound, "no bundle installed yet"),
        ],
        "With --output json, the status file's document with \"schema\" (docs/cli.md).",
    ))]
    Status(StatusArgs),
}

/// `anchorage agent status`.
#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// The agent's status file.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_STATUS_FILE)]
    pub(crate) status_file: PathBuf,
    /// text: a table; json: the status document.
    #[arg(short, long, value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

impl Run for AgentArgs {
    fn json(&self) -> bool {
        match &self.command {
            Some(AgentCommand::Status(a)) => a.output == OutputFormat::Json,
            None => self.output == OutputFormat::Json,
        }
    }

    /// `--nats-url` connects out (trusting --tls-ca-path).
    fn connects_out(&self) -> bool {
        !self.nats_url.is_empty()
    }

    fn run(mut self, globals: &Globals) -> Result<Code, Failure> {
        if let Some(AgentCommand::Status(a)) = self.command.take() {
            return status(&a);
        }
        let json = self.json();
        let once = self.once;
        let healthz = self.healthz_listen;
        let status_file = self.status_file.clone();
        let needs_identity = self.identity.is_some();
        let mut config = self.config()?;
        let nats = if self.nats_url.is_empty() {
            None
        } else {
            if let Some(creds) = &self.nats_creds {
                crate::io::check_input("--nats-creds", creds)?;
            }
            let mut nats = anchorage_secrets_server::NatsConfig::new(self.nats_url.clone());
            nats.auth = self.nats_creds.clone().map_or(
                anchorage_secrets_server::NatsAuth::None,
                anchorage_secrets_server::NatsAuth::CredsFile,
            );
            nats.tls = Some(globals.outbound.client_config()?);
            nats.name = "anchorage-agent".to_owned();
            Some(nats)
        };
        let prefix = self.nats_prefix.clone();
        let nkey = self.nats_nkey_file.as_deref().map(read_nkey).transpose()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Failure::new(Code::Failure, format!("cannot start a runtime: {e}")))?;
        runtime.block_on(async move {
            if let Some(nats) = nats {
                let urls = nats.servers.join(",");
                let client = anchorage_secrets_server::connect(nats).await.map_err(|e| {
                    Failure::new(e.code(), format!("--nats-url {urls}: {}", with_causes(&e)))
                })?;
                config.nats = Some(anchorage_agent::NatsSettings {
                    client,
                    prefix,
                    nkey,
                });
            }
            let mut agent = Agent::new(config).map_err(|e| agent_failure(&e))?;
            if once {
                let outcome = agent.once().await.map_err(|e| agent_failure(&e))?;
                print_outcome(&outcome, json);
                return Ok(if outcome.refused.is_some() {
                    Code::Refused
                } else {
                    Code::Ok
                });
            }
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            if let Some(addr) = healthz {
                let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                    Failure::new(
                        Code::Listen,
                        format!("--healthz-listen {addr}: {e}; pick another address"),
                    )
                })?;
                diagln!(
                    "anchorage agent: /healthz on http://{}",
                    listener.local_addr().map_or(addr, |a| a)
                );
                let mut rx = stop_rx.clone();
                tokio::spawn(anchorage_agent::serve_health(
                    listener,
                    status_file,
                    needs_identity,
                    async move {
                        let _ = rx.wait_for(|s| *s).await;
                    },
                ));
            }
            // Handlers installed before the line a supervisor may react to.
            let shutdown = anchorage_serve::shutdown_signal();
            diagln!("anchorage agent: running (SIGTERM/SIGINT stops it)");
            agent.run(shutdown).await.map_err(|e| agent_failure(&e))?;
            let _ = stop_tx.send(true);
            diagln!("anchorage agent: stopped");
            Ok(Code::Ok)
        })
    }
}

/// `--nats-nkey-file`: a user or account seed (first line), never echoed.
fn read_nkey(path: &std::path::Path) -> Result<std::sync::Arc<nkeys::KeyPair>, Failure> {
    crate::io::check_input("--nats-nkey-file", path)?;
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            Code::BadInput,
            format!("--nats-nkey-file {}: cannot be read ({e})", path.display()),
        )
    })?);
    let seed = text.lines().next().unwrap_or_default().trim();
    let key = nkeys::KeyPair::from_seed(seed)
        .ok()
        .filter(|k| matches!(k.public_key().chars().next(), Some('U' | 'A')))
        .ok_or_else(|| {
            Failure::new(
                Code::BadInput,
                format!(
                    "--nats-nkey-file {}: not a user (SU…) or account (SA…) nkey seed",
                    path.display()
                ),
            )
        })?;
    Ok(std::sync::Arc::new(key))
}

impl AgentArgs {
    /// The library's configuration from the command line (exit 2/3 on what is wrong).
    fn config(&self) -> Result<AgentConfig, Failure> {
        let nats = !self.nats_url.is_empty();
        if nats && (self.server.is_some() || self.server_ca.is_some()) {
            return Err(Failure::new(
                Code::Usage,
                "--nats-url reaches serve over NATS: give it, or --server and --server-ca, not both",
            ));
        }
        let server = match (&self.server, nats) {
            (Some(s), _) => s.clone(),
            (None, true) => format!("nats:{}", self.nats_url.join(",")),
            (None, false) => {
                return Err(Failure::new(
                    Code::Usage,
                    "give --server URL (serve's address), or --nats-url URL",
                ));
            }
        };
        let server_ca = match (&self.server_ca, nats) {
            (Some(ca), _) => {
                crate::io::check_input("--server-ca", ca)?;
                ca.clone()
            }
            (None, true) => PathBuf::new(),
            (None, false) => {
                return Err(Failure::new(
                    Code::Usage,
                    "give --server-ca FILE (serve's ca.pem)",
                ));
            }
        };
        if let Some(t) = &self.token_file {
            crate::io::check_input("--token-file", t)?;
        }
        let consumer = self.consumer.clone().unwrap_or_else(host_name);
        let mut config = AgentConfig::new(server, server_ca, consumer, self.status_file.clone());
        config.token_file.clone_from(&self.token_file);
        config.labels = self.label.iter().cloned().collect::<BTreeMap<_, _>>();
        let t = &mut config.trust;
        t.pem.clone_from(&self.pem);
        t.openssl_dir.clone_from(&self.openssl_dir);
        t.openssl_dir_options = OpensslDirOptions {
            layout: match self.openssl_dir_layout {
                LayoutArg::Links => DirLayout::Links,
                LayoutArg::Files => DirLayout::Files,
            },
            bundle_file: self.openssl_dir_bundle.clone(),
        };
        t.extra_pem.clone_from(&self.extra_pem);
        t.pkcs12 = self
            .pkcs12
            .clone()
            .map(|p| (p, Pkcs12Options::unprotected()));
        if let (Some(jks), Some(pw)) = (&self.jks, &self.jks_password_file) {
            t.jks = Some((jks.clone(), first_line("--jks-password-file", pw)?));
        }
        t.crl.clone_from(&self.crl);
        t.wasmcloud_dir.clone_from(&self.wasmcloud_dir);
        for path in &self.source {
            crate::io::check_input("--source", path)?;
            config.local_sources.push(Source::Path(path.clone()));
        }
        if self.system {
            config.local_sources.push(Source::System);
        }
        if self.mozilla {
            config.local_sources.push(Source::Mozilla);
        }
        if let (Some(name), Some(dir)) = (&self.identity, &self.identity_dir) {
            let mut id = IdentityConfig::in_dir(name.clone(), dir.clone());
            id.sans.clone_from(&self.identity_san);
            id.kind = self
                .identity_kind
                .parse::<CertKind>()
                .map_err(|e| Failure::new(Code::Usage, format!("--identity-kind: {e}")))?;
            id.key_type = self
                .identity_key_type
                .parse::<KeyType>()
                .map_err(|e| Failure::new(Code::Usage, format!("--identity-key-type: {e}")))?;
            id.ttl = self.identity_ttl;
            id.role.clone_from(&self.role);
            if let (Some(p12), Some(pw)) =
                (&self.identity_pkcs12, &self.identity_pkcs12_password_file)
            {
                id.pkcs12 = Some((
                    p12.clone(),
                    first_line("--identity-pkcs12-password-file", pw)?,
                ));
            }
            config.identity = Some(id);
        }
        let on_change = &mut config.on_change;
        on_change.extend(
            self.on_change_signal_pid
                .iter()
                .map(|p| Action::SignalPid(*p)),
        );
        on_change.extend(
            self.on_change_pidfile
                .iter()
                .cloned()
                .map(Action::SignalPidfile),
        );
        for command in &self.on_change_command {
            let mut words = command.split_whitespace().map(str::to_owned);
            let program = words.next().ok_or_else(|| {
                Failure::new(Code::Usage, "--on-change-command: the command is empty")
            })?;
            on_change.push(Action::Command {
                program,
                args: words.collect(),
                timeout: self.on_change_timeout,
            });
        }
        on_change.extend(self.on_change_touch.iter().cloned().map(Action::Touch));
        config.timing.wait = self.wait;
        config.timing.heartbeat = self.heartbeat;
        Ok(config)
    }
}

/// The host name (for the default consumer name), else `agent`.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "agent".to_owned())
}

fn agent_failure(e: &AgentError) -> Failure {
    Failure::new(e.code(), with_causes(e))
}

/// What `agent --once --output json` prints.
#[derive(Serialize)]
struct OutcomeView<'a> {
    summary: &'static str,
    bundle_version: Option<u64>,
    outputs: &'a [anchorage_agent::trust::OutputWritten],
    identity_changed: bool,
    refused: Option<String>,
    acked: bool,
}

fn print_outcome(outcome: &Outcome, json: bool) {
    if json {
        crate::render::print_json(&OutcomeView {
            summary: outcome.summary(),
            bundle_version: outcome.bundle_version,
            outputs: &outcome.outputs,
            identity_changed: outcome.identity_changed,
            refused: outcome.refused.as_ref().map(ToString::to_string),
            acked: outcome.acked,
        });
        return;
    }
    if let Some(r) = &outcome.refused {
        warnln!("bundle refused: {r} (the installed files are kept)");
    }
    diagln!(
        "anchorage agent: {} (bundle version {}{})",
        outcome.summary(),
        outcome
            .bundle_version
            .map_or_else(|| "-".to_owned(), |v| v.to_string()),
        if outcome.acked { ", acknowledged" } else { "" }
    );
    for o in &outcome.outputs {
        diagln!(
            "  {:<14} {} ({} entries{})",
            o.kind,
            o.path.display(),
            o.entries,
            if o.changed {
                ", written"
            } else {
                ", unchanged"
            }
        );
    }
}

/// `anchorage agent status`: exit 0 when installed, current and accepted; else the code that
/// says which is wrong.
fn status(args: &StatusArgs) -> Result<Code, Failure> {
    crate::io::check_input("--status-file", &args.status_file)?;
    let status = read_status(&args.status_file).map_err(|e| agent_failure(&e))?;
    let code = status_code(&status);
    if args.output == OutputFormat::Json {
        crate::render::print_json(&status);
        return Ok(code);
    }
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let time = |t: Option<i64>| {
        opt(t
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }))
    };
    let rows = [
        ("consumer", status.consumer.clone()),
        ("server", status.server.clone()),
        (
            "bundle version",
            opt(status.bundle_version.map(|v| v.to_string())),
        ),
        ("installed at", time(status.installed_at)),
        (
            "certificates",
            opt(status.certificates.map(|v| v.to_string())),
        ),
        ("cert serial", opt(status.cert_serial.clone())),
        ("cert not after", time(status.cert_not_after)),
        ("renew at", time(status.renew_at)),
        ("last contact", time(status.last_contact)),
        (
            "last ack",
            opt(status
                .last_ack
                .map(|a| format!("version {} at {}", a.bundle_version, time(Some(a.at))))),
        ),
        ("stale", status.stale.to_string()),
        ("refused", opt(status.refused.clone())),
        ("last error", opt(status.last_error)),
    ];
    for (k, v) in rows {
        outln!("{k:<15} {v}");
    }
    Ok(code)
}

fn status_code(status: &Status) -> Code {
    if status.bundle_version.is_none() {
        Code::NotFound
    } else if status.refused.is_some() {
        Code::Refused
    } else if status.stale {
        Code::Unreachable
    } else {
        Code::Ok
    }
}

/// The `Command` variant holds the (large) arguments boxed.
impl Run for Box<AgentArgs> {
    fn json(&self) -> bool {
        self.as_ref().json()
    }

    fn connects_out(&self) -> bool {
        self.as_ref().connects_out()
    }

    fn run(self, globals: &Globals) -> Result<Code, Failure> {
        (*self).run(globals)
    }
}

/// The first line of a password file given as `option`.
fn first_line(option: &str, path: &Path) -> Result<SecretString, Failure> {
    crate::io::check_input(option, path)?;
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            Failure::new(Code::BadInput, format!("{option} {}: {e}", path.display()))
        })?);
    Ok(SecretString::from(
        text.lines().next().unwrap_or_default().to_owned(),
    ))
}
