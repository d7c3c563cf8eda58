//! Bad inputs, one case each, through the real binary: every problem names its source (path, and
//! line or Kubernetes document and key) and says what to do, in the text warnings and in the JSON
//! `problems`; by default the rest is used, `--strict` makes the problem fatal, and a bad input
//! alone is "no usable certificates". Whenever a run fails, the outputs already there are left
//! exactly as they were (same bytes, same inodes).
//!
//! `cli.rs` checks the first words of several of these messages in one combined run; this file
//! checks each case on its own, in every mode.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anchorage_test_support::pki;

/// The user the unreadable-file case runs as when the tests run as root (who reads anything).
const NOBODY: u32 = 65534;

/// Runs `anchorage`, as another user when `uid` is given.
#[derive(Clone, Default)]
struct Runner {
    uid: Option<u32>,
    /// A copy of the binary that `uid` can execute (the build tree may sit in a private 0700
    /// checkout); the built binary itself when `None`.
    binary: Option<PathBuf>,
}

impl Runner {
    fn run(&self, dir: &Path, args: &[&str]) -> Output {
        let binary = self
            .binary
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_anchorage")));
        let mut cmd = Command::new(binary);
        cmd.args(args).current_dir(dir).env_remove("ANCHORAGE_LOG");
        if let Some(uid) = self.uid {
            cmd.uid(uid).gid(uid);
        }
        // A copied binary can be briefly "busy" (ETXTBSY): another test thread may fork while
        // the copy's write descriptor is open, and the child holds it until it execs. Retry.
        let mut tries = 0;
        loop {
            match cmd.output() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                result => return result.expect("run anchorage"),
            }
        }
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[allow(clippy::disallowed_methods)] // test fixtures, not outputs
fn write(path: &Path, contents: impl AsRef<[u8]>) {
    fs::write(path, contents).unwrap();
}

/// The outputs as a reader sees them, with inodes: "untouched" means not even rewritten.
#[derive(Debug, PartialEq, Eq)]
struct Outputs {
    pem: (u64, Vec<u8>),
    dir: (u64, BTreeMap<String, Vec<u8>>),
}

fn outputs(dir: &Path) -> Outputs {
    let pem = dir.join("out.pem");
    let certs = dir.join("certs");
    let entries = fs::read_dir(&certs)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    Outputs {
        pem: (fs::metadata(&pem).unwrap().ino(), fs::read(&pem).unwrap()),
        dir: (fs::metadata(&certs).unwrap().ino(), entries),
    }
}

const OUTPUTS: [&str; 4] = ["--pem", "out.pem", "--openssl-dir", "certs"];

/// Certificates shared by every case.
struct Certs {
    /// Given beside each bad input: must end up in the output.
    good: pki::Issued,
    /// What the outputs hold before each case's runs.
    previous: pki::Issued,
    /// Material for the bad inputs.
    other: pki::Issued,
}

/// The body's second base64 line: present in a PEM text exactly when the certificate is.
fn marker(cert: &pki::Issued) -> String {
    cert.pem.lines().nth(2).unwrap().trim().to_owned()
}

/// One expected problem: where (the whole origin, exactly), what, and the advice.
struct Expect {
    origin: &'static str,
    what: &'static str,
    advice: &'static str,
}

/// One bad input. `make` creates it in the case directory and returns the source to pass.
struct Case {
    name: &'static str,
    make: fn(&Path, &Certs) -> &'static str,
    expect: &'static [Expect],
}

/// `# comment` then the certificate's PEM lines, LF endings: line numbers are those of the
/// certificate's lines plus one.
fn commented_pem_lines(cert: &pki::Issued) -> Vec<String> {
    std::iter::once("# corporate roots".to_owned())
        .chain(cert.pem.lines().map(|l| l.trim_end().to_owned()))
        .collect()
}

const CASES: &[Case] = &[
    Case {
        name: "truncated PEM",
        make: |dir, c| {
            let lines = commented_pem_lines(&c.other);
            write(
                &dir.join("truncated.pem"),
                lines[..lines.len() - 3].join("\n"),
            );
            "truncated.pem"
        },
        expect: &[Expect {
            origin: "truncated.pem: line 2",
            what: "truncated PEM: `-----BEGIN CERTIFICATE-----` has no matching `-----END CERTIFICATE-----`",
            advice: "copy or export it again",
        }],
    },
    Case {
        name: "bad base64",
        make: |dir, c| {
            let mut lines = commented_pem_lines(&c.other);
            lines[4] = "!!!!not-base64!!!!".into();
            write(&dir.join("badb64.pem"), lines.join("\n"));
            "badb64.pem"
        },
        expect: &[Expect {
            origin: "badb64.pem: line 2",
            what: "bad base64 in PEM block `CERTIFICATE` (line 5): invalid character `!`",
            advice: "copy or export it again",
        }],
    },
    Case {
        name: "padding inside a PEM body",
        make: |dir, c| {
            let mut lines = commented_pem_lines(&c.other);
            lines[3].push('=');
            write(&dir.join("padding.pem"), lines.join("\n"));
            "padding.pem"
        },
        expect: &[Expect {
            origin: "padding.pem: line 2",
            what: "bad base64 in PEM block `CERTIFICATE` (line 4): invalid character `=`",
            advice: "copy or export it again",
        }],
    },
    Case {
        name: "DER with trailing bytes",
        make: |dir, c| {
            let mut der = c.other.der.clone();
            der.extend_from_slice(b"\0\0\0");
            write(&dir.join("trailing.der"), der);
            "trailing.der"
        },
        expect: &[Expect {
            origin: "trailing.der",
            what: "3 unexpected bytes after the certificate's DER encoding",
            advice: "use PEM for several certificates",
        }],
    },
    Case {
        name: "DER cut short",
        make: |dir, c| {
            write(&dir.join("cut.cer"), &c.other.der[..c.other.der.len() / 2]);
            "cut.cer"
        },
        expect: &[Expect {
            origin: "cut.cer",
            what: "invalid certificate DER",
            advice: "export it again as PEM or DER",
        }],
    },
    Case {
        name: "PEM block of another type",
        make: |dir, _| {
            write(
                &dir.join("request.pem"),
                "# not what it seems\n-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            );
            "request.pem"
        },
        expect: &[Expect {
            origin: "request.pem: line 2",
            what: "PEM block `CERTIFICATE REQUEST` is not a certificate (a certificate signing request)",
            advice: "remove it or point at the certificate file",
        }],
    },
    Case {
        name: "empty file",
        make: |dir, _| {
            write(&dir.join("empty.crt"), "\n\n");
            "empty.crt"
        },
        expect: &[Expect {
            origin: "empty.crt",
            what: "empty input: expected PEM, DER or PKCS#7 certificates",
            advice: "put the certificates in it or remove it",
        }],
    },
    Case {
        name: "text that is neither PEM nor DER",
        make: |dir, _| {
            write(&dir.join("notes.crt"), "see the wiki for our CA\n");
            "notes.crt"
        },
        expect: &[Expect {
            origin: "notes.crt",
            what: "no PEM block and not DER",
            advice: "expected `-----BEGIN CERTIFICATE-----` blocks or a binary DER/PKCS#7 file",
        }],
    },
    Case {
        name: "directory symlink loop",
        make: |dir, _| {
            fs::create_dir_all(dir.join("cas/nested")).unwrap();
            std::os::unix::fs::symlink("..", dir.join("cas/nested/up")).unwrap();
            "cas"
        },
        expect: &[Expect {
            origin: "cas/nested/up",
            what: "directory symlink loop",
            advice: "remove the link if it is not needed",
        }],
    },
    Case {
        name: "YAML that is not a ConfigMap or Secret",
        make: |dir, _| {
            write(
                &dir.join("app.yaml"),
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n",
            );
            "app.yaml"
        },
        expect: &[
            Expect {
                origin: "app.yaml: document 1",
                what: "not a Kubernetes ConfigMap or Secret (kind: Deployment)",
                advice: "give a ConfigMap or Secret manifest, or a certificate file",
            },
            Expect {
                origin: "app.yaml: document 2",
                what: "not a Kubernetes ConfigMap or Secret (kind: Service)",
                advice: "give a ConfigMap or Secret manifest, or a certificate file",
            },
        ],
    },
    Case {
        name: "YAML syntax error",
        make: |dir, _| {
            write(
                &dir.join("broken.yaml"),
                "apiVersion: v1\nkind: ConfigMap\ndata: [\n  ca.crt: x\n",
            );
            "broken.yaml"
        },
        expect: &[Expect {
            origin: "broken.yaml",
            what: "invalid YAML at line 5",
            advice: "fix the manifest",
        }],
    },
    Case {
        name: "Secret with a bad base64 value, after a ConfigMap without certificate keys",
        make: |dir, _| {
            write(
                &dir.join("secret.yaml"),
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes, namespace: infra}\ndata:\n  readme.txt: hello\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: corp-ca\n  namespace: infra\ndata:\n  ca.crt: \"LS0t*LS1C\"\n",
            );
            "secret.yaml"
        },
        expect: &[
            Expect {
                origin: "secret.yaml: document 1, ConfigMap infra/notes",
                what: "no keys matching `*.crt` (keys present: readme.txt)",
                advice: "rename the keys or pass --k8s-keys all",
            },
            Expect {
                origin: "secret.yaml: document 2, Secret infra/corp-ca, data key ca.crt",
                what: "value is not valid base64 (invalid character `*` at offset 4)",
                advice: "use `stringData` or `data` for plain PEM",
            },
        ],
    },
    Case {
        name: "missing file",
        make: |_, _| "gone.crt",
        // A path named on the command line: refused outright (issue 13), see check_named_path.
        expect: &[Expect {
            origin: "SOURCE gone.crt",
            what: "does not exist",
            advice: "nothing was written",
        }],
    },
];

/// A named SOURCE that is missing or unreadable is not a warning (issue 13): exit 3 in every
/// mode, even beside a good source, naming it, the outputs untouched, and with `--output json`
/// the failure document on stdout.
fn check_named_path(dir: &Path, source: &str, case: &Case, runner: &Runner, before: &Outputs) {
    let name = case.name;
    let e = &case.expect[0];
    for extra in [
        &["--strict"][..],
        &[],
        &["good.crt"],
        &["good.crt", "--output", "json"],
    ] {
        let out = runner.run(
            dir,
            &[&["bundle", "build", source][..], extra, &OUTPUTS].concat(),
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{name} {extra:?}\n{err}");
        assert!(
            err.contains(&format!("{}: {}", e.origin, e.what)) && err.contains(e.advice),
            "{name} {extra:?}: message\n{err}"
        );
        assert_eq!(outputs(dir), *before, "{name} {extra:?}: outputs touched");
        if extra.contains(&"json") {
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(json["exit_code"], 3);
            assert_eq!(json["schema"], 1);
        }
    }
}

/// A case directory: the good and previous certificates, and outputs built from `previous`.
fn case_dir(parent: &Path, name: &str, certs: &Certs, runner: &Runner) -> PathBuf {
    let dir = parent.join(name.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
    fs::create_dir(&dir).unwrap();
    certs.good.write_pem(&dir, "good.crt");
    certs.previous.write_pem(&dir, "previous.crt");
    if let Some(uid) = runner.uid {
        std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).unwrap();
    }
    let out = runner.run(
        &dir,
        &[&["bundle", "build", "previous.crt"][..], &OUTPUTS].concat(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    dir
}

/// Runs one case in every mode and checks everything the issue asks for.
fn check_case(parent: &Path, certs: &Certs, case: &Case, runner: Runner) {
    let name = case.name;
    let dir = case_dir(parent, name, certs, &runner);
    let source = (case.make)(&dir, certs);
    let before = outputs(&dir);
    if matches!(name, "missing file" | "unreadable file") {
        return check_named_path(&dir, source, case, &runner, &before);
    }

    // --strict: fatal, outputs untouched, the message names the first problem.
    let out = runner.run(
        &dir,
        &[
            &["bundle", "build", source, "good.crt", "--strict"][..],
            &OUTPUTS,
        ]
        .concat(),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{name}: --strict\n{err}");
    let first = &case.expect[0];
    assert!(
        err.contains("strict mode:")
            && err.contains(&format!("the first: {}: {}", first.origin, first.what))
            && err.contains("drop --strict"),
        "{name}: --strict message\n{err}"
    );
    assert_eq!(
        outputs(&dir),
        before,
        "{name}: --strict touched the outputs"
    );

    // The bad input alone: nothing usable, outputs untouched.
    let out = runner.run(&dir, &[&["bundle", "build", source][..], &OUTPUTS].concat());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{name}: alone\n{err}");
    assert!(
        err.contains("no usable certificates")
            && err.contains("existing outputs were left untouched"),
        "{name}: alone\n{err}"
    );
    for e in case.expect {
        assert!(
            err.contains(&format!("anchorage: warning: {}: {}", e.origin, e.what)),
            "{name}: alone, problem not reported\n{err}"
        );
    }
    assert_eq!(
        outputs(&dir),
        before,
        "{name}: a failed run touched the outputs"
    );

    // Default: reported, the rest is used.
    let out = runner.run(
        &dir,
        &[&["bundle", "build", source, "good.crt"][..], &OUTPUTS].concat(),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{name}: default\n{err}");
    for e in case.expect {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("anchorage: warning: {}: {}", e.origin, e.what)))
            .unwrap_or_else(|| panic!("{name}: no warning for {}\n{err}", e.origin));
        assert!(line.contains(e.advice), "{name}: no advice in {line:?}");
    }
    assert!(
        stdout(&out).contains(&format!(
            "bundle of 1 certificate from 1 read (0 duplicates, 0 expired dropped, {})",
            if case.expect.len() == 1 {
                "1 problem".to_owned()
            } else {
                format!("{} problems", case.expect.len())
            }
        )),
        "{name}: {}",
        stdout(&out)
    );
    let pem = fs::read_to_string(dir.join("out.pem")).unwrap();
    assert!(
        pem.contains(&marker(&certs.good)),
        "{name}: good certificate missing"
    );
    assert!(
        !pem.contains(&marker(&certs.previous)),
        "{name}: not replaced"
    );
    assert_eq!(fs::read_dir(dir.join("certs")).unwrap().count(), 1);

    // The same in JSON: each problem in the `problems` array, origin exact.
    let out = runner.run(
        &dir,
        &[
            &["bundle", "build", source, "good.crt", "--output", "json"][..],
            &OUTPUTS,
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{name}: json\n{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = json["problems"].as_array().unwrap();
    assert_eq!(problems.len(), case.expect.len(), "{name}: {problems:?}");
    for (p, e) in problems.iter().zip(case.expect) {
        assert_eq!(p["origin"], e.origin, "{name}: json origin");
        let message = p["message"].as_str().unwrap();
        assert!(
            message.starts_with(e.what) && message.contains(e.advice),
            "{name}: json message {message:?}"
        );
    }
    assert_eq!(json["certificates"], 1);
    assert_eq!(json["bundle"][0]["origins"][0], "good.crt: line 1");
}

fn certs() -> Certs {
    Certs {
        good: pki::root_ca("Bad Input Test Good Root"),
        previous: pki::root_ca("Bad Input Test Previous Root"),
        other: pki::root_ca("Bad Input Test Other Root"),
    }
}

#[test]
fn each_bad_input_is_named_with_advice_in_every_mode() {
    let tmp = anchorage_test_support::tempdir().unwrap();
    let certs = certs();
    for case in CASES {
        check_case(tmp.path(), &certs, case, Runner::default());
    }
}

#[test]
fn unreadable_file() {
    let tmp = anchorage_test_support::tempdir().unwrap();
    let probe = tmp.path().join("probe");
    write(&probe, "x");
    fs::set_permissions(&probe, fs::Permissions::from_mode(0o000)).unwrap();
    // As root, mode 000 does not stop reading: run the binary as an unprivileged user then.
    let runner = if fs::read(&probe).is_err() {
        Runner::default()
    } else {
        let denied = Command::new("cat")
            .arg(&probe)
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .is_ok_and(|o| !o.status.success());
        if !denied {
            anchorage_test_support::peer::skip(&format!(
                "running as root and cannot run as uid {NOBODY} without read access; \
                 the unreadable-file case did not run"
            ));
            return;
        }
        println!("running as root: the unreadable-file case runs anchorage as uid {NOBODY}");
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let binary = tmp.path().join("anchorage-copy");
        fs::copy(env!("CARGO_BIN_EXE_anchorage"), &binary).unwrap();
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).unwrap();
        Runner {
            uid: Some(NOBODY),
            binary: Some(binary),
        }
    };
    let case = Case {
        name: "unreadable file",
        make: |dir, c| {
            let path = dir.join("locked.crt");
            c.other.write_pem(dir, "locked.crt");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
            "locked.crt"
        },
        expect: &[Expect {
            origin: "SOURCE locked.crt",
            what: "cannot be read (Permission denied",
            advice: "nothing was written",
        }],
    };
    check_case(tmp.path(), &certs(), &case, runner);
}

/// A private key in a ConfigMap's certificate key: refused whatever the mode (exit 4), named by
/// document and key, never printed, and nothing written.
#[test]
fn private_key_in_a_configmap_is_refused() {
    let tmp = anchorage_test_support::tempdir().unwrap();
    let certs = certs();
    let dir = case_dir(tmp.path(), "key", &certs, &Runner::default());
    let indented = |text: &str| {
        text.lines()
            .map(|l| format!("    {}", l.trim_end()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: corp-ca\n  namespace: infra\ndata:\n  ca.crt: |\n{}\n{}\n",
        indented(&certs.other.pem),
        indented(&certs.other.key_pem)
    );
    write(&dir.join("ca.yaml"), yaml);
    let before = outputs(&dir);
    let key_lines: Vec<&str> = certs
        .other
        .key_pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for extra in [&[][..], &["--strict"], &["--output", "json"]] {
        let args = [
            &["bundle", "build", "good.crt", "ca.yaml"][..],
            extra,
            &OUTPUTS,
        ]
        .concat();
        let out = Runner::default().run(&dir, &args);
        let (err, text) = (stderr(&out), stdout(&out));
        assert_eq!(out.status.code(), Some(4), "{extra:?}\n{err}");
        assert!(
            err.contains(
                "private key found in ca.yaml: document 1, ConfigMap infra/corp-ca, data key ca.crt: line"
            ) && err.contains("remove the key from that source"),
            "{extra:?}\n{err}"
        );
        for line in &key_lines {
            assert!(
                !err.contains(line) && !text.contains(line),
                "key material printed"
            );
        }
        assert_eq!(outputs(&dir), before, "{extra:?}: outputs touched");
    }
}

/// PKCS#7 bundles made by the real `openssl crl2pkcs7 -nocrl`, PEM and DER forms, named
/// explicitly and found in a directory: every certificate loads, located by index.
#[test]
fn pkcs7_from_openssl_in_pem_and_der() {
    let Some(openssl) = anchorage_test_support::peer::require("openssl") else {
        return;
    };
    let tmp = anchorage_test_support::tempdir().unwrap();
    let dir = tmp.path();
    let certs = certs();
    certs.good.write_pem(dir, "good.crt");
    certs.other.write_pem(dir, "other.crt");
    fs::create_dir(dir.join("p7")).unwrap();
    for (form, file) in [("PEM", "p7/corp-pem.p7b"), ("DER", "p7/corp-der.p7b")] {
        let status = Command::new(&openssl)
            .args([
                "crl2pkcs7",
                "-nocrl",
                "-certfile",
                "good.crt",
                "-certfile",
                "other.crt",
            ])
            .args(["-outform", form, "-out", file])
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(status.success(), "openssl crl2pkcs7 -outform {form}");
    }
    assert!(
        fs::read_to_string(dir.join("p7/corp-pem.p7b"))
            .unwrap()
            .starts_with("-----BEGIN PKCS7-----")
    );

    for (source, origin) in [
        (
            "p7/corp-pem.p7b",
            "p7/corp-pem.p7b: line 1, PKCS#7 certificate",
        ),
        ("p7/corp-der.p7b", "p7/corp-der.p7b: PKCS#7 certificate"),
    ] {
        let out = Runner::default().run(
            dir,
            &[
                "bundle", "build", source, "--strict", "--pem", "out.pem", "--output", "json",
            ],
        );
        assert!(out.status.success(), "{source}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["certificates"], 2, "{source}");
        assert_eq!(json["problems"].as_array().unwrap().len(), 0);
        let mut origins: Vec<String> = json["bundle"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["origins"][0].as_str().unwrap().to_owned())
            .collect();
        origins.sort();
        assert_eq!(origins, [format!("{origin} 1"), format!("{origin} 2")]);
        let pem = fs::read_to_string(dir.join("out.pem")).unwrap();
        assert!(pem.contains(&marker(&certs.good)) && pem.contains(&marker(&certs.other)));
    }

    // Through a directory: both files are read (the default filter takes `.p7b`), each holds
    // both certificates once.
    let out = Runner::default().run(dir, &["bundle", "build", "p7", "--pem", "dir.pem"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("bundle of 2 certificates from 4 read (2 duplicates"),
        "{}",
        stdout(&out)
    );
}
