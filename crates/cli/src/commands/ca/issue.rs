//! `anchorage ca issue`: one certificate from the stored CA (or from a Vault/OpenBao PKI role),
//! written into a directory.

use std::path::Path;

use anchorage_ca::{
    CertKind, CertificateRequest, Identity, IssueError, IssuedCertificate, Issuer as _, IssuerId,
    KeyType, LifetimePolicy, San, SpiffeId,
};
use anchorage_ca_vault::{AppRole, KeyLocation, VaultAuth, VaultConfig, VaultError, VaultIssuer};
use anchorage_x509::{Sha256Fingerprint, Timestamp};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use zeroize::Zeroizing;

use super::args::{CaBackend, CaIssueArgs, VaultArgs, VaultKeyLocation};
use super::{
    Context, FileView, OutFile, check_out_dir, human_seconds, now, parse_duration, parse_key_type,
    write_dir,
};
use crate::exit::Classify as _;
use crate::exit::{Code, Failure};
use crate::globals::Outbound;
use crate::options::OutputFormat;
use crate::render::print_json;

/// The files `ca issue` writes, in this order; key.pem is 0600.
const FILES: [&str; 4] = ["cert.pem", "chain.pem", "key.pem", "ca.pem"];

/// What was typed, resolved into a request: every value is checked here, before the store is
/// opened, so a typo never needs the passphrase.
fn request(args: &CaIssueArgs) -> Result<CertificateRequest, Failure> {
    let usage = |option: &'static str| {
        move |e: anchorage_ca::RequestError| Failure::new(Code::Usage, format!("{option}: {e}"))
    };
    let identity = Identity::new(args.cn.clone()).map_err(usage("--cn"))?;
    let kind: CertKind = args.kind.parse().map_err(usage("--kind"))?;
    let key_type: KeyType = parse_key_type(&args.key)?;
    let lifetime = match &args.ttl {
        Some(text) => {
            parse_duration(text).map_err(|e| Failure::new(Code::Usage, format!("--ttl: {e}")))?
        }
        None => kind.default_lifetime(),
    };
    let mut request = CertificateRequest::new(identity, kind)
        .with_lifetime(lifetime)
        .with_key_type(key_type);
    for san in &args.sans {
        request = request.with_san(San::parse(san).map_err(usage("--san"))?);
    }
    for id in &args.spiffe {
        let full = if id.starts_with("spiffe://") {
            id.clone()
        } else {
            format!("spiffe://{id}")
        };
        let id = SpiffeId::parse(&full).map_err(usage("--spiffe"))?;
        request = request.with_san(San::spiffe(&id));
    }
    request.validate().map_err(|e| {
        let option = match e {
            anchorage_ca::RequestError::LifetimeTooShort { .. } => "--ttl",
            _ => "--san",
        };
        Failure::new(Code::Usage, format!("{option}: {e}"))
    })?;
    Ok(request)
}

fn issue_failure(e: IssueError) -> Failure {
    let message = match e {
        IssueError::CaNotValid { .. } => format!(
            "{e}: `anchorage ca init --force` makes a new one, `anchorage ca import --force` takes one over"
        ),
        IssueError::LifetimeExceedsCa { .. } => {
            format!("{e} (or leave out --no-clamp to cut the lifetime to the CA's end)")
        }
        IssueError::Request(_)
        | IssueError::UnsupportedKeyType { .. }
        | IssueError::Refused { .. }
        | IssueError::NameNotPermitted { .. }
        | IssueError::PublicSuffixWildcard { .. }
        | IssueError::Backend { .. }
        | IssueError::Timeout { .. } => e.to_string(),
        _ => crate::exit::with_causes(&e),
    };
    Failure::new(e.code(), message)
}

/// The summary of `ca issue` (docs/cli.md). Never holds the key.
#[derive(Serialize)]
struct IssueView {
    identity: String,
    kind: CertKind,
    key_type: KeyType,
    subject: String,
    serial: String,
    sha256: Sha256Fingerprint,
    not_before: Timestamp,
    not_after: Timestamp,
    lifetime_seconds: i64,
    requested_lifetime_seconds: u64,
    lifetime_clamped: bool,
    subject_alt_names: Vec<String>,
    extended_key_usage: Vec<String>,
    issuer: String,
    issuer_id: IssuerId,
    chain: Vec<String>,
    validating_roots: Vec<Sha256Fingerprint>,
    out: String,
    files: Vec<FileView>,
}

