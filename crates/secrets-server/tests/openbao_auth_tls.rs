//! The OpenBao KV v2 store's re-login and HTTPS against a real `bao server -dev` (issue 20,
//! "untested behaviour").
//!
//! Re-login: two reads share one AppRole token with a 4 s TTL; once OpenBao no longer knows
//! it (probed with `bao token lookup`), the next read succeeds because the store logs in again
//! on OpenBao's 403, which the server's audit log shows (one refused read, one more
//! `auth/approle/login`, the read again with the new token). Negative controls: the very same expired token given
//! as a static token, and a revoked static token, fail with the exact
//! [`StoreFailure::AuthFailed`] after one request and no login; an AppRole whose policy does
//! not cover the path logs in again once, not in a loop; a wrong secret ID fails the login.
//!
//! HTTPS: the dev server with its own CA (`-dev-tls`); the store trusts it through the same
//! [`TrustConfig`] the CLI builds from `--tls-ca-path` (the OS store, Mozilla's roots and the
//! extra CA). Negative control: the CLI's trust without `--tls-ca-path` fails the handshake with
//! rustls's `UnknownIssuer`, and the request never reaches OpenBao.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorage_secrets::SecretLookup;
use anchorage_secrets_server::{
    OpenBaoAuth, OpenBaoConfig, OpenBaoSecrets, SecretStore as _, StoreFailure,
};
use anchorage_test_support::openbao::{OpenBao, OpenBaoOptions};
use anchorage_trust::tls::TrustConfig;
use rustls::{CertificateError, Error as TlsError};
use serde_json::Value;

/// The rustls configuration `anchorage secrets` builds from `--tls-ca-path`
/// (`crates/cli/src/commands/secrets/context.rs`, `tls_config`).
fn cli_tls(tls_ca_paths: &[std::path::PathBuf]) -> rustls::ClientConfig {
    let trust = TrustConfig {
        extra_ca_paths: tls_ca_paths.to_vec(),
        ..TrustConfig::default()
    };
    trust
        .client_config(Arc::new(rustls::crypto::ring::default_provider()))
        .unwrap()
        .0
}

fn store(bao: &OpenBao, auth: OpenBaoAuth, tls: rustls::ClientConfig) -> OpenBaoSecrets {
    OpenBaoSecrets::new(OpenBaoConfig {
        address: bao.address(),
        mount: "secret".into(),
        extra_mounts: Vec::new(),
        auth,
        namespace: None,
        tls,
        timeout: Duration::from_secs(10),
    })
    .unwrap()
}

fn text(value: &anchorage_secrets::SecretValue) -> String {
    use secrecy::ExposeSecret as _;
    match value {
        anchorage_secrets::SecretValue::String(s) => s.expose_secret().to_owned(),
        anchorage_secrets::SecretValue::Binary(_) => panic!("a binary value"),
    }
}

fn lookup(key: &str) -> SecretLookup<'_> {
    SecretLookup {
        key,
        field: Some("password"),
        version: None,
        policy: "",
    }
}

/// The audit log's entries of `kind` (`request` or `response`).
fn audit(bao: &OpenBao, kind: &str) -> Vec<Value> {
    bao.audit_log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == kind)
        .collect()
}

/// How many requests for `path` the server received (with `token`, when given).
fn requests(bao: &OpenBao, path: &str, token: Option<&str>) -> usize {
    audit(bao, "request")
        .iter()
        .filter(|e| e["request"]["path"] == path)
        .filter(|e| token.is_none_or(|t| e["request"]["client_token"] == t))
        .count()
}

