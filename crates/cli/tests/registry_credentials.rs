//! Registry credentials end to end: `image inject` from one real `docker-registry` to another,
//! each requiring its own htpasswd user, with Docker's `config.json` (in a `DOCKER_CONFIG` of
//! the test's own) giving credentials through `auths`, `credsStore` and `credHelpers` (a
//! `docker-credential-<name>` script in a PATH directory of the test's own, logging what it is
//! asked), and identity tokens, which anchorage does not support: it warns and goes anonymous.
//! Every positive case has a negative control (wrong or missing credentials: exit 15).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anchorage_test_support::pki::root_ca;
use anchorage_test_support::registry::{
    LayoutBuilder, Registry, RegistryOptions, images, require_image_tools, skopeo_copy_with_creds,
};
use anchorage_test_support::{TempDir, tempdir};
use base64::Engine as _;

const OK: i32 = 0;
const AUTH_FAILED: i32 = 15;
const IDENTITY_TOKEN_WARNING: &str = "Docker identity tokens are not supported; trying anonymously";

/// Registry `a` (user alice) holding `debian:12`, registry `b` (user bob), empty; a scratch
/// directory with `docker/` (DOCKER_CONFIG), `bin/` (on PATH first) and a CA to inject.
struct Two {
    dir: TempDir,
    a: Registry,
    b: Registry,
    ca: String,
}

#[allow(clippy::disallowed_methods)] // test fixtures
fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
}

fn registry(dir: &Path, user: &str, password: &str) -> Option<Registry> {
    let htpasswd = dir.join(format!("{user}.htpasswd"));
    write(
        &htpasswd,
        &format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap()),
    );
    Registry::start_with(&RegistryOptions {
        htpasswd: Some(htpasswd),
        ..RegistryOptions::default()
    })
}

