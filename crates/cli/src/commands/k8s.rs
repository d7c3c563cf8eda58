//! `anchorage k8s patch`: the patch that mounts the trust volume into a workload, or adds the
//! agent to it ([`agent`], `--agent`). (The objects `bundle build --k8s-*` emits are rendered by
//! [`super::build`].)

mod agent;

use std::path::Path;
use std::path::PathBuf;

use anchorage_k8s::{
    CtbSelector, PatchFormat, PatchRequest, TrustSource, WorkloadKind, env_var, workload_patch,
};
use anchorage_trust::env::{EnvRequest, MountedTrust, variables};
use clap::{Args, Subcommand, ValueEnum};

use crate::exit::{Code, Failure};
use crate::globals::{Globals, Run};

impl Run for K8sCommand {
    fn run(self, _: &Globals) -> Result<Code, Failure> {
        match self {
            K8sCommand::Patch(a) => patch(a),
        }
    }
}

/// `anchorage k8s patch`.
fn patch(args: K8sPatchArgs) -> Result<Code, Failure> {
    if args
        .kind
        .eq_ignore_ascii_case(anchorage_k8s::WASMCLOUD_HOST_CONFIG_KIND)
    {
        if args.agent.agent {
            return Err(Failure::new(
                Code::Usage,
                "--agent adds the agent to a workload; a WasmCloudHostConfig is not one",
            ));
        }
        args.agent.check_unused()?;
        return host_config_patch(&args);
    }
    if args.patch_type == PatchType::Merge {
        return Err(Failure::new(
            Code::Usage,
            "--type merge is for --kind wasmcloudhostconfig; a workload takes strategic or json",
        ));
    }
    if args.authority.is_some() {
        return Err(Failure::new(
            Code::Usage,
            "--authority is for --kind wasmcloudhostconfig",
        ));
    }
    if args.agent.agent {
        return agent::patch(&args);
    }
    args.agent.check_unused()?;
    let kind = WorkloadKind::from_kind(&args.kind).ok_or_else(|| {
        let kinds: Vec<_> = WorkloadKind::ALL.iter().map(|k| k.kind()).collect();
        Failure::new(
            Code::Usage,
            format!(
                "--kind {}: not a workload kind; one of {}",
                args.kind,
                kinds.join(", ")
            ),
        )
    })?;
    let (source, hashed_keys) = match (&args.configmap, &args.secret, &args.cluster_trust_bundle) {
        (Some(name), _, _) => (TrustSource::ConfigMap(name.clone()), !args.bundle_only),
        (_, Some(name), _) => (TrustSource::Secret(name.clone()), !args.bundle_only),
        (_, _, Some(name)) => (
            TrustSource::ClusterTrustBundle(CtbSelector::Name(name.clone())),
            false,
        ),
        _ => (
            TrustSource::ClusterTrustBundle(CtbSelector::Signer {
                signer_name: args.ctb_signer.clone().unwrap_or_default(),
                match_labels: Default::default(),
            }),
            false,
        ),
    };
    let mut request = PatchRequest::new(kind, source, args.containers.clone());
    request.init_containers = args.init_containers.clone();
    request.workload_name = args.name.clone();
    request.workload_namespace = args.namespace.clone();
    request.mount_path = args.mount_path.clone();
    if !args.no_env {
        // Paths as the container sees them. Without --extra-pem, NODE_EXTRA_CA_CERTS and
        // DENO_CERT name the combined bundle (harmless: they add to Node's own roots).
        let env = EnvRequest::mounted(&MountedTrust {
            mount: Path::new(&args.mount_path),
            bundle_file: &request.bundle_file,
            hashed: hashed_keys,
            extra_file: args.extra_pem.then_some(anchorage_k8s::DEFAULT_EXTRA_KEY),
            pkcs12_file: args.pkcs12.then_some(anchorage_k8s::DEFAULT_PKCS12_KEY),
        });
        request.env = variables(&env)
            .into_iter()
            .map(|v| env_var(v.name, v.value))
            .collect();
    }
    if let Some(path) = &args.bundle {
        let bundle = crate::io::read_option_bundle(path, "--bundle")?;
        request.pod_annotations.insert(
            anchorage_k8s::BUNDLE_SHA256_ANNOTATION.to_owned(),
            anchorage_k8s::bundle_sha256(&bundle),
        );
    }
    if args.current.is_some() && args.patch_type != PatchType::Json {
        return Err(Failure::new(
            Code::Usage,
            "--current needs --type json: a strategic merge patch does not read the workload",
        ));
    }
    crate::io::check_inputs(
        args.bundle
            .iter()
            .map(|p| ("--bundle", p.as_path()))
            .chain(args.current.iter().map(|p| ("--current", p.as_path()))),
    )?;
    if args.patch_type == PatchType::Json {
        let Some(path) = &args.current else {
            return Err(Failure::new(
                Code::Usage,
                "--type json needs --current FILE (the workload as `kubectl get -o json` prints it): a JSON patch addresses containers by index",
            ));
        };
        let bytes = crate::io::read_input("--current", path)?;
        let current = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::new(
                Code::BadInput,
                format!(
                    "--current {}: not JSON ({e}); use `kubectl get ... -o json`",
                    crate::io::display(path)
                ),
            )
        })?;
        request.format = PatchFormat::Json { current };
    }
    let patch = workload_patch(&request)?;
    let text = serde_json::to_string_pretty(&patch)
        .map_err(|e| Failure::new(Code::Failure, format!("cannot render JSON: {e}")))?;
    outln!("{text}");
    Ok(Code::Ok)
}

