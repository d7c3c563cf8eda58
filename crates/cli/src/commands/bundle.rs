//! `anchorage bundle build|inspect`: the subcommands, each in its own module.

use clap::Subcommand;

use super::build::BuildArgs;
use super::inspect::InspectArgs;
use crate::exit::{Code, Failure};
use crate::globals::{Globals, Run};
use crate::options::OutputFormat;

#[derive(Subcommand, Debug)]
pub(crate) enum BundleCommand {
    /// Build a de-duplicated trust bundle and write it as a PEM file and/or an OpenSSL hashed
    /// directory, atomically.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage bundle build corp-root.pem --mozilla --pem \\\n",
            "    /etc/ssl/certs/ca-certificates.crt\n",
            "  anchorage bundle build ./cas/ ca-configmap.yaml --system --openssl-dir \\\n",
            "    ./certs --output json\n",
            "  anchorage bundle build corp.p7b --mozilla > bundle.pem\n",
            "  anchorage bundle build corp.pem --mozilla --pkcs12 trust.p12 --jks trust.jks\n",
            "  anchorage bundle build corp.pem --mozilla --pem ca.pem --extra-pem \\\n",
            "    extra.pem   # then: anchorage env\n",
            "  anchorage bundle build corp.pem --mozilla --k8s-configmap trust -n apps \\\n",
            "    --k8s-out trust.yaml\n",
            "\n",
            "A SOURCE is a PEM/DER/PKCS#7 file, a Java keystore (JKS/PKCS#12, see --source-password),\n",
            "a directory (read recursively), or a Kubernetes ConfigMap/Secret/ClusterTrustBundle\n",
            "manifest (.yaml/.yml). With no --pem and no --openssl-dir the PEM bundle\n",
            "goes to stdout and the summary to stderr (with --output json both are in the one\n",
            "document on stdout). A SOURCE of - is standard input.\n",
            "\n",
        ),
        &[
            (Code::Ok, "done (warnings, if any, were printed on stderr)"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line: a flag without effect, or outputs that would overwrite\neach other or an input (nothing written)"),
            (Code::BadInput, "bad input: a named SOURCE missing or unreadable, no usable certificate, or any\nproblem with --strict (nothing written)"),
            (Code::PrivateKey, "a private key was found among the certificates (refused, never copied)"),
            (Code::Output, "an output or stdout could not be written (the previous output is untouched)"),
        ],
        "",
    ))]
    Build(Box<BuildArgs>),
    /// List what a file, directory, bundle or manifest holds.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage bundle inspect /etc/ssl/certs/ca-certificates.crt\n",
            "  anchorage bundle inspect corp.p7b --output json | jq \\\n",
            "    '.certificates[].subject'\n",
            "  kubectl get cm trust -o yaml | anchorage bundle inspect -\n",
            "\n",
        ),
        &[
            (Code::Ok, "at least one certificate and no problem"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::BadInput, "PATH is missing or unreadable, problems were found (listed), or no certificate"),
            (Code::PrivateKey, "a private key was found (listed by location only, never printed)"),
        ],
        "",
    ))]
    Inspect(InspectArgs),
}

impl Run for BundleCommand {
    fn json(&self) -> bool {
        let output = match self {
            BundleCommand::Build(a) => a.output,
            BundleCommand::Inspect(a) => a.output,
        };
        output == OutputFormat::Json
    }

    fn run(self, globals: &Globals) -> Result<Code, Failure> {
        match self {
            BundleCommand::Build(a) => super::build::run(*a, globals),
            BundleCommand::Inspect(a) => super::inspect::run(a, globals),
        }
    }
}
