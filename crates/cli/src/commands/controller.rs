//! `anchorage controller`: thin wiring over `anchorage-controller` (docs/controller.md). It runs
//! the Bundle controller until SIGTERM/SIGINT; `anchorage controller crd` prints the Bundle CRD
//! generated from the Rust type (what deploy/kubernetes/controller/crd.yaml holds);
//! `anchorage controller webhook` serves the pod-injection webhook and `webhook-config` prints its
//! `MutatingWebhookConfiguration` with the CA filled in (deploy/kubernetes/webhook).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::exit::{Code, Failure};
use crate::globals::{Globals, Run};
use crate::options::parse_duration;

/// `anchorage controller`.
#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage controller --trust-namespace anchorage-trust\n",
            "  anchorage controller crd | kubectl apply -f -\n",
            "  anchorage controller --trust-manager-bundles   # also trust-manager's Bundles\n",
            "  anchorage controller --leader-elect   # one of several replicas reconciles\n",
            "  kubectl apply -k deploy/kubernetes/controller\n",
            "\n",
            "It keeps every Bundle (trust.anchorage.dev/v1alpha1) written as a ConfigMap or Secret in\n",
            "the namespaces its namespaceSelector picks, from ConfigMaps/Secrets of --trust-namespace,\n",
            "inline PEM, Mozilla's roots or the system store. A refused Bundle (a private key in a\n",
            "source, a value that is not PEM, a missing source, no certificate, a target over 1 MiB)\n",
            "gets a Ready=False condition and a Warning Event, its targets are left as they were, and\n",
            "the other Bundles go on. The client comes from the pod's service account, else\n",
            "KUBECONFIG. docs/controller.md is the guide.\n",
            "\n",
        ),
        &[
            (Code::Ok, "stopped by a signal; `crd`: printed"),
            (Code::Failure, "--leader-elect: the lease was lost to another replica (restart to stand again); unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::Unreachable, "no Kubernetes client configuration (no service account, no KUBECONFIG); --leader-elect: the Lease cannot be read or created"),
        ],
        "",
    )
)]
pub(crate) struct ControllerArgs {
    #[command(subcommand)]
    pub(crate) command: Option<ControllerCommand>,
    /// The namespace whose ConfigMaps and Secrets Bundles read as sources.
    #[arg(long, value_name = "NS", default_value = "anchorage-trust")]
    pub(crate) trust_namespace: String,
    /// How often each Bundle is reconciled without a change.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub(crate) resync: Duration,
    /// Also reconcile trust-manager's Bundles (trust.cert-manager.io/v1alpha1); where the
    /// cluster does not serve that API it is logged and skipped.
    #[arg(long)]
    pub(crate) trust_manager_bundles: bool,
    /// Run as one of several replicas: only the holder of a Lease reconciles; another takes
    /// over when it stops (at once: the lease is released) or dies (when the lease expires).
    #[arg(long)]
    pub(crate) leader_elect: bool,
    /// The Lease's name.
    #[arg(long, value_name = "NAME", default_value = anchorage_controller::leader::DEFAULT_LEASE_NAME, requires = "leader_elect")]
    pub(crate) lease_name: String,
    /// The Lease's namespace [default: --trust-namespace].
    #[arg(long, value_name = "NS", requires = "leader_elect")]
    pub(crate) lease_namespace: Option<String>,
    /// How long the lease holds without a renewal (whole seconds, at least 2 s); the holder
    /// renews it when a third of that is left.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration, requires = "leader_elect")]
    pub(crate) lease_duration: Duration,
    /// This replica's name in the election [default: POD_NAME, else host name and pid].
    #[arg(long, value_name = "NAME", requires = "leader_elect")]
    pub(crate) lease_identity: Option<String>,
}

