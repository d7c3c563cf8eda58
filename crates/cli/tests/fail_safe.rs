//! Fail-safe inputs and outputs (issue 13), through the real binary: a missing named path is
//! exit 3 with nothing written, for every command that takes paths; outputs that resolve to the
//! same file (or to an input) are refused before anything is written (exit 2); flags with no
//! effect are an error naming what they need; `-` is standard input; `--output json` puts exactly
//! one document with a `"schema"` on stdout in every mode; an unwritable stdout is exit 5. Each
//! case has its negative control beside it.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anchorage_test_support::pki;
use serde_json::Value;

const USAGE: i32 = 2;
const BAD_INPUT: i32 = 3;
const OUTPUT: i32 = 5;

/// Runs `anchorage` in `dir` with `stdin` on its standard input (none: an empty one) and its
/// CA store in `data`.
fn anchorage_stdin(dir: &Path, data: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args(args)
        .current_dir(dir)
        .env_remove("ANCHORAGE_LOG")
        .env_remove("VAULT_ADDR")
        .env_remove("BAO_ADDR")
        .env("ANCHORAGE_DATA_DIR", data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run anchorage");
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The one JSON document stdout holds (fails when there is anything else).
fn only_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not exactly one JSON document ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(o)
        )
    })
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

struct Fixture {
    dir: anchorage_test_support::TempDir,
    /// The CA store, outside `dir` so that "nothing written" compares `dir` alone.
    data: anchorage_test_support::TempDir,
    root: pki::Issued,
}

impl Fixture {
    fn new() -> Self {
        let dir = anchorage_test_support::tempdir().unwrap();
        let root = pki::root_ca("Anchorage Fail-Safe Test Root");
        root.write_pem(dir.path(), "corp.pem");
        let data = anchorage_test_support::tempdir().unwrap();
        Self { dir, data, root }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_stdin(args, None)
    }

    fn run_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        anchorage_stdin(self.path(), self.data.path(), args, stdin)
    }

    /// Asserts the run failed with `code`, its message naming each of `words`, and that the
    /// directory holds exactly what it held before.
    fn refused(&self, args: &[&str], code: i32, words: &[&str]) {
        let before = listing(self.path());
        let o = self.run(args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        for w in words {
            assert!(err.contains(w), "{args:?}: {w:?} not in:\n{err}");
        }
        assert_eq!(listing(self.path()), before, "{args:?} wrote something");
    }

    fn succeeds(&self, args: &[&str]) -> Output {
        let o = self.run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        o
    }
}

#[test]
fn a_missing_named_path_is_exit_3_with_nothing_written_in_every_command() {
    let f = Fixture::new();
    // (command line, what the message must name)
    let cases: &[&[&str]] = &[
        &[
            "bundle", "build", "nope.pem", "corp.pem", "--pem", "out.pem",
        ],
        &[
            "bundle",
            "build",
            "corp.pem",
            "nope.d/",
            "--openssl-dir",
            "certs",
        ],
        &[
            "bundle",
            "build",
            "corp.pem",
            "--pkcs12",
            "t.p12",
            "--store-password-file",
            "nope.pem",
        ],
        &["bundle", "inspect", "nope.pem"],
        &[
            "image",
            "inject",
            "oci:./src",
            "oci:./dst",
            "--ca",
            "nope.pem",
            "--ca",
            "corp.pem",
        ],
        &[
            "doctor",
            "127.0.0.1:9",
            "--ca",
            "corp.pem",
            "--ca",
            "nope.pem",
        ],
        &["doctor", "127.0.0.1:9", "--bundle", "nope.pem"],
        &["--tls-ca-path", "nope.pem", "doctor", "127.0.0.1:9"],
        &["--tls-ca-path", "nope.pem", "tls", "roots"],
        &["tls", "roots", "--tls-certs-file", "nope.pem"],
        &["ca", "import", "--format", "pem", "corp.pem", "nope.pem"],
        &[
            "k8s",
            "patch",
            "--configmap",
            "trust",
            "--kind",
            "deployment",
            "--container",
            "app",
            "--bundle",
            "nope.pem",
        ],
        &[
            "k8s",
            "patch",
            "--configmap",
            "trust",
            "--kind",
            "deployment",
            "--container",
            "app",
            "--type",
            "json",
            "--current",
            "nope.pem",
        ],
        &["env", "--bundle", "nope.pem"],
        &["env", "--bundle", "corp.pem", "--extra", "nope.pem"],
        &["env", "--bundle", "corp.pem", "--dir", "nope.pem"],
        &["ca", "--passphrase-file", "nope.pem", "init"],
        &["secrets", "put", "k", "--value-file", "nope.pem"],
        &["secrets", "get", "k", "--encryption-seed-file", "nope.pem"],
        &["secrets", "serve", "--transit-seed-file", "nope.pem"],
        &[
            "secrets",
            "list",
            "--store",
            "jetstream",
            "--nats-creds",
            "nope.pem",
        ],
    ];
    for args in cases {
        f.refused(args, BAD_INPUT, &["nope."]);
    }
    // Nothing reached the CA or secrets store either.
    assert!(
        listing(f.data.path()).is_empty(),
        "{:?}",
        listing(f.data.path())
    );
    // Negative control: the same builds without the missing path succeed.
    f.succeeds(&["bundle", "build", "corp.pem", "--pem", "out.pem"]);
    assert!(f.path().join("out.pem").exists());
    f.succeeds(&["bundle", "inspect", "corp.pem"]);
}

