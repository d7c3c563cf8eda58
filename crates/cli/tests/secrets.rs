//! End-to-end tests of `anchorage secrets`: the real binary against a temporary data directory
//! (and a real nats-server for `serve` and the jetstream store): exit codes, JSON, file modes,
//! and that seeds and values never reach an error or a listing.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use common::wasmcloud::{component_token, host_token, secret_request};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anchorage_secrets::XKey;
use anchorage_test_support::nats::NatsServer;
use anchorage_test_support::{TempDir, tempdir};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

struct Scratch {
    dir: TempDir,
    seed: String,
}

impl Scratch {
    fn new() -> Self {
        Self {
            dir: tempdir().unwrap(),
            seed: XKey::generate().seed().expose_secret().to_owned(),
        }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().unwrap().to_owned()
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_anchorage"));
        cmd.arg("secrets")
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("ANCHORAGE_LOG")
            .env_remove("ANCHORAGE_DATA_DIR")
            .env("ANCHORAGE_SECRETS_ENCRYPTION_SEED", &self.seed);
        for name in [
            "ANCHORAGE_SECRETS_TRANSIT_SEED",
            "ANCHORAGE_SECRETS_PREVIOUS_ENCRYPTION_SEED",
            "ANCHORAGE_SECRETS_NEW_ENCRYPTION_SEED",
            "ANCHORAGE_SECRETS_ADMIN_SEED",
            "TRANSIT_XKEY_SEED",
            "ENCRYPTION_XKEY_SEED",
            "ANCHORAGE_NATS_URL",
        ] {
            cmd.env_remove(name);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// `anchorage secrets ARGS --data-dir <tmp>/data`.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut all = args.to_vec();
        let data = self.data();
        all.extend(["--data-dir", data.as_str()]);
        self.command(&all, env).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, &[]);
        assert!(
            out.status.success(),
            "{args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

#[test]
fn put_get_reveal_delete_on_the_embedded_store() {
    let s = Scratch::new();
    let put = s.json(&["put", "db-password", "--value", "hunter2"]);
    // Numbers are numbers, and every document says its schema (issue 13).
    assert_eq!(put["version"], 1);
    assert_eq!(put["schema"], 1);
    assert_eq!(put["store"], "embedded");
    let out = s.run(
        &["put", "db-password", "--value-env", "PW"],
        &[("PW", "second")],
    );
    assert_eq!(code(&out), 0);
    // The store file is private.
    let mode = std::fs::metadata(Path::new(&s.data()).join("secrets.redb"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Without --reveal: no value.
    let shown = s.ok(&["get", "db-password"]);
    assert!(
        shown.contains("version 2") && !shown.contains("second"),
        "{shown}"
    );
    let json = s.json(&["get", "db-password"]);
    assert!(json.get("value").is_none());
    assert_eq!(s.ok(&["get", "db-password", "--reveal"]), "second\n");
    assert_eq!(
        s.ok(&["get", "db-password", "--reveal", "--version", "1"]),
        "hunter2\n"
    );

    // Binary from a file, revealed raw (stdout is a pipe) and as base64.
    let file = s.dir.path().join("key.bin");
    #[allow(clippy::disallowed_methods)] // test fixture
    std::fs::write(&file, [0u8, 159, 146, 150, 255]).unwrap();
    s.ok(&[
        "put",
        "tls-key",
        "--binary",
        "--value-file",
        file.to_str().unwrap(),
    ]);
    let raw = s.run(&["get", "tls-key", "--reveal"], &[]);
    assert_eq!(raw.stdout, [0u8, 159, 146, 150, 255]);
    let json = s.json(&["get", "tls-key", "--reveal"]);
    assert_eq!(
        (json["kind"].as_str(), json["encoding"].as_str()),
        (Some("binary"), Some("base64"))
    );
    assert_eq!(json["value"], "AJ+Slv8=");
    // Not UTF-8 without --binary.
    let out = s.run(&["put", "x", "--value-file", file.to_str().unwrap()], &[]);
    assert_eq!(code(&out), 3);

    assert_eq!(
        s.json(&["list"])["secrets"],
        serde_json::json!(["db-password", "tls-key"])
    );

    // Missing secret and version: 13, with a JSON error.
    let out = s.run(&["get", "nope", "--output", "json"], &[]);
    assert_eq!(code(&out), 13);
    let err: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["exit_code"], 13);
    assert_eq!(
        code(&s.run(&["get", "db-password", "--version", "9"], &[])),
        13
    );

    s.ok(&["delete", "db-password"]);
    assert_eq!(code(&s.run(&["delete", "db-password"], &[])), 13);

    // A missing seed is a usage error naming the variable, not a crash (only --reveal needs it).
    let mut cmd = s.command(
        &["get", "tls-key", "--reveal", "--data-dir", &s.data()],
        &[],
    );
    cmd.env_remove("ANCHORAGE_SECRETS_ENCRYPTION_SEED");
    let out = cmd.output().unwrap();
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("ANCHORAGE_SECRETS_ENCRYPTION_SEED"));
    // A wrong seed: the value opens with no key (11), and the seed is not echoed.
    let other = XKey::generate().seed().expose_secret().to_owned();
    let out = s.run(
        &["get", "tls-key", "--reveal"],
        &[("ANCHORAGE_SECRETS_ENCRYPTION_SEED", other.as_str())],
    );
    assert_eq!(code(&out), 11);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("opens with none") && !stderr.contains(&other),
        "{stderr}"
    );
}

#[test]
fn mappings_and_rotation() {
    let s = Scratch::new();
    let entity = nkeys::KeyPair::new_module().public_key();
    let added = s.json(&["add-mapping", &entity, "--secret", "a", "--secret", "b"]);
    assert_eq!(added["secrets"], serde_json::json!(["a", "b"]));
    let listed = s.json(&["list-mappings"]);
    assert_eq!(listed["mappings"][&entity], serde_json::json!(["a", "b"]));
    let left = s.json(&["remove-mapping", &entity, "--secret", "a"]);
    assert_eq!(left["secrets"], serde_json::json!(["b"]));
    assert_eq!(
        code(&s.run(&["add-mapping", "not-a-key", "--secret", "a"], &[])),
        3
    );
    // Bound grants: --issuer and --mount, stored beside the plain name.
    let account = nkeys::KeyPair::new_account().public_key();
    let added = s.json(&[
        "add-mapping",
        &entity,
        "--secret",
        "b",
        "--issuer",
        &account,
        "--mount",
        "/team-b/",
    ]);
    let bound = format!("b;issuer={account};mount=team-b");
    assert_eq!(added["secrets"], serde_json::json!(["b", bound]));
    for bad in [
        vec!["--issuer", entity.as_str()],
        vec!["--issuer", "AXXX"],
        vec!["--mount", "/"],
    ] {
        let mut args = vec!["add-mapping", entity.as_str(), "--secret", "c"];
        args.extend(bad.iter().copied());
        let out = s.run(&args, &[]);
        assert_eq!(
            code(&out),
            3,
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = s.run(&["add-mapping", &entity, "--secret", "c;issuer=x"], &[]);
    assert_eq!(code(&out), 3, "{}", String::from_utf8_lossy(&out.stderr));
    // Exactly one grant with --issuer/--mount; every grant of the name without.
    let left = s.json(&[
        "remove-mapping",
        &entity,
        "--secret",
        "b",
        "--issuer",
        &account,
        "--mount",
        "team-b",
    ]);
    assert_eq!(left["secrets"], serde_json::json!(["b"]));
    s.json(&[
        "add-mapping",
        &entity,
        "--secret",
        "b",
        "--issuer",
        &account,
    ]);
    let left = s.json(&["remove-mapping", &entity, "--secret", "b"]);
    assert_eq!(left["secrets"], serde_json::json!([]));

    s.ok(&["put", "a", "--value", "one"]);
    s.ok(&["put", "a", "--value", "two"]);
    let new_seed = XKey::generate().seed().expose_secret().to_owned();
    let out = s.run(
        &["rotate-encryption-key", "--output", "json"],
        &[("ANCHORAGE_SECRETS_NEW_ENCRYPTION_SEED", new_seed.as_str())],
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["report"]["resealed"], 2);
    // The embedded file is compacted: no old-key ciphertext left in its free pages.
    assert_eq!(report["report"]["compacted"], true);
    assert_eq!(report["report"]["stale_copies"], 0);
    // The new key reads every version; the old one no longer does.
    let env = [("ANCHORAGE_SECRETS_ENCRYPTION_SEED", new_seed.as_str())];
    let out = s.run(&["get", "a", "--reveal", "--version", "1"], &env);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\n");
    assert_eq!(code(&s.run(&["get", "a", "--reveal"], &[])), 11);
}

#[test]
fn serve_answers_and_stops_on_sigterm() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let s = Scratch::new();
    let transit = XKey::generate();
    let seed = transit.seed().expose_secret().to_owned();
    let data = s.data();
    // --allow-any-issuer: starts, and says loudly what it means.
    let child = s
        .command(
            &[
                "serve",
                "--nats-url",
                &nats.url(),
                "--data-dir",
                &data,
                "--allow-any-issuer",
            ],
            &[("ANCHORAGE_SECRETS_TRANSIT_SEED", seed.as_str())],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = runtime.block_on(async {
        let nc = anchorage_secrets_server::async_nats::connect(nats.url())
            .await
            .unwrap();
        for _ in 0..100 {
            let asked = tokio::time::timeout(
                Duration::from_millis(500),
                nc.request("wasmcloud.secrets.v1alpha1.nats-kv.server_xkey", "".into()),
            )
            .await;
            if let Ok(Ok(reply)) = asked {
                return String::from_utf8(reply.payload.to_vec()).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the server never answered");
    });
    assert_eq!(answer, transit.public_key());
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("serving wasmcloud.secrets.v1alpha1.nats-kv.>"),
        "{stderr}"
    );
    assert!(
        stderr.contains("WARNING: --allow-any-issuer")
            && stderr.contains("host issuers ANY, entity issuers ANY, --allow-any-issuer"),
        "{stderr}"
    );
    // The server's own warning (tracing, on by default at warn).
    assert!(
        stderr.contains("accepting JWTs from ANY issuer"),
        "{stderr}"
    );
    assert!(!stderr.contains(&seed) && !stderr.contains(&s.seed));

    // Missing transit seed: usage error.
    let out = s.run(&["serve", "--nats-url", &nats.url()], &[]);
    assert_eq!(code(&out), 2);
    // NATS down: unreachable.
    let out = s.run(
        &[
            "serve",
            "--nats-url",
            "nats://127.0.0.1:1",
            "--allow-any-issuer",
        ],
        &[("ANCHORAGE_SECRETS_TRANSIT_SEED", seed.as_str())],
    );
    assert_eq!(code(&out), 7, "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn jetstream_store_admin() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let s = Scratch::new();
    let url = nats.url();
    let js = ["--store", "jetstream", "--nats-url", url.as_str()];
    fn with<'a>(extra: &[&'a str], js: &[&'a str]) -> Vec<&'a str> {
        let mut v: Vec<&str> = extra.to_vec();
        v.extend_from_slice(js);
        v
    }
    let put = s.json(&with(&["put", "db", "--value", "v1"], &js));
    let rev: u64 = put["version"].as_u64().unwrap();
    assert!(rev > 0);
    assert_eq!(s.ok(&with(&["get", "db", "--reveal"], &js)), "v1\n");
    let entity = nkeys::KeyPair::new_service().public_key();
    s.ok(&with(&["add-mapping", &entity, "--secret", "db"], &js));
    let listed = s.json(&with(&["list-mappings", &entity], &js));
    assert_eq!(listed["mappings"][&entity], serde_json::json!(["db"]));
    // An unreachable server is exit 7.
    let out = s.run(
        &[
            "list",
            "--store",
            "jetstream",
            "--nats-url",
            "nats://127.0.0.1:1",
        ],
        &[],
    );
    assert_eq!(code(&out), 7);
}

/// `secrets list --store jetstream` against `server` with extra arguments and environment.
fn list_on(s: &Scratch, url: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec!["list", "--store", "jetstream", "--nats-url", url];
    args.extend_from_slice(extra);
    s.run(&args, env)
}

#[test]
fn nats_credentials_and_tls() {
    use anchorage_test_support::nats::NatsOptions;
    let s = Scratch::new();

    // User and password.
    let Some(nats) = NatsServer::start_with(&NatsOptions {
        user_password: Some(("svc".into(), "pw-secret".into())),
        ..NatsOptions::default()
    }) else {
        return;
    };
    let url = nats.url();
    let ok = list_on(
        &s,
        &url,
        &["--nats-user", "svc"],
        &[("ANCHORAGE_NATS_PASSWORD", "pw-secret")],
    );
    assert_eq!(code(&ok), 0, "{}", String::from_utf8_lossy(&ok.stderr));
    let bad = list_on(
        &s,
        &url,
        &["--nats-user", "svc"],
        &[("ANCHORAGE_NATS_PASSWORD", "wrong-pw")],
    );
    assert_eq!(code(&bad), 15, "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(!String::from_utf8_lossy(&bad.stderr).contains("wrong-pw"));
    drop(nats);

    // Token.
    let nats = NatsServer::start_with(&NatsOptions {
        token: Some("tok-secret".into()),
        ..NatsOptions::default()
    })
    .unwrap();
    let ok = list_on(
        &s,
        &nats.url(),
        &[],
        &[("ANCHORAGE_NATS_TOKEN", "tok-secret")],
    );
    assert_eq!(code(&ok), 0, "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(code(&list_on(&s, &nats.url(), &[], &[])), 15);
    drop(nats);

    // Nkey seed from a file.
    let user = nkeys::KeyPair::new_user();
    let nats = NatsServer::start_with(&NatsOptions {
        nkey_user: Some(user.public_key()),
        ..NatsOptions::default()
    })
    .unwrap();
    let seed_file = s.dir.path().join("user.nk");
    #[allow(clippy::disallowed_methods)] // test fixture
    std::fs::write(&seed_file, user.seed().unwrap()).unwrap();
    let ok = list_on(
        &s,
        &nats.url(),
        &["--nats-nkey-file", seed_file.to_str().unwrap()],
        &[],
    );
    assert_eq!(code(&ok), 0, "{}", String::from_utf8_lossy(&ok.stderr));
    drop(nats);

    // TLS with a private CA: trusted only through --tls-ca-path.
    let pki = anchorage_test_support::pki::Pki::new("NATS");
    let files = pki.write_server_files(s.dir.path());
    let nats = NatsServer::start_with(&NatsOptions {
        tls: Some((files.fullchain.clone(), files.key.clone())),
        ..NatsOptions::default()
    })
    .unwrap();
    let url = format!("tls://localhost:{}", nats.addr().port());
    let untrusted = list_on(&s, &url, &[], &[]);
    assert_eq!(
        code(&untrusted),
        7,
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    let data = s.data();
    let trusted = s
        .command(&[], &[])
        .args(["--tls-ca-path", files.root.to_str().unwrap()])
        .args([
            "list",
            "--store",
            "jetstream",
            "--nats-require-tls",
            "--nats-url",
            &url,
        ])
        .args(["--data-dir", &data])
        .output()
        .unwrap();
    assert_eq!(
        code(&trusted),
        0,
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
}

/// Writes `text` to a 0600 file in the scratch directory.
fn private_file(s: &Scratch, name: &str, text: &str) -> String {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = s.dir.path().join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    writeln!(file, "{text}").unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn admin_over_nats_against_a_running_serve() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let s = Scratch::new();
    let url = nats.url();
    let transit = XKey::generate().seed().expose_secret().to_owned();
    let encryption_file = private_file(&s, "encryption.seed", &s.seed);
    let admin = nkeys::KeyPair::new_user();
    let admin_file = private_file(&s, "admin.nk", &admin.seed().unwrap());
    let keys_file = private_file(
        &s,
        "admin-keys",
        &format!("# operators\n{}\n", admin.public_key()),
    );
    let data = s.data();
    let mut child = s
        .command(
            &[
                "serve",
                "--nats-url",
                &url,
                "--data-dir",
                &data,
                "--encryption-seed-file",
                &encryption_file,
                "--admin-keys-file",
                &keys_file,
                "--host-issuer",
                &nkeys::KeyPair::new_cluster().public_key(),
                "--entity-issuer",
                &nkeys::KeyPair::new_account().public_key(),
            ],
            &[("ANCHORAGE_SECRETS_TRANSIT_SEED", transit.as_str())],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let up = runtime.block_on(async {
        let nc = anchorage_secrets_server::async_nats::connect(url.clone())
            .await
            .unwrap();
        for _ in 0..100 {
            let asked = tokio::time::timeout(
                Duration::from_millis(500),
                nc.request("wasmcloud.secrets.admin.nats-kv.server_xkey", "".into()),
            )
            .await;
            if let Ok(Ok(_)) = asked {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    if !up {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "serve never answered: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let remote = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|x| (*x).to_owned()).collect();
        v.extend(["--nats-url".into(), url.clone()]);
        v.extend(["--admin-seed-file".into(), admin_file.clone()]);
        v
    };
    let run = |args: Vec<String>, env: &[(&str, &str)]| -> Output {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        s.command(&args, env).output().unwrap()
    };
    let ok_json = |args: Vec<String>| -> Value {
        let mut args = args;
        args.extend(["--output".into(), "json".into()]);
        let out = run(args.clone(), &[]);
        assert_eq!(
            code(&out),
            0,
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };

    // While serve holds the embedded store, the store itself cannot be opened...
    let out = s.run(&["list"], &[]);
    assert_eq!(code(&out), 11, "{}", String::from_utf8_lossy(&out.stderr));
    // ...but the running server administers it.
    let out = run(
        remote(&[
            "put",
            "db-password",
            "--value-env",
            "PW",
            "--output",
            "json",
        ]),
        &[("PW", "hunter2")],
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let put: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        put,
        serde_json::json!({"schema": 1, "key": "db-password", "version": 1, "store": "embedded"})
    );
    let entity = nkeys::KeyPair::new_module().public_key();
    let added = ok_json(remote(&["add-mapping", &entity, "--secret", "db-password"]));
    assert_eq!(
        added,
        serde_json::json!({"schema": 1, "entity": entity, "secrets": ["db-password"]})
    );
    let listed = ok_json(remote(&["list-mappings", &entity]));
    assert_eq!(
        listed["mappings"][&entity],
        serde_json::json!(["db-password"])
    );
    // A grant bound to an account goes over NATS too.
    let account = nkeys::KeyPair::new_account().public_key();
    let added = ok_json(remote(&[
        "add-mapping",
        &entity,
        "--secret",
        "other",
        "--issuer",
        &account,
    ]));
    assert_eq!(
        added["secrets"],
        serde_json::json!(["db-password", format!("other;issuer={account}")])
    );
    let left = ok_json(remote(&["remove-mapping", &entity, "--secret", "other"]));
    assert_eq!(left["secrets"], serde_json::json!(["db-password"]));
    // A secret the server's store lacks: mapped, with the warning the in-process command
    // gives (the server's executor names it in the reply).
    let out = run(
        remote(&["add-mapping", &entity, "--secret", "db-pasword"]),
        &[],
    );
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: no secret \"db-pasword\" in the embedded store"),
        "{err}"
    );
    // Negative controls: a secret that exists, and a removal, draw no warning.
    for args in [
        ["add-mapping", &entity, "--secret", "db-password"],
        ["remove-mapping", &entity, "--secret", "db-pasword"],
    ] {
        let out = run(remote(&args), &[]);
        assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("warning"), "{args:?}: {err}");
    }
    let out = run(remote(&["get", "db-password", "--reveal"]), &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hunter2\n");
    let out = run(remote(&["get", "db-password"]), &[]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("version 1") && !shown.contains("hunter2"),
        "{shown}"
    );
    let out = run(remote(&["get", "absent"]), &[]);
    assert_eq!(code(&out), 13);

    // Online rotation: the server re-reads its seed file.
    let new_seed = XKey::generate().seed().expose_secret().to_owned();
    private_file(&s, "encryption.seed", &new_seed);
    let rotated = ok_json(remote(&["rotate-encryption-key"]));
    assert_eq!(rotated["changed"], true);
    assert_eq!(rotated["report"]["resealed"], 1);
    let new_file = private_file(&s, "new.seed", &new_seed);
    let out = run(
        remote(&["rotate-encryption-key", "--new-seed-file", &new_file]),
        &[],
    );
    assert_eq!(code(&out), 2);

    // A key the server does not know: 15. No server on that backend: 7.
    let stranger = private_file(
        &s,
        "stranger.nk",
        &nkeys::KeyPair::new_user().seed().unwrap(),
    );
    let out = run(
        vec![
            "list".into(),
            "--nats-url".into(),
            url.clone(),
            "--admin-seed-file".into(),
            stranger,
        ],
        &[],
    );
    assert_eq!(code(&out), 15, "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(
        remote(&["list", "--backend", "other", "--timeout", "1"]),
        &[],
    );
    assert_eq!(code(&out), 7, "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = {
        let out = run(
            remote(&[
                "list",
                "--backend",
                "other",
                "--timeout",
                "1",
                "--output",
                "json",
            ]),
            &[],
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(json["exit_code"], 7);
    // Not an admin seed: 3.
    let xkey_file = private_file(&s, "xkey.seed", &new_seed);
    let out = run(
        vec![
            "list".into(),
            "--nats-url".into(),
            url.clone(),
            "--admin-seed-file".into(),
            xkey_file,
        ],
        &[],
    );
    assert_eq!(code(&out), 3);
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&new_seed));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("administration on wasmcloud.secrets.admin.nats-kv.*"),
        "{stderr}"
    );
    for secret in [
        transit.as_str(),
        s.seed.as_str(),
        new_seed.as_str(),
        "hunter2",
    ] {
        assert!(!stderr.contains(secret));
    }
    assert!(!stderr.contains(admin.seed().unwrap().as_str()));

    // The store holds what was written, sealed with the new key only.
    let out = s.run(
        &["get", "db-password", "--reveal"],
        &[("ANCHORAGE_SECRETS_ENCRYPTION_SEED", new_seed.as_str())],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hunter2\n");
    assert_eq!(code(&s.run(&["get", "db-password", "--reveal"], &[])), 11);
}

#[test]
fn keygen_writes_private_seeds_prints_public_keys_and_keeps_existing_files() {
    let s = Scratch::new();
    let out = s
        .command(&["keygen", "--kind", "transit", "--out", "t.seed"], &[])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = String::from_utf8(out.stdout).unwrap();
    let path = s.dir.path().join("t.seed");
    let seed = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The seed file holds the key whose public half was printed, and nothing else was printed.
    let key = XKey::from_seed(&seed.clone().into(), "t.seed").unwrap();
    assert_eq!(public.trim(), key.public_key());
    assert!(!public.contains(seed.trim()));

    // An existing seed is kept (exit 5) unless --force.
    let again = s
        .command(&["keygen", "--kind", "transit", "--out", "t.seed"], &[])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(5));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), seed);
    let forced = s
        .command(
            &["keygen", "--kind", "transit", "--out", "t.seed", "--force"],
            &[],
        )
        .output()
        .unwrap();
    assert!(forced.status.success());
    assert_ne!(std::fs::read_to_string(&path).unwrap(), seed);

    // An admin key is a user nkey, reported as JSON; an encryption seed serves `put`.
    let admin = s
        .command(
            &[
                "keygen", "--kind", "admin", "--out", "a.seed", "--output", "json",
            ],
            &[],
        )
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&admin.stdout).unwrap();
    assert_eq!(v["kind"], "admin");
    assert!(v["public_key"].as_str().unwrap().starts_with('U'));
    assert!(
        std::fs::read_to_string(s.dir.path().join("a.seed"))
            .unwrap()
            .starts_with("SU")
    );
    let enc = s
        .command(&["keygen", "--kind", "encryption", "--out", "e.seed"], &[])
        .output()
        .unwrap();
    assert!(enc.status.success());
    let enc_seed = std::fs::read_to_string(s.dir.path().join("e.seed")).unwrap();
    let data = s.data();
    let put = s
        .command(
            &["put", "k", "--value", "v", "--data-dir", &data],
            &[("ANCHORAGE_SECRETS_ENCRYPTION_SEED", enc_seed.trim())],
        )
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
}

#[test]
fn the_readme_path_component_key_mapping_warnings_get_without_seed_and_the_lock_hint() {
    let s = Scratch::new();
    // keygen --kind component: the M… key add-mapping needs, seed 0600; account: A….
    for (kind, public_prefix, seed_prefix) in [("component", 'M', "SM"), ("account", 'A', "SA")] {
        let file = format!("{kind}.seed");
        let out = s
            .command(&["keygen", "--kind", kind, "--out", &file], &[])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let public = String::from_utf8(out.stdout).unwrap();
        let path = s.dir.path().join(&file);
        let seed = std::fs::read_to_string(&path).unwrap();
        assert!(
            public.trim().starts_with(public_prefix) && public.trim().len() == 56,
            "{public}"
        );
        assert!(seed.starts_with(seed_prefix), "a {kind} seed");
        assert!(!public.contains(seed.trim()));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let pair = nkeys::KeyPair::from_seed(seed.trim()).unwrap();
        assert_eq!(pair.public_key(), public.trim());
    }
    let component = nkeys::KeyPair::from_seed(
        std::fs::read_to_string(s.dir.path().join("component.seed"))
            .unwrap()
            .trim(),
    )
    .unwrap()
    .public_key();

    // add-mapping of a secret that does not exist: kept, with a warning naming it.
    let out = s.run(&["add-mapping", &component, "--secret", "db-pasword"], &[]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: no secret \"db-pasword\" in the embedded store"),
        "{err}"
    );
    // Negative control: a secret that exists draws no warning.
    s.ok(&["put", "db-password", "--value", "hunter2"]);
    let out = s.run(&["add-mapping", &component, "--secret", "db-password"], &[]);
    assert_eq!(code(&out), 0);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // get without --reveal needs no encryption seed.
    let data = s.data();
    let no_seed = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", data.as_str()]);
        s.command(&all, &[])
            .env_remove("ANCHORAGE_SECRETS_ENCRYPTION_SEED")
            .output()
            .unwrap()
    };
    let out = no_seed(&["get", "db-password", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&v["version"], &v["kind"], &v["bytes"]),
        (&json!("1"), &json!("string"), &json!(7))
    );
    assert!(v.get("value").is_none());
    // Negative control: --reveal still needs it.
    let out = no_seed(&["get", "db-password", "--reveal"]);
    assert_ne!(code(&out), 0);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no encryption seed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // While another process holds the embedded store (as `serve` does), the error says how to
    // administer it over NATS instead.
    let store = Path::new(&data).join("secrets.redb");
    let Some(flock) = anchorage_test_support::peer::require("flock") else {
        return;
    };
    // --no-fork: flock execs sleep itself, so killing it releases the lock.
    let mut holder = Command::new(flock)
        .arg("--no-fork")
        .arg(&store)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = s.run(&["list"], &[]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_ne!(code(&out), 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--admin-seed-file"), "{err}");
    // Negative control: once released, the same command works.
    s.ok(&["list"]);
}

#[test]
fn long_help_shows_examples_and_the_store_notes() {
    let s = Scratch::new();
    for cmd in [
        "serve",
        "put",
        "get",
        "add-mapping",
        "rotate-encryption-key",
    ] {
        let out = s.command(&[cmd, "--help"], &[]).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Examples:"), "{cmd} --help lacks examples");
        assert!(
            text.contains("Exit codes:"),
            "{cmd} --help lacks exit codes"
        );
        assert!(
            text.contains("Stores (--store):"),
            "{cmd} --help lacks the store notes"
        );
    }
}

/// Issue 19 item 2: `serve` refuses to start without issuer allow-lists (exit 2, naming the
/// flags to pass) and refuses keys of the wrong kind, before touching NATS or the store.
#[test]
fn serve_requires_issuers_unless_allow_any_issuer() {
    let s = Scratch::new();
    let seed = XKey::generate().seed().expose_secret().to_owned();
    let env = [("ANCHORAGE_SECRETS_TRANSIT_SEED", seed.as_str())];
    let cluster = nkeys::KeyPair::new_cluster().public_key();
    let account = nkeys::KeyPair::new_account().public_key();
    // NATS is unreachable: a usage error must come first.
    let nats = ["serve", "--nats-url", "nats://127.0.0.1:1"];
    let with = |extra: &[&str]| {
        let mut v = nats.to_vec();
        v.extend_from_slice(extra);
        s.run(&v, &env)
    };
    for (extra, missing) in [
        (vec![], vec!["--host-issuer", "--entity-issuer"]),
        (
            vec!["--host-issuer", cluster.as_str()],
            vec!["--entity-issuer"],
        ),
        (
            vec!["--entity-issuer", account.as_str()],
            vec!["--host-issuer"],
        ),
    ] {
        let out = with(&extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 2, "{extra:?}: {stderr}");
        for flag in missing {
            assert!(stderr.contains(flag), "{extra:?}: {stderr}");
        }
        assert!(stderr.contains("--allow-any-issuer"), "{stderr}");
        assert!(!stderr.contains("serving"), "{stderr}");
    }
    // Keys of the wrong kind.
    for extra in [
        [
            "--host-issuer",
            account.as_str(),
            "--entity-issuer",
            account.as_str(),
        ],
        [
            "--host-issuer",
            cluster.as_str(),
            "--entity-issuer",
            cluster.as_str(),
        ],
        [
            "--host-issuer",
            "CNOTAKEY",
            "--entity-issuer",
            account.as_str(),
        ],
    ] {
        let out = with(&extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 2, "{extra:?}: {stderr}");
        assert!(stderr.contains("is not a"), "{stderr}");
    }
    // Both given: past the usage checks (NATS is down: 7).
    let out = with(&["--host-issuer", &cluster, "--entity-issuer", &account]);
    assert_eq!(code(&out), 7, "{}", String::from_utf8_lossy(&out.stderr));
}

/// Issue 19 items 2 and 7 through the real binary: a mapping bound with `add-mapping --issuer`,
/// `serve` with issuer allow-lists, requests from the real client. The forged identity (fresh
/// account, self-minted host token) is refused; a key holding a newline, a fake audit line and
/// terminal escapes, sent with garbage tokens, leaves exactly one escaped audit line, rejected;
/// the legitimate request is served and audited with both issuers.
#[test]
fn serve_refuses_forged_identities_and_audit_lines_cannot_be_forged() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let s = Scratch::new();
    let url = nats.url();
    let transit = XKey::generate().seed().expose_secret().to_owned();
    let account = nkeys::KeyPair::new_account();
    let cluster = nkeys::KeyPair::new_cluster();
    let victim = nkeys::KeyPair::new_module().public_key();
    s.ok(&["put", "db-password", "--value", "victim-pw"]);
    let mapped = s.json(&[
        "add-mapping",
        &victim,
        "--secret",
        "db-password",
        "--issuer",
        &account.public_key(),
    ]);
    let bound = format!("db-password;issuer={}", account.public_key());
    assert_eq!(mapped["secrets"], serde_json::json!([bound]));
    // A bad --issuer is refused with exit 3 and nothing is stored.
    let out = s.run(
        &["add-mapping", &victim, "--secret", "x", "--issuer", &victim],
        &[],
    );
    assert_eq!(code(&out), 3, "{}", String::from_utf8_lossy(&out.stderr));

    let data = s.data();
    let child = s
        .command(
            &[
                "serve",
                "--nats-url",
                &url,
                "--data-dir",
                &data,
                "--host-issuer",
                &cluster.public_key(),
                "--entity-issuer",
                &account.public_key(),
            ],
            &[("ANCHORAGE_SECRETS_TRANSIT_SEED", transit.as_str())],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let forged_key = "x\n2026-01-01T00:00:00.000000Z  INFO anchorage::audit: secret request result=\"served\" error=\"-\" FORGED-LINE\u{1b}[2J\u{1b}]0;pwned\u{7}\r";
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime.block_on(async {
        let nc = anchorage_secrets_server::async_nats::connect(url.clone())
            .await
            .unwrap();
        let mut up = false;
        for _ in 0..100 {
            let asked = tokio::time::timeout(
                Duration::from_millis(500),
                nc.request("wasmcloud.secrets.v1alpha1.nats-kv.server_xkey", "".into()),
            )
            .await;
            if let Ok(Ok(_)) = asked {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "serve never answered");
        let client = wasmcloud_secrets_client::Client::new("nats-kv", "wasmcloud.secrets", nc)
            .await
            .unwrap();
        let mut results = Vec::new();
        for request in [
            // Item 7: no valid JWT at all, a key that tries to write its own audit line.
            secret_request(forged_key, "garbage".into(), "garbage".into()),
            // Item 2: the victim's M… key, a fresh account, a self-minted host token.
            secret_request(
                "db-password",
                component_token(&nkeys::KeyPair::new_account(), &victim),
                host_token(&nkeys::KeyPair::new_cluster()),
            ),
            // Control.
            secret_request(
                "db-password",
                component_token(&account, &victim),
                host_token(&cluster),
            ),
        ] {
            results.push(
                client
                    .get(request, nkeys::XKey::new())
                    .await
                    .map(|s| s.string_secret)
                    .map_err(|e| e.to_string()),
            );
        }
        results
    });
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();

    assert!(
        results[0]
            .as_ref()
            .unwrap_err()
            .contains("Invalid Entity JWT"),
        "{results:?}"
    );
    assert!(
        results[1]
            .as_ref()
            .unwrap_err()
            .contains("Invalid Entity JWT"),
        "{results:?}"
    );
    assert_eq!(results[2].as_ref().unwrap().as_deref(), Some("victim-pw"));

    // Nothing the requester sent reached the log raw.
    assert!(!out.stderr.contains(&0x1b), "raw ESC in {stderr:?}");
    assert!(!out.stderr.contains(&0x07), "raw BEL in {stderr:?}");
    assert!(!out.stderr.contains(&b'\r'), "raw CR in {stderr:?}");
    let audit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("anchorage::audit"))
        .collect();
    assert_eq!(audit.len(), 3, "one audit line per request: {stderr}");
    // The forged key is one escaped field of one rejected line, not a line of its own.
    let forged: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("FORGED-LINE"))
        .collect();
    assert_eq!(forged.len(), 1, "{stderr}");
    assert_eq!(forged[0], audit[0]);
    let is = |line: &str, result: &str| {
        line.contains(&format!("result=\"{result}\""))
            || line.contains(&format!("result={result} "))
    };
    assert!(
        is(audit[0], "rejected") && !is(audit[0], "served"),
        "{}",
        audit[0]
    );
    assert!(audit[0].contains(r#"key="x\n2026"#), "{}", audit[0]);
    assert!(audit[0].contains(r"\u{1b}[2J"), "{}", audit[0]);
    // No identity is claimed before verification.
    assert!(
        audit[0].contains("entity=- ") && audit[0].contains("host_issuer=- "),
        "{}",
        audit[0]
    );
    // The forgery: rejected, no verified identity.
    assert!(
        is(audit[1], "rejected") && audit[1].contains("InvalidEntityJWT"),
        "{}",
        audit[1]
    );
    assert!(
        !audit[1].contains(&format!("entity=\"{victim}\"")),
        "{}",
        audit[1]
    );
    // The control: served, with both issuers.
    assert!(is(audit[2], "served"), "{}", audit[2]);
    assert!(
        audit[2].contains(&format!("entity_issuer=\"{}\"", account.public_key()))
            && audit[2].contains(&format!("host_issuer=\"{}\"", cluster.public_key())),
        "{}",
        audit[2]
    );
    assert_eq!(
        stderr.matches("result=\"served\"").count() + stderr.matches("result=served ").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("victim-pw"));
}
