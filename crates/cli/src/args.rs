//! What the user typed (clap), and its resolution into library settings.

use std::path::PathBuf;

use anchorage_trust::{DirLayout, KeyFilter, LoadOptions, NameFilter, Source};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::Code;

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
    /// Serve wasmCloud secrets over NATS, and manage the secrets store.
    #[command(subcommand)]
    Secrets(crate::commands::secrets::SecretsCommand),
    /// Container images: add private CAs to an image in a registry or an OCI layout.
    #[command(subcommand)]
    Image(crate::commands::image::ImageCommand),
    /// This machine's own trust: install CA certificates into the OS store, a JDK, NSS.
    #[command(subcommand)]
    Trust(crate::commands::trust::TrustCommand),
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
    Man,
}

#[derive(Args, Debug)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

#[derive(Subcommand, Debug)]
pub(crate) enum K8sCommand {
    /// Print a patch that mounts the trust volume over /etc/ssl/certs in a workload's containers
    /// and sets the runtime variables (see `anchorage env`).
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
            "\n",
            "Containers are matched by name (--container, repeatable). A ClusterTrustBundle volume holds\n",
            "only the bundle file, so SSL_CERT_DIR is not set for it. NODE_EXTRA_CA_CERTS and DENO_CERT\n",
            "name the combined bundle, or extra-ca.pem with --extra-pem; JAVA_TOOL_OPTIONS is set only\n",
            "with --pkcs12 (it replaces a value the workload sets itself).\n",
            "\n",
        ),
        &[
            (Code::Ok, "printed"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line, or a name Kubernetes would refuse"),
            (Code::BadInput, "--current is unreadable or not the named kind, or a container is not in it"),
        ],
        "",
    ))]
    Patch(K8sPatchArgs),
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["configmap", "secret", "cluster_trust_bundle", "ctb_signer"])))]
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
    /// Kind of workload: deployment, statefulset, daemonset, replicaset, job, cronjob, pod.
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
    /// The workload as `kubectl get -o json` prints it (for --type json).
    #[arg(long, value_name = "FILE")]
    pub(crate) current: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct DoctorArgs {
    /// host:port, https://host[:port]/..., or an OCI reference (oci://registry/repo:tag).
    pub(crate) target: String,
    /// The name to send as SNI and to check the certificate against (default: the host).
    #[arg(long, value_name = "NAME")]
    pub(crate) servername: Option<String>,
    /// A CA file or directory to trust too (repeatable); the fix names the one that helps.
    #[arg(long, value_name = "PATH")]
    pub(crate) ca: Vec<PathBuf>,
    /// Trust the OS store (with --mozilla: only what is chosen).
    #[arg(long)]
    pub(crate) system: bool,
    /// Trust Mozilla's roots (with --system: only what is chosen).
    #[arg(long)]
    pub(crate) mozilla: bool,
    /// Trust exactly this bundle (what a workload using it would see).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["system", "mozilla"])]
    pub(crate) bundle: Option<PathBuf>,
    /// Write the chain the server sent to FILE (PEM, in the order sent), whatever the verdict,
    /// for review.
    #[arg(long, value_name = "FILE")]
    pub(crate) save_chain: Option<PathBuf>,
    /// Seconds allowed for the connection and the handshake.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub(crate) timeout: u64,
    /// Output format: text (for people) or json (the stable schema of docs/cli.md).
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

/// Patch flavour.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum PatchType {
    /// Strategic merge patch.
    #[default]
    Strategic,
    /// RFC 6902 JSON patch.
    Json,
}

#[derive(Subcommand, Debug)]
pub(crate) enum TlsCommand {
    /// List what each trust source contributes to outbound connections: the OS store, Mozilla's
    /// roots and every --tls-ca-path, with what was refused and why.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage tls roots\n",
            "  anchorage --tls-ca-path /etc/corp/ca.pem --tls-ca-path /etc/corp/ca.d tls \\\n",
            "    roots --output json\n",
            "  anchorage tls roots --no-native-certs --tls-certs-file corp.pem\n",
            "\n",
        ),
        &[
            (Code::Ok, "at least one trust anchor"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::BadInput, "a path is missing or holds no certificate, or nothing is trusted at all"),
            (Code::PrivateKey, "a path holds a private key"),
        ],
        "",
    ))]
    Roots(TlsRootsArgs),
}

#[derive(Args, Debug)]
pub(crate) struct TlsRootsArgs {
    /// Leave out the OS store (wasmCloud: load_native_certs = false).
    #[arg(long)]
    pub(crate) no_native_certs: bool,
    /// Leave out Mozilla's roots (wasmCloud: load_webpki_certs = false).
    #[arg(long)]
    pub(crate) no_webpki_certs: bool,
    /// A CA file that must exist (wasmCloud: ssl_certs_file).
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_certs_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

/// How `anchorage env` prints the variables.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum EnvFormat {
    /// `export NAME='value'` lines for sh/bash/zsh (`eval "$(anchorage env ...)"`).
    #[default]
    Shell,
    /// `NAME=value` lines, unquoted, as docker --env-file and compose env_file read them.
    Dotenv,
    /// A JSON document with each variable, its effect and its readers.
    Json,
    /// A Kubernetes container `env:` list (EnvVar objects, YAML).
    K8s,
}