#[test]
fn unreadable_entries_inside_a_directory_source_stay_warnings() {
    let f = Fixture::new();
    let cas = f.path().join("cas");
    fs::create_dir(&cas).unwrap();
    f.root.write_pem(&cas, "corp.crt");
    // An entry that cannot be read: a link to nothing.
    std::os::unix::fs::symlink("gone.crt", cas.join("dangling.crt")).unwrap();
    let o = f.succeeds(&["bundle", "build", "cas", "--pem", "out.pem"]);
    assert!(stderr(&o).contains("dangling.crt"), "{}", stderr(&o));
    assert!(f.path().join("out.pem").exists());
    // The same entry named on the command line is not a warning.
    f.refused(
        &[
            "bundle",
            "build",
            "cas",
            "cas/dangling.crt",
            "--pem",
            "out2.pem",
        ],
        BAD_INPUT,
        &["cas/dangling.crt"],
    );
}

#[test]
fn outputs_resolving_to_the_same_file_are_refused_before_anything_is_written() {
    let f = Fixture::new();
    fs::create_dir(f.path().join("d")).unwrap();
    std::os::unix::fs::symlink("d", f.path().join("dl")).unwrap();
    std::os::unix::fs::symlink("x.pem", f.path().join("y.p12")).unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "bundle",
                "build",
                "corp.pem",
                "--mozilla",
                "--pem",
                "x.pem",
                "--extra-pem",
                "x.pem",
            ],
            &["--pem x.pem", "--extra-pem x.pem"],
        ),
        (
            &[
                "bundle", "build", "corp.pem", "--pem", "x.pem", "--pkcs12", "y.p12",
            ],
            &["--pkcs12 y.p12"],
        ),
        (
            &[
                "bundle", "build", "corp.pem", "--pem", "d/a.pem", "--jks", "dl/a.pem",
            ],
            &["--jks dl/a.pem"],
        ),
        (
            &[
                "bundle",
                "build",
                "corp.pem",
                "--pem",
                "d/a.pem",
                "--openssl-dir",
                "dl",
            ],
            &["inside --openssl-dir dl"],
        ),
        (
            &["bundle", "build", "corp.pem", "--pem", "./corp.pem"],
            &["input SOURCE corp.pem"],
        ),
        (
            &[
                "bundle",
                "build",
                "corp.pem",
                "--k8s-configmap",
                "trust",
                "--k8s-out",
                "d/../corp.pem",
            ],
            &["--k8s-out"],
        ),
        (
            &[
                "doctor",
                "127.0.0.1:9",
                "--ca",
                "corp.pem",
                "--save-chain",
                "corp.pem",
            ],
            &["--save-chain"],
        ),
    ];
    for (args, words) in cases {
        f.refused(args, USAGE, words);
    }
    assert!(!f.path().join("x.pem").exists());
    assert!(listing(&f.path().join("d")).is_empty());
    // Negative control: distinct outputs, the same bundle in each.
    f.succeeds(&[
        "bundle",
        "build",
        "corp.pem",
        "--mozilla",
        "--pem",
        "d/a.pem",
        "--extra-pem",
        "dl/b.pem",
    ]);
    let extra = fs::read_to_string(f.path().join("d/b.pem")).unwrap();
    assert_eq!(extra.matches("BEGIN CERTIFICATE").count(), 1);
}