/// `anchorage k8s patch --kind wasmcloudhostconfig`: the `certificates.authorities` entry for
/// the ConfigMap (or Secret), computed from the object given with --current.
fn host_config_patch(args: &K8sPatchArgs) -> Result<Code, Failure> {
    use anchorage_k8s::{AuthoritySource, HostConfigAuthority, HostConfigPatchFormat};
    let usage = |m: &str| Err(Failure::new(Code::Usage, m.to_owned()));
    let ignored = [
        ("--container", !args.containers.is_empty()),
        ("--init-container", !args.init_containers.is_empty()),
        ("--extra-pem", args.extra_pem),
        ("--pkcs12", args.pkcs12),
        ("--bundle-only", args.bundle_only),
        ("--bundle", args.bundle.is_some()),
        ("--no-env", args.no_env),
    ];
    if let Some((option, _)) = ignored.iter().find(|(_, set)| *set) {
        return Err(Failure::new(
            Code::Usage,
            format!(
                "{option} is for workloads, not --kind wasmcloudhostconfig: the operator mounts the authority and passes its .crt keys itself"
            ),
        ));
    }
    let source = match (&args.configmap, &args.secret) {
        (Some(name), _) => AuthoritySource::ConfigMap(name.clone()),
        (_, Some(name)) => AuthoritySource::Secret(name.clone()),
        _ => {
            return usage(
                "--kind wasmcloudhostconfig takes --configmap or --secret: the operator reads CA certificates from ConfigMaps and Secrets only",
            );
        }
    };
    let authority = HostConfigAuthority {
        name: args.authority.clone().unwrap_or_else(|| match &source {
            AuthoritySource::ConfigMap(n) | AuthoritySource::Secret(n) => n.clone(),
        }),
        source,
    };
    let format = match args.patch_type {
        // A custom resource takes no strategic merge patch: json stands in for the default.
        PatchType::Strategic | PatchType::Json => HostConfigPatchFormat::Json,
        PatchType::Merge => HostConfigPatchFormat::Merge,
    };
    let Some(path) = &args.current else {
        return usage(
            "--kind wasmcloudhostconfig needs --current FILE (`kubectl get wasmcloudhostconfig NAME -o json`): the patch keeps the authorities already there and is empty when the entry exists",
        );
    };
    crate::io::check_inputs(std::iter::once(("--current", path.as_path())))?;
    let bytes = crate::io::read_input("--current", path)?;
    let current: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        Failure::new(
            Code::BadInput,
            format!(
                "--current {}: not JSON ({e}); use `kubectl get wasmcloudhostconfig NAME -o json`",
                crate::io::display(path)
            ),
        )
    })?;
    let meta = |field: &str| current["metadata"][field].as_str().map(str::to_owned);
    for (option, given, field) in [
        ("--name", &args.name, "name"),
        ("--namespace", &args.namespace, "namespace"),
    ] {
        if let Some(given) = given
            && meta(field).is_some_and(|found| &found != given)
        {
            return Err(Failure::new(
                Code::BadInput,
                format!(
                    "{option} {given}, but --current {} is {}: pass the object the patch is for",
                    crate::io::display(path),
                    meta(field).unwrap_or_default()
                ),
            ));
        }
    }
    let patch = anchorage_k8s::wasmcloud_host_config_patch(&current, &authority, format)?;
    let text = serde_json::to_string_pretty(&patch)
        .map_err(|e| Failure::new(Code::Failure, format!("cannot render JSON: {e}")))?;
    outln!("{text}");
    Ok(Code::Ok)
}

