//! End-to-end tests of `anchorage env` through the real binary: the files come from `anchorage
//! bundle build`, the shell output is `eval`ed by bash and used by curl against a real server, and
//! every other format is parsed the way its consumer parses it (dotenv lines, JSON, a Kubernetes
//! `env:` list). Bad input fails with the documented exit code and names the file.
//!
//! Paths live in a directory whose name holds a space and a single quote, so every format's
//! quoting is exercised.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anchorage_test_support::peer;
use anchorage_test_support::pki::{self, Pki};
use anchorage_test_support::{TempDir, tempdir};

/// A directory name that breaks naive shell quoting.
const AWKWARD_DIR: &str = "it's a dir";

/// Variables that replace a runtime's store and so must name the combined bundle.
const BUNDLE_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "PIP_CERT",
    "AWS_CA_BUNDLE",
];

/// Variables that add to a runtime's compiled-in roots and so must name the private CAs only.
const EXTRA_VARS: &[&str] = &["NODE_EXTRA_CA_CERTS", "DENO_CERT"];

fn anchorage<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_anchorage"))
        .args(args)
        .current_dir(dir)
        .env_remove("ANCHORAGE_LOG")
        .output()
        .expect("run anchorage")
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

/// What `bundle build --pem --openssl-dir --extra-pem` wrote, relative to the temp dir (the
/// command runs there) and absolute (what `env` must print).
struct Built {
    bundle: String,
    dir: String,
    extra: String,
}

impl Built {
    fn abs(base: &Path, rel: &str) -> String {
        base.join(rel).display().to_string()
    }
}

