//! `anchorage k8s patch --agent`: the patch adding `anchorage agent` to a workload, built by
//! [`anchorage_k8s::agent_patch`]; this module only turns the command line into its request.

use std::path::Path;

use anchorage_k8s::{
    AgentIdentity, AgentMode, AgentPatchRequest, AgentSpec, PatchFormat, ServeCaSource,
    WorkloadKind, agent_patch, env_var,
};
use anchorage_trust::env::{EnvRequest, variables};
use clap::Args;

use super::{K8sPatchArgs, PatchType};
use crate::exit::{Code, Failure};

/// The agent's options of `k8s patch`.
#[derive(Args, Debug)]
#[command(next_help_heading = "Agent (--agent)")]
pub(crate) struct AgentArgs {
    /// Add `anchorage agent` as a sidecar writing the bundle (and a hashed directory, `hashed/`)
    /// into an emptyDir mounted over the containers' /etc/ssl/certs, instead of mounting a trust
    /// object.
    #[arg(long, conflicts_with_all = ["bundle", "bundle_only", "extra_pem", "pkcs12"])]
    pub(crate) agent: bool,
    /// Add the agent as an init container with `--once` instead (trust written before the app
    /// starts, never refreshed; the only mode for a Job or CronJob).
    #[arg(long)]
    pub(crate) once: bool,
    /// Add the init container too, before the sidecar (as deploy/kubernetes/agent-sidecar).
    #[arg(long, conflicts_with = "once")]
    pub(crate) with_init: bool,
    /// Add the agent as one Kubernetes native sidecar instead (an init container with
    /// restartPolicy: Always, Kubernetes 1.29+): the app starts once its startup probe says the
    /// trust (and the identity) are in place, and it keeps them current; Jobs too.
    #[arg(long, conflicts_with_all = ["once", "with_init"])]
    pub(crate) native_sidecar: bool,
    // The options below need --agent: checked by `check_unused` (clap's `requires = "agent"`
    // counts the flag's implicit `false` as given). They have no `default_value`, so the
    // check sees what was typed; `patch` applies the defaults the help names.
    /// The agent's image [default: anchorage].
    #[arg(long, value_name = "IMAGE")]
    pub(crate) agent_image: Option<String>,
    /// serve's URL [default: `https://anchorage-serve.anchorage.svc:8443`, the Service of
    /// deploy/kubernetes/serve].
    #[arg(long, value_name = "URL")]
    pub(crate) server: Option<String>,
    /// The ConfigMap holding serve's CA (what the agent trusts to reach serve)
    /// [default: anchorage-serve-ca].
    #[arg(long, value_name = "NAME")]
    pub(crate) server_ca_configmap: Option<String>,
    /// A Secret holding serve's CA instead of a ConfigMap.
    #[arg(long, value_name = "NAME", conflicts_with = "server_ca_configmap")]
    pub(crate) server_ca_secret: Option<String>,
    /// serve's CA's key in that ConfigMap or Secret [default: ca.pem].
    #[arg(long, value_name = "KEY")]
    pub(crate) server_ca_key: Option<String>,
    /// The Secret holding the agent's token (a role token: acks, and /v1/sign with
    /// --identity; the identity's role is the token's) [default: anchorage-agent-token].
    #[arg(long, value_name = "NAME")]
    pub(crate) token_secret: Option<String>,
    /// The token's key in that Secret [default: token].
    #[arg(long, value_name = "KEY")]
    pub(crate) token_key: Option<String>,
    /// A label KEY=VALUE the agent reports in its acks (repeatable).
    #[arg(long = "agent-label", value_name = "KEY=VALUE")]
    pub(crate) agent_labels: Vec<String>,
    /// Keep a certificate for the workload too (the agent's --identity; may use $(POD_NAME) and
    /// $(POD_NAMESPACE)): cert.pem, key.pem, chain.pem, ca.pem in an emptyDir mounted
    /// read-only at --identity-mount-path. key.pem is 0600: run the app as the agent's user.
    #[arg(long, value_name = "NAME")]
    pub(crate) identity: Option<String>,
    /// Another name for the identity's certificate (repeatable).
    #[arg(long = "identity-san", value_name = "SAN", requires = "identity")]
    pub(crate) identity_sans: Vec<String>,
    /// Where the identity's files appear in the containers
    /// [default: /var/run/anchorage/identity].
    #[arg(long, value_name = "PATH", requires = "identity")]
    pub(crate) identity_mount_path: Option<String>,
    /// The sidecar's /healthz port (its liveness probe) [default: 8088].
    #[arg(long, value_name = "PORT", conflicts_with = "once")]
    pub(crate) healthz_port: Option<u16>,
}