/// Keystore type named in JAVA_TOOL_OPTIONS.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum JavaStoreKind {
    /// PKCS#12.
    #[default]
    Pkcs12,
    /// Legacy JKS.
    Jks,
}

#[derive(Args, Debug)]
pub(crate) struct EnvArgs {
    /// The combined PEM bundle (public roots plus private CAs).
    #[arg(long, value_name = "FILE")]
    pub(crate) bundle: PathBuf,
    /// The OpenSSL hashed directory (for SSL_CERT_DIR).
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// The private CAs only (for NODE_EXTRA_CA_CERTS and DENO_CERT; without it they name
    /// --bundle).
    #[arg(long, value_name = "FILE")]
    pub(crate) extra: Option<PathBuf>,
    /// A Java trust store holding the combined bundle (for JAVA_TOOL_OPTIONS).
    #[arg(long, value_name = "FILE")]
    pub(crate) java_truststore: Option<PathBuf>,
    /// Type of --java-truststore.
    #[arg(long, value_enum, default_value_t, requires = "java_truststore")]
    pub(crate) java_truststore_type: JavaStoreKind,
    /// Password of --java-truststore, passed in JAVA_TOOL_OPTIONS (not needed for a
    /// password-less PKCS#12; a trust store's password guards integrity, not secrecy).
    #[arg(long, value_name = "PASSWORD", requires = "java_truststore")]
    pub(crate) java_truststore_password: Option<String>,
    /// The paths are inside a container or pod: print them as given, do not check them here.
    #[arg(long)]
    pub(crate) in_container: bool,
    /// Output format (`--output` and `-o` are accepted too).
    #[arg(long, short = 'o', alias = "output", value_enum, default_value_t)]
    pub(crate) format: EnvFormat,
}

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

/// How results are printed.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum OutputFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON document on stdout, for scripts.
    Json,
}

/// Which files of a directory to read.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum DirFilter {
    /// .crt .pem .cer .der .p7b .p7c and <hash>.<n> files.
    #[default]
    Certs,
    /// Only *.crt (as wasmCloud's operator reads them).
    Crt,
    /// Every file; non-certificates are reported.
    All,
}

/// Which keys of a ConfigMap/Secret to read.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum K8sKeys {
    /// Only keys ending in .crt (wasmCloud's operator).
    #[default]
    Crt,
    /// Every key (a private key is refused).
    All,
}

/// PKCS#12 protection profile (as trust-manager names them).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum P12Profile {
    /// No encryption and no MAC: Java 17 loads it without a password.
    Unprotected,
    /// PBES2 AES-256-CBC with PBKDF2-HMAC-SHA256, HMAC-SHA256 MAC.
    Modern2023,
    /// pbeWithSHAAnd3-KeyTripleDES-CBC, HMAC-SHA1 MAC (JVMs before 8u301).
    LegacyDes,
    /// pbeWithSHAAnd40BitRC2-CBC, HMAC-SHA1 MAC (what old JVMs wrote).
    LegacyRc2,
}

/// Serialization of Kubernetes objects.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ManifestFormat {
    /// A YAML stream, one document per object.
    #[default]
    Yaml,
    /// JSON (one object, or a v1 List).
    Json,
}

/// Layout of the OpenSSL hashed directory.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Each <hash>.<n> is a real file (survives ConfigMaps and image layers).
    #[default]
    Files,
    /// <sha256>.pem files plus relative <hash>.<n> symbolic links.
    Links,
}

/// Options shared by commands that read sources.
#[derive(Args, Debug)]
pub(crate) struct ReadArgs {
    /// Which files of a directory to read [default: certs].
    #[arg(long, value_enum)]
    pub(crate) dir_filter: Option<DirFilter>,
    /// Which keys of a Kubernetes ConfigMap/Secret to read [default: crt].
    #[arg(long, value_enum)]
    pub(crate) k8s_keys: Option<K8sKeys>,
    /// Password of JKS/PKCS#12 keystore sources (e.g. a JDK's cacerts). Without it a JKS is
    /// read without its integrity check, as Java does, and a PKCS#12 is tried password-less,
    /// then with changeit.
    #[arg(long, value_name = "PASSWORD")]
    pub(crate) source_password: Option<String>,
}

