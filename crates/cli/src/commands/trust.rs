//! `anchorage trust install|uninstall`: put CA certificates into this machine's own trust (the
//! OS store, a JDK's cacerts, NSS databases) or take them out again. The plan and the changes
//! are [`anchorage_trust::install`]'s; this module reads the CA files, picks the targets and
//! prints what was (or, with `--dry-run`, would be) done.

use std::path::PathBuf;

use anchorage_trust::install::{
    self, DEFAULT_JAVA_STOREPASS, Direction, InstallError, JavaTarget, Step, detect_system,
};
use anchorage_x509::Certificate;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::exit::Classify as _;
use crate::exit::{Code, Failure};
use crate::globals::{Globals, Run};
use crate::options::OutputFormat;
use crate::render::print_json;

/// `anchorage trust …`.
#[derive(Subcommand, Debug)]
pub(crate) enum TrustCommand {
    /// Add CA certificates to this machine's trust, as `mkcert -install` does: the OS store
    /// (default), a JDK's cacerts (--java), NSS databases (--nss).
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  sudo anchorage trust install corp-root.pem\n",
            "  sudo anchorage trust install corp-root.pem --java \\\n",
            "    /usr/lib/jvm/java-17-openjdk-amd64 --dry-run\n",
            "  anchorage trust install corp-root.pem --nss\n",
            "  anchorage trust install corp-root.pem --sysroot ./rootfs   # an \\\n",
            "    image's root file system\n",
            "\n",
            "The OS store is detected under --sysroot (default /): Debian's\n",
            "/usr/local/share/ca-certificates + update-ca-certificates, or RHEL's\n",
            "/etc/pki/ca-trust/source/anchors + update-ca-trust. A certificate already present is left\n",
            "alone, so a re-run changes nothing; `trust uninstall` with the same files removes exactly\n",
            "what this added. --dry-run prints the changes and makes none.\n",
            "\n",
        ),
        &[
            (Code::Ok, "done (or nothing to do: already as asked)"),
            (Code::Failure, "a tool (update-ca-certificates, update-ca-trust, keytool, certutil) failed"),
            (Code::Usage, "invalid command line, or no OS store found under the root"),
            (Code::BadInput, "a CA file is missing, unreadable, holds no certificate or a non-CA certificate"),
            (Code::PrivateKey, "a CA file holds a private key"),
            (Code::Output, "a file could not be written or removed (installing into the OS store needs root)"),
        ],
        "",
    ))]
    Install(TrustArgs),
    /// Remove CA certificates that `trust install` added (same targets and options).
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  sudo anchorage trust uninstall corp-root.pem\n",
            "  anchorage trust uninstall corp-root.pem --java \"$JAVA_HOME\" --dry-run\n",
            "\n",
        ),
        &[
            (Code::Ok, "done (or nothing to do: already as asked)"),
            (Code::Failure, "a tool (update-ca-certificates, update-ca-trust, keytool, certutil) failed"),
            (Code::Usage, "invalid command line, or no OS store found under the root"),
            (Code::BadInput, "a CA file is missing, unreadable, holds no certificate or a non-CA certificate"),
            (Code::PrivateKey, "a CA file holds a private key"),
            (Code::Output, "a file could not be written or removed (installing into the OS store needs root)"),
        ],
        "",
    ))]
    Uninstall(TrustArgs),
}

/// What to install and where.
#[derive(Args, Debug)]
pub(crate) struct TrustArgs {
    /// CA certificate files (PEM, DER, PKCS#7) or directories.
    #[arg(value_name = "CA", required = true)]
    pub(crate) cas: Vec<PathBuf>,
    /// The OS store (the default when no other target is given).
    #[arg(long)]
    pub(crate) system: bool,
    /// The cacerts of the JDK at JAVA_HOME (repeatable), with keytool.
    #[arg(long = "java", value_name = "JAVA_HOME")]
    pub(crate) java: Vec<PathBuf>,
    /// The cacerts password (default changeit); handed to keytool through its environment.
    #[arg(long, value_name = "PASSWORD", requires = "java")]
    pub(crate) java_storepass: Option<String>,
    /// NSS databases (Chromium, Firefox), with certutil: ~/.pki/nssdb unless --nss-db.
    #[arg(long)]
    pub(crate) nss: bool,
    /// An NSS database directory (repeatable; implies --nss).
    #[arg(long, value_name = "DIR")]
    pub(crate) nss_db: Vec<PathBuf>,
    /// The root the OS store is under (an image's root file system, a test directory);
    /// update-ca-certificates gets --sysroot.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub(crate) sysroot: PathBuf,
    /// Print the changes without making them.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

#[derive(Serialize)]
struct Report {
    schema: u32,
    action: &'static str,
    dry_run: bool,
    certificates: Vec<Cert>,
    targets: Vec<Target>,
}

#[derive(Serialize)]
struct Cert {
    subject: String,
    sha256: String,
}

#[derive(Serialize)]
struct Target {
    target: String,
    changes: Vec<String>,
}

impl Run for TrustCommand {
    fn json(&self) -> bool {
        match self {
            TrustCommand::Install(a) | TrustCommand::Uninstall(a) => a.output == OutputFormat::Json,
        }
    }

