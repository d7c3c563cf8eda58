//! `anchorage controller`: thin wiring over `anchorage-controller` (docs/controller.md). It runs
//! the Bundle controller until SIGTERM/SIGINT; `anchorage controller crd` prints the Bundle CRD
//! generated from the Rust type (what deploy/kubernetes/controller/crd.yaml holds).

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
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::Unreachable, "no Kubernetes client configuration (no service account, no KUBECONFIG)"),
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
}

/// `anchorage controller <subcommand>`.
#[derive(Subcommand, Debug)]
pub(crate) enum ControllerCommand {
    /// Print the Bundle CRD (YAML), generated from the Rust type.
    #[command(
        after_help = "Example:\n  anchorage controller crd > crd.yaml && kubectl apply -f crd.yaml"
    )]
    Crd,
}

impl Run for ControllerArgs {
    fn run(self, _globals: &Globals) -> Result<Code, Failure> {
        if let Some(ControllerCommand::Crd) = self.command {
            let yaml = anchorage_controller::crd_yaml()
                .map_err(|e| Failure::new(Code::Failure, format!("cannot render the CRD: {e}")))?;
            crate::io::write_stdout_bytes(yaml.as_bytes())?;
            return Ok(Code::Ok);
        }
        let mut settings = anchorage_controller::Settings::new(&self.trust_namespace);
        settings.resync = self.resync;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Failure::new(Code::Failure, format!("cannot start a runtime: {e}")))?;
        runtime.block_on(async move {
            anchorage_controller::run_with_default_client(settings)
                .await
                .map_err(|e| {
                    Failure::new(
                        Code::Unreachable,
                        format!(
                            "no Kubernetes client: {e}; run it in a pod with a service account, or set KUBECONFIG"
                        ),
                    )
                })
        })?;
        Ok(Code::Ok)
    }
}