/// The tokens the AppRole logins handed out, oldest first (the audit log is unhashed).
fn login_tokens(bao: &OpenBao) -> Vec<String> {
    audit(bao, "response")
        .iter()
        .filter(|e| e["request"]["path"] == "auth/approle/login")
        .filter_map(|e| e["auth"]["client_token"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until OpenBao no longer knows `token` (expired or revoked): probed, not slept.
fn wait_until_dead(bao: &OpenBao, token: &str) {
    let start = Instant::now();
    while bao.try_cli(&["token", "lookup", token]).status.success() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the token still lives after 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn assert_auth_failed(err: &StoreFailure, expected: &str) {
    assert!(
        matches!(err, StoreFailure::AuthFailed { store: "openbao", action } if action == expected),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("openbao store refused the credentials to {expected}")
    );
}

const DENIED: &str = "access secret/data/app/db (403 Forbidden)";

/// Sets up `secret/app/db` and a `reader` policy for `secret/data/app/*` with audit logging.
fn server() -> Option<OpenBao> {
    let bao = OpenBao::start_with(OpenBaoOptions {
        audit_log: true,
        ..OpenBaoOptions::default()
    })?;
    bao.cli(&["kv", "put", "secret/app/db", "password=hunter2"]);
    bao.cli(&["kv", "put", "secret/other/db", "password=not-yours"]);
    bao.write_policy(
        "reader",
        "path \"secret/data/app/*\" { capabilities = [\"read\"] }\n",
    );
    Some(bao)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_logs_in_again_when_its_token_expires() {
    let Some(bao) = server() else { return };
    bao.enable_approle();
    // token_ttl = token_max_ttl = 4 s: the token cannot be renewed past it either. (Long
    // enough for the two reads below to share one token on a loaded machine.)
    let creds = bao.create_approle("short", &["reader"], "4s");
    let s = store(
        &bao,
        OpenBaoAuth::AppRole {
            mount: "approle".into(),
            role_id: creds.role_id.clone(),
            secret_id: creds.secret_id.clone().into(),
        },
        cli_tls(&[]),
    );

    // The first read logs in; the second reuses the token.
    for _ in 0..2 {
        let got = s.get(lookup("app/db")).await.unwrap().unwrap();
        assert_eq!(text(&got.value), "hunter2");
    }
    let tokens = login_tokens(&bao);
    assert_eq!(tokens.len(), 1, "one login for two reads");
    let first = tokens[0].clone();
    assert_eq!(requests(&bao, "secret/data/app/db", Some(&first)), 2);

    // The token expires; the next read is refused with it, logs in and succeeds.
    wait_until_dead(&bao, &first);
    let got = s.get(lookup("app/db")).await.unwrap().unwrap();
    assert_eq!(text(&got.value), "hunter2");
    assert_eq!(got.version, "1");
    let tokens = login_tokens(&bao);
    assert_eq!(tokens.len(), 2, "exactly one more login");
    assert_ne!(tokens[1], first);
    assert_eq!(requests(&bao, "secret/data/app/db", Some(&first)), 3);
    assert_eq!(requests(&bao, "secret/data/app/db", Some(&tokens[1])), 1);

    // Negative control: the same expired token as a static token is refused, after one
    // request, and nothing logs in.
    let logins = requests(&bao, "auth/approle/login", None);
    let stale = store(&bao, OpenBaoAuth::Token(first.clone().into()), cli_tls(&[]));
    let err = stale.get(lookup("app/db")).await.unwrap_err();
    assert_auth_failed(&err, DENIED);
    assert!(!format!("{err} {err:?}").contains(&first));
    assert_eq!(requests(&bao, "secret/data/app/db", Some(&first)), 4);
    assert_eq!(requests(&bao, "auth/approle/login", None), logins);

    // A path the role's policy does not cover: one more login, one retry, then the auth error
    // (no loop).
    let before_logins = requests(&bao, "auth/approle/login", None);
    let before_reads = requests(&bao, "secret/data/other/db", None);
    let err = s.get(lookup("other/db")).await.unwrap_err();
    assert_auth_failed(&err, "access secret/data/other/db (403 Forbidden)");
    assert_eq!(
        requests(&bao, "auth/approle/login", None),
        before_logins + 1
    );
    assert_eq!(
        requests(&bao, "secret/data/other/db", None),
        before_reads + 2
    );

    // A wrong secret ID: the login itself is refused, once.
    let wrong = store(
        &bao,
        OpenBaoAuth::AppRole {
            mount: "approle".into(),
            role_id: creds.role_id,
            secret_id: "00000000-0000-0000-0000-000000000000".to_owned().into(),
        },
        cli_tls(&[]),
    );
    let before_logins = requests(&bao, "auth/approle/login", None);
    let err = wrong.get(lookup("app/db")).await.unwrap_err();
    assert_auth_failed(
        &err,
        "log in with AppRole at auth/approle/login (400 Bad Request)",
    );
    assert_eq!(
        requests(&bao, "auth/approle/login", None),
        before_logins + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_static_token_fails_once_without_retry() {
    let Some(bao) = server() else { return };
    let token = bao.create_token(&["reader"], "1h");
    let s = store(&bao, OpenBaoAuth::Token(token.clone().into()), cli_tls(&[]));
    // Control: the token reads while it lives.
    let got = s.get(lookup("app/db")).await.unwrap().unwrap();
    assert_eq!(text(&got.value), "hunter2");
    assert_eq!(requests(&bao, "secret/data/app/db", Some(&token)), 1);

    bao.cli(&["token", "revoke", &token]);
    wait_until_dead(&bao, &token);
    let err = s.get(lookup("app/db")).await.unwrap_err();
    assert_auth_failed(&err, DENIED);
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(&token), "{shown}");
    // One request with the revoked token, and no login attempt (a static token has none).
    assert_eq!(requests(&bao, "secret/data/app/db", Some(&token)), 2);
    assert_eq!(requests(&bao, "auth/approle/login", None), 0);
}

/// The rustls error somewhere in `err`'s causes (reqwest wraps it in hyper's and an I/O
/// error, whose `source` skips the inner error: look inside with `get_ref`).
fn tls_cause(err: &StoreFailure) -> Option<&TlsError> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<TlsError>() {
            return Some(tls);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if let Some(tls) = inner.downcast_ref::<TlsError>() {
                return Some(tls);
            }
            next = Some(inner);
            continue;
        }
        next = e.source();
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_trusts_the_ca_given_as_tls_ca_path() {
    let Some(bao) = OpenBao::start_with(OpenBaoOptions {
        tls: true,
        ..OpenBaoOptions::default()
    }) else {
        return;
    };
    assert!(bao.address().starts_with("https://127.0.0.1:"));
    bao.cli(&["kv", "put", "secret/app/db", "password=over-tls"]);
    let ca = bao.ca_file().unwrap();
    let root = || OpenBaoAuth::Token(bao.root_token().to_owned().into());

    // With the dev CA as --tls-ca-path: reads and writes over HTTPS.
    let s = store(&bao, root(), cli_tls(std::slice::from_ref(&ca)));
    let got = s.get(lookup("app/db")).await.unwrap().unwrap();
    assert_eq!(text(&got.value), "over-tls");
    assert_eq!(
        s.put(
            "app/new",
            anchorage_secrets::SecretValue::String("{\"password\":\"p\"}".into())
        )
        .await
        .unwrap(),
        "1"
    );
    assert_eq!(
        bao.cli(&["kv", "get", "-field=password", "secret/app/new"]),
        "p"
    );

    // Negative control: the CLI's trust without --tls-ca-path (the OS store and Mozilla's
    // roots) does not know the dev CA: the handshake fails with UnknownIssuer.
    let blind = store(&bao, root(), cli_tls(&[]));
    let err = blind.get(lookup("app/db")).await.unwrap_err();
    let url = format!("{}/v1/secret/data/app/db", bao.address());
    assert!(
        matches!(&err, StoreFailure::Backend { store: "openbao", action, .. } if *action == format!("GET {url}")),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("openbao store failed to GET {url}")
    );
    assert_eq!(
        tls_cause(&err),
        Some(&TlsError::InvalidCertificate(
            CertificateError::UnknownIssuer
        )),
        "{err:?}"
    );
    // The same for a write: nothing is sent before the handshake.
    let err = blind
        .put(
            "app/never",
            anchorage_secrets::SecretValue::String("x".into()),
        )
        .await
        .unwrap_err();
    assert_eq!(
        tls_cause(&err),
        Some(&TlsError::InvalidCertificate(
            CertificateError::UnknownIssuer
        )),
        "{err:?}"
    );
    let run = bao.try_cli(&["kv", "get", "secret/app/never"]);
    assert!(!run.status.success(), "{}", run.output());
}
