//! Installing CA certificates into this machine's own trust: the OS store, a JDK's `cacerts` and
//! NSS databases, as `mkcert -install` and `step certificate install` do (`anchorage trust
//! install` / `uninstall`).
//!
//! Every change is planned first as a list of [`Step`]s, computed against what is there now, so
//! that a certificate already present is left alone (idempotent), `--dry-run` prints the plan
//! without touching anything, and uninstalling removes exactly what installing added:
//!
//! - **Debian family** ([`SystemFamily::Debian`]): one PEM file per certificate in
//!   `/usr/local/share/ca-certificates/anchorage/`, then `update-ca-certificates` (`--fresh` when
//!   removing), which rebuilds `/etc/ssl/certs/ca-certificates.crt` and the hashed links. Under a
//!   `sysroot` the files go below it and the tool gets `--sysroot` (what tests and image builds
//!   use).
//! - **RHEL family** ([`SystemFamily::Rhel`]): one file per certificate in
//!   `/etc/pki/ca-trust/source/anchors/`, then `update-ca-trust extract` (which has no sysroot
//!   option: under another root the files are written and the extraction left to the image's
//!   own tool).
//! - **A JDK** ([`JavaTarget`]): `keytool -importcert` into its `cacerts` (alias
//!   [`alias`]), `keytool -delete` to remove; the store password goes through the environment
//!   (`-storepass:env`), never argv.
//! - **NSS** ([`plan_nss`]): `certutil -A -t C,,` into each database, `certutil -D` to remove.
//!
//! The family is detected from the files under the root ([`detect_system`]). Names are derived
//! from the certificate's SHA-256, so they never collide and are the same on every run.

use std::ffi::OsString;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anchorage_x509::Certificate;

/// The directory (below the root) a Debian-family system reads local CAs from.
pub const DEBIAN_LOCAL_DIR: &str = "usr/local/share/ca-certificates";
/// The directory (below the root) a RHEL-family system reads anchors from.
pub const RHEL_ANCHORS_DIR: &str = "etc/pki/ca-trust/source/anchors";
/// The sub-directory of [`DEBIAN_LOCAL_DIR`] our files go in, so they are easy to find.
pub const DEBIAN_SUBDIR: &str = "anchorage";
/// The combined bundle `update-ca-certificates` writes (below the root).
pub const DEBIAN_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";
/// The JDK's default `cacerts` password.
pub const DEFAULT_JAVA_STOREPASS: &str = "changeit";
/// The environment variable the store password is handed to keytool in.
const STOREPASS_ENV: &str = "ANCHORAGE_KEYTOOL_STOREPASS";

/// Which OS trust layout the root holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemFamily {
    /// Debian, Ubuntu, Alpine: `update-ca-certificates`.
    Debian,
    /// RHEL, Fedora, CentOS, Amazon Linux: `update-ca-trust`.
    Rhel,
}

impl fmt::Display for SystemFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Debian => "Debian-family OS store",
            Self::Rhel => "RHEL-family OS store",
        })
    }
}

/// The OS layout under `root`: Debian's when its local-CA directory or its configuration is
/// there, else RHEL's when the anchors directory is; `None` otherwise.
pub fn detect_system(root: &Path) -> Option<SystemFamily> {
    if root.join(DEBIAN_LOCAL_DIR).is_dir() || root.join("etc/ca-certificates.conf").is_file() {
        Some(SystemFamily::Debian)
    } else if root.join(RHEL_ANCHORS_DIR).is_dir() {
        Some(SystemFamily::Rhel)
    } else {
        None
    }
}

/// Install or remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Add the certificates.
    Install,
    /// Remove them.
    Uninstall,
}

/// One change to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write a certificate file (mode 0644), creating its directory.
    Write {
        /// The file.
        path: PathBuf,
        /// Its PEM.
        contents: String,
    },
    /// Remove a file we wrote.
    Remove {
        /// The file.
        path: PathBuf,
    },
    /// Run a tool.
    Run {
        /// The program.
        program: PathBuf,
        /// Its arguments (no secret among them).
        args: Vec<OsString>,
        /// What to feed it on standard input (a PEM certificate), if anything.
        stdin: Option<String>,
        /// Environment variables to set (the keystore password: not shown).
        env: Vec<(String, String)>,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Write { path, .. } => write!(f, "write {}", path.display()),
            Self::Remove { path } => write!(f, "remove {}", path.display()),
            Self::Run {
                program,
                args,
                stdin,
                ..
            } => {
                write!(f, "run {}", program.display())?;
                for a in args {
                    write!(f, " {}", a.to_string_lossy())?;
                }
                if stdin.is_some() {
                    f.write_str(" < certificate")?;
                }
                Ok(())
            }
        }
    }
}

