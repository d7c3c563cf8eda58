//! The first of the CLI's two stages (as ripgrep's): what the user typed, parsed by clap into
//! [`Cli`]: the global options, then one [`Command`]. Each command's own arguments live beside
//! it in its module under [`crate::commands`]; this module only lists the commands.
//!
//! Adding a command: its module (an arguments type implementing [`Run`]), a variant of
//! [`Command`] and its line in [`each_command!`]; nothing else.

use std::path::PathBuf;

use clap::{Args, CommandFactory as _, Parser, Subcommand};

use crate::commands::agent::AgentArgs;
use crate::commands::bundle::BundleCommand;
use crate::commands::ca::CaCommand;
use crate::commands::control::consumers::ConsumersCommand;
use crate::commands::control::serve::ServeArgs;
use crate::commands::control::token::TokenCommand;
use crate::commands::controller::ControllerArgs;
use crate::commands::doctor::DoctorArgs;
use crate::commands::env::EnvArgs;
use crate::commands::image::ImageCommand;
use crate::commands::k8s::K8sCommand;
use crate::commands::secrets::SecretsCommand;
use crate::commands::tls::TlsCommand;
use crate::commands::trust::TrustCommand;
use crate::exit::{Code, Failure};
use crate::globals::{CommandTraits, GlobalArgs, Globals, Run};