/// Runs `anchorage bundle build SOURCE --mozilla --pem … --openssl-dir … --extra-pem …` in `base`,
/// writing into `base/out` (created).
fn build(base: &Path, source: &str, out: &str) -> Built {
    fs::create_dir_all(base.join(out)).unwrap();
    let built = Built {
        bundle: format!("{out}/ca bundle.pem"),
        dir: format!("{out}/certs"),
        extra: format!("{out}/extra.pem"),
    };
    let run = anchorage(
        base,
        &[
            "bundle",
            "build",
            source,
            "--mozilla",
            "--pem",
            &built.bundle,
            "--openssl-dir",
            &built.dir,
            "--extra-pem",
            &built.extra,
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    built
}

/// A temp dir holding our private root (as a file and in a directory) and the outputs built from
/// it with Mozilla's roots.
struct Fixture {
    tmp: TempDir,
    pki: Pki,
    built: Built,
}

fn fixture() -> Fixture {
    let tmp = tempdir().unwrap();
    let pki = Pki::new("Anchorage Env CLI");
    let cas = tmp.path().join("private cas");
    fs::create_dir(&cas).unwrap();
    pki.root.write_pem(&cas, "root.pem");
    let built = build(tmp.path(), "private cas", AWKWARD_DIR);
    Fixture { tmp, pki, built }
}

impl Fixture {
    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn abs(&self, rel: &str) -> String {
        Built::abs(self.path(), rel)
    }

    /// `anchorage env --bundle … --dir … --extra …` plus `more`, run in the temp dir.
    fn env(&self, more: &[&str]) -> Output {
        let mut args = vec![
            "env",
            "--bundle",
            &self.built.bundle,
            "--dir",
            &self.built.dir,
            "--extra",
            &self.built.extra,
        ];
        args.extend_from_slice(more);
        anchorage(self.path(), &args)
    }
}

/// `eval`s the shell output in bash (environment: `PATH` and an empty `HOME` only), prints three
/// of the variables back, then runs curl, which reads `CURL_CA_BUNDLE`, against `port`.
const EVAL_AND_CURL: &str = r#"
set -u
vars=$("$1" env --bundle "$2" --dir "$3" --extra "$4") || exit 90
eval "$vars"
printf 'SSL_CERT_FILE=%s\nSSL_CERT_DIR=%s\nNODE_EXTRA_CA_CERTS=%s\n' \
    "$SSL_CERT_FILE" "$SSL_CERT_DIR" "$NODE_EXTRA_CA_CERTS"
exec curl -q --silent --show-error --noproxy '*' --max-time 15 --proto =https \
    --resolve "localhost:$5:127.0.0.1" "https://localhost:$5/"
"#;

#[test]
fn shell_output_survives_eval_and_points_curl_at_the_bundle() {
    let (Some(bash), Some(_curl)) = (peer::require("bash"), peer::require("curl")) else {
        return;
    };
    let f = fixture();
    // The negative control: the same build without our root (an unrelated private root instead,
    // so the extra file is not empty), in another awkward directory.
    let unrelated = pki::root_ca("Unrelated Env CLI Root");
    unrelated.write_pem(f.path(), "unrelated.pem");
    let untrusted = build(f.path(), "unrelated.pem", "un'trusted dir");

    let server_dir = f.path().join("server");
    fs::create_dir(&server_dir).unwrap();
    let files = f.pki.write_server_files(&server_dir);
    let Some(server) = peer::openssl_server(&files.cert, &files.key, Some(&files.chain)) else {
        return;
    };
    let home = f.path().join("home");
    fs::create_dir(&home).unwrap();
    let run = |built: &Built| {
        let mut cmd = Command::new(&bash);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .current_dir(f.path())
            .args(["-c", EVAL_AND_CURL, "bash"])
            .arg(env!("CARGO_BIN_EXE_anchorage"))
            // Relative paths: `env` must print them absolute.
            .args([&built.bundle, &built.dir, &built.extra])
            .arg(server.port().to_string());
        peer::run_client(&mut cmd, Duration::from_secs(20))
    };

    for (built, trusted) in [(&f.built, true), (&untrusted, false)] {
        let out = run(built);
        let context = format!(
            "trusted={trusted}: exit {}\n--- stdout\n{}\n--- stderr\n{}",
            out.status, out.stdout, out.stderr
        );
        // The quoting survived: each variable holds the absolute path, quote and space included.
        let expected = format!(
            "SSL_CERT_FILE={}\nSSL_CERT_DIR={}\nNODE_EXTRA_CA_CERTS={}\n",
            f.abs(&built.bundle),
            f.abs(&built.dir),
            f.abs(&built.extra)
        );
        assert!(out.stdout.starts_with(&expected), "{context}");
        assert!(
            expected.contains("'") && expected.contains(' '),
            "{expected}"
        );
        if trusted {
            assert!(out.status.success(), "{context}");
            assert!(out.stdout.contains("s_server"), "{context}");
            assert_eq!(out.stderr, "", "{context}");
        } else {
            assert_eq!(out.status.code(), Some(60), "{context}");
            assert!(
                out.stderr
                    .contains("SSL certificate problem: unable to get local issuer certificate"),
                "{context}"
            );
        }
    }
}

#[test]
fn shell_output_quotes_every_value_and_lists_what_was_left_out() {
    let f = fixture();
    let out = f.env(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "a complete set gives no warning");
    let text = stdout(&out);
    let bundle = f.abs(&f.built.bundle).replace('\'', r"'\''");
    assert!(
        text.contains(&format!("export SSL_CERT_FILE='{bundle}'\n")),
        "{text}"
    );
    assert!(
        text.contains("# JAVA_TOOL_OPTIONS not set: give --java-truststore\n"),
        "{text}"
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line
            .strip_prefix("export ")
            .and_then(|l| l.split_once('='))
            .unwrap_or_else(|| panic!("not an export line: {line:?}"));
        assert!(
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        );
        assert!(value.starts_with('\'') && value.ends_with('\''), "{line:?}");
    }
}

#[test]
fn dotenv_output_is_name_equals_absolute_path() {
    let f = fixture();
    let out = f.env(&["--format", "dotenv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let vars: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.starts_with('#')) // docker --env-file skips comment lines
        .map(|l| {
            l.split_once('=')
                .unwrap_or_else(|| panic!("not NAME=value: {l:?}"))
        })
        .collect();
    let get = |name: &str| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .1
    };
    // Unquoted: docker --env-file takes the rest of the line literally.
    assert!(Path::new(get("SSL_CERT_FILE")).is_absolute());
    assert_eq!(get("SSL_CERT_FILE"), f.abs(&f.built.bundle));
    assert_eq!(get("SSL_CERT_DIR"), f.abs(&f.built.dir));
    assert_eq!(get("NODE_EXTRA_CA_CERTS"), f.abs(&f.built.extra));
    for (name, value) in &vars {
        assert!(
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            "{name}"
        );
        assert!(Path::new(value).is_absolute(), "{name}={value}");
    }
}

#[test]
fn json_output_says_what_each_variable_does_and_what_was_left_out() {
    let f = fixture();
    let out = f.env(&["--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // `--output` is an alias of `--format`.
    let alias = f.env(&["--output", "json"]);
    assert_eq!(stdout(&alias), stdout(&out));

    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vars = json["variables"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {json:#}"))
    };
    for v in vars {
        for key in ["name", "value", "effect", "points", "readers"] {
            assert!(v[key].is_string(), "{key} of {v}");
        }
    }
    let bundle = f.abs(&f.built.bundle);
    for name in BUNDLE_VARS {
        let v = var(name);
        assert_eq!(
            (v["value"].as_str(), &v["effect"], &v["points"]),
            (Some(bundle.as_str()), &"replaces".into(), &"bundle".into()),
            "{name}"
        );
    }
    assert_eq!(var("SSL_CERT_DIR")["value"], f.abs(&f.built.dir));
    assert_eq!(var("SSL_CERT_DIR")["points"], "dir");
    for name in EXTRA_VARS {
        let v = var(name);
        assert_eq!(v["value"], f.abs(&f.built.extra), "{name}");
        assert_eq!(
            (&v["effect"], &v["points"]),
            (&"adds".into(), &"extra".into())
        );
    }
    assert!(
        var("REQUESTS_CA_BUNDLE")["readers"]
            .as_str()
            .unwrap()
            .contains("requests")
    );

    let omitted = json["omitted"].as_array().unwrap();
    assert_eq!(
        omitted,
        &[serde_json::json!({"name": "JAVA_TOOL_OPTIONS", "option": "--java-truststore"})]
    );
    assert_eq!(json["warnings"], serde_json::json!([]));
    let ignore_all = json["ignore_all"].as_array().unwrap();
    assert!(!ignore_all.is_empty());
    for i in ignore_all {
        assert!(i["what"].is_string() && i["why"].is_string(), "{i}");
    }
    assert!(
        ignore_all
            .iter()
            .any(|i| i["what"].as_str().unwrap().contains("Java")),
        "{ignore_all:?}"
    );

    // Without --dir, SSL_CERT_DIR is left out and the option named; without --extra, the
    // variables that add to a runtime's store name the combined bundle instead.
    let bare = anchorage(
        f.path(),
        &["env", "--bundle", &f.built.bundle, "--format", "json"],
    );
    let json: serde_json::Value = serde_json::from_slice(&bare.stdout).unwrap();
    let vars = json["variables"].as_array().unwrap();
    let names: Vec<_> = vars
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(!names.iter().any(|n| n == "SSL_CERT_DIR"), "{names:?}");
    for name in EXTRA_VARS {
        let v = vars
            .iter()
            .find(|v| v["name"] == *name)
            .unwrap_or_else(|| panic!("{name} left out: {json:#}"));
        assert_eq!(v["value"], bundle, "{name}");
        assert_eq!(
            (&v["effect"], &v["points"]),
            (&"adds".into(), &"bundle".into())
        );
    }
    let omitted = json["omitted"].as_array().unwrap();
    assert!(
        omitted.contains(&serde_json::json!({"name": "SSL_CERT_DIR", "option": "--dir"})),
        "{omitted:?}"
    );
    assert!(
        omitted.iter().all(|o| o["option"] != "--extra"),
        "{omitted:?}"
    );
}

/// Runs Node's `https.get` against `argv[1]` with verification on.
const NODE_GET: &str = r#"
const https = require('https');
const req = https.get(process.argv[1], (res) => {
  console.log(`status ${res.statusCode} authorized=${res.socket.authorized}`);
  res.resume();
  res.on('end', () => process.exit(0));
});
req.setTimeout(15000, () => req.destroy(new Error('timed out')));
req.on('error', (e) => { console.error(`node https error ${e.code}: ${e.message}`); process.exit(1); });
"#;

/// `eval`s `anchorage env --bundle "$2"` (no --extra) in bash, then runs Node against `$3`.
const EVAL_AND_NODE: &str = r#"
set -u
vars=$("$1" env --bundle "$2") || exit 90
eval "$vars"
exec node -e "$4" -- "$3"
"#;

#[test]
fn bundle_alone_makes_node_trust_the_private_ca() {
    let (Some(bash), Some(_node)) = (peer::require("bash"), peer::require("node")) else {
        return;
    };
    let f = fixture();
    let server_dir = f.path().join("server");
    fs::create_dir(&server_dir).unwrap();
    let files = f.pki.write_server_files(&server_dir);
    let Some(server) = peer::openssl_server(&files.cert, &files.key, Some(&files.chain)) else {
        return;
    };
    let url = format!("https://127.0.0.1:{}/", server.port());
    let home = f.path().join("home");
    fs::create_dir(&home).unwrap();
    let base = |cmd: &mut Command| {
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .current_dir(f.path());
    };

    // Through `env --bundle` alone (the combined bundle, Mozilla roots included): Node trusts
    // the private CA, and loads the file without complaint.
    let mut cmd = Command::new(&bash);
    base(&mut cmd);
    cmd.args(["-c", EVAL_AND_NODE, "bash"])
        .arg(env!("CARGO_BIN_EXE_anchorage"))
        .args([&f.built.bundle, &url, NODE_GET]);
    let out = peer::run_client(&mut cmd, Duration::from_secs(30));
    let context = format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status, out.stdout, out.stderr
    );
    assert!(out.status.success(), "{context}");
    assert!(
        out.stdout.contains("status 200 authorized=true"),
        "{context}"
    );
    assert!(!out.stderr.contains("Ignoring extra certs"), "{context}");

    // Negative control: the same Node without the variable (what `env --bundle` printed before)
    // does not trust the private CA.
    let mut cmd = Command::new("node");
    base(&mut cmd);
    cmd.args(["-e", NODE_GET, "--", &url]);
    let out = peer::run_client(&mut cmd, Duration::from_secs(30));
    assert!(!out.status.success(), "{}", out.output());
    assert!(
        out.stderr.contains("UNABLE_TO_GET_ISSUER_CERT_LOCALLY"),
        "{}",
        out.output()
    );
}

#[test]
fn k8s_output_is_a_container_env_list_with_the_paths_as_given() {
    let f = fixture();
    // The paths are inside the container: neither checked nor made absolute here.
    let out = anchorage(
        f.path(),
        &[
            "env",
            "--format",
            "k8s",
            "--in-container",
            "--bundle",
            "/etc/ssl/certs/ca-certificates.crt",
            "--dir",
            "/etc/ssl/certs",
            "--extra",
            "/var/run/anchorage/it's extra.pem",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let env: Vec<k8s_openapi::api::core::v1::EnvVar> =
        serde_yaml_ng::from_slice(&out.stdout).unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} missing: {env:?}"))
            .value
            .as_deref()
            .unwrap()
    };
    for name in BUNDLE_VARS {
        assert_eq!(value(name), "/etc/ssl/certs/ca-certificates.crt", "{name}");
    }
    assert_eq!(value("SSL_CERT_DIR"), "/etc/ssl/certs");
    assert_eq!(
        value("NODE_EXTRA_CA_CERTS"),
        "/var/run/anchorage/it's extra.pem"
    );
    assert!(env.iter().all(|e| e.value_from.is_none()));
    assert!(env.iter().all(|e| e.name != "JAVA_TOOL_OPTIONS"));
    // Names are unique: a container rejects duplicate env entries.
    let mut names: Vec<_> = env.iter().map(|e| e.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), env.len());
}

#[test]
fn java_truststore_sets_java_tool_options() {
    let f = fixture();
    let store = f.path().join(AWKWARD_DIR).join("trust.jks");
    // `env` checks that the store is a file; what is inside is the builder's business.
    write(&store, b"\xfe\xed\xfe\xed");
    let out = anchorage(
        f.path(),
        &[
            "env",
            "--bundle",
            &f.built.bundle,
            "--java-truststore",
            &format!("{AWKWARD_DIR}/trust.jks"),
            "--java-truststore-password",
            "changeit",
            "--java-truststore-type",
            "jks",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let java = json["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "JAVA_TOOL_OPTIONS")
        .unwrap_or_else(|| panic!("JAVA_TOOL_OPTIONS missing: {json:#}"));
    // The JVM splits JAVA_TOOL_OPTIONS on white space but honours double quotes.
    assert_eq!(
        java["value"],
        format!(
            "-Djavax.net.ssl.trustStore=\"{}\" -Djavax.net.ssl.trustStoreType=JKS \
             -Djavax.net.ssl.trustStorePassword=changeit",
            store.display()
        )
    );
    assert_eq!(java["points"], "java_trust_store");

    // Negative controls: a missing store is bad input; the store options need --java-truststore.
    let missing = anchorage(
        f.path(),
        &[
            "env",
            "--bundle",
            &f.built.bundle,
            "--java-truststore",
            "missing.jks",
        ],
    );
    assert_eq!(missing.status.code(), Some(3), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("missing.jks"),
        "{}",
        stderr(&missing)
    );
    let orphan = anchorage(
        f.path(),
        &[
            "env",
            "--bundle",
            &f.built.bundle,
            "--java-truststore-password",
            "changeit",
        ],
    );
    assert_eq!(orphan.status.code(), Some(2), "{}", stderr(&orphan));
}

#[test]
fn a_missing_bundle_is_bad_input_and_named() {
    let f = fixture();
    let out = anchorage(f.path(), &["env", "--bundle", "no such.pem"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--bundle"), "{err}");
    assert!(
        err.contains(&f.path().join("no such.pem").display().to_string()),
        "{err}"
    );
    assert_eq!(stdout(&out), "", "nothing to eval on failure");
}

#[test]
fn a_bundle_holding_a_private_key_is_refused_and_the_key_never_printed() {
    let f = fixture();
    let bundle = fs::read_to_string(f.path().join(&f.built.bundle)).unwrap();
    write(
        &f.path().join("with key.pem"),
        format!("{bundle}{}", f.pki.leaf.key_pem),
    );
    for format in ["shell", "dotenv", "json"] {
        let out = anchorage(
            f.path(),
            &["env", "--bundle", "with key.pem", "--format", format],
        );
        assert_eq!(out.status.code(), Some(4), "{format}: {}", stderr(&out));
        assert!(stderr(&out).contains("with key.pem"), "{}", stderr(&out));
        assert!(stderr(&out).contains("private key"), "{}", stderr(&out));
        // With --format json, stdout holds only the failure document (issue 13).
        if format == "json" {
            let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
            assert_eq!(doc["exit_code"], 4);
            assert_eq!(doc["schema"], 1);
        } else {
            assert_eq!(stdout(&out), "", "{format}");
        }
        for line in f
            .pki
            .leaf
            .key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
        {
            assert!(!stderr(&out).contains(line), "key material leaked");
            assert!(!stdout(&out).contains(line), "key material leaked");
        }
    }
    // A file holding only the key is refused as a key (4), not reported as "no certificate" (3).
    write(&f.path().join("key only.pem"), &f.pki.leaf.key_pem);
    let out = anchorage(f.path(), &["env", "--bundle", "key only.pem"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    // The same under --extra.
    let out = anchorage(
        f.path(),
        &[
            "env",
            "--bundle",
            &f.built.bundle,
            "--extra",
            "with key.pem",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("--extra"), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
}

#[test]
fn a_dir_without_hashed_entries_is_bad_input() {
    let f = fixture();
    // A directory of certificates under their own names: what SSL_CERT_DIR readers cannot use.
    let out = anchorage(
        f.path(),
        &["env", "--bundle", &f.built.bundle, "--dir", "private cas"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("private cas") && err.contains("<hash>.<n>"),
        "{err}"
    );
    assert!(
        err.contains("--openssl-dir"),
        "says how to build one: {err}"
    );
    assert_eq!(stdout(&out), "");
    // A directory that is not there at all.
    let out = anchorage(
        f.path(),
        &["env", "--bundle", &f.built.bundle, "--dir", "nowhere"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("nowhere"), "{}", stderr(&out));
}

#[test]
fn a_bundle_of_only_private_cas_works_with_a_warning() {
    let f = fixture();
    // Shell output: the variables on stdout (still usable), the warning on stderr only.
    let out = anchorage(f.path(), &["env", "--bundle", "private cas/root.pem"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.starts_with("anchorage: warning: "), "{err}");
    assert!(
        err.contains("holds no public (Mozilla) roots")
            && err.contains("private cas/root.pem")
            && err.contains("--mozilla"),
        "{err}"
    );
    assert!(stdout(&out).contains("export SSL_CERT_FILE="));
    assert!(!stdout(&out).contains("warning"));
    // JSON carries it in `warnings` instead.
    let out = anchorage(
        f.path(),
        &[
            "env",
            "--bundle",
            "private cas/root.pem",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = json["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("holds no public (Mozilla) roots")
    );
}

#[test]
fn an_extra_file_holding_mozilla_roots_gets_a_warning() {
    let f = fixture();
    // The combined bundle where the private CAs only belong.
    let out = anchorage(
        f.path(),
        &[
            "env",
            "--bundle",
            &f.built.bundle,
            "--extra",
            &f.built.bundle,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Mozilla root") && err.contains("NODE_EXTRA_CA_CERTS"),
        "{err}"
    );
    assert!(err.contains("--extra-pem"), "says how to build it: {err}");
    // Negative control: the file `--extra-pem` wrote draws no warning.
    let out = f.env(&[]);
    assert_eq!(stderr(&out), "");
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let f = fixture();
    let out = anchorage(f.path(), &["env", "--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    for want in [
        "Examples:",
        "eval \"$(anchorage env --bundle",
        "--format k8s",
        "--extra-pem",
        "Exit codes:",
        "  0  printed",
        "  3  ",
        "  4  a named file holds a private key",
    ] {
        assert!(help.contains(want), "{want:?} missing from:\n{help}");
    }
}