impl ReadArgs {
    /// Refuses (exit 2) these options when no path is read (only --system/--mozilla): they
    /// shape how files are read and would have no effect.
    pub(crate) fn check_has_paths(
        &self,
        has_paths: bool,
        paths: &str,
    ) -> Result<(), crate::exit::Failure> {
        let given = [
            ("--dir-filter", self.dir_filter.is_some()),
            ("--k8s-keys", self.k8s_keys.is_some()),
            ("--source-password", self.source_password.is_some()),
        ];
        match given.iter().find(|(_, set)| *set) {
            Some((option, _)) if !has_paths => Err(crate::exit::Failure::new(
                crate::exit::Code::Usage,
                format!("{option} needs {paths}: it says how files are read, and none is named"),
            )),
            _ => Ok(()),
        }
    }

    pub(crate) fn load_options(&self) -> LoadOptions {
        LoadOptions {
            name_filter: match self.dir_filter.unwrap_or_default() {
                DirFilter::Certs => NameFilter::CertificateLike,
                DirFilter::Crt => NameFilter::Suffix(".crt".into()),
                DirFilter::All => NameFilter::All,
            },
            key_filter: match self.k8s_keys.unwrap_or_default() {
                K8sKeys::Crt => KeyFilter::Suffix(".crt".into()),
                K8sKeys::All => KeyFilter::All,
            },
            keystore_password: self.source_password.clone().map(Into::into),
        }
    }
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("k8s_object").multiple(true).args(["k8s_configmap", "k8s_secret", "k8s_wasmcloud_configmap", "k8s_cluster_trust_bundle"])))]
#[command(group(clap::ArgGroup::new("k8s_namespaced").multiple(true).args(["k8s_configmap", "k8s_secret", "k8s_wasmcloud_configmap"])))]
#[command(group(clap::ArgGroup::new("k8s_trust_layout").multiple(true).args(["k8s_configmap", "k8s_secret"])))]
#[command(group(clap::ArgGroup::new("java_store").multiple(true).args(["pkcs12", "jks"])))]
pub(crate) struct BuildArgs {
    /// Certificate files, directories or Kubernetes manifests; - for standard input.
    #[arg(value_name = "SOURCE")]
    pub(crate) sources: Vec<PathBuf>,
    /// Add the operating system's trust store.
    #[arg(long)]
    pub(crate) system: bool,
    /// Add Mozilla's root certificates (compiled in; works offline).
    #[arg(long)]
    pub(crate) mozilla: bool,
    /// Write the PEM bundle to FILE (atomically).
    #[arg(long, value_name = "FILE")]
    pub(crate) pem: Option<PathBuf>,
    /// Also write the certificates Mozilla's roots lack (the private CAs) to FILE: what
    /// NODE_EXTRA_CA_CERTS and DENO_CERT must name (see `anchorage env`).
    #[arg(long, value_name = "FILE")]
    pub(crate) extra_pem: Option<PathBuf>,
    /// Write a Java PKCS#12 trust store to FILE (javax.net.ssl.trustStoreType=PKCS12).
    #[arg(long, value_name = "FILE")]
    pub(crate) pkcs12: Option<PathBuf>,
    /// Encryption of --pkcs12: unprotected (no password, the default without --store-password),
    /// modern2023 (AES-256, HMAC-SHA256; the default with a password; Java 8u301+/11.0.12+),
    /// legacy-des or legacy-rc2 (for older JVMs).
    #[arg(long, value_enum, requires = "pkcs12")]
    pub(crate) pkcs12_profile: Option<P12Profile>,
    /// Write a legacy Java JKS trust store to FILE (password: --store-password, default changeit).
    #[arg(long, value_name = "FILE")]
    pub(crate) jks: Option<PathBuf>,
    /// Password of --pkcs12/--jks. Visible to other local users in the process list: prefer
    /// --store-password-file.
    #[arg(
        long,
        value_name = "PASSWORD",
        conflicts_with = "store_password_file",
        requires = "java_store"
    )]
    pub(crate) store_password: Option<String>,
    /// Read the --pkcs12/--jks password from the first line of FILE.
    #[arg(long, value_name = "FILE", requires = "java_store")]
    pub(crate) store_password_file: Option<PathBuf>,
    /// Emit a ConfigMap NAME to mount over /etc/ssl/certs (ca-certificates.crt plus <hash>.<n>
    /// keys).
    #[arg(long, value_name = "NAME", help_heading = "Kubernetes")]
    pub(crate) k8s_configmap: Option<String>,
    /// Emit the same layout as a Secret NAME.
    #[arg(long, value_name = "NAME", help_heading = "Kubernetes")]
    pub(crate) k8s_secret: Option<String>,
    /// Emit a ConfigMap NAME of <name>.crt keys for wasmCloud's operator
    /// (certificates.authorities).
    #[arg(long, value_name = "NAME", help_heading = "Kubernetes")]
    pub(crate) k8s_wasmcloud_configmap: Option<String>,
    /// Emit a ClusterTrustBundle NAME (certificates.k8s.io/v1beta1, Kubernetes 1.33+).
    #[arg(long, value_name = "NAME", help_heading = "Kubernetes")]
    pub(crate) k8s_cluster_trust_bundle: Option<String>,
    /// Signer name of the ClusterTrustBundle (its NAME must then start with the signer name,
    /// `/` replaced by `:`, and a `:`).
    #[arg(
        long,
        value_name = "SIGNER",
        requires = "k8s_cluster_trust_bundle",
        help_heading = "Kubernetes"
    )]
    pub(crate) k8s_signer: Option<String>,
    /// Namespace of the ConfigMaps and Secret (none: kubectl's current namespace); needs one of
    /// them (a ClusterTrustBundle is cluster-scoped). Repeat it to emit one copy per namespace
    /// (a ConfigMap is mounted only in its own namespace).
    #[arg(
        long = "namespace",
        short = 'n',
        value_name = "NS",
        requires = "k8s_namespaced",
        help_heading = "Kubernetes"
    )]
    pub(crate) namespaces: Vec<String>,
    /// Only the bundle key in the ConfigMap/Secret, no <hash>.<n> keys: half the size, but
    /// SSL_CERT_DIR / -CApath readers find nothing.
    #[arg(long, requires = "k8s_trust_layout", help_heading = "Kubernetes")]
    pub(crate) k8s_bundle_only: bool,
    /// Also repeat the bundle as ca-bundle.crt and tls-ca-bundle.pem (RHEL-family names).
    #[arg(long, requires = "k8s_trust_layout", help_heading = "Kubernetes")]
    pub(crate) k8s_rhel_aliases: bool,
    /// Also put the private CAs only (what Mozilla's roots lack) in the ConfigMap/Secret as
    /// extra-ca.pem, for NODE_EXTRA_CA_CERTS and DENO_CERT (`k8s patch --extra-pem`).
    #[arg(long, help_heading = "Kubernetes")]
    pub(crate) k8s_extra_pem: bool,
    /// Also put the bundle in the ConfigMap/Secret as truststore.p12, a password-less PKCS#12
    /// trust store for Java (`k8s patch --pkcs12`), as trust-manager's additionalFormats does.
    #[arg(long, help_heading = "Kubernetes")]
    pub(crate) k8s_pkcs12: bool,
    /// Write the Kubernetes objects to FILE (atomically) instead of stdout.
    #[arg(
        long,
        value_name = "FILE",
        requires = "k8s_object",
        help_heading = "Kubernetes"
    )]
    pub(crate) k8s_out: Option<PathBuf>,
    /// Format of the Kubernetes objects.
    #[arg(
        long,
        value_enum,
        default_value_t,
        requires = "k8s_object",
        help_heading = "Kubernetes"
    )]
    pub(crate) k8s_format: ManifestFormat,
    /// Put a `# subject` and SHA-256 comment before each certificate of the PEM bundle.
    #[arg(long)]
    pub(crate) pem_comments: bool,
    /// Write an OpenSSL hashed directory (<hash>.<n>) to DIR (swapped in atomically).
    #[arg(long, value_name = "DIR")]
    pub(crate) openssl_dir: Option<PathBuf>,
    /// Layout of --openssl-dir.
    #[arg(long, value_enum, default_value_t, requires = "openssl_dir")]
    pub(crate) openssl_dir_layout: Layout,
    /// Also write the PEM bundle inside --openssl-dir under this name (e.g. ca-certificates.crt).
    #[arg(long, value_name = "NAME", requires = "openssl_dir")]
    pub(crate) openssl_dir_bundle: Option<String>,
    /// Keep expired certificates (they are reported either way).
    #[arg(long)]
    pub(crate) keep_expired: bool,
    /// Make any problem or warning fatal (exit 3) and write nothing.
    #[arg(long)]
    pub(crate) strict: bool,
    #[command(flatten)]
    pub(crate) read: ReadArgs,
    /// Output format of the summary.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