#[test]
fn flags_without_effect_are_refused_naming_what_they_need() {
    let f = Fixture::new();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["bundle", "build", "corp.pem", "-n", "apps"],
            &["--k8s-configmap"],
        ),
        (
            &[
                "bundle",
                "build",
                "corp.pem",
                "--k8s-cluster-trust-bundle",
                "x",
                "-n",
                "apps",
            ],
            &["--k8s-configmap"],
        ),
        (
            &["bundle", "build", "corp.pem", "--k8s-out", "t.yaml"],
            &["--k8s-configmap"],
        ),
        (
            &["bundle", "build", "corp.pem", "--k8s-format", "json"],
            &["--k8s-configmap"],
        ),
        (
            &[
                "bundle",
                "build",
                "corp.pem",
                "--k8s-wasmcloud-configmap",
                "w",
                "--k8s-bundle-only",
            ],
            &["--k8s-secret"],
        ),
        (
            &[
                "bundle",
                "build",
                "corp.pem",
                "--pem",
                "o.pem",
                "--store-password",
                "pw",
            ],
            &["--pkcs12"],
        ),
        (
            &[
                "bundle",
                "build",
                "corp.pem",
                "--pkcs12",
                "t.p12",
                "--pem-comments",
            ],
            &["--pem-comments needs --pem"],
        ),
        (
            &["--tls-ca-path", "corp.pem", "bundle", "build", "corp.pem"],
            &["--tls-ca-path has no effect"],
        ),
        (
            &[
                "k8s",
                "patch",
                "--configmap",
                "trust",
                "--kind",
                "deployment",
                "--container",
                "app",
                "--current",
                "corp.pem",
            ],
            &["--current needs --type json"],
        ),
        (
            &[
                "k8s",
                "patch",
                "--cluster-trust-bundle",
                "c",
                "--kind",
                "deployment",
                "--container",
                "app",
                "--bundle-only",
            ],
            &["--configmap"],
        ),
        (
            &[
                "k8s",
                "patch",
                "--configmap",
                "t",
                "--kind",
                "pod",
                "--container",
                "a",
                "-n",
                "x",
            ],
            &["--name"],
        ),
        (
            &[
                "ca",
                "issue",
                "--cn",
                "web",
                "--out",
                "tls",
                "--vault-mount",
                "pki2",
            ],
            &["--backend vault"],
        ),
        (
            &[
                "--tls-ca-path",
                "corp.pem",
                "ca",
                "issue",
                "--cn",
                "web",
                "--out",
                "tls",
            ],
            &["--tls-ca-path needs --backend vault"],
        ),
        (
            &[
                "ca",
                "export",
                "--format",
                "pem",
                "--out",
                "x",
                "--k8s-format",
                "json",
            ],
            &["--k8s-format"],
        ),
        (
            &[
                "image",
                "inject",
                "oci:./a",
                "oci:./b",
                "--ca",
                "corp.pem",
                "--replace",
                "--all-layers",
            ],
            &["--all-layers", "--replace"],
        ),
        (
            &[
                "env",
                "--bundle",
                "corp.pem",
                "--java-truststore-type",
                "jks",
            ],
            &["--java-truststore"],
        ),
        (
            &["bundle", "build", "--mozilla", "--dir-filter", "crt"],
            &["--dir-filter needs a SOURCE"],
        ),
        (
            &[
                "image",
                "inject",
                "oci:./a",
                "oci:./b",
                "--ca",
                "corp.pem",
                "--insecure-registry",
                "localhost:5000",
            ],
            &["--insecure-registry needs a registry"],
        ),
        (
            &[
                "--tls-ca-path",
                "corp.pem",
                "image",
                "inject",
                "oci:./a",
                "oci:./b",
                "--ca",
                "corp.pem",
            ],
            &["--tls-ca-path needs a registry"],
        ),
    ];
    for (args, words) in cases {
        f.refused(args, USAGE, words);
    }
    let secrets: &[(&[&str], &[&str])] = &[
        (
            &["secrets", "list", "--openbao-addr", "https://bao:8200"],
            &["--openbao-addr needs --store openbao"],
        ),
        (
            &["secrets", "list", "--nats-url", "nats://127.0.0.1:4222"],
            &["--nats-url needs NATS"],
        ),
    ];
    for (args, words) in secrets {
        f.refused(args, USAGE, words);
    }
    // Negative controls: the same flags where they have an effect.
    let o = f.succeeds(&[
        "bundle",
        "build",
        "corp.pem",
        "--k8s-configmap",
        "trust",
        "-n",
        "apps",
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("namespace: apps"));
    f.succeeds(&[
        "bundle",
        "build",
        "corp.pem",
        "--k8s-secret",
        "trust",
        "--k8s-bundle-only",
        "--k8s-out",
        "t.yaml",
        "--k8s-format",
        "json",
    ]);
    f.succeeds(&[
        "bundle",
        "build",
        "corp.pem",
        "--pem",
        "c.pem",
        "--pem-comments",
    ]);
    f.succeeds(&["bundle", "build", "corp.pem", "--pem-comments"]);
    f.succeeds(&["bundle", "build", "corp.pem", "--dir-filter", "all"]);
}