/// What went wrong installing or removing.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A file could not be written or removed (usually: not root).
    #[error("cannot {action} {path}: {source}; installing into the OS store needs root (sudo)")]
    Io {
        /// `write`, `remove`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A tool could not be started.
    #[error("cannot run {program}: {source}{hint}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
        /// What to install, when it is missing.
        hint: String,
    },
    /// A tool ran and failed.
    #[error("{command} failed ({status}): {output}")]
    Failed {
        /// The command as shown by [`Step`]'s `Display`.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed (trimmed).
        output: String,
    },
    /// The target cannot be used.
    #[error("{0}")]
    Unusable(String),
}

/// The file name of `cert` in the OS store: `anchorage-<first 16 hex of its SHA-256>.crt`.
pub fn file_name(cert: &Certificate) -> String {
    format!("anchorage-{}.crt", short(cert))
}

/// The keytool alias / NSS nickname of `cert`: `anchorage-<first 16 hex of its SHA-256>`.
pub fn alias(cert: &Certificate) -> String {
    format!("anchorage-{}", short(cert))
}

fn short(cert: &Certificate) -> String {
    cert.sha256().hex()[..16].to_owned()
}

/// The steps that put `certs` into (or take them out of) the OS store under `root`.
///
/// # Errors
///
/// [`InstallError::Unusable`] when RHEL's extraction would be needed under another root.
pub fn plan_system(
    certs: &[Certificate],
    root: &Path,
    family: SystemFamily,
    direction: Direction,
) -> Result<Vec<Step>, InstallError> {
    let dir = match family {
        SystemFamily::Debian => root.join(DEBIAN_LOCAL_DIR).join(DEBIAN_SUBDIR),
        SystemFamily::Rhel => root.join(RHEL_ANCHORS_DIR),
    };
    let mut steps = Vec::new();
    for cert in certs {
        let path = dir.join(file_name(cert));
        let pem = cert.to_pem();
        match direction {
            Direction::Install => {
                if std::fs::read_to_string(&path).ok().as_deref() != Some(pem.as_str()) {
                    steps.push(Step::Write {
                        path,
                        contents: pem,
                    });
                }
            }
            Direction::Uninstall => {
                if path.symlink_metadata().is_ok() {
                    steps.push(Step::Remove { path });
                }
            }
        }
    }
    if steps.is_empty() {
        return Ok(steps);
    }
    let elsewhere = root != Path::new("/");
    match family {
        SystemFamily::Debian => {
            let mut args: Vec<OsString> = Vec::new();
            if direction == Direction::Uninstall {
                // A removed local CA must leave the bundle too: rebuild it whole.
                args.push("--fresh".into());
            }
            if elsewhere {
                args.push("--sysroot".into());
                args.push(root.as_os_str().to_owned());
            }
            steps.push(Step::Run {
                program: "update-ca-certificates".into(),
                args,
                stdin: None,
                env: Vec::new(),
            });
        }
        SystemFamily::Rhel if elsewhere => {
            return Err(InstallError::Unusable(format!(
                "update-ca-trust has no sysroot option: under {} write the anchors yourself and run `update-ca-trust extract` inside that system",
                root.display()
            )));
        }
        SystemFamily::Rhel => steps.push(Step::Run {
            program: "update-ca-trust".into(),
            args: vec!["extract".into()],
            stdin: None,
            env: Vec::new(),
        }),
    }
    Ok(steps)
}

/// A JDK whose `cacerts` to change.
#[derive(Clone, Debug)]
pub struct JavaTarget {
    /// The `cacerts` file.
    pub cacerts: PathBuf,
    /// The keytool to run (the JDK's own when it has one).
    pub keytool: PathBuf,
    /// The store password (default [`DEFAULT_JAVA_STOREPASS`]).
    pub storepass: String,
}

impl JavaTarget {
    /// The `cacerts` of the JDK at `java_home` (`lib/security/cacerts`, or JDK 8's
    /// `jre/lib/security/cacerts`), with its own keytool when it has one.
    ///
    /// # Errors
    ///
    /// [`InstallError::Unusable`] when neither `cacerts` exists.
    pub fn of_java_home(java_home: &Path, storepass: &str) -> Result<Self, InstallError> {
        let cacerts = ["lib/security/cacerts", "jre/lib/security/cacerts"]
            .iter()
            .map(|p| java_home.join(p))
            .find(|p| p.exists())
            .ok_or_else(|| {
                InstallError::Unusable(format!(
                    "{} is not a JAVA_HOME: it has no lib/security/cacerts (nor jre/lib/security/cacerts)",
                    java_home.display()
                ))
            })?;
        let own = java_home.join("bin/keytool");
        Ok(Self {
            cacerts,
            keytool: if own.is_file() { own } else { "keytool".into() },
            storepass: storepass.to_owned(),
        })
    }

