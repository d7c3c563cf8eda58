//! The command line of `anchorage ca`: the options every CA command shares, then each
//! command's.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::exit::Code;
use crate::options::{ManifestFormat, OutputFormat};

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
    /// Rotate the root with zero downtime, through a running `anchorage serve`: start, status,
    /// advance, abort, prune.
    #[command(subcommand, after_help = super::rotate::EXAMPLES.trim_end())]
    Rotate(super::rotate::RotateAction),
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