impl BuildArgs {
    /// The sources in the order given: paths (`-` is standard input, read now), then the OS
    /// store, then Mozilla.
    pub(crate) fn sources(&self) -> Result<Vec<Source>, crate::exit::Failure> {
        let mut sources: Vec<Source> = self
            .sources
            .iter()
            .map(|p| crate::io::source("SOURCE", p))
            .collect::<Result<_, _>>()?;
        if self.system {
            sources.push(Source::System);
        }
        if self.mozilla {
            sources.push(Source::Mozilla);
        }
        Ok(sources)
    }

    pub(crate) fn layout(&self) -> DirLayout {
        match self.openssl_dir_layout {
            Layout::Files => DirLayout::Files,
            Layout::Links => DirLayout::Links,
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct InspectArgs {
    /// A certificate file, bundle, directory or Kubernetes manifest; - for standard input.
    pub(crate) path: PathBuf,
    #[command(flatten)]
    pub(crate) read: ReadArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

/// `anchorage ca`: options shared by every CA command, then the command.
#[derive(Args, Debug)]
#[command(after_help = crate::exit::help(
    concat!(
        "Examples:\n",
        "  anchorage ca init --cn 'Mesh Root CA' --org Example --intermediate\n",
        "  anchorage ca issue --cn bookstore-v2.bookstore.cluster.local --spiffe \\\n",
        "    cluster.local/ns/bookstore/sa/bookstore-v2 --out tls/\n",
        "  anchorage ca show --output json\n",
        "  anchorage ca export --format fsm-secret -n fsm-system --out \\\n",
        "    fsm-ca-bundle.yaml\n",
        "  kubectl get secret -n osm-system osm-ca-bundle -o yaml | anchorage ca \\\n",
        "    import --format fsm-secret -\n",
        "\n",
        "The CA lives in DIR/anchorage.redb (mode 0600, directory 0700): DIR is --data-dir, else\n",
        "$ANCHORAGE_DATA_DIR, else $XDG_DATA_HOME/anchorage, else ~/.local/share/anchorage. Its keys\n",
        "are encrypted with the passphrase from --passphrase-file or $ANCHORAGE_CA_PASSPHRASE when one\n",
        "is given (then every command that signs or exports needs it); without one they are stored in\n",
        "clear, protected by the file's mode alone.\n",
        "\n",
    ),
    &[
        (Code::Ok, "done (warnings, if any, were printed on stderr)"),
        (Code::Failure, "unexpected failure"),
        (Code::Usage, "invalid command line or option value (key type, kind, SAN, TTL, name)"),
        (Code::BadInput, "bad input: an import file or Secret, the passphrase file, or a CA that cannot issue now"),
        (Code::Output, "an output could not be written (the previous output is untouched)"),
        (Code::Unreachable, "ca issue --backend vault: the server could not be reached or answered an error"),
        (Code::CaMissing, "no CA in the store: run `anchorage ca init` or `anchorage ca import`"),
        (Code::CaExists, "a CA already exists: add --force to replace it"),
        (Code::Passphrase, "the stored CA key is encrypted and the passphrase is missing or wrong"),
        (Code::Store, "the store cannot be used: in use by another process, unreadable, or its CA record is damaged"),
        (Code::Refused, "ca issue: the CA refused the request (vault: the role; built-in: a name outside the\nCA's name constraints, or a wildcard over a public suffix such as *.com)"),
    ],
    "",
))]
pub(crate) struct CaCommand {
    /// Directory of the CA store (default: $ANCHORAGE_DATA_DIR, else
    /// $XDG_DATA_HOME/anchorage, else ~/.local/share/anchorage).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// File whose first line is the passphrase of the CA key (default:
    /// $ANCHORAGE_CA_PASSPHRASE). `init` and `import` encrypt the key with it; other commands
    /// decrypt with it.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) passphrase_file: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) action: CaAction,
}

#[derive(Subcommand, Debug)]
pub(crate) enum CaAction {
    /// Create the CA: a self-signed root (and optionally an intermediate that signs leaves).
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage ca init\n",
            "  anchorage ca init --cn 'Mesh Root CA' --org Example --key p384 --ttl 10y\n",
            "  anchorage ca init --intermediate --intermediate-ttl 2y --passphrase-file \\\n",
            "    ca.pass --output json\n",
            "  anchorage ca init --permitted-dns cluster.local --permitted-uri \\\n",
            "    cluster.local\n",
            "      # a root that can vouch only for *.cluster.local names and SPIFFE IDs\n",
            "  anchorage ca init --force    # replace the existing CA\n",
            "\n",
            "Without a passphrase (--passphrase-file or ANCHORAGE_CA_PASSPHRASE) the key is stored in\n",
            "clear in the 0600 store file, and a warning says so.\n",
            "\n",
        ),
        &[
            (Code::Ok, "created"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line (key type, TTL under one day, name, a --permitted-* value)"),
            (Code::BadInput, "the passphrase file is unreadable or empty"),
            (Code::CaExists, "a CA already exists: add --force to replace it"),
            (Code::Store, "the store cannot be used"),
        ],
        "",
    ))]
    Init(CaInitArgs),
    /// Issue a certificate and its key from the CA, written into a directory.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage ca issue --cn bookstore-v2.bookstore.cluster.local --out tls/\n",
            "  anchorage ca issue --cn web --san web.example --san 10.0.0.5 --kind server \\\n",
            "    --ttl 90d --out web-tls/\n",
            "  anchorage ca issue --cn bookstore-v2.bookstore.cluster.local --spiffe \\\n",
            "    cluster.local/ns/bookstore/sa/bookstore-v2 --out tls/ --output json\n",
            "  anchorage ca issue --cn admission.example.svc --kind webhook --key rsa2048 \\\n",
            "    --out webhook-tls/\n",
            "\n",
            "DIR receives exactly cert.pem (the certificate), chain.pem (certificate then intermediates:\n",
            "what a server sends), key.pem (PKCS#8, mode 0600) and ca.pem (the roots peers trust). DIR is\n",
            "replaced as a whole, atomically: it must be new, empty, or hold only those files; an error\n",
            "leaves it untouched. A TTL that outlives the CA is cut to the CA's end (a warning says so;\n",
            "--no-clamp refuses instead). The key is never printed.\n",
            "\n",
            "--backend vault issues from a Vault/OpenBao PKI role instead (token from VAULT_TOKEN or\n",
            "BAO_TOKEN, or --approle-role-id with --approle-secret-id-file; TLS trust: --tls-ca-path):\n",
            "  VAULT_TOKEN=... anchorage --tls-ca-path openbao-ca.pem ca issue --backend \\\n",
            "    vault \\\n",
            "    --vault-addr https://openbao.internal:8200 --vault-role mesh --cn web.mesh.example --out tls/\n",
            "\n",
        ),
        &[
            (Code::Ok, "issued and written (a clamped lifetime is a warning)"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line (CN, SAN, SPIFFE ID, kind, key type, TTL under a minute)"),
            (Code::BadInput, "the CA cannot issue now (expired; or --no-clamp and the TTL outlives it), or the\npassphrase file is unreadable"),
            (Code::Output, "DIR could not be written, or holds other files (untouched)"),
            (Code::Unreachable, "vault: the server could not be reached, timed out, or answered an error (e.g. 403)"),
            (Code::CaMissing, "no CA in the store"),
            (Code::Passphrase, "the CA key is encrypted and the passphrase is missing or wrong"),
            (Code::Store, "the store cannot be used"),
            (Code::Refused, "refused: a name outside the CA's name constraints (--permitted-* of ca init), a\nwildcard over a public suffix (*.com, *.co.uk); vault: the role refused the request\n(a name it does not allow, a missing purpose)"),
        ],
        "",
    ))]
    Issue(CaIssueArgs),
    /// Show the CA: root and intermediate, fingerprints, validity, key type and storage.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage ca show\n",
            "  anchorage ca show --output json | jq -r .root.sha256\n",
            "\n",
            "Only the certificates are read: an encrypted CA is shown without its passphrase.\n",
            "\n",
        ),
        &[
            (Code::Ok, "shown"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::CaMissing, "no CA in the store"),
            (Code::Store, "the store cannot be used"),
        ],
        "",
    ))]
    Show(CaShowArgs),
    /// Export the CA (certificates and keys) as PEM files or a Kubernetes Secret.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage ca export --format pem --out ca-backup/\n",
            "  anchorage ca export --format fsm-secret -n fsm-system --out \\\n",
            "    fsm-ca-bundle.yaml\n",
            "  anchorage ca export --format fsm-secret --name osm-ca-bundle -n osm-system \\\n",
            "    | kubectl apply -f -\n",
            "  anchorage ca export --format k8s-tls-secret --name mesh-ca -n cert-manager \\\n",
            "    --out mesh-ca.yaml\n",
            "\n",
            "pem: a directory of ca.crt (the roots), ca.key (the root key, when held), and with an\n",
            "intermediate intermediate.crt and intermediate.key; without --out the same PEM blocks\n",
            "go to stdout. fsm-secret: an Opaque Secret (default name fsm-ca-bundle) with ca.crt,\n",
            "private.key and expiration, as Flomesh and Open Service Mesh read it (a CA with an\n",
            "intermediate cannot be expressed: use pem). k8s-tls-secret: a kubernetes.io/tls Secret\n",
            "(default name anchorage-ca) with tls.crt, tls.key and ca.crt, as cert-manager's CA issuer\n",
            "reads it. Files holding keys are written 0600, atomically. Keys are never printed to a\n",
            "terminal: give --out, or pipe stdout.\n",
            "\n",
        ),
        &[
            (Code::Ok, "exported"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line (name, namespace, stdout is a terminal, layout that cannot hold this CA)"),
            (Code::Output, "--out could not be written (untouched)"),
            (Code::CaMissing, "no CA in the store"),
            (Code::Passphrase, "the CA key is encrypted and the passphrase is missing or wrong"),
            (Code::Store, "the store cannot be used"),
        ],
        "",
    ))]
    Export(CaExportArgs),
    /// Take a CA over: PEM files, or a Flomesh/OSM or kubernetes.io/tls Secret manifest.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage ca import --format pem root.crt root.key\n",
            "  anchorage ca import --format pem intermediate.crt root.crt \\\n",
            "    intermediate.key --force\n",
            "  kubectl get secret -n fsm-system fsm-ca-bundle -o yaml > fsm.yaml\n",
            "  anchorage ca import --format fsm-secret fsm.yaml\n",
            "  anchorage ca import --format k8s-tls-secret ca-key-pair.json --output json\n",
            "\n",
            "pem: every FILE is read; certificates (root and intermediates, any order) and keys\n",
            "(PKCS#8, SEC 1 or PKCS#1; the signing CA's key is required) are told apart by content.\n",
            "Secrets are read as `kubectl get secret -o yaml|json` prints them (base64 data, and\n",
            "stringData). The certificates must be CAs valid now forming one chain to a self-signed\n",
            "root, and every key must belong to one of them.\n",
            "\n",
        ),
        &[
            (Code::Ok, "imported"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::BadInput, "a file is unreadable, or is not a usable CA (not a CA, expired, key mismatch, no\nchain to a root, missing Secret entry); the message names the file and entry"),
            (Code::CaExists, "a CA already exists: add --force to replace it"),
            (Code::Store, "the store cannot be used"),
        ],
        "",
    ))]
    Import(CaImportArgs),
}