#[test]
fn dash_is_standard_input_named_stdin() {
    let f = Fixture::new();
    let pem = f.root.pem.as_bytes();
    // bundle build -
    let o = f.run_stdin(
        &["bundle", "build", "-", "--pem", "out.pem", "-o", "json"],
        Some(pem),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc = only_json(&o);
    assert_eq!(doc["certificates"], 1);
    assert_eq!(doc["bundle"][0]["origins"][0], "stdin: line 1");
    assert!(f.path().join("out.pem").exists());
    // bundle inspect -
    let o = f.run_stdin(&["bundle", "inspect", "-", "-o", "json"], Some(pem));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc = only_json(&o);
    assert_eq!(doc["path"], "stdin");
    assert_eq!(doc["certificates"].as_array().unwrap().len(), 1);
    // Negative control: nothing on stdin is no certificate, named stdin.
    let o = f.run_stdin(&["bundle", "inspect", "-"], Some(b""));
    assert_eq!(o.status.code(), Some(BAD_INPUT));
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(said.contains("in stdin"), "{said}");
    // ca import -: the certificate and its key in one stream.
    let both = format!("{}{}", f.root.pem, f.root.key_pem);
    let o = f.run_stdin(
        &["ca", "import", "--format", "pem", "-", "-o", "json"],
        Some(both.as_bytes()),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(only_json(&o)["schema"], 1);
    // secrets put --value-file -
    let seed = f.path().join("enc.seed");
    let o = f.run(&[
        "secrets",
        "keygen",
        "--kind",
        "encryption",
        "--out",
        "enc.seed",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    {
        let seed = seed.to_str().unwrap();
        let o = f.run_stdin(
            &[
                "secrets",
                "put",
                "k",
                "--value-file",
                "-",
                "--encryption-seed-file",
                seed,
                "-o",
                "json",
            ],
            Some(b"from stdin"),
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = f.run(&[
            "secrets",
            "get",
            "k",
            "--reveal",
            "--encryption-seed-file",
            seed,
        ]);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            "from stdin\n",
            "{}",
            stderr(&o)
        );
    }
    // Standard input can be read once: `-` twice is a usage error.
    let o = f.run_stdin(&["bundle", "build", "-", "-"], Some(pem));
    assert_eq!(o.status.code(), Some(USAGE), "{}", stderr(&o));
    assert!(stderr(&o).contains("only once"), "{}", stderr(&o));
    // k8s patch --bundle -: the bundle's hash goes into the pod template.
    let o = f.run_stdin(
        &[
            "k8s",
            "patch",
            "--configmap",
            "trust",
            "--kind",
            "deployment",
            "--container",
            "app",
            "--bundle",
            "-",
        ],
        Some(pem),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("anchorage.io/bundle-sha256"));
    // k8s patch --current -
    let workload = br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"api"},"spec":{"template":{"spec":{"containers":[{"name":"app"}]}}}}"#;
    let o = f.run_stdin(
        &[
            "k8s",
            "patch",
            "--configmap",
            "trust",
            "--kind",
            "deployment",
            "--container",
            "app",
            "--type",
            "json",
            "--current",
            "-",
        ],
        Some(workload),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn json_is_one_document_with_a_schema_in_every_mode() {
    let f = Fixture::new();
    // No output file: the bundle goes inside the document, not beside it.
    let o = f.succeeds(&["bundle", "build", "corp.pem", "-o", "json"]);
    let doc = only_json(&o);
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["certificates"], 1);
    assert!(
        doc["pem_text"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    // Kubernetes objects without --k8s-out: inside too.
    let o = f.succeeds(&[
        "bundle",
        "build",
        "corp.pem",
        "--k8s-configmap",
        "trust",
        "--output",
        "json",
    ]);
    let doc = only_json(&o);
    assert!(
        doc["k8s_objects"]
            .as_str()
            .unwrap()
            .contains("kind: ConfigMap")
    );
    assert!(doc.get("pem_text").is_none());
    // With --pem: the same document shape, the summary never on stdout.
    let o = f.succeeds(&[
        "bundle", "build", "corp.pem", "--pem", "b.pem", "-o", "json",
    ]);
    let doc = only_json(&o);
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["outputs"][0]["kind"], "pem");
    // Failures are one document with the schema, whatever failed.
    let failures: &[(&[&str], i32)] = &[
        (&["bundle", "build", "nope.pem", "-o", "json"], BAD_INPUT),
        (
            &["bundle", "build", "corp.pem", "-n", "x", "-o", "json"],
            USAGE,
        ),
        (
            &[
                "bundle", "build", "corp.pem", "--pem", "a", "--jks", "a", "-o", "json",
            ],
            USAGE,
        ),
        (&["bundle", "inspect", "nope.pem", "-o", "json"], BAD_INPUT),
        (
            &["tls", "roots", "--tls-certs-file", "nope.pem", "-o", "json"],
            BAD_INPUT,
        ),
        (
            &["env", "--bundle", "nope.pem", "--format", "json"],
            BAD_INPUT,
        ),
        (&["ca", "show", "-o", "json"], 8),
        (&["env", "--bundle", "nope.pem", "-o", "json"], BAD_INPUT),
        (&["secrets", "get", "nope", "-o", "json"], 13),
        (
            &["doctor", "127.0.0.1:9", "--ca", "nope.pem", "-o", "json"],
            BAD_INPUT,
        ),
        (
            &["image", "inject", "oci:./a", "oci:./b", "-o", "json"],
            USAGE,
        ),
    ];
    for (args, code) in failures {
        let o = f.run(args);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {}", stderr(&o));
        let doc = only_json(&o);
        assert_eq!(doc["schema"], 1, "{args:?}");
        assert_eq!(doc["exit_code"], *code, "{args:?}");
        assert!(doc["error"].is_string(), "{args:?}");
    }
    // Negative control: text mode keeps stdout for the bundle and the summary on stderr.
    let o = f.succeeds(&["bundle", "build", "corp.pem"]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(stderr(&o).contains("bundle of 1 certificate"));
}

/// Runs `sh -c SCRIPT` in `dir` with the binary as `$A`.
fn shell(dir: &Path, script: &str) -> Output {
    Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .env("A", env!("CARGO_BIN_EXE_anchorage"))
        .env_remove("ANCHORAGE_LOG")
        .output()
        .unwrap()
}

#[test]
fn a_full_or_closed_stdout_is_exit_5() {
    let f = Fixture::new();
    for script in [
        r#""$A" bundle build corp.pem > /dev/full"#,
        r#""$A" bundle build corp.pem -o json > /dev/full"#,
        r#""$A" bundle inspect corp.pem > /dev/full"#,
        r#""$A" env --bundle corp.pem > /dev/full"#,
    ] {
        let o = shell(f.path(), &format!("{script}; echo \"rc=$?\" >&2"));
        let err = stderr(&o);
        assert!(err.contains(&format!("rc={OUTPUT}")), "{script}: {err}");
        assert!(err.contains("cannot write to stdout"), "{script}: {err}");
        assert!(!err.contains("panicked"), "{script}: {err}");
    }
    // Negative control: the same commands to /dev/null succeed.
    let o = shell(
        f.path(),
        r#""$A" bundle build corp.pem > /dev/null; echo "rc=$?" >&2"#,
    );
    assert!(stderr(&o).contains("rc=0"), "{}", stderr(&o));
}

/// `anchorage … --help | head -3`: the reader hung up once it had what it wanted; help (and
/// version) end quietly, while a command's data output on the same closed pipe stays exit 5.
#[test]
fn help_into_a_closed_pipe_ends_quietly() {
    let run = |args: &[&str]| {
        // A pipe whose read end is closed before anchorage starts: its first write is EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        Command::new(env!("CARGO_BIN_EXE_anchorage"))
            .args(args)
            .env_remove("ANCHORAGE_LOG")
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    };
    for args in [
        &["--help"][..],
        &["bundle", "build", "--help"],
        &["serve", "-h"],
        &["--version"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
    }
    // Negative control: data on the same closed pipe is still a failure that says so.
    let o = run(&["bundle", "build", "--mozilla"]);
    assert_eq!(o.status.code(), Some(OUTPUT), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot write to stdout"));
}

#[test]
fn a_closed_pipe_is_exit_5() {
    use std::io::Read as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args(["bundle", "build", "--mozilla"])
        .env_remove("ANCHORAGE_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line's worth, as `| head -1` would, then hang up.
    let mut first = [0u8; 64];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(first.starts_with(b"-----BEGIN CERTIFICATE-----"));
    assert_eq!(output.status.code(), Some(OUTPUT), "{}", stderr(&output));
    assert!(stderr(&output).contains("cannot write to stdout"));
}