impl Two {
    fn new() -> Option<Self> {
        let dir = tempdir().unwrap();
        let a = registry(dir.path(), "alice", "pw-a")?;
        let b = registry(dir.path(), "bob", "pw-b")?;
        require_image_tools()?;
        let builder = LayoutBuilder::init(&dir.path().join("src"));
        images::debian_like(&builder, "deb", &[root_ca("Distro Root").pem]);
        skopeo_copy_with_creds(
            &format!("oci:{}:deb", builder.path.display()),
            &format!("docker://{}", a.reference("debian:12")),
            "alice:pw-a",
        );
        for sub in ["docker", "bin"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let ca = root_ca("Corp Root")
            .write_pem(dir.path(), "corp.pem")
            .display()
            .to_string();
        Some(Self { dir, a, b, ca })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self, json: &serde_json::Value) {
        write(
            &self.path().join("docker/config.json"),
            &serde_json::to_string_pretty(json).unwrap(),
        );
    }

    /// `docker-credential-<name>`: answers `get` for each `(host, user, secret)`, fails for
    /// others (as real helpers do), and appends each host asked to `<name>.log`.
    fn helper(&self, name: &str, answers: &[(&str, &str, &str)]) {
        let log = self.helper_log_path(name);
        let mut cases = String::new();
        for (host, user, secret) in answers {
            cases.push_str(&format!(
                "  '{host}') printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}' \"$server\" ;;\n"
            ));
        }
        let script = format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nserver=$(cat)\necho \"$server\" >> '{}'\ncase \"$server\" in\n{cases}  *) echo 'credentials not found in native keychain' >&2; exit 1 ;;\nesac\n",
            log.display()
        );
        let path = self
            .path()
            .join("bin")
            .join(format!("docker-credential-{name}"));
        write(&path, &script);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn helper_log_path(&self, name: &str) -> PathBuf {
        self.path().join(format!("{name}.log"))
    }

    /// The hosts the helper was asked for, sorted, each once.
    fn asked(&self, name: &str) -> Vec<String> {
        let mut hosts: Vec<String> = std::fs::read_to_string(self.helper_log_path(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// `image inject a/debian:12 b/debian:12-corp` with this DOCKER_CONFIG and PATH.
    fn inject(&self) -> Output {
        let path = format!(
            "{}:{}",
            self.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let (a, b) = (self.a.host(), self.b.host());
        Command::new(env!("CARGO_BIN_EXE_anchorage"))
            .args(["image", "inject"])
            .arg(self.a.reference("debian:12"))
            .arg(self.b.reference("debian:12-corp"))
            .args(["--ca", &self.ca, "--insecure-registry", &a])
            .args(["--insecure-registry", &b, "--output", "json"])
            .env("DOCKER_CONFIG", self.path().join("docker"))
            .env("PATH", path)
            .env_remove("ANCHORAGE_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

fn basic(user: &str, password: &str) -> serde_json::Value {
    serde_json::json!({
        "auth": base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    })
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn copy_between_two_registries_uses_each_ones_credentials() {
    let Some(t) = Two::new() else {
        return;
    };
    let (a, b) = (t.a.host(), t.b.host());
    t.config(&serde_json::json!({"auths": {&a: basic("alice", "pw-a"), &b: basic("bob", "pw-b")}}));
    let ok = t.inject();
    assert_eq!(code(&ok), OK, "{}", stderr(&ok));

    // Negative controls: the credentials swapped, and the destination's missing.
    t.config(&serde_json::json!({"auths": {&a: basic("bob", "pw-b"), &b: basic("alice", "pw-a")}}));
    let swapped = t.inject();
    assert_eq!(code(&swapped), AUTH_FAILED, "{}", stderr(&swapped));
    t.config(&serde_json::json!({"auths": {&a: basic("alice", "pw-a")}}));
    let no_dest = t.inject();
    assert_eq!(code(&no_dest), AUTH_FAILED, "{}", stderr(&no_dest));
    assert!(
        stderr(&no_dest).contains(&b),
        "names the destination: {}",
        stderr(&no_dest)
    );
}

#[test]
fn credential_helpers_from_creds_store_and_cred_helpers() {
    let Some(t) = Two::new() else {
        return;
    };
    let (a, b) = (t.a.host(), t.b.host());
    t.helper("store", &[(&a, "alice", "pw-a"), (&b, "bob", "pw-b")]);
    t.helper("onlya", &[(&a, "alice", "pw-a")]);
    t.helper("wronga", &[(&a, "alice", "not-it")]);

    // credsStore answers for both registries.
    t.config(&serde_json::json!({"credsStore": "store"}));
    let ok = t.inject();
    assert_eq!(code(&ok), OK, "{}", stderr(&ok));
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(t.asked("store"), both, "asked for each registry");

    // credHelpers for the source only, auths for the destination.
    t.config(&serde_json::json!({
        "credHelpers": {&a: "onlya"},
        "auths": {&b: basic("bob", "pw-b")},
    }));
    let ok = t.inject();
    assert_eq!(code(&ok), OK, "{}", stderr(&ok));
    assert_eq!(
        t.asked("onlya"),
        vec![a.clone()],
        "asked for the source only"
    );

    // Negative controls: a helper giving the wrong secret, and a helper not on PATH (anchorage
    // then goes anonymous).
    t.config(&serde_json::json!({
        "credHelpers": {&a: "wronga"},
        "auths": {&b: basic("bob", "pw-b")},
    }));
    let wrong = t.inject();
    assert_eq!(code(&wrong), AUTH_FAILED, "{}", stderr(&wrong));
    assert_eq!(t.asked("wronga"), vec![a]);
    t.config(&serde_json::json!({"credsStore": "absent"}));
    let absent = t.inject();
    assert_eq!(code(&absent), AUTH_FAILED, "{}", stderr(&absent));
}

#[test]
fn identity_tokens_warn_and_go_anonymous() {
    let Some(t) = Two::new() else {
        return;
    };
    let (a, b) = (t.a.host(), t.b.host());
    // From config.json's identitytoken.
    t.config(&serde_json::json!({"auths": {
        &a: {"identitytoken": "opaque-refresh-token"},
        &b: basic("bob", "pw-b"),
    }}));
    let o = t.inject();
    assert_eq!(code(&o), AUTH_FAILED, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(IDENTITY_TOKEN_WARNING), "{err}");
    assert!(err.contains(&a), "the warning names the registry: {err}");
    assert!(
        !err.contains("opaque-refresh-token"),
        "the token is never printed: {err}"
    );

    // From a helper answering with the `<token>` user.
    t.helper("tokens", &[(&a, "<token>", "opaque-refresh-token")]);
    t.config(&serde_json::json!({
        "credHelpers": {&a: "tokens"},
        "auths": {&b: basic("bob", "pw-b")},
    }));
    let o = t.inject();
    assert_eq!(code(&o), AUTH_FAILED, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(IDENTITY_TOKEN_WARNING), "{err}");
    assert!(!err.contains("opaque-refresh-token"), "{err}");

    // Negative control: a user and password there instead: no warning, and it works.
    t.config(&serde_json::json!({"auths": {&a: basic("alice", "pw-a"), &b: basic("bob", "pw-b")}}));
    let o = t.inject();
    assert_eq!(code(&o), OK, "{}", stderr(&o));
    assert!(
        !stderr(&o).contains(IDENTITY_TOKEN_WARNING),
        "{}",
        stderr(&o)
    );
}