/// How long `anchorage controller` waits after SIGTERM/SIGINT for its API requests in flight.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// `anchorage controller <subcommand>`.
#[derive(Subcommand, Debug)]
pub(crate) enum ControllerCommand {
    /// Print the Bundle CRD (YAML), generated from the Rust type.
    #[command(
        after_help = "Example:\n  anchorage controller crd > crd.yaml && kubectl apply -f crd.yaml"
    )]
    Crd,
    /// Serve the pod-injection webhook (HTTPS): pods labelled trust.anchorage.dev/inject=true get
    /// the trust volume over /etc/ssl/certs and the runtime variables (as `k8s patch` sets them).
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage ca issue --kind webhook --cn anchorage-webhook.anchorage-trust.svc \\\n",
            "    --san anchorage-webhook.anchorage-trust.svc.cluster.local --out tls\n",
            "  anchorage controller webhook --configmap corp-trust --events \\\n",
            "    --tls-cert tls/chain.pem --tls-key tls/key.pem\n",
            "  anchorage controller webhook --configmap corp-trust \\\n",
            "    --agent-image registry.example/anchorage:1 \\\n",
            "    --serve-url https://anchorage-serve.anchorage.svc:8443 \\\n",
            "    --tls-cert tls/chain.pem --tls-key tls/key.pem\n",
            "\n",
            "Pods also annotated trust.anchorage.dev/identity=NAME get the agent (init container and\n",
            "sidecar, as `k8s patch --agent --with-init`) instead of the trust object when\n",
            "--agent-image and --serve-url are given (one native sidecar with\n",
            "--agent-native-sidecar); else a warning.\n",
            "\n",
            "Every answer allows the pod: a review it cannot read or a patch it cannot build is\n",
            "answered without a patch and with a warning (and logged). With --events, a labelled pod\n",
            "that was not injected, or was injected with warnings, also gets a Warning Event on its\n",
            "owner (kubectl describe replicaset ...). A container that mounts its own /etc/ssl/certs\n",
            "or sets one of the variables itself is left as it is; an injected pod is not changed\n",
            "again. docs/controller.md, \"Pod injection\", is the guide.\n",
            "\n",
        ),
        &[
            (Code::Ok, "stopped by a signal"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::BadInput, "--tls-cert/--tls-key unreadable, not PEM, or not a pair"),
            (Code::Unreachable, "--listen cannot be bound; --events without a Kubernetes client configuration"),
        ],
        "",
    ))]
    Webhook(Box<WebhookArgs>),
    /// Print the webhook's MutatingWebhookConfiguration (YAML), caBundle from --ca-bundle.
    #[command(
        after_help = "Example:\n  anchorage controller webhook-config --ca-bundle tls/ca.pem \\\n    | kubectl apply -f -"
    )]
    WebhookConfig(WebhookConfigArgs),
}