/// Anchorage: trust for private CAs, everywhere.
#[derive(Parser, Debug)]
#[command(name = "anchorage", version, about, after_help = crate::exit::all_codes_help())]
pub(crate) struct Cli {
    /// More diagnostics on stderr (-v info, -vv debug); ANCHORAGE_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub(crate) verbose: u8,
    /// No progress, notes or warnings on stderr: only errors (and what stdout carries).
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
    /// A CA file or directory trusted by every outbound TLS connection anchorage makes (on top
    /// of the OS store and Mozilla's roots), as wasmCloud's host `--tls-ca-path`. Repeatable.
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) tls_ca_path: Vec<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// The global options, for [`Globals::resolve`].
    pub(crate) fn global_args(&self) -> GlobalArgs {
        GlobalArgs {
            verbose: self.verbose,
            quiet: self.quiet,
            tls_ca_paths: self.tls_ca_path.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Build and inspect CA trust bundles.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Print the environment variables that point every runtime at a trust bundle.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  eval \"$(anchorage env --bundle out/ca-bundle.pem --dir out/certs --extra \\\n",
            "    out/extra.pem)\"\n",
            "  anchorage env --bundle out/ca-bundle.pem --java-truststore out/trust.p12 \\\n",
            "    --format dotenv > trust.env\n",
            "  anchorage env --in-container --bundle /etc/ssl/certs/ca-certificates.crt \\\n",
            "    --dir /etc/ssl/certs --format k8s\n",
            "\n",
            "Variables that replace a runtime's default store (SSL_CERT_FILE, REQUESTS_CA_BUNDLE,\n",
            "CURL_CA_BUNDLE, JAVA_TOOL_OPTIONS, ...) name --bundle, which must hold public roots too;\n",
            "those that add to it (NODE_EXTRA_CA_CERTS, DENO_CERT) name --extra, the private CAs only\n",
            "(`anchorage bundle build ... --extra-pem FILE` writes it), or --bundle without --extra.\n",
            "SSL_CERT_DIR and JAVA_TOOL_OPTIONS are left out without --dir / --java-truststore.\n",
            "Programs that ignore every variable (compiled-in roots, browsers) are listed in\n",
            "--format json (ignore_all) and in docs/runtimes.md.\n",
            "\n",
        ),
        &[
            (Code::Ok, "printed"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::BadInput, "a named file is missing, unreadable or holds no certificate"),
            (Code::PrivateKey, "a named file holds a private key"),
        ],
        "",
    ))]
    Env(EnvArgs),
    /// Connect to a TLS server, show the chain it sends, say why it is (not) trusted and how
    /// to fix it.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage doctor registry.corp.example:443\n",
            "  anchorage doctor https://git.corp.example/ --ca corp-root.pem --output json\n",
            "  anchorage doctor oci://registry.corp.example/team/app:1.2 --bundle \\\n",
            "    /etc/ssl/certs/ca-certificates.crt\n",
            "  anchorage doctor 10.0.0.5:8443 --servername api.internal --save-chain \\\n",
            "    presented.pem\n",
            "\n",
            "Trust: the OS store plus Mozilla's roots (as the wasmCloud HTTP client), plus --tls-ca-path;\n",
            "--bundle FILE uses that bundle alone; --system / --mozilla pick the stores explicitly. --ca\n",
            "adds CA files to the trust; when only they make the chain trusted, the fix says how to add\n",
            "them to your bundle. The fix never suggests disabling verification.\n",
            "\n",
        ),
        &[
            (Code::Ok, "trusted and healthy"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line or target"),
            (Code::BadInput, "a --ca/--bundle file is missing or holds no certificate"),
            (Code::PrivateKey, "a --ca/--bundle file holds a private key"),
            (Code::Output, "--save-chain could not be written"),
            (Code::Untrusted, "untrusted, or trusted with problems (expired, wrong name, weak, expiring soon)"),
            (Code::Unreachable, "could not connect or complete a handshake (when the server ended the handshake\nafter sending its chain, the chain is still diagnosed and printed)"),
        ],
        concat!(
            "The report goes to stdout; with --output json a failure prints {\"target\", \"error\",\n",
            "\"exit_code\"} there instead. The JSON schema is in docs/cli.md.",
        ),
    ))]
    Doctor(DoctorArgs),
    /// Kubernetes helpers.
    #[command(subcommand)]
    K8s(K8sCommand),
    /// Show the trust anchorage's own outbound TLS connections use.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// The internal CA: create it, issue mTLS certificates, show, export and import it.
    Ca(CaCommand),
    /// The control plane: issue, renew and revoke certificates and serve the trust bundle over
    /// an HTTPS API (with a Vault-PKI-compatible subset), until SIGTERM.
    Serve(Box<ServeArgs>),
    /// API tokens for `anchorage serve`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The consumers of a running `anchorage serve`: who installed which bundle.
    #[command(subcommand)]
    Consumers(ConsumersCommand),
    /// Keep a workload's trust bundle (and identity) from `anchorage serve` current on disk,
    /// reload it, and acknowledge; `agent status` shows what is installed.
    Agent(Box<AgentArgs>),
    /// Kubernetes: keep `Bundle`s (trust.anchorage.dev/v1alpha1) written as trust ConfigMaps or
    /// Secrets across namespaces, until SIGTERM; `controller crd` prints the CRD.
    Controller(ControllerArgs),
    /// Serve wasmCloud secrets over NATS, and manage the secrets store.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Container images: add private CAs to an image in a registry or an OCI layout.
    #[command(subcommand)]
    Image(ImageCommand),
    /// This machine's own trust: install CA certificates into the OS store, a JDK, NSS.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = concat!(
        "Examples:\n",
        "  anchorage completions bash > \\\n",
        "    ~/.local/share/bash-completion/completions/anchorage\n",
        "  anchorage completions zsh > \"${fpath[1]}/_anchorage\"\n",
        "  anchorage completions fish > ~/.config/fish/completions/anchorage.fish",
    ))]
    Completions(CompletionsArgs),
    /// Print the manual page (roff) of anchorage and its commands.
    #[command(
        after_help = "Example:\n  anchorage man > ~/.local/share/man/man1/anchorage.1 && man anchorage"
    )]
    Man(ManArgs),
}