    fn command(&self, op: &str, alias: &str) -> Step {
        Step::Run {
            program: self.keytool.clone(),
            args: [
                op,
                "-noprompt",
                "-alias",
                alias,
                "-keystore",
                &self.cacerts.to_string_lossy(),
                &format!("-storepass:env={STOREPASS_ENV}"),
            ]
            .iter()
            .map(|s| OsString::from(*s))
            .collect(),
            stdin: None,
            env: vec![(STOREPASS_ENV.to_owned(), self.storepass.clone())],
        }
    }

    /// Whether `cacerts` holds an entry named `alias` (`keytool -list -alias`).
    fn holds(&self, alias: &str) -> Result<bool, InstallError> {
        let Step::Run { args, env, .. } = self.command("-list", alias) else {
            return Ok(false);
        };
        // `-storepass:env=NAME` is keytool's `-storepass:env NAME`.
        let args = fix_env_arg(args);
        let out = Command::new(&self.keytool)
            .args(&args)
            .envs(env)
            .env("JAVA_TOOL_OPTIONS", "-Duser.language=en")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| spawn_error(&self.keytool, source))?;
        Ok(out.status.success())
    }
}

/// `-storepass:env=NAME` as the two arguments keytool takes.
fn fix_env_arg(args: Vec<OsString>) -> Vec<OsString> {
    args.into_iter()
        .flat_map(
            |a| match a.to_str().and_then(|s| s.strip_prefix("-storepass:env=")) {
                Some(name) => vec![OsString::from("-storepass:env"), OsString::from(name)],
                None => vec![a],
            },
        )
        .collect()
}

/// The steps that import `certs` into (or delete them from) a JDK's `cacerts`.
///
/// # Errors
///
/// keytool could not be started.
pub fn plan_java(
    certs: &[Certificate],
    java: &JavaTarget,
    direction: Direction,
) -> Result<Vec<Step>, InstallError> {
    let mut steps = Vec::new();
    for cert in certs {
        let name = alias(cert);
        let present = java.holds(&name)?;
        match direction {
            Direction::Install if !present => {
                let mut step = java.command("-importcert", &name);
                if let Step::Run { stdin, args, .. } = &mut step {
                    *stdin = Some(cert.to_pem());
                    args.push("-trustcacerts".into());
                }
                steps.push(step);
            }
            Direction::Uninstall if present => steps.push(java.command("-delete", &name)),
            _ => {}
        }
    }
    Ok(steps)
}

/// The steps that add `certs` to (or delete them from) each NSS database in `dbs` with
/// `certutil` (trusted to issue server certificates: `-t C,,`).
///
/// # Errors
///
/// certutil could not be started (it is in Debian's `libnss3-tools`).
pub fn plan_nss(
    certs: &[Certificate],
    dbs: &[PathBuf],
    direction: Direction,
) -> Result<Vec<Step>, InstallError> {
    let certutil = PathBuf::from("certutil");
    let mut steps = Vec::new();
    for db in dbs {
        let db_arg = OsString::from(format!("sql:{}", db.display()));
        for cert in certs {
            let name = alias(cert);
            let present = Command::new(&certutil)
                .arg("-L")
                .arg("-d")
                .arg(&db_arg)
                .args(["-n", &name])
                .stdin(Stdio::null())
                .output()
                .map_err(|source| spawn_error(&certutil, source))?
                .status
                .success();
            let step = |op: &str, extra: &[&str], stdin: Option<String>| Step::Run {
                program: certutil.clone(),
                args: [OsString::from(op), "-d".into(), db_arg.clone()]
                    .into_iter()
                    .chain(["-n", &name].iter().map(OsString::from))
                    .chain(extra.iter().map(OsString::from))
                    .collect(),
                stdin,
                env: Vec::new(),
            };
            match direction {
                Direction::Install if !present => {
                    steps.push(step("-A", &["-t", "C,,"], Some(cert.to_pem())));
                }
                Direction::Uninstall if present => steps.push(step("-D", &[], None)),
                _ => {}
            }
        }
    }
    Ok(steps)
}

fn spawn_error(program: &Path, source: std::io::Error) -> InstallError {
    let name = program.display().to_string();
    let hint = match program.file_name().and_then(|n| n.to_str()) {
        Some("certutil") => "; it is in Debian's libnss3-tools (RHEL: nss-tools)",
        Some("keytool") => "; it comes with the JDK (give --java JAVA_HOME)",
        Some("update-ca-certificates") => "; it is in Debian's ca-certificates package",
        _ => "",
    };
    InstallError::Spawn {
        program: name,
        source,
        hint: hint.to_owned(),
    }
}