/// `anchorage controller webhook`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["configmap", "secret", "cluster_trust_bundle", "ctb_signer"])))]
pub(crate) struct WebhookArgs {
    /// The trust ConfigMap mounted into pods (a Bundle's target, in each pod's namespace).
    #[arg(long, value_name = "NAME")]
    pub(crate) configmap: Option<String>,
    /// The trust Secret mounted into pods instead.
    #[arg(long, value_name = "NAME")]
    pub(crate) secret: Option<String>,
    /// A ClusterTrustBundle by name, projected (one bundle file: no SSL_CERT_DIR).
    #[arg(long, value_name = "NAME")]
    pub(crate) cluster_trust_bundle: Option<String>,
    /// Every ClusterTrustBundle of this signer, projected (a Bundle's clusterTrustBundle target).
    #[arg(long, value_name = "SIGNER")]
    pub(crate) ctb_signer: Option<String>,
    /// The object has only the bundle key (BundleKey layout): no SSL_CERT_DIR.
    #[arg(long)]
    pub(crate) bundle_only: bool,
    /// The object holds extra-ca.pem: NODE_EXTRA_CA_CERTS and DENO_CERT name it.
    #[arg(long, conflicts_with_all = ["cluster_trust_bundle", "ctb_signer"])]
    pub(crate) extra_pem: bool,
    /// The object holds truststore.p12: JAVA_TOOL_OPTIONS names it.
    #[arg(long, conflicts_with_all = ["cluster_trust_bundle", "ctb_signer"])]
    pub(crate) pkcs12: bool,
    /// Where the volume is mounted (read-only).
    #[arg(long, value_name = "PATH", default_value = anchorage_k8s::DEFAULT_MOUNT_PATH)]
    pub(crate) mount_path: String,
    /// The serving certificate chain, PEM (leaf first), e.g. from `ca issue --kind webhook`.
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_cert: PathBuf,
    /// Its private key, PEM.
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_key: PathBuf,
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
    pub(crate) listen: SocketAddr,
    /// The agent's image, for pods asking for an identity (trust.anchorage.dev/identity); with
    /// --serve-url. Without both, those pods get a warning and the trust object.
    #[arg(long, value_name = "IMAGE", requires = "serve_url")]
    pub(crate) agent_image: Option<String>,
    /// The `anchorage serve` URL the agent talks to (https://).
    #[arg(long, value_name = "URL", requires = "agent_image")]
    pub(crate) serve_url: Option<String>,
    /// The ConfigMap (in each pod's namespace) holding serve's CA [default: anchorage-serve-ca].
    #[arg(long, value_name = "NAME", requires = "agent_image")]
    pub(crate) serve_ca_configmap: Option<String>,
    /// A Secret holding serve's CA instead.
    #[arg(
        long,
        value_name = "NAME",
        requires = "agent_image",
        conflicts_with = "serve_ca_configmap"
    )]
    pub(crate) serve_ca_secret: Option<String>,
    /// The key of serve's CA in it [default: ca.pem].
    #[arg(long, value_name = "KEY", requires = "agent_image")]
    pub(crate) serve_ca_key: Option<String>,
    /// The Secret (in each pod's namespace) holding the agent's role token, mounted in the agent
    /// only [default: anchorage-agent-token].
    #[arg(long, value_name = "NAME", requires = "agent_image")]
    pub(crate) agent_token_secret: Option<String>,
    /// The token's key in it [default: token].
    #[arg(long, value_name = "KEY", requires = "agent_image")]
    pub(crate) agent_token_key: Option<String>,
    /// The agent as one native sidecar (an init container with restartPolicy: Always, which the
    /// app waits for; Kubernetes 1.29+) instead of an init container and a sidecar.
    #[arg(long, requires = "agent_image")]
    pub(crate) agent_native_sidecar: bool,
    /// Publish a Warning Event on the owner of each labelled pod that was not injected or was
    /// injected with warnings (needs the pod's service account, or KUBECONFIG, with create and
    /// patch on events.k8s.io events).
    #[arg(long)]
    pub(crate) events: bool,
}

/// `anchorage controller webhook-config`.
#[derive(Args, Debug)]
pub(crate) struct WebhookConfigArgs {
    /// The webhook's Service.
    #[arg(long, value_name = "NAME", default_value = "anchorage-webhook")]
    pub(crate) service: String,
    /// The Service's namespace.
    #[arg(
        long,
        short = 'n',
        value_name = "NS",
        default_value = "anchorage-trust"
    )]
    pub(crate) namespace: String,
    /// The CA certificates (PEM) that signed the serving certificate: the caBundle.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_bundle: Option<PathBuf>,
}