impl AgentArgs {
    /// Refuses the agent's options without `--agent` (they would be ignored).
    pub(super) fn check_unused(&self) -> Result<(), Failure> {
        let given = [
            ("--once", self.once),
            ("--with-init", self.with_init),
            ("--native-sidecar", self.native_sidecar),
            ("--agent-image", self.agent_image.is_some()),
            ("--server", self.server.is_some()),
            ("--server-ca-configmap", self.server_ca_configmap.is_some()),
            ("--server-ca-secret", self.server_ca_secret.is_some()),
            ("--server-ca-key", self.server_ca_key.is_some()),
            ("--token-secret", self.token_secret.is_some()),
            ("--token-key", self.token_key.is_some()),
            ("--agent-label", !self.agent_labels.is_empty()),
            ("--identity", self.identity.is_some()),
            ("--healthz-port", self.healthz_port.is_some()),
        ];
        match given.iter().find(|(_, given)| *given) {
            Some((flag, _)) => Err(Failure::new(
                Code::Usage,
                format!("{flag} is an option of --agent: add --agent, or leave {flag} out"),
            )),
            None => Ok(()),
        }
    }
}

/// `anchorage k8s patch --agent`.
pub(super) fn patch(args: &K8sPatchArgs) -> Result<Code, Failure> {
    let a = &args.agent;
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
    let mut labels = std::collections::BTreeMap::new();
    for label in &a.agent_labels {
        let Some((key, value)) = label.split_once('=') else {
            return Err(Failure::new(
                Code::Usage,
                format!("--agent-label {label}: not KEY=VALUE"),
            ));
        };
        labels.insert(key.to_owned(), value.to_owned());
    }
    let mut req = AgentPatchRequest::new(kind, args.containers.clone());
    req.init_containers = args.init_containers.clone();
    req.workload_name = args.name.clone();
    req.workload_namespace = args.namespace.clone();
    req.mount_path = args.mount_path.clone();
    req.mode = match (a.once, a.with_init, a.native_sidecar) {
        (true, ..) => AgentMode::Once,
        (false, true, _) => AgentMode::SidecarWithInit,
        (false, false, true) => AgentMode::NativeSidecar,
        (false, false, false) => AgentMode::Sidecar,
    };
    let defaults = AgentSpec::default();
    let or = |given: &Option<String>, default: String| given.clone().unwrap_or(default);
    req.agent = AgentSpec {
        image: or(&a.agent_image, defaults.image),
        server: or(&a.server, defaults.server),
        serve_ca: match (&a.server_ca_secret, &a.server_ca_configmap) {
            (Some(name), _) => ServeCaSource::Secret(name.clone()),
            (None, Some(name)) => ServeCaSource::ConfigMap(name.clone()),
            (None, None) => defaults.serve_ca,
        },
        serve_ca_key: or(&a.server_ca_key, defaults.serve_ca_key),
        token_secret: or(&a.token_secret, defaults.token_secret),
        token_key: or(&a.token_key, defaults.token_key),
        labels,
        identity: a.identity.as_ref().map(|name| AgentIdentity {
            name: name.clone(),
            sans: a.identity_sans.clone(),
            role: None,
            mount_path: or(
                &a.identity_mount_path,
                anchorage_k8s::DEFAULT_IDENTITY_MOUNT_PATH.to_owned(),
            ),
        }),
        healthz_port: a.healthz_port.unwrap_or(defaults.healthz_port),
    };
    if !args.no_env {
        // The runtime variables of `anchorage env`, with the paths the containers see.
        let env = EnvRequest {
            bundle: Path::new(&req.bundle_path()).to_path_buf(),
            dir: Some(Path::new(&req.hashed_dir_path()).to_path_buf()),
            extra: None,
            java: None,
        };
        req.env = variables(&env)
            .into_iter()
            .map(|v| env_var(v.name, v.value))
            .collect();
    }
    match (&args.current, args.patch_type) {
        (_, PatchType::Merge) => {
            return Err(Failure::new(
                Code::Usage,
                "--type merge is for --kind wasmcloudhostconfig; a workload takes strategic or json",
            ));
        }
        (Some(_), PatchType::Strategic) => {
            return Err(Failure::new(
                Code::Usage,
                "--current needs --type json: a strategic merge patch does not read the workload",
            ));
        }
        (None, PatchType::Json) => {
            return Err(Failure::new(
                Code::Usage,
                "--type json needs --current FILE (the workload as `kubectl get -o json` prints it): a JSON patch addresses containers by index",
            ));
        }
        (Some(path), PatchType::Json) => {
            crate::io::check_inputs([("--current", path.as_path())])?;
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
            req.format = PatchFormat::Json { current };
        }
        (None, PatchType::Strategic) => {}
    }
    let patch = agent_patch(&req)?;
    let text = serde_json::to_string_pretty(&patch)
        .map_err(|e| Failure::new(Code::Failure, format!("cannot render JSON: {e}")))?;
    outln!("{text}");
    Ok(Code::Ok)
}