/// Carries out one step.
///
/// # Errors
///
/// The file could not be written or removed, or the tool failed.
pub fn apply(step: &Step) -> Result<(), InstallError> {
    match step {
        Step::Write { path, contents } => crate::atomic::write_file(path, contents.as_bytes())
            .map_err(|source| InstallError::Io {
                action: "write",
                path: path.clone(),
                source,
            }),
        Step::Remove { path } => std::fs::remove_file(path).map_err(|source| InstallError::Io {
            action: "remove",
            path: path.clone(),
            source,
        }),
        Step::Run {
            program,
            args,
            stdin,
            env,
        } => {
            let mut child = Command::new(program)
                .args(fix_env_arg(args.clone()))
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(if stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|source| spawn_error(program, source))?;
            if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
                // A tool that exits early closes the pipe: its status says why.
                let _ = pipe.write_all(text.as_bytes());
            }
            let out = child
                .wait_with_output()
                .map_err(|source| spawn_error(program, source))?;
            if out.status.success() {
                return Ok(());
            }
            let output = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            Err(InstallError::Failed {
                command: step.to_string(),
                status: out.status.to_string(),
                output: output.trim().to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert() -> Certificate {
        let root = anchorage_test_support::pki::root_ca("Install Unit Root");
        Certificate::from_der(&root.der).expect("decode")
    }

    #[test]
    fn debian_steps_write_then_update_with_the_sysroot_and_nothing_when_present() {
        let root = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(root.path().join(DEBIAN_LOCAL_DIR)).expect("mkdir");
        assert_eq!(detect_system(root.path()), Some(SystemFamily::Debian));
        let c = cert();
        let steps = plan_system(
            std::slice::from_ref(&c),
            root.path(),
            SystemFamily::Debian,
            Direction::Install,
        )
        .expect("plan");
        assert_eq!(steps.len(), 2);
        let path = root
            .path()
            .join(DEBIAN_LOCAL_DIR)
            .join(DEBIAN_SUBDIR)
            .join(file_name(&c));
        assert_eq!(
            steps[0],
            Step::Write {
                path: path.clone(),
                contents: c.to_pem()
            }
        );
        assert_eq!(
            steps[1].to_string(),
            format!(
                "run update-ca-certificates --sysroot {}",
                root.path().display()
            )
        );
        // Already there: nothing to do; uninstall removes it and rebuilds fresh.
        apply(&steps[0]).expect("write");
        let again = plan_system(
            std::slice::from_ref(&c),
            root.path(),
            SystemFamily::Debian,
            Direction::Install,
        );
        assert!(again.expect("plan").is_empty());
        let out = plan_system(
            &[c],
            root.path(),
            SystemFamily::Debian,
            Direction::Uninstall,
        )
        .expect("plan");
        assert_eq!(out[0], Step::Remove { path });
        assert!(out[1].to_string().contains("--fresh"), "{}", out[1]);
    }

    #[test]
    fn rhel_under_another_root_is_refused_and_nothing_is_detected_in_an_empty_root() {
        let root = tempfile::tempdir().expect("tmp");
        assert_eq!(detect_system(root.path()), None);
        std::fs::create_dir_all(root.path().join(RHEL_ANCHORS_DIR)).expect("mkdir");
        assert_eq!(detect_system(root.path()), Some(SystemFamily::Rhel));
        let e = plan_system(
            &[cert()],
            root.path(),
            SystemFamily::Rhel,
            Direction::Install,
        )
        .unwrap_err();
        assert!(e.to_string().contains("update-ca-trust"), "{e}");
    }

    #[test]
    fn the_keystore_password_never_reaches_argv() {
        let java = JavaTarget {
            cacerts: "/j/cacerts".into(),
            keytool: "keytool".into(),
            storepass: "s3cret".into(),
        };
        let step = java.command("-delete", "anchorage-0011");
        assert!(!step.to_string().contains("s3cret"), "{step}");
        let Step::Run { args, env, .. } = step else {
            panic!("a run step")
        };
        let args = fix_env_arg(args);
        assert!(args.iter().all(|a| a != "s3cret"));
        assert!(
            args.windows(2)
                .any(|w| w[0] == "-storepass:env" && w[1] == STOREPASS_ENV)
        );
        assert_eq!(env, [(STOREPASS_ENV.to_owned(), "s3cret".to_owned())]);
    }
}