#[derive(Args, Debug)]
pub(crate) struct CaInitArgs {
    /// CommonName of the root.
    #[arg(long, value_name = "NAME", default_value = "Anchorage Root CA")]
    pub(crate) cn: String,
    /// Organization of the root (and intermediate).
    #[arg(long, value_name = "ORG")]
    pub(crate) org: Option<String>,
    /// Key type of the CA: p256, p384, ed25519, rsa2048, rsa3072 or rsa4096.
    #[arg(long, value_name = "TYPE", default_value = "p256")]
    pub(crate) key: String,
    /// Lifetime of the root: a number and a unit (s, m, h, d, w, y), e.g. 10y, 3650d.
    #[arg(long, value_name = "DURATION", default_value = "10y")]
    pub(crate) ttl: String,
    /// Also create an intermediate CA that signs leaves (the root key then only signs it).
    #[arg(long)]
    pub(crate) intermediate: bool,
    /// CommonName of the intermediate.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "Anchorage Intermediate CA",
        requires = "intermediate"
    )]
    pub(crate) intermediate_cn: String,
    /// Lifetime of the intermediate (cut to the root's end).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5y",
        requires = "intermediate"
    )]
    pub(crate) intermediate_ttl: String,
    /// Constrain the CA to this DNS domain and the names below it (e.g. cluster.local; a
    /// leading '.' permits only the names below it). Repeatable. Any --permitted-* puts a
    /// critical name constraints extension on the root: verifiers refuse names outside it,
    /// whoever signs them, and `ca issue` refuses them (exit 12). Without --permitted-ip,
    /// every IP address is then excluded.
    #[arg(long = "permitted-dns", value_name = "DOMAIN")]
    pub(crate) permitted_dns: Vec<String>,
    /// Constrain the CA's IP address SANs to this subnet, in CIDR form (10.0.0.0/8,
    /// fd00::/8). Repeatable.
    #[arg(long = "permitted-ip", value_name = "CIDR")]
    pub(crate) permitted_ip: Vec<String>,
    /// Constrain the CA's URI SANs (SPIFFE IDs among them) to this host (exactly; a leading
    /// '.' permits the hosts below it), e.g. the SPIFFE trust domain cluster.local.
    /// Repeatable.
    #[arg(long = "permitted-uri", value_name = "DOMAIN")]
    pub(crate) permitted_uri: Vec<String>,
    /// Replace the existing CA (compare-and-swap on the revision read).
    #[arg(long)]
    pub(crate) force: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