impl IssueView {
    fn new(request: &CertificateRequest, issued: &IssuedCertificate, args: &CaIssueArgs) -> Self {
        let cert = &issued.certificate;
        Self {
            identity: request.identity.to_string(),
            kind: request.kind,
            key_type: request.key_type,
            subject: cert.subject().to_owned(),
            serial: cert.serial().to_owned(),
            sha256: cert.sha256(),
            not_before: cert.not_before(),
            not_after: cert.not_after(),
            lifetime_seconds: cert.not_after().unix() - cert.not_before().unix(),
            requested_lifetime_seconds: request.lifetime.as_secs(),
            lifetime_clamped: issued.lifetime_clamped,
            subject_alt_names: cert
                .subject_alt_names()
                .iter()
                .map(ToString::to_string)
                .collect(),
            extended_key_usage: cert.extended_key_usage().to_vec(),
            issuer: cert.issuer().to_owned(),
            issuer_id: issued.issuer,
            chain: issued
                .chain
                .iter()
                .map(|c| c.subject().to_owned())
                .collect(),
            validating_roots: issued
                .validating_roots
                .iter()
                .map(anchorage_x509::Certificate::sha256)
                .collect(),
            out: args.out.display().to_string(),
            files: FILES
                .iter()
                .map(|name| FileView::new(&args.out.join(name), *name == "key.pem"))
                .collect(),
        }
    }

    fn print_text(&self) {
        outln!(
            "issued {} ({}: {}; {} key)",
            self.subject,
            self.kind,
            self.extended_key_usage.join(", "),
            self.key_type
        );
        outln!("  serial:   {}", self.serial);
        outln!(
            "  valid:    {} .. {} ({}{})",
            self.not_before,
            self.not_after,
            human_seconds(u64::try_from(self.lifetime_seconds).unwrap_or_default()),
            if self.lifetime_clamped {
                ", cut to the CA's end"
            } else {
                ""
            }
        );
        if !self.subject_alt_names.is_empty() {
            outln!("  SANs:     {}", self.subject_alt_names.join(", "));
        }
        outln!(
            "  issuer:   {} (id {})",
            self.issuer,
            self.issuer_id.0.hex()
        );
        let names: Vec<String> = self
            .files
            .iter()
            .map(|f| {
                if f.mode == "0600" {
                    format!("{} (0600)", f.name)
                } else {
                    f.name.clone()
                }
            })
            .collect();
        outln!("wrote {}: {}", self.out, names.join(", "));
    }
}

/// `anchorage ca issue`.
pub(super) fn issue(
    ctx: &Context,
    args: &CaIssueArgs,
    outbound: &Outbound,
) -> Result<Code, Failure> {
    let request = request(args)?;
    check_out_dir(&args.out, &FILES, "--out")?;
    let issued = match args.backend {
        CaBackend::Vault => {
            if args.no_clamp {
                return Err(Failure::new(
                    Code::Usage,
                    "--no-clamp applies to the builtin backend; OpenBao refuses a TTL past its CA itself and cuts one above the role's max_ttl",
                ));
            }
            let issuer = vault_issuer(&args.vault, outbound)?;
            ctx.block_on(issuer.issue(&request))
                .map_err(issue_failure)?
        }
        CaBackend::Builtin => {
            let v = &args.vault;
            if v.vault_addr.is_some()
                || v.vault_role.is_some()
                || v.vault_namespace.is_some()
                || v.vault_mount.is_some()
                || v.vault_key_location.is_some()
                || v.approle_role_id.is_some()
            {
                return Err(Failure::new(
                    Code::Usage,
                    "the --vault-* and --approle-* options need --backend vault",
                ));
            }
            if outbound.has_tls_ca_paths() {
                return Err(Failure::new(
                    Code::Usage,
                    "--tls-ca-path needs --backend vault: the builtin CA makes no TLS connection",
                ));
            }
            let store = ctx.open(false)?;
            let loaded = ctx.load(&store)?;
            let ca = if args.no_clamp {
                loaded.ca.with_lifetime_policy(LifetimePolicy::Refuse)
            } else {
                loaded.ca
            };
            ca.issue_at(&request, now()).map_err(issue_failure)?
        }
    };
    let Some(key) = &issued.private_key else {
        return Err(Failure::new(
            Code::Failure,
            "the issuer returned no private key for the certificate",
        ));
    };
    let key_pem = key.to_pkcs8_pem();
    let cert_pem = issued.certificate.to_pem();
    let chain_pem = issued.chain_pem();
    let roots_pem = issued.roots_pem();
    write_dir(
        &args.out,
        &[
            OutFile {
                name: FILES[0],
                contents: cert_pem.as_bytes(),
                private: false,
            },
            OutFile {
                name: FILES[1],
                contents: chain_pem.as_bytes(),
                private: false,
            },
            OutFile {
                name: FILES[2],
                contents: key_pem.expose_secret().as_bytes(),
                private: true,
            },
            OutFile {
                name: FILES[3],
                contents: roots_pem.as_bytes(),
                private: false,
            },
        ],
        "--out",
    )?;
    if issued.lifetime_clamped {
        let asked = human_seconds(request.lifetime.as_secs());
        match args.backend {
            CaBackend::Builtin => warnln!(
                "the lifetime asked for ({asked}) would outlive the CA: the certificate is valid until {}, when the CA expires (--no-clamp refuses instead)",
                issued.not_after()
            ),
            CaBackend::Vault => warnln!(
                "the lifetime asked for ({asked}) was cut by the OpenBao role (its max_ttl): the certificate is valid until {}",
                issued.not_after()
            ),
        }
    }
    let view = IssueView::new(&request, &issued, args);
    match args.output {
        OutputFormat::Json => print_json(&view),
        OutputFormat::Text => view.print_text(),
    }
    Ok(Code::Ok)
}

