//! The entry points the CLI wires: `run` with a shutdown future and the `on_ready` callback,
//! a brought serving certificate (`TlsSource::Files`), roles seeded from the configuration,
//! and the Vault CA endpoints agreeing with `ca.pem`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use anchorage_serve::{Serving, TlsSource};
use anchorage_test_support::pki::{root_ca, server_leaf};
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_what_it_serves_and_returns_after_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.roles = vec![role_struct()];
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Serving>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(anchorage_serve::run(
        cfg,
        async move {
            let _ = stop_rx.await;
        },
        move |serving| {
            let _ = ready_tx.send(serving.clone());
        },
    ));
    let serving = ready_rx.await.unwrap();
    assert!(serving.url.starts_with("https://127.0.0.1:"));
    assert_eq!(serving.ca_file, dir.path().join("ca.pem"));
    assert_eq!(
        serving.admin_token_file.as_deref(),
        Some(dir.path().join("admin.token").as_path())
    );
    assert!(serving.store.ends_with(".redb"), "{}", serving.store);
    let text = serving.to_string();
    assert!(
        text.contains(&serving.url)
            && text.contains("admin.token")
            && text.contains("curl --cacert"),
        "{text}"
    );
    let ca = std::fs::read_to_string(&serving.ca_file).unwrap();
    let admin = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let http = client(&ca, None);
    // The seeded role is there.
    let (status, role) = call_with(
        &http,
        &serving.url,
        "GET",
        "/v1/roles/mesh",
        Some(admin.trim()),
        None,
    )
    .await;
    assert_eq!(
        (status, role["allow_subdomains"].as_bool()),
        (200, Some(true)),
        "{role}"
    );
    // The Vault CA endpoints give the CA of ca.pem.
    let pem = http
        .get(format!("{}/v1/pki/ca/pem", serving.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(pem, ca);
    let chain = http
        .get(format!("{}/v1/pki/ca_chain", serving.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(chain, ca);
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brought_serving_certificate_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let own_ca = root_ca("Own TLS CA");
    let leaf = server_leaf(&["localhost"], &own_ca);
    let cert = leaf.write_pem(dir.path(), "tls.pem");
    let key = dir.path().join("tls.key");
    anchorage_trust::atomic::write_private_file(&key, leaf.key_pem.as_bytes()).unwrap();
    let data = dir.path().join("data");
    let mut cfg = config(&data);
    cfg.tls = TlsSource::Files { cert, key };
    let s = start_with(cfg).await;
    // Our own CA's file does not verify the brought certificate; its CA does.
    let (status, _) = call_with(
        &client(&own_ca.pem, None),
        &s.url,
        "GET",
        "/healthz",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let err = s
        .client
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err}");
    // Issuance still uses the data directory's CA.
    let (status, body) = call_with(
        &client(&own_ca.pem, None),
        &s.url,
        "POST",
        "/v1/issue",
        Some(&s.admin),
        Some(json!({"common_name": "x.example.com"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let issued = anchorage_x509::decode(body["certificate"].as_str().unwrap().as_bytes())
        .certificates[0]
        .certificate
        .clone();
    assert!(s.server.state().authority.issued_here(&issued));
    s.server.shutdown().await;

    // A key that does not match the certificate is refused at start.
    let other = server_leaf(&["localhost"], &own_ca);
    let bad_key = dir.path().join("other.key");
    anchorage_trust::atomic::write_private_file(&bad_key, other.key_pem.as_bytes()).unwrap();
    let mut cfg = config(&data);
    cfg.tls = TlsSource::Files {
        cert: dir.path().join("tls.pem"),
        key: bad_key,
    };
    let err = anchorage_serve::Server::start(cfg).await.unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_routes_answer_errors_in_vault_shape() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.put_role(mesh_role()).await;
    let token = s.role_token().await;
    let post = |body: &'static str, token: &str| {
        s.client
            .post(format!("{}/v1/pki/issue/mesh", s.url))
            .header("x-vault-token", token)
            .body(body)
            .send()
    };
    for (body, tok, status, text) in [
        ("{nope", token.as_str(), 400, "not the JSON"),
        (
            r#"{"common_name":"x.evil.com"}"#,
            token.as_str(),
            403,
            "allowed_domains",
        ),
        (
            r#"{"common_name":"x.mesh.local","ttl":"99h"}"#,
            token.as_str(),
            403,
            "max_ttl",
        ),
        (
            r#"{"common_name":"x.mesh.local","key_type":"dsa"}"#,
            token.as_str(),
            400,
            "key_type",
        ),
        (
            r#"{"common_name":"x.mesh.local"}"#,
            "bad",
            403,
            "permission denied",
        ),
    ] {
        let resp = post(body, tok).await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let v: serde_json::Value = resp.json().await.unwrap();
        let errors = v["errors"].as_array().unwrap_or_else(|| panic!("{v}"));
        assert!(errors[0].as_str().unwrap().contains(text), "{body}: {v}");
        // And a good request right after.
        let resp = post(
            r#"{"common_name":"ok.mesh.local","alt_names":"a.mesh.local,b.mesh.local"}"#,
            &token,
        )
        .await
        .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let v: serde_json::Value = resp.json().await.unwrap();
        let cert = anchorage_x509::decode(v["data"]["certificate"].as_str().unwrap().as_bytes())
            .certificates[0]
            .certificate
            .clone();
        assert_eq!(cert.subject_alt_names().len(), 3);
        assert_eq!(v["data"]["private_key_type"], "ec");
        assert!(v["data"]["serial_number"].as_str().unwrap().contains(':'));
    }
    // A role token for mesh cannot issue under another role's path.
    let resp = s
        .client
        .post(format!("{}/v1/pki/issue/other", s.url))
        .header("x-vault-token", &token)
        .body(r#"{"common_name":"x.mesh.local"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    s.server.shutdown().await;
}