fn webhook(args: WebhookArgs) -> Result<Code, Failure> {
    use anchorage_k8s::{CtbSelector, TrustSource};
    let source = match (
        &args.configmap,
        &args.secret,
        &args.cluster_trust_bundle,
        &args.ctb_signer,
    ) {
        (Some(name), ..) => TrustSource::ConfigMap(name.clone()),
        (_, Some(name), ..) => TrustSource::Secret(name.clone()),
        (_, _, Some(name), _) => TrustSource::ClusterTrustBundle(CtbSelector::Name(name.clone())),
        (_, _, _, Some(signer)) => TrustSource::ClusterTrustBundle(CtbSelector::Signer {
            signer_name: signer.clone(),
            match_labels: Default::default(),
        }),
        _ => {
            return Err(Failure::new(
                Code::Usage,
                "--configmap, --secret, --cluster-trust-bundle or --ctb-signer is needed",
            ));
        }
    };
    let mut settings = anchorage_controller::InjectSettings::new(source);
    settings.hashed = !args.bundle_only;
    settings.extra_pem = args.extra_pem;
    settings.pkcs12 = args.pkcs12;
    settings.mount_path = args.mount_path.clone();
    settings.agent_native_sidecar = args.agent_native_sidecar;
    if let (Some(image), Some(server)) = (&args.agent_image, &args.serve_url) {
        let defaults = anchorage_k8s::AgentSpec::default();
        let or = |given: &Option<String>, default: String| given.clone().unwrap_or(default);
        settings.agent = Some(anchorage_k8s::AgentSpec {
            image: image.clone(),
            server: server.clone(),
            serve_ca: match (&args.serve_ca_secret, &args.serve_ca_configmap) {
                (Some(name), _) => anchorage_k8s::ServeCaSource::Secret(name.clone()),
                (None, Some(name)) => anchorage_k8s::ServeCaSource::ConfigMap(name.clone()),
                (None, None) => defaults.serve_ca,
            },
            serve_ca_key: or(&args.serve_ca_key, defaults.serve_ca_key),
            token_secret: or(&args.agent_token_secret, defaults.token_secret),
            token_key: or(&args.agent_token_key, defaults.token_key),
            ..defaults
        });
    }
    settings.validate().map_err(|e| {
        let cause = std::error::Error::source(&e)
            .map(ToString::to_string)
            .unwrap_or_default();
        Failure::new(Code::Usage, format!("{e}: {cause}"))
    })?;
    let cert = crate::io::read_input("--tls-cert", &args.tls_cert)?;
    let key = crate::io::read_input("--tls-key", &args.tls_key)?;
    let tls = anchorage_controller::webhook::tls_config(&cert, &key)
        .map_err(|e| Failure::new(Code::BadInput, format!("--tls-cert/--tls-key: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Code::Failure, format!("cannot start a runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| {
                Failure::new(
                    Code::Unreachable,
                    format!("--listen {}: cannot listen ({e})", args.listen),
                )
            })?;
        let events = if args.events {
            let instance = std::env::var("POD_NAME").ok();
            let events = anchorage_controller::webhook::Events::start_with_default_client(instance)
                .await
                .map_err(|e| {
                    Failure::new(
                        Code::Unreachable,
                        format!("--events: no Kubernetes client configuration (no service account, no KUBECONFIG): {e}"),
                    )
                })?;
            Some(events)
        } else {
            None
        };
        tracing::info!(listen = %args.listen, events = args.events, "pod-injection webhook serving");
        anchorage_controller::webhook::serve(
            listener,
            tls,
            settings,
            events,
            anchorage_serve::shutdown_signal(),
        )
        .await;
        Ok::<_, Failure>(())
    })?;
    Ok(Code::Ok)
}

fn webhook_config(args: WebhookConfigArgs) -> Result<Code, Failure> {
    let ca = match &args.ca_bundle {
        Some(path) => {
            let bytes = crate::io::read_input("--ca-bundle", path)?;
            let text = String::from_utf8(bytes.to_vec()).ok().filter(|t| t.contains("-----BEGIN CERTIFICATE-----")).ok_or_else(|| {
                Failure::new(
                    Code::BadInput,
                    format!("--ca-bundle {}: no PEM certificate; pass the ca.pem `anchorage ca issue` wrote", crate::io::display(path)),
                )
            })?;
            Some(text)
        }
        None => None,
    };
    let service = anchorage_controller::WebhookService::new(&args.service, &args.namespace);
    let config = anchorage_controller::webhook_configuration(&service, ca.as_deref());
    let yaml = serde_yaml_ng::to_string(&config)
        .map_err(|e| Failure::new(Code::Failure, format!("cannot render YAML: {e}")))?;
    crate::io::write_stdout_bytes(yaml.as_bytes())?;
    Ok(Code::Ok)
}