fn vault_failure(e: VaultError) -> Failure {
    Failure::new(e.code(), crate::exit::with_causes(&e))
}

/// The first line of a secret file, wiped when dropped.
fn first_line(option: &str, path: &Path) -> Result<SecretString, Failure> {
    let origin = format!("{option} {}", path.display());
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Failure::new(Code::BadInput, format!("{origin}: cannot be read: {e}")))?,
    );
    match text.lines().next() {
        Some(line) if !line.trim().is_empty() => Ok(SecretString::from(line.trim().to_owned())),
        _ => Err(Failure::new(
            Code::BadInput,
            format!("{origin}: the first line is empty"),
        )),
    }
}

/// The Vault/OpenBao issuer of `--backend vault`: address and token from the options or the
/// usual variables, trust from the global `--tls-ca-path`.
fn vault_issuer(args: &VaultArgs, outbound: &Outbound) -> Result<VaultIssuer, Failure> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let address = args
        .vault_addr
        .clone()
        .or_else(|| env("VAULT_ADDR"))
        .or_else(|| env("BAO_ADDR"))
        .ok_or_else(|| {
            Failure::new(
                Code::Usage,
                "--backend vault needs --vault-addr URL (or VAULT_ADDR / BAO_ADDR)",
            )
        })?;
    let role = args.vault_role.clone().ok_or_else(|| {
        Failure::new(
            Code::Usage,
            "--backend vault needs --vault-role ROLE (the PKI role that issues)",
        )
    })?;
    let auth = match (&args.approle_role_id, &args.approle_secret_id_file) {
        (Some(role_id), Some(file)) => VaultAuth::AppRole(AppRole::new(
            role_id.clone(),
            first_line("--approle-secret-id-file", file)?,
        )),
        _ => match env("VAULT_TOKEN").or_else(|| env("BAO_TOKEN")) {
            Some(token) => VaultAuth::Token(SecretString::from(token)),
            None => {
                return Err(Failure::new(
                    Code::Usage,
                    "--backend vault needs credentials: a token in VAULT_TOKEN (or BAO_TOKEN), or --approle-role-id with --approle-secret-id-file",
                ));
            }
        },
    };
    let mut config = VaultConfig::new(address, role, auth)
        .with_mount(args.vault_mount.clone().unwrap_or_else(|| "pki".to_owned()))
        .with_key_location(match args.vault_key_location.unwrap_or_default() {
            VaultKeyLocation::Server => KeyLocation::Server,
            VaultKeyLocation::Local => KeyLocation::Local,
        })
        .with_trust(outbound.trust());
    if let Some(namespace) = &args.vault_namespace {
        config = config.with_namespace(namespace.clone());
    }
    VaultIssuer::new(config, outbound.provider()).map_err(vault_failure)
}