/// `$body` with `$args` bound to the arguments of whichever command was given: the one list of
/// the variants of [`Command`].
macro_rules! each_command {
    ($command:expr, $args:ident => $body:expr) => {
        match $command {
            Command::Bundle($args) => $body,
            Command::Env($args) => $body,
            Command::Doctor($args) => $body,
            Command::K8s($args) => $body,
            Command::Tls($args) => $body,
            Command::Ca($args) => $body,
            Command::Serve($args) => $body,
            Command::Token($args) => $body,
            Command::Consumers($args) => $body,
            Command::Agent($args) => $body,
            Command::Controller($args) => $body,
            Command::Secrets($args) => $body,
            Command::Image($args) => $body,
            Command::Trust($args) => $body,
            Command::Completions($args) => $body,
            Command::Man($args) => $body,
        }
    };
}

impl Command {
    /// What [`Globals::resolve`] needs to know about the command.
    pub(crate) fn traits(&self) -> CommandTraits {
        each_command!(self, args => CommandTraits {
            json: args.json(),
            connects_out: args.connects_out(),
        })
    }

    /// Runs the command with the resolved global options.
    pub(crate) fn run(self, globals: &Globals) -> Result<Code, Failure> {
        each_command!(self, args => args.run(globals))
    }
}

#[derive(Args, Debug)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// `anchorage completions SHELL`: the completion script, generated from the clap definition.
impl Run for CompletionsArgs {
    fn run(self, _: &Globals) -> Result<Code, Failure> {
        let mut command = Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut command, "anchorage", &mut script);
        out!("{}", String::from_utf8_lossy(&script));
        Ok(Code::Ok)
    }
}

/// `anchorage man` takes no arguments.
#[derive(Args, Debug)]
pub(crate) struct ManArgs {}

/// `anchorage man`: one roff page for anchorage and every command (as `git help` pages list
/// their subcommands), generated from the clap definition.
impl Run for ManArgs {
    fn run(self, _: &Globals) -> Result<Code, Failure> {
        let command = Cli::command();
        let mut page = Vec::new();
        let render = |page: &mut Vec<u8>, command: &clap::Command| {
            clap_mangen::Man::new(command.clone()).render(page)
        };
        let failed = |e: std::io::Error| {
            Failure::new(Code::Failure, format!("cannot render the manual page: {e}"))
        };
        render(&mut page, &command).map_err(failed)?;
        // Each command's own options, as sections of the same page.
        fn walk(command: &clap::Command, path: &str, page: &mut Vec<u8>) -> std::io::Result<()> {
            for sub in command.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                let man = clap_mangen::Man::new(sub.clone());
                page.extend_from_slice(format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes());
                man.render_description_section(page)?;
                man.render_options_section(page)?;
                man.render_extra_section(page)?;
                walk(sub, &name, page)?;
            }
            Ok(())
        }
        walk(&command, "anchorage", &mut page).map_err(failed)?;
        out!("{}", String::from_utf8_lossy(&page));
        Ok(Code::Ok)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// Every command's `--help` is built (its exit-code table numbered from `Code`, in order,
    /// each code once) and clap accepts the definition.
    #[test]
    fn every_help_builds_with_ordered_exit_codes() {
        fn walk(command: &clap::Command, seen: &mut usize) {
            if let Some(after) = command.get_after_help() {
                let text = after.to_string();
                if let Some((_, table)) = text.split_once("Exit codes:\n") {
                    let codes: Vec<u8> = table
                        .lines()
                        .take_while(|l| !l.is_empty())
                        .filter_map(|l| l.trim_start().split_once("  "))
                        .filter_map(|(n, _)| n.parse().ok())
                        .collect();
                    assert!(
                        codes.windows(2).all(|w| w[0] < w[1]),
                        "{}: {codes:?}",
                        command.get_name()
                    );
                    *seen += 1;
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, seen);
            }
        }
        let command = super::Cli::command();
        command.clone().debug_assert();
        let mut seen = 0;
        walk(&command, &mut seen);
        assert!(seen > 20, "{seen} tables");
    }
}