impl Run for ControllerArgs {
    fn run(self, _globals: &Globals) -> Result<Code, Failure> {
        match self.command {
            Some(ControllerCommand::Crd) => {
                let yaml = anchorage_controller::crd_yaml().map_err(|e| {
                    Failure::new(Code::Failure, format!("cannot render the CRD: {e}"))
                })?;
                crate::io::write_stdout_bytes(yaml.as_bytes())?;
                return Ok(Code::Ok);
            }
            Some(ControllerCommand::Webhook(args)) => return webhook(*args),
            Some(ControllerCommand::WebhookConfig(args)) => return webhook_config(args),
            None => {}
        }
        let mut settings = anchorage_controller::Settings::new(&self.trust_namespace);
        settings.resync = self.resync;
        settings.trust_manager_bundles = self.trust_manager_bundles;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Failure::new(Code::Failure, format!("cannot start a runtime: {e}")))?;
        let no_client = |e: &dyn std::fmt::Display| {
            Failure::new(
                Code::Unreachable,
                format!(
                    "no Kubernetes client: {e}; run it in a pod with a service account, or set KUBECONFIG"
                ),
            )
        };
        if !self.leader_elect {
            runtime.block_on(async move {
                // The controller stops on SIGTERM/SIGINT once its reconciles in flight end; an
                // API server that never answers would hold it until the kubelet's SIGKILL, so it
                // stops anyway SHUTDOWN_DEADLINE after the signal.
                let signalled = anchorage_serve::shutdown_signal();
                let deadline = async move {
                    signalled.await;
                    tokio::time::sleep(SHUTDOWN_DEADLINE).await;
                };
                tokio::select! {
                    outcome = anchorage_controller::run_with_default_client(settings) => {
                        outcome.map_err(|e| no_client(&e))
                    }
                    () = deadline => {
                        tracing::warn!(
                            "API requests still in flight {}s after the signal; stopping without them",
                            SHUTDOWN_DEADLINE.as_secs()
                        );
                        Ok(())
                    }
                }
            })?;
            return Ok(Code::Ok);
        }
        let seconds = self.lease_duration.as_secs();
        if seconds < 2 || self.lease_duration.subsec_nanos() != 0 {
            return Err(Failure::new(
                Code::Usage,
                format!(
                    "--lease-duration {:?}: whole seconds, at least 2 s",
                    self.lease_duration
                ),
            ));
        }
        let mut election = anchorage_controller::LeaderElection::new(
            self.lease_namespace
                .unwrap_or_else(|| self.trust_namespace.clone()),
            self.lease_identity
                .unwrap_or_else(anchorage_controller::leader::default_identity),
        );
        election.lease_name = self.lease_name;
        election.duration = self.lease_duration;
        election.grace = Duration::from_secs((seconds / 3).max(1));
        runtime.block_on(async move {
            use anchorage_controller::LeaderError;
            match anchorage_controller::run_elected_with_default_client(
                settings,
                election,
                anchorage_serve::shutdown_signal(),
            )
            .await
            {
                Ok(()) => Ok(Code::Ok),
                Err(LeaderError::Client(e)) => Err(no_client(&e)),
                Err(e @ LeaderError::Timing { .. }) => Err(Failure::new(Code::Usage, e.to_string())),
                Err(e @ LeaderError::Lease { .. }) => {
                    let cause = std::error::Error::source(&e)
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    Err(Failure::new(
                        Code::Unreachable,
                        format!("{e}: {cause}; the service account needs get, create and patch on leases in that namespace"),
                    ))
                }
                Err(e @ LeaderError::Lost { .. }) => Err(Failure::new(Code::Failure, e.to_string())),
            }
        })
    }
}
