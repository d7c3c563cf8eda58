//! Real peers against a server started in-process: curl over HTTPS with the CA file from the
//! data directory (and failing without it), `openssl verify` of issued chains, a real mTLS
//! handshake (`openssl s_server`/`s_client`) with issued certificates, the real `bao` CLI on
//! the Vault-compatible subset (issue, sign, AppRole login, errors), and anchorage's own
//! Vault issuer (`anchorage-ca-vault`) pointed at serve instead of OpenBao.
//!
//! A missing tool skips the test with a loud message locally and fails it in CI.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anchorage_test_support::peer::{openssl_server_with_args, require, run_client};
use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    #[allow(clippy::disallowed_methods)] // test fixture, not an output
    std::fs::write(&p, text).unwrap();
    p
}

/// `openssl verify` of `leaf` against `ca_file`; true when it says OK.
fn openssl_verify(dir: &Path, ca_file: &Path, leaf: &str, purpose: &str) -> bool {
    let openssl = require("openssl").unwrap();
    let leaf = write(dir, "verify-leaf.pem", leaf);
    let run = run_client(
        Command::new(openssl)
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(ca_file)
            .arg(&leaf),
        T,
    );
    run.status.success() && run.stdout.contains(": OK")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_https_with_the_data_dir_ca_and_not_without() {
    let Some(curl) = require("curl") else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let ca = dir.path().join("ca.pem");
    let url = s.url.clone();
    let curl2 = curl.clone();
    let admin = s.admin.clone();
    let (ok, refused, issued) = tokio::task::spawn_blocking(move || {
        let ok = run_client(
            Command::new(&curl2)
                .args(["-sS", "--fail-with-body", "--cacert"])
                .arg(&ca)
                .arg(format!("{url}/healthz")),
            T,
        );
        // Negative control: the same request without our CA fails verification (curl exit 60).
        let refused = run_client(
            Command::new(&curl2)
                .env_remove("CURL_CA_BUNDLE")
                .env_remove("SSL_CERT_FILE")
                .args(["-sS"])
                .arg(format!("{url}/healthz")),
            T,
        );
        let issued = run_client(
            Command::new(&curl2)
                .args(["-sS", "--fail-with-body", "--cacert"])
                .arg(&ca)
                .args([
                    "-H",
                    &format!("Authorization: Bearer {admin}"),
                    "-H",
                    "content-type: application/json",
                    "-d",
                    r#"{"common_name":"curl.example.com"}"#,
                ])
                .arg(format!("{url}/v1/issue")),
            T,
        );
        (ok, refused, issued)
    })
    .await
    .unwrap();
    assert!(ok.status.success(), "{}", ok.output());
    assert!(ok.stdout.contains("\"ok\""), "{}", ok.stdout);
    assert!(!refused.status.success());
    assert_eq!(refused.status.code(), Some(60), "{}", refused.output());
    assert!(issued.status.success(), "{}", issued.output());
    let body: Value = serde_json::from_str(&issued.stdout).unwrap();
    let work = tempfile::tempdir().unwrap();
    assert!(openssl_verify(
        work.path(),
        &dir.path().join("ca.pem"),
        body["certificate"].as_str().unwrap(),
        "sslserver"
    ));
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_certificates_pass_openssl_verify_and_a_real_mtls_handshake() {
    let Some(openssl) = require("openssl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let work = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    // Server certificate for localhost (admin), client certificate from a CSR (role, OTT).
    let (_, server) = s
        .call(
            "POST",
            "/v1/issue",
            Some(&s.admin),
            Some(json!({"common_name": "localhost", "sans": ["127.0.0.1"], "kind": "server"})),
        )
        .await;
    s.put_role(mesh_role()).await;
    let (csr_pem, client_key) = csr("client.mesh.local", &[], anchorage_ca::KeyType::P256);
    let ott = s.ott("client.mesh.local", "/v1/sign").await;
    let (status, client) = s
        .call(
            "POST",
            "/v1/sign",
            Some(&ott),
            Some(json!({"csr": csr_pem, "kind": "client"})),
        )
        .await;
    assert_eq!(status, 200, "{client}");
    assert!(openssl_verify(
        work.path(),
        &ca,
        server["certificate"].as_str().unwrap(),
        "sslserver"
    ));
    assert!(openssl_verify(
        work.path(),
        &ca,
        client["certificate"].as_str().unwrap(),
        "sslclient"
    ));
    // Negative control: a client certificate is not a server certificate.
    assert!(!openssl_verify(
        work.path(),
        &ca,
        client["certificate"].as_str().unwrap(),
        "sslserver"
    ));

    let scert = write(
        work.path(),
        "server.pem",
        server["certificate"].as_str().unwrap(),
    );
    let skey = write(
        work.path(),
        "server.key",
        server["private_key"].as_str().unwrap(),
    );
    let ccert = write(
        work.path(),
        "client.pem",
        client["certificate"].as_str().unwrap(),
    );
    let ckey = write(work.path(), "client.key", &client_key);
    let ca_s = ca.display().to_string();
    let srv = openssl_server_with_args(
        &scert,
        &skey,
        None,
        &["-CAfile", &ca_s, "-Verify", "1", "-verify_return_error"],
    )
    .unwrap();
    let port = srv.port();
    let run = tokio::task::spawn_blocking(move || {
        run_client(
            Command::new(&openssl)
                .args([
                    "s_client",
                    "-connect",
                    &format!("127.0.0.1:{port}"),
                    "-verify_return_error",
                    "-CAfile",
                    &ca_s,
                    "-cert",
                ])
                .arg(&ccert)
                .arg("-key")
                .arg(&ckey),
            T,
        )
    })
    .await
    .unwrap();
    assert!(run.status.success(), "{}", run.output());
    assert!(
        run.output().contains("Verify return code: 0 (ok)"),
        "{}",
        run.output()
    );
    drop(srv);
    s.server.shutdown().await;
}

fn bao(
    home: &Path,
    addr: &str,
    ca: &Path,
    token: Option<&str>,
    args: &[&str],
) -> anchorage_test_support::peer::ClientRun {
    let bao = require("bao").unwrap();
    let mut cmd = Command::new(bao);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("BAO_ADDR", addr)
        .env("BAO_CACERT", ca)
        .args(args);
    if let Some(t) = token {
        cmd.env("BAO_TOKEN", t);
    }
    run_client(&mut cmd, T)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bao_cli_issues_signs_and_logs_in_with_approle() {
    if require("bao").is_none() || require("openssl").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.put_role(mesh_role()).await;
    let role_token = s.role_token().await;
    let home = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let addr = s.url.clone();
    let work = tempfile::tempdir().unwrap();

    // The mesh controller's shape: issue/<role> with common_name, ttl and uri_sans.
    let (h, a, c, t) = (
        home.path().to_owned(),
        addr.clone(),
        ca.clone(),
        role_token.clone(),
    );
    let run = tokio::task::spawn_blocking(move || {
        bao(
            &h,
            &a,
            &c,
            Some(&t),
            &[
                "write",
                "-format=json",
                "pki/issue/mesh",
                "common_name=web.mesh.local",
                "ttl=24h",
                "uri_sans=spiffe://example.org/ns/web/sa/web",
            ],
        )
    })
    .await
    .unwrap();
    assert!(run.status.success(), "{}", run.output());
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    let data = &answer["data"];
    for field in ["certificate", "issuing_ca", "private_key", "serial_number"] {
        assert!(
            data[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}: {answer}"
        );
    }
    assert!(data["ca_chain"].as_array().is_some_and(|c| !c.is_empty()));
    let cert = data["certificate"].as_str().unwrap();
    assert!(openssl_verify(work.path(), &ca, cert, "sslserver"));
    let leaf = anchorage_x509::decode(cert.as_bytes()).certificates[0]
        .certificate
        .clone();
    assert_eq!(
        leaf.not_after().unix() - leaf.not_before().unix(),
        24 * 3600 + 300
    );

    // cert-manager's shape: sys/health, then sign/<role> with a CSR.
    let (status, health) = s.call("GET", "/v1/sys/health", None, None).await;
    assert_eq!(
        (
            status,
            health["sealed"].as_bool(),
            health["initialized"].as_bool()
        ),
        (200, Some(false), Some(true))
    );
    let (h, a, c) = (home.path().to_owned(), addr.clone(), ca.clone());
    let health =
        tokio::task::spawn_blocking(move || bao(&h, &a, &c, None, &["status", "-format=json"]))
            .await
            .unwrap();
    assert!(health.status.success(), "{}", health.output());
    let (csr_pem, _) = csr("db.mesh.local", &[], anchorage_ca::KeyType::P256);
    let csr_file = write(work.path(), "req.csr", &csr_pem);
    let (h, a, c, t) = (
        home.path().to_owned(),
        addr.clone(),
        ca.clone(),
        role_token.clone(),
    );
    let run = tokio::task::spawn_blocking(move || {
        bao(
            &h,
            &a,
            &c,
            Some(&t),
            &[
                "write",
                "-format=json",
                "pki/sign/mesh",
                &format!("csr=@{}", csr_file.display()),
                "ttl=2160h0m0s",
                "exclude_cn_from_sans=true",
            ],
        )
    })
    .await
    .unwrap();
    // 2160 h exceeds the role's max_ttl (24 h): refused in Vault's error shape.
    assert!(!run.status.success());
    assert!(run.output().contains("max_ttl"), "{}", run.output());
    let csr_file = work.path().join("req.csr");
    let (h, a, c, t) = (
        home.path().to_owned(),
        addr.clone(),
        ca.clone(),
        role_token.clone(),
    );
    let run = tokio::task::spawn_blocking(move || {
        bao(
            &h,
            &a,
            &c,
            Some(&t),
            &[
                "write",
                "-format=json",
                "pki/sign/mesh",
                &format!("csr=@{}", csr_file.display()),
                "ttl=1h",
            ],
        )
    })
    .await
    .unwrap();
    assert!(run.status.success(), "{}", run.output());
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(answer["data"].get("private_key").is_none());
    assert!(openssl_verify(
        work.path(),
        &ca,
        answer["data"]["certificate"].as_str().unwrap(),
        "sslclient"
    ));

    // Names outside the role, and a bad token: refused, nothing issued.
    let (h, a, c, t) = (
        home.path().to_owned(),
        addr.clone(),
        ca.clone(),
        role_token.clone(),
    );
    let run = tokio::task::spawn_blocking(move || {
        bao(
            &h,
            &a,
            &c,
            Some(&t),
            &["write", "pki/issue/mesh", "common_name=evil.example.com"],
        )
    })
    .await
    .unwrap();
    assert!(!run.status.success());
    assert!(run.output().contains("allowed_domains"), "{}", run.output());
    let (h, a, c) = (home.path().to_owned(), addr.clone(), ca.clone());
    let run = tokio::task::spawn_blocking(move || {
        bao(
            &h,
            &a,
            &c,
            Some("nope"),
            &["write", "pki/issue/mesh", "common_name=a.mesh.local"],
        )
    })
    .await
    .unwrap();
    assert!(!run.status.success());
    assert!(
        run.output().contains("permission denied"),
        "{}",
        run.output()
    );

    // A newcomer's role, written with bao and the admin token, then used.
    let (h, a, c, adm) = (
        home.path().to_owned(),
        addr.clone(),
        ca.clone(),
        s.admin.clone(),
    );
    let run = tokio::task::spawn_blocking(move || {
        let w = bao(
            &h,
            &a,
            &c,
            Some(&adm),
            &[
                "write",
                "pki/roles/web",
                "allowed_domains=web.local",
                "allow_subdomains=true",
                "max_ttl=72h",
                "key_type=ec",
                "key_bits=256",
                "server_flag=true",
                "client_flag=false",
            ],
        );
        let r = bao(
            &h,
            &a,
            &c,
            Some(&adm),
            &["read", "-format=json", "pki/roles/web"],
        );
        let i = bao(
            &h,
            &a,
            &c,
            Some(&adm),
            &[
                "write",
                "-format=json",
                "pki/issue/web",
                "common_name=a.web.local",
                "ttl=48h",
            ],
        );
        let refused = bao(
            &h,
            &a,
            &c,
            Some(&adm),
            &[
                "write",
                "pki/issue/web",
                "common_name=a.web.local",
                "ttl=100h",
            ],
        );
        (w, r, i, refused)
    })
    .await
    .unwrap();
    let (w, r, i, refused) = run;
    assert!(w.status.success(), "{}", w.output());
    assert!(r.status.success(), "{}", r.output());
    let role: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(role["data"]["allowed_kinds"], json!(["server"]), "{role}");
    assert_eq!(role["data"]["max_ttl_seconds"], 72 * 3600);
    assert!(i.status.success(), "{}", i.output());
    let issued: Value = serde_json::from_str(&i.stdout).unwrap();
    let leaf = anchorage_x509::decode(issued["data"]["certificate"].as_str().unwrap().as_bytes())
        .certificates[0]
        .certificate
        .clone();
    assert_eq!(leaf.extended_key_usage(), ["serverAuth".to_owned()]);
    assert!(!refused.status.success());
    assert!(refused.output().contains("max_ttl"), "{}", refused.output());
    // A role token cannot write roles.
    let (h, a, c, t) = (
        home.path().to_owned(),
        addr.clone(),
        ca.clone(),
        role_token.clone(),
    );
    let run = tokio::task::spawn_blocking(move || {
        bao(
            &h,
            &a,
            &c,
            Some(&t),
            &["write", "pki/roles/evil", "allow_any_name=true"],
        )
    })
    .await
    .unwrap();
    assert!(!run.status.success());
    assert!(run.output().contains("admin"), "{}", run.output());

    // AppRole: credentials from the admin API, login with bao, issue with the client token.
    let (status, creds) = s
        .call(
            "POST",
            "/v1/auth/approle/role/mesh/secret-id",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{creds}");
    let role_id = creds["data"]["role_id"].as_str().unwrap().to_owned();
    let secret_id = creds["data"]["secret_id"].as_str().unwrap().to_owned();
    let (h, a, c) = (home.path().to_owned(), addr.clone(), ca.clone());
    let run = tokio::task::spawn_blocking(move || {
        bao(
            &h,
            &a,
            &c,
            None,
            &[
                "write",
                "-format=json",
                "auth/approle/login",
                &format!("role_id={role_id}"),
                &format!("secret_id={secret_id}"),
            ],
        )
    })
    .await
    .unwrap();
    assert!(run.status.success(), "{}", run.output());
    let login: Value = serde_json::from_str(&run.stdout).unwrap();
    let token = login["auth"]["client_token"].as_str().unwrap().to_owned();
    let (h, a, c) = (home.path().to_owned(), addr.clone(), ca.clone());
    let run = tokio::task::spawn_blocking(move || {
        bao(
            &h,
            &a,
            &c,
            Some(&token),
            &[
                "write",
                "-format=json",
                "pki/issue/mesh",
                "common_name=app.mesh.local",
            ],
        )
    })
    .await
    .unwrap();
    assert!(run.status.success(), "{}", run.output());
    // A wrong secret ID is refused.
    let (h, a, c, rid) = (
        home.path().to_owned(),
        addr.clone(),
        ca.clone(),
        creds["data"]["role_id"].as_str().unwrap().to_owned(),
    );
    let run = tokio::task::spawn_blocking(move || {
        bao(
            &h,
            &a,
            &c,
            None,
            &[
                "write",
                "auth/approle/login",
                &format!("role_id={rid}"),
                "secret_id=wrong",
            ],
        )
    })
    .await
    .unwrap();
    assert!(!run.status.success());
    assert!(
        run.output().contains("invalid role or secret ID"),
        "{}",
        run.output()
    );
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anchorage_ca_vault_issues_through_serve() {
    use anchorage_ca::Issuer as _;
    use anchorage_ca_vault::{AppRole, KeyLocation, VaultAuth, VaultConfig, VaultIssuer};
    use secrecy::SecretString;
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.put_role(mesh_role()).await;
    let (_, creds) = s
        .call(
            "POST",
            "/v1/auth/approle/role/mesh/secret-id",
            Some(&s.admin),
            None,
        )
        .await;
    let trust = anchorage_trust::tls::TrustConfig {
        ssl_certs_file: Some(dir.path().join("ca.pem")),
        ..Default::default()
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let role_token = s.role_token().await;
    for (auth, location) in [
        (
            VaultAuth::Token(SecretString::from(role_token)),
            KeyLocation::Server,
        ),
        (
            VaultAuth::AppRole(AppRole::new(
                creds["data"]["role_id"].as_str().unwrap(),
                SecretString::from(creds["data"]["secret_id"].as_str().unwrap().to_owned()),
            )),
            KeyLocation::Local,
        ),
    ] {
        let config = VaultConfig::new(s.url.clone(), "mesh", auth)
            .with_key_location(location)
            .with_trust(trust.clone());
        let issuer = VaultIssuer::new(config, Arc::clone(&provider)).unwrap();
        issuer.refresh_ca().await.unwrap();
        let request = anchorage_ca::CertificateRequest::new(
            anchorage_ca::Identity::new("svc.mesh.local").unwrap(),
            anchorage_ca::CertKind::Service,
        )
        .with_san(anchorage_ca::San::parse("spiffe://example.org/ns/a/sa/svc").unwrap())
        .with_lifetime(Duration::from_secs(3600));
        let issued = issuer.issue(&request).await.unwrap();
        assert!(s.server.state().authority.issued_here(&issued.certificate));
        assert!(issued.private_key.is_some());
        let work = tempfile::tempdir().unwrap();
        assert!(openssl_verify(
            work.path(),
            &dir.path().join("ca.pem"),
            &issued.certificate.to_pem(),
            "sslserver"
        ));
        // Refused by the role: the Vault issuer reports it as a refusal.
        let bad = anchorage_ca::CertificateRequest::new(
            anchorage_ca::Identity::new("svc.example.com").unwrap(),
            anchorage_ca::CertKind::Service,
        );
        let err = issuer.issue(&bad).await.unwrap_err();
        assert!(err.to_string().contains("allowed_domains"), "{err}");
    }
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_intermediate_the_chain_verifies_and_vault_gets_the_whole_chain() {
    if require("openssl").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.ca_init.intermediate = Some(anchorage_ca::IntermediateOptions::default());
    let s = start_with(cfg).await;
    let work = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let (status, body) = s
        .call(
            "POST",
            "/v1/issue",
            Some(&s.admin),
            Some(json!({"common_name": "chain.example.com"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let chain: Vec<String> = body["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(chain.len(), 1);
    let untrusted = write(work.path(), "chain.pem", &chain.concat());
    let leaf = write(
        work.path(),
        "leaf.pem",
        body["certificate"].as_str().unwrap(),
    );
    let openssl = require("openssl").unwrap();
    let run = run_client(
        Command::new(&openssl)
            .args(["verify", "-CAfile"])
            .arg(&ca)
            .arg("-untrusted")
            .arg(&untrusted)
            .arg(&leaf),
        T,
    );
    assert!(run.status.success(), "{}", run.output());
    // Negative control: without the intermediate the leaf does not verify.
    assert!(!openssl_verify(
        work.path(),
        &ca,
        body["certificate"].as_str().unwrap(),
        "sslserver"
    ));
    // Vault's answer carries the issuing CA and the chain up to the root.
    let (_, v) = s
        .call(
            "POST",
            "/v1/pki/issue/none",
            Some(&s.admin),
            Some(json!({"common_name": "v.example.com"})),
        )
        .await;
    assert_eq!(
        v["errors"][0].as_str().map(|e| e.contains("no role")),
        Some(true),
        "{v}"
    );
    s.put_role(json!({"name": "any", "allow_any_name": true}))
        .await;
    let (status, v) = s
        .call(
            "POST",
            "/v1/pki/issue/any",
            Some(&s.admin),
            Some(json!({"common_name": "v.example.com"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let ca_chain = v["data"]["ca_chain"].as_array().unwrap();
    assert_eq!(ca_chain.len(), 2);
    assert_eq!(
        ca_chain[0].as_str().unwrap().trim(),
        v["data"]["issuing_ca"].as_str().unwrap().trim()
    );
    assert_eq!(ca_chain[0].as_str().unwrap().trim(), chain[0].trim());
    s.server.shutdown().await;
}
