//! The audit trail (`tracing` target `anchorage::audit`): an event for each issuance,
//! renewal, revocation and refusal (who, names, serial, the refusal's code), and never a key
//! or a token.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::json;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_issuance_revocation_and_refusal_is_audited_without_secrets() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("anchorage::audit=info"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.put_role(mesh_role()).await;
    let token = s.role_token().await;
    let (_, issued) = s
        .call(
            "POST",
            "/v1/issue",
            Some(&token),
            Some(json!({"common_name": "audit.mesh.local"})),
        )
        .await;
    let serial = issued["serial_number"].as_str().unwrap().to_owned();
    let key = issued["private_key"].as_str().unwrap().to_owned();
    let (status, _) = s
        .call(
            "POST",
            "/v1/issue",
            Some(&token),
            Some(json!({"common_name": "audit.evil.com"})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = s
        .call(
            "POST",
            "/v1/issue",
            Some("not.a.token"),
            Some(json!({"common_name": "a.mesh.local"})),
        )
        .await;
    assert_eq!(status, 401);
    let resp = s
        .client
        .post(format!("{}/v1/issue", s.url))
        .bearer_auth(&token)
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let mtls = client(
        &s.ca_pem,
        Some((issued["certificate"].as_str().unwrap(), &key)),
    );
    assert_eq!(
        call_with(&mtls, &s.url, "POST", "/v1/renew", None, None)
            .await
            .0,
        200
    );
    assert_eq!(
        s.call(
            "POST",
            "/v1/revoke",
            Some(&s.admin),
            Some(json!({"serial": serial, "reason": "superseded"}))
        )
        .await
        .0,
        200
    );
    let mtls = client(
        &s.ca_pem,
        Some((issued["certificate"].as_str().unwrap(), &key)),
    );
    assert_eq!(
        call_with(&mtls, &s.url, "POST", "/v1/renew", None, None)
            .await
            .0,
        403
    );
    // A rotation to an imported root (its key in the request), a refused advance, a forced one.
    let new_ca = anchorage_ca::BuiltinCa::init(&anchorage_ca::InitOptions::default()).unwrap();
    let import =
        secrecy::ExposeSecret::expose_secret(&anchorage_serve::rotation::ca_pem_text(&new_ca))
            .to_owned();
    let import_key: String = secrecy::ExposeSecret::expose_secret(&new_ca.signing_key_pem())
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let (status, body) = s
        .call(
            "POST",
            "/v1/rotation",
            Some(&s.admin),
            Some(json!({"action": "start", "import_pem": import})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // One consumer that never acked B holds the gate.
    s.call(
        "POST",
        "/v1/acks",
        Some(&s.admin),
        Some(json!({"consumer": "late-1", "bundle_version": 1})),
    )
    .await;
    let (status, _) = s
        .call(
            "POST",
            "/v1/rotation",
            Some(&s.admin),
            Some(json!({"action": "advance"})),
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = s
        .call(
            "POST",
            "/v1/rotation",
            Some(&s.admin),
            Some(json!({"action": "advance", "force": true})),
        )
        .await;
    assert_eq!(status, 200);
    s.server.shutdown().await;

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let line = |needles: &[&str]| {
        assert!(
            log.lines().any(|l| needles.iter().all(|n| l.contains(n))),
            "no audit line with {needles:?} in\n{log}"
        );
    };
    line(&[
        "event=\"issue\"",
        "outcome=\"issued\"",
        "who=controller",
        "subject=CN=audit.mesh.local",
        &format!("serial={serial}"),
        "audit.mesh.local",
    ]);
    line(&[
        "event=\"issue\"",
        "outcome=\"refused\"",
        "code=\"role_refused\"",
        "allowed_domains",
    ]);
    line(&[
        "event=\"authenticate\"",
        "outcome=\"refused\"",
        "code=\"token_invalid\"",
    ]);
    line(&[
        "event=\"request\"",
        "outcome=\"refused\"",
        "path=/v1/issue",
        "code=\"malformed_json\"",
    ]);
    line(&[
        "event=\"renew\"",
        "outcome=\"issued\"",
        "who=audit.mesh.local",
    ]);
    line(&[
        "event=\"revoke\"",
        "outcome=\"revoked\"",
        &format!("serial={serial}"),
        "reason=superseded",
    ]);
    line(&[
        "event=\"authenticate_certificate\"",
        "outcome=\"refused\"",
        "code=\"certificate_revoked\"",
    ]);
    line(&[
        "event=\"rotation\"",
        "action=start",
        "who=bootstrap-admin",
        "to=staged",
    ]);
    line(&[
        "event=\"rotation\"",
        "action=advance",
        "outcome=\"refused\"",
        "late-1",
    ]);
    line(&[
        "event=\"rotation_force\"",
        "who=bootstrap-admin",
        "to=signing",
        "late-1",
    ]);
    assert!(
        !log.contains(&import_key[..40]),
        "the imported CA key is in the log"
    );
    // Never a key or a token.
    assert!(!log.contains("PRIVATE KEY"), "{log}");
    assert!(!log.contains(&token), "the role token is in the audit log");
    assert!(
        !log.contains(&s.admin),
        "the admin token is in the audit log"
    );
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!log.contains(&key_body[..40]));
}