// The command line of this command.

#[derive(Subcommand, Debug)]
pub(crate) enum K8sCommand {
    /// Print a patch that mounts the trust volume over /etc/ssl/certs in a workload's containers
    /// and sets the runtime variables (see `anchorage env`), or adds the agent that writes it
    /// (--agent).
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage k8s patch --configmap trust --kind deployment --name api \\\n",
            "    --container app \\\n",
            "    | kubectl patch deployment api --type strategic --patch-file /dev/stdin\n",
            "  kubectl get deploy api -o json > api.json\n",
            "  anchorage k8s patch --configmap trust --kind deployment --container app \\\n",
            "    --type json --current api.json\n",
            "  anchorage k8s patch --cluster-trust-bundle corp-roots --kind cronjob \\\n",
            "    --name backup --container job\n",
            "  anchorage bundle build corp.pem --mozilla --k8s-configmap trust \\\n",
            "    --k8s-extra-pem --k8s-pkcs12 -n apps\n",
            "  anchorage k8s patch --configmap trust --extra-pem --pkcs12 --kind \\\n",
            "    deployment --name api -n apps --container app\n",
            "  kubectl get wasmcloudhostconfig host -o json > host.json\n",
            "  anchorage k8s patch --kind wasmcloudhostconfig --name host \\\n",
            "    --configmap corp-cas --current host.json \\\n",
            "    | kubectl patch wasmcloudhostconfig host --type json --patch-file /dev/stdin\n",
            "\n",
            "--kind wasmcloudhostconfig adds the certificates.authorities entry for --configmap (or\n",
            "--secret) to a wasmCloud operator host config (k8s.wasmcloud.dev/v1alpha1), read from\n",
            "--current; the operator then passes each .crt key as --tls-ca-path\n",
            "/wasmcloud/certificates/ca-<name>/<key>. An RFC 6902 patch (or --type merge), empty ([]) when\n",
            "the entry is there already.\n",
            "  anchorage k8s patch --agent --kind deployment --container app \\\n",
            "    --server https://anchorage-serve.anchorage.svc:8443 \\\n",
            "    --server-ca-configmap anchorage-serve-ca --token-secret anchorage-agent-token \\\n",
            "    --agent-label app=api --agent-image registry.example/anchorage:1.0 \\\n",
            "    | kubectl patch deployment api --type strategic --patch-file /dev/stdin\n",
            "  anchorage k8s patch --agent --once --kind job --container migrate\n",
            "  anchorage k8s patch --agent --native-sidecar --kind deployment --container app\n",
            "\n",
            "Containers are matched by name (--container, repeatable). A ClusterTrustBundle volume holds\n",
            "only the bundle file, so SSL_CERT_DIR is not set for it. NODE_EXTRA_CA_CERTS and DENO_CERT\n",
            "name the combined bundle, or extra-ca.pem with --extra-pem; JAVA_TOOL_OPTIONS is set only\n",
            "with --pkcs12 (it replaces a value the workload sets itself).\n",
            "\n",
            "--agent adds `anchorage agent` (container anchorage-agent; with --once the init container\n",
            "anchorage-agent-init; with --native-sidecar the init container anchorage-agent with\n",
            "restartPolicy: Always, which the app waits for, Kubernetes 1.29+) writing\n",
            "ca-certificates.crt and hashed/ into an emptyDir mounted over\n",
            "the containers' /etc/ssl/certs (SSL_CERT_DIR=/etc/ssl/certs/hashed), with serve's CA and\n",
            "the token Secret mounted in the agent only. The mount hides the image's own trust store:\n",
            "serve's bundle must hold every root the app needs. Applying the patch twice is applying it\n",
            "once. The containers are those of deploy/kubernetes/agent-sidecar (docs/agent.md).\n",
            "\n",
        ),
        &[
            (Code::Ok, "printed"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line, or a name Kubernetes would refuse"),
            (Code::BadInput, "--current is unreadable or not the named kind, a container is not in it, or\nthe host config has an authority of that name for another object"),
        ],
        "",
    ))]
    Patch(K8sPatchArgs),
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["configmap", "secret", "cluster_trust_bundle", "ctb_signer", "agent"])))]
#[command(group(clap::ArgGroup::new("hashed_source").args(["configmap", "secret"])))]
pub(crate) struct K8sPatchArgs {
    /// The trust ConfigMap (from `bundle build --k8s-configmap`).
    #[arg(long, value_name = "NAME")]
    pub(crate) configmap: Option<String>,
    /// The trust Secret (from `bundle build --k8s-secret`).
    #[arg(long, value_name = "NAME")]
    pub(crate) secret: Option<String>,
    /// A ClusterTrustBundle by name.
    #[arg(long, value_name = "NAME")]
    pub(crate) cluster_trust_bundle: Option<String>,
    /// Every ClusterTrustBundle of this signer.
    #[arg(long, value_name = "SIGNER")]
    pub(crate) ctb_signer: Option<String>,
    /// The ConfigMap/Secret was built with --k8s-bundle-only: no SSL_CERT_DIR.
    #[arg(long, requires = "hashed_source")]
    pub(crate) bundle_only: bool,
    /// The ConfigMap/Secret was built with --k8s-extra-pem: NODE_EXTRA_CA_CERTS and DENO_CERT
    /// name its extra-ca.pem (without it they name the combined bundle).
    #[arg(long, conflicts_with_all = ["cluster_trust_bundle", "ctb_signer"])]
    pub(crate) extra_pem: bool,
    /// The ConfigMap/Secret was built with --k8s-pkcs12: JAVA_TOOL_OPTIONS names its
    /// truststore.p12 (-Djavax.net.ssl.trustStore=..., trustStoreType=PKCS12).
    #[arg(long, conflicts_with_all = ["cluster_trust_bundle", "ctb_signer"])]
    pub(crate) pkcs12: bool,
    /// Kind of workload: deployment, statefulset, daemonset, replicaset, job, cronjob, pod; or
    /// wasmcloudhostconfig (a wasmCloud operator host config: its certificates.authorities).
    #[arg(long, value_name = "KIND")]
    pub(crate) kind: String,
    /// Workload name (adds apiVersion/kind/metadata, which kustomize matches patches on).
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Workload namespace (with --name).
    #[arg(long, short = 'n', value_name = "NS", requires = "name")]
    pub(crate) namespace: Option<String>,
    /// A container to patch (repeatable; at least one container or init container).
    #[arg(long = "container", value_name = "NAME")]
    pub(crate) containers: Vec<String>,
    /// An init container to patch too (repeatable).
    #[arg(long = "init-container", value_name = "NAME")]
    pub(crate) init_containers: Vec<String>,
    /// Where the volume is mounted (read-only).
    #[arg(long, value_name = "PATH", default_value = anchorage_k8s::DEFAULT_MOUNT_PATH)]
    pub(crate) mount_path: String,
    /// Do not set the runtime variables, only mount the volume.
    #[arg(long)]
    pub(crate) no_env: bool,
    /// The bundle the trust object was built from: its SHA-256 goes into a pod-template
    /// annotation (anchorage.io/bundle-sha256, as on the ConfigMap), so re-applying the patch
    /// after the bundle changed rolls the workload.
    #[arg(long, value_name = "FILE")]
    pub(crate) bundle: Option<PathBuf>,
    /// Patch type: strategic (kubectl patch --type strategic, kustomize) or json (RFC 6902,
    /// needs --current).
    #[arg(long = "type", value_enum, default_value_t)]
    pub(crate) patch_type: PatchType,
    /// The workload as `kubectl get -o json` prints it (for --type json, and for --kind
    /// wasmcloudhostconfig).
    #[arg(long, value_name = "FILE")]
    pub(crate) current: Option<PathBuf>,
    /// --kind wasmcloudhostconfig: the authority's volume name (default: the ConfigMap's or
    /// Secret's name); the operator mounts it at `/wasmcloud/certificates/ca-<name>`.
    #[arg(long, value_name = "NAME")]
    pub(crate) authority: Option<String>,
    #[command(flatten)]
    pub(crate) agent: agent::AgentArgs,
}

/// Patch flavour.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum PatchType {
    /// Strategic merge patch.
    #[default]
    Strategic,
    /// RFC 6902 JSON patch.
    Json,
    /// RFC 7386 JSON merge patch (--kind wasmcloudhostconfig only).
    Merge,
}