/// Where `ca issue` gets its certificate.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum CaBackend {
    /// The CA in the store (`ca init` / `ca import`).
    #[default]
    Builtin,
    /// A HashiCorp Vault or OpenBao PKI secrets engine (--vault-*).
    Vault,
}

/// Where the key of a Vault-issued certificate is made.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum VaultKeyLocation {
    /// By OpenBao (`<mount>/issue/<role>`); the key comes back inside TLS.
    #[default]
    Server,
    /// Here: only a CSR is sent (`<mount>/sign/<role>`); the key never leaves this machine.
    Local,
}

#[derive(Args, Debug)]
pub(crate) struct CaIssueArgs {
    /// The CommonName, e.g. bookstore-v2.bookstore.cluster.local (also a DNS SAN when it is a
    /// DNS name).
    #[arg(long, value_name = "NAME")]
    pub(crate) cn: String,
    /// A subject alternative name: DNS:name, IP:addr, URI:uri, or a bare value (an IP address,
    /// a scheme://URI, else a DNS name). Repeatable.
    #[arg(long = "san", value_name = "SAN")]
    pub(crate) sans: Vec<String>,
    /// What the certificate is for: service (serverAuth + clientAuth, 24h), webhook
    /// (serverAuth, 10y), client (clientAuth, 24h) or server (serverAuth, 24h).
    #[arg(long, value_name = "KIND", default_value = "service")]
    pub(crate) kind: String,
    /// Lifetime: a number and a unit (s, m, h, d, w, y), e.g. 24h, 90d (default: the kind's).
    #[arg(long, value_name = "DURATION")]
    pub(crate) ttl: Option<String>,
    /// Refuse (exit 3) instead of cutting a TTL that outlives the CA.
    #[arg(long)]
    pub(crate) no_clamp: bool,
    /// Key type: p256, p384, ed25519, rsa2048, rsa3072 or rsa4096.
    #[arg(long, value_name = "TYPE", default_value = "p256")]
    pub(crate) key: String,
    /// A SPIFFE ID as a URI SAN: TRUST_DOMAIN/ns/NS/sa/SA, or a full spiffe://… ID.
    /// Repeatable.
    #[arg(long, value_name = "ID")]
    pub(crate) spiffe: Vec<String>,
    /// The directory to write cert.pem, chain.pem, key.pem and ca.pem into (replaced
    /// atomically).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// Which CA issues: the builtin CA in the store, or a Vault/OpenBao PKI engine.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) backend: CaBackend,
    /// Output format of the summary.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
    // Last: its help heading applies to the options after it.
    #[command(flatten)]
    pub(crate) vault: VaultArgs,
}