    fn run(self, _: &Globals) -> Result<Code, Failure> {
        run(self)
    }
}

fn run(cmd: TrustCommand) -> Result<Code, Failure> {
    let (args, direction) = match cmd {
        TrustCommand::Install(a) => (a, Direction::Install),
        TrustCommand::Uninstall(a) => (a, Direction::Uninstall),
    };
    let certs = read_cas(&args)?;
    let mut targets: Vec<(String, Vec<Step>)> = Vec::new();
    let nss = args.nss || !args.nss_db.is_empty();
    if args.system || (args.java.is_empty() && !nss) {
        let family = detect_system(&args.sysroot).ok_or_else(|| {
            Failure::new(
                Code::Usage,
                format!(
                    "no OS trust store found under {}: neither Debian's {} nor RHEL's {}; give --java or --nss for the other stores",
                    args.sysroot.display(),
                    install::DEBIAN_LOCAL_DIR,
                    install::RHEL_ANCHORS_DIR
                ),
            )
        })?;
        let steps =
            install::plan_system(&certs, &args.sysroot, family, direction).map_err(failure)?;
        targets.push((family.to_string(), steps));
    }
    for home in &args.java {
        let pass = args
            .java_storepass
            .as_deref()
            .unwrap_or(DEFAULT_JAVA_STOREPASS);
        let java = JavaTarget::of_java_home(home, pass).map_err(failure)?;
        let steps = install::plan_java(&certs, &java, direction).map_err(failure)?;
        targets.push((format!("Java cacerts {}", java.cacerts.display()), steps));
    }
    if nss {
        let default_db;
        let dbs = if args.nss_db.is_empty() {
            let home = std::env::var_os("HOME").ok_or_else(|| {
                Failure::new(Code::Usage, "--nss: HOME is not set; give --nss-db DIR")
            })?;
            default_db = [PathBuf::from(home).join(".pki/nssdb")];
            &default_db[..]
        } else {
            &args.nss_db[..]
        };
        let steps = install::plan_nss(&certs, dbs, direction).map_err(failure)?;
        targets.push(("NSS".to_owned(), steps));
    }

    let verb = if args.dry_run { "would " } else { "" };
    for (target, steps) in &targets {
        if steps.is_empty() {
            if args.output == OutputFormat::Text {
                outln!(
                    "{target}: nothing to do (already {})",
                    if direction == Direction::Install {
                        "installed"
                    } else {
                        "absent"
                    }
                );
            }
            continue;
        }
        for step in steps {
            if args.output == OutputFormat::Text {
                outln!("{target}: {verb}{step}");
            }
            if !args.dry_run {
                install::apply(step).map_err(failure)?;
            }
        }
    }
    if args.output == OutputFormat::Json {
        print_json(&Report {
            schema: 1,
            action: match direction {
                Direction::Install => "install",
                Direction::Uninstall => "uninstall",
            },
            dry_run: args.dry_run,
            certificates: certs
                .iter()
                .map(|c| Cert {
                    subject: c.subject().to_owned(),
                    sha256: c.sha256().hex(),
                })
                .collect(),
            targets: targets
                .iter()
                .map(|(t, steps)| Target {
                    target: t.clone(),
                    changes: steps.iter().map(ToString::to_string).collect(),
                })
                .collect(),
        });
    }
    Ok(Code::Ok)
}

/// The CA certificates of every file named; a non-CA certificate is refused (exit 3): a leaf
/// in the machine's trust would be trusted to issue nothing, and is almost always a mistake.
fn read_cas(args: &TrustArgs) -> Result<Vec<Certificate>, Failure> {
    let mut certs: Vec<Certificate> = Vec::new();
    for path in &args.cas {
        let bundle = crate::io::read_option_bundle(path, "CA")?;
        for cert in bundle.certificates() {
            if !cert.is_ca() {
                return Err(Failure::new(
                    Code::BadInput,
                    format!(
                        "{}: {} is not a CA certificate (no basic constraints with CA:TRUE); give the CA that issued it",
                        path.display(),
                        cert.subject()
                    ),
                ));
            }
            if !certs.iter().any(|c| c.sha256() == cert.sha256()) {
                certs.push(cert.clone());
            }
        }
    }
    Ok(certs)
}

fn failure(e: InstallError) -> Failure {
    let code = e.code();
    // The messages hold their cause already (an I/O error, a tool's output): not repeated.
    Failure::new(code, e.to_string())
}