/// `ca issue --backend vault`: where OpenBao is and how to log in. The token comes from
/// VAULT_TOKEN or BAO_TOKEN, or AppRole is used; TLS trust is the global --tls-ca-path plus the
/// OS store and Mozilla's roots.
#[derive(Args, Debug)]
#[command(next_help_heading = "Vault/OpenBao backend (--backend vault)")]
pub(crate) struct VaultArgs {
    /// The server, https://vault.example:8200 (default: $VAULT_ADDR, else $BAO_ADDR).
    #[arg(long, value_name = "URL")]
    pub(crate) vault_addr: Option<String>,
    /// The PKI role that issues.
    #[arg(long, value_name = "ROLE")]
    pub(crate) vault_role: Option<String>,
    /// Where the PKI secrets engine is mounted [default: pki].
    #[arg(long, value_name = "PATH")]
    pub(crate) vault_mount: Option<String>,
    /// Where the key is made: server (OpenBao; the default) or local (a CSR is sent).
    #[arg(long, value_enum)]
    pub(crate) vault_key_location: Option<VaultKeyLocation>,
    /// The namespace (X-Vault-Namespace), when there is one.
    #[arg(long, value_name = "NS")]
    pub(crate) vault_namespace: Option<String>,
    /// Log in with AppRole: the role ID (with --approle-secret-id-file).
    #[arg(long, value_name = "ID", requires = "approle_secret_id_file")]
    pub(crate) approle_role_id: Option<String>,
    /// The file whose first line is the AppRole secret ID.
    #[arg(long, value_name = "FILE", requires = "approle_role_id")]
    pub(crate) approle_secret_id_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct CaShowArgs {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

/// How a CA is exported or imported.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CaFormat {
    /// PEM files: ca.crt, ca.key, intermediate.crt, intermediate.key.
    Pem,
    /// The Flomesh/Open Service Mesh `fsm-ca-bundle` Secret: ca.crt, private.key, expiration.
    FsmSecret,
    /// A kubernetes.io/tls Secret: tls.crt, tls.key, ca.crt (cert-manager's CA issuer).
    K8sTlsSecret,
}

#[derive(Args, Debug)]
pub(crate) struct CaExportArgs {
    /// The layout.
    #[arg(long, value_enum)]
    pub(crate) format: CaFormat,
    /// Where to write: a directory for pem, a file for the Secrets (default: stdout, never a
    /// terminal).
    #[arg(long, value_name = "PATH")]
    pub(crate) out: Option<PathBuf>,
    /// Name of the Secret (default: fsm-ca-bundle, or anchorage-ca for k8s-tls-secret).
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Namespace of the Secret (none: kubectl's current namespace).
    #[arg(long, short = 'n', value_name = "NS")]
    pub(crate) namespace: Option<String>,
    /// Serialization of the Secret [default: yaml].
    #[arg(long, value_enum)]
    pub(crate) k8s_format: Option<ManifestFormat>,
    /// Format of the summary printed when --out is given.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

#[derive(Args, Debug)]
pub(crate) struct CaImportArgs {
    /// The layout of the files.
    #[arg(long, value_enum)]
    pub(crate) format: CaFormat,
    /// pem: certificate and key files; secrets: one Secret manifest (YAML or JSON); - for
    /// standard input.
    #[arg(value_name = "FILE", required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// Replace the existing CA (compare-and-swap on the revision read).
    #[arg(long)]
    pub(crate) force: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
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
