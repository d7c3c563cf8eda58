//! The native API against a server started in-process on a free loopback port: zero-config
//! start, issuance with role, one-time and admin tokens, every bad-input case (each followed
//! by a good request), renewal over mTLS, revocation and the CRL, the bundle (ETag, long-poll,
//! formats), acks, metrics, and a restart that keeps every acknowledged write.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use anchorage_ca::KeyType;
use anchorage_serve::tokens::{Claims, TokenKey, TokenKind};
use common::*;
use serde_json::json;

fn cert_of(pem: &str) -> anchorage_x509::Certificate {
    anchorage_x509::decode(pem.as_bytes()).certificates[0]
        .certificate
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_start_health_ready_and_admin_token_0600() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    assert!(s.server.serving().ca_created);
    assert!(s.server.serving().admin_token_created);
    let mode = std::fs::metadata(dir.path().join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (status, body) = s.call("GET", "/healthz", None, None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = s.call("GET", "/readyz", None, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    // The CA is the one `anchorage ca` reads: the same store key.
    let store = std::sync::Arc::clone(&s.server.state().store);
    let loaded = anchorage_ca::persist::load(store.as_ref(), None)
        .await
        .unwrap();
    assert!(s.ca_pem.contains(&loaded.ca.root().to_pem()));
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_and_sign_with_role_one_time_and_admin_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.put_role(mesh_role()).await;

    // A controller's role token: server-made key.
    let role_token = s.role_token().await;
    let (status, body) = s
        .call(
            "POST",
            "/v1/issue",
            Some(&role_token),
            Some(json!({
                "common_name": "web.mesh.local",
                "sans": ["spiffe://example.org/ns/web/sa/web"],
                "ttl": "1h"
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let cert = cert_of(body["certificate"].as_str().unwrap());
    assert_eq!(cert.subject(), "CN=web.mesh.local");
    assert!(
        body["private_key"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    assert!(s.server.state().authority.issued_here(&cert));
    let life = cert.not_after().unix() - cert.not_before().unix();
    assert!((3600..=3600 + 300).contains(&life), "{life}");
    assert!(body["refresh_at"].as_str().unwrap() < body["not_after"].as_str().unwrap());
    assert_eq!(body["bundle_version"], 1);
    // A short certificate (shorter than the notBefore backdating) still gets a refresh time in
    // the future: two thirds counted from issuance, not from notBefore.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (status, short) = s
        .call(
            "POST",
            "/v1/issue",
            Some(&role_token),
            Some(json!({"common_name": "short.mesh.local", "ttl": "1m"})),
        )
        .await;
    assert_eq!(status, 200, "{short}");
    let parse = |v: &serde_json::Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
        .unix_timestamp()
    };
    let (refresh, not_after) = (parse(&short["refresh_at"]), parse(&short["not_after"]));
    assert!(refresh > now && refresh < not_after, "{short}");
    // The same token works again (long-lived).
    let (status, _) = s
        .call(
            "POST",
            "/v1/issue",
            Some(&role_token),
            Some(json!({"common_name": "api.mesh.local"})),
        )
        .await;
    assert_eq!(status, 200);

    // A workload's one-time token and its own CSR.
    let (csr1, _key) = csr("db.mesh.local", &[], KeyType::P256);
    let ott = s.ott("db.mesh.local", "/v1/sign").await;
    let (status, body) = s
        .call("POST", "/v1/sign", Some(&ott), Some(json!({"csr": csr1})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("private_key").is_none());
    let serial = body["serial_number"].as_str().unwrap().to_owned();
    assert_eq!(
        serial,
        anchorage_serve::authority::serial_hex(&cert_of(body["certificate"].as_str().unwrap()))
    );
    // The serial is recorded.
    let rec = s
        .server
        .state()
        .store
        .get(&format!("serve.certs.{serial}"))
        .await
        .unwrap();
    assert!(rec.is_some());
    // A one-time token covers its own names only.
    let (csr2, _) = csr("other.mesh.local", &[], KeyType::P256);
    let ott = s.ott("db.mesh.local", "/v1/sign").await;
    let (status, body) = s
        .call("POST", "/v1/sign", Some(&ott), Some(json!({"csr": csr2})))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "token_name_not_allowed"),
        "{body}"
    );

    // Admin without a role: any name.
    let (status, body) = s
        .call(
            "POST",
            "/v1/issue",
            Some(&s.admin),
            Some(json!({"common_name": "anything.example.com", "kind": "client"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_refused_with_stable_codes_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.put_role(mesh_role()).await;
    let role_token = s.role_token().await;
    let good = || json!({"common_name": "ok.mesh.local"});
    let issued_before = s
        .server
        .state()
        .store
        .keys("serve.certs.")
        .await
        .unwrap()
        .len();

    // Each bad request, then a good one.
    let mut refused = 0;
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "malformed JSON",
            s.client
                .post(format!("{}/v1/issue", s.url))
                .bearer_auth(&role_token)
                .body("{not json"),
            400,
            "malformed_json",
        ),
        (
            "wrong field type",
            s.client
                .post(format!("{}/v1/issue", s.url))
                .bearer_auth(&role_token)
                .json(&json!({"common_name": 5})),
            400,
            "malformed_json",
        ),
        (
            "unknown field",
            s.client
                .post(format!("{}/v1/issue", s.url))
                .bearer_auth(&role_token)
                .json(&json!({"common_name": "a.mesh.local", "evil": 1})),
            400,
            "malformed_json",
        ),
        (
            "oversize body",
            s.client
                .post(format!("{}/v1/issue", s.url))
                .bearer_auth(&role_token)
                .body(vec![b' '; 64 * 1024]),
            413,
            "body_too_large",
        ),
        (
            "unknown route",
            s.client.get(format!("{}/v1/nope", s.url)),
            404,
            "route_unknown",
        ),
        (
            "wrong method",
            s.client.get(format!("{}/v1/issue", s.url)),
            405,
            "method_not_allowed",
        ),
        (
            "no token",
            s.client.post(format!("{}/v1/issue", s.url)).json(&good()),
            401,
            "token_missing",
        ),
        (
            "garbage token",
            s.client
                .post(format!("{}/v1/issue", s.url))
                .bearer_auth("a.b.c")
                .json(&good()),
            401,
            "token_invalid",
        ),
        (
            "name outside role",
            s.client
                .post(format!("{}/v1/issue", s.url))
                .bearer_auth(&role_token)
                .json(&json!({"common_name": "evil.example.com"})),
            403,
            "role_refused",
        ),
        (
            "invalid SAN",
            s.client
                .post(format!("{}/v1/issue", s.url))
                .bearer_auth(&role_token)
                .json(&json!({"common_name": "a.mesh.local", "sans": ["uri:not a uri"]})),
            400,
            "invalid_request",
        ),
        (
            "bad ttl",
            s.client
                .post(format!("{}/v1/issue", s.url))
                .bearer_auth(&role_token)
                .json(&json!({"common_name": "a.mesh.local", "ttl": "forever"})),
            400,
            "invalid_request",
        ),
        (
            "not a CSR",
            s.client
                .post(format!("{}/v1/sign", s.url))
                .bearer_auth(&role_token)
                .json(&json!({"csr": "hello"})),
            400,
            "csr_invalid",
        ),
    ];
    for (what, req, status, code) in cases {
        let resp = req.send().await.unwrap();
        let got = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        assert_eq!((got, error_code(&body)), (status, code), "{what}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
        refused += 1;
        let (status, body) = s
            .call("POST", "/v1/issue", Some(&role_token), Some(good()))
            .await;
        assert_eq!(status, 200, "good request after {what}: {body}");
    }

    // A CSR whose signature does not verify: flip a byte of the signature.
    let (pem, _) = csr("db.mesh.local", &[], KeyType::P256);
    let der = anchorage_trust_csr_der(&pem);
    let mut bad = der.clone();
    let n = bad.len();
    bad[n - 5] ^= 0x01;
    let bad_pem = anchorage_serve::api::pem_block("CERTIFICATE REQUEST", &bad);
    let ott = s.ott("db.mesh.local", "/v1/sign").await;
    let (status, body) = s
        .call(
            "POST",
            "/v1/sign",
            Some(&ott),
            Some(json!({"csr": bad_pem})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (400, "csr_invalid"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{body}"
    );
    // The same CSR intact, with a fresh token, succeeds.
    let ott = s.ott("db.mesh.local", "/v1/sign").await;
    let (status, body) = s
        .call("POST", "/v1/sign", Some(&ott), Some(json!({"csr": pem})))
        .await;
    assert_eq!(status, 200, "{body}");

    // A CSR for a key type the role forbids.
    let (p384, _) = csr("db.mesh.local", &[], KeyType::P384);
    let ott = s.ott("db.mesh.local", "/v1/sign").await;
    let (status, body) = s
        .call("POST", "/v1/sign", Some(&ott), Some(json!({"csr": p384})))
        .await;
    assert_eq!((status, error_code(&body)), (403, "role_refused"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("key_types"),
        "{body}"
    );

    // Nothing was issued for the refusals: only the good requests (one per case, + the CSR).
    let issued_after = s
        .server
        .state()
        .store
        .keys("serve.certs.")
        .await
        .unwrap()
        .len();
    assert_eq!(issued_after - issued_before, refused + 1);
    s.server.shutdown().await;
}

fn anchorage_trust_csr_der(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    p.contents
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_replayed_expired_future_wrong_audience_and_revoked_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.put_role(mesh_role()).await;
    let key = TokenKey::load_or_create(s.server.state().store.as_ref())
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = |iat: i64, exp: i64, aud: &str, jti: &str| Claims {
        iss: "anchorage".into(),
        sub: "a.mesh.local".into(),
        aud: aud.into(),
        typ: TokenKind::Ott,
        role: Some("mesh".into()),
        sans: vec![],
        iat,
        nbf: iat,
        exp: Some(exp),
        jti: jti.into(),
    };
    // One-time tokens sign CSRs (server-made keys need a role or admin token).
    let (csr_pem, _) = csr("a.mesh.local", &[], KeyType::P256);
    let body = json!({"csr": csr_pem});
    let cases = [
        (
            "expired",
            key.sign(&claims(now - 400, now - 100, "/v1/sign", "e1")),
            "token_expired",
        ),
        (
            "future",
            key.sign(&claims(now + 200, now + 400, "/v1/sign", "f1")),
            "token_not_yet_valid",
        ),
        (
            "wrong audience",
            key.sign(&claims(now, now + 60, "/v1/issue", "w1")),
            "token_wrong_audience",
        ),
        (
            "too long",
            key.sign(&claims(now, now + 3600, "/v1/sign", "l1")),
            "token_lifetime_too_long",
        ),
    ];
    for (what, token, code) in cases {
        let (status, answer) = s
            .call("POST", "/v1/sign", Some(&token), Some(body.clone()))
            .await;
        assert_eq!(
            (status, error_code(&answer)),
            (401, code),
            "{what}: {answer}"
        );
        let good = key.sign(&claims(now, now + 60, "/v1/sign", &format!("good-{code}")));
        let (status, answer) = s
            .call("POST", "/v1/sign", Some(&good), Some(body.clone()))
            .await;
        assert_eq!(status, 200, "after {what}: {answer}");
    }
    // Within the leeway (expired 30 s ago): accepted.
    let late = key.sign(&claims(now - 200, now - 30, "/v1/sign", "leeway"));
    assert_eq!(
        s.call("POST", "/v1/sign", Some(&late), Some(body.clone()))
            .await
            .0,
        200
    );
    // Replay.
    let ott = s.ott("a.mesh.local", "/v1/sign").await;
    assert_eq!(
        s.call("POST", "/v1/sign", Some(&ott), Some(body.clone()))
            .await
            .0,
        200
    );
    let (status, answer) = s
        .call("POST", "/v1/sign", Some(&ott), Some(body.clone()))
        .await;
    assert_eq!((status, error_code(&answer)), (401, "token_replayed"));
    // A one-time token for /v1/issue (server-made key) is refused for its kind.
    let ott = s.ott("a.mesh.local", "/v1/issue").await;
    let (status, answer) = s
        .call(
            "POST",
            "/v1/issue",
            Some(&ott),
            Some(json!({"common_name": "a.mesh.local"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&answer)),
        (403, "token_kind_not_allowed"),
        "{answer}"
    );
    let body = json!({"common_name": "a.mesh.local"});
    // A revoked role token.
    let role_token = s.role_token().await;
    let jti = key.decode(&role_token).unwrap().jti;
    assert_eq!(
        s.call("POST", "/v1/issue", Some(&role_token), Some(body.clone()))
            .await
            .0,
        200
    );
    assert_eq!(
        s.call("DELETE", &format!("/v1/tokens/{jti}"), Some(&s.admin), None)
            .await
            .0,
        204
    );
    let (status, answer) = s
        .call("POST", "/v1/issue", Some(&role_token), Some(body.clone()))
        .await;
    assert_eq!((status, error_code(&answer)), (401, "token_revoked"));
    // A role token cannot administer.
    let role_token = s.role_token().await;
    let (status, answer) = s
        .call("GET", "/v1/consumers", Some(&role_token), None)
        .await;
    assert_eq!((status, error_code(&answer)), (403, "admin_required"));
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_refusals_name_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.put_role(mesh_role()).await;
    let t = s.role_token().await;
    let cases = [
        (json!({"common_name": "x.evil.com"}), "allowed_domains"),
        (json!({"common_name": "mesh.local"}), "allowed_domains"),
        (
            json!({"common_name": "x.mesh.local", "kind": "webhook"}),
            "allowed_kinds",
        ),
        (
            json!({"common_name": "x.mesh.local", "key_type": "p384"}),
            "key_types",
        ),
        (
            json!({"common_name": "x.mesh.local", "ttl": "48h"}),
            "max_ttl",
        ),
        (
            json!({"common_name": "x.mesh.local", "sans": ["10.1.2.3"]}),
            "allow_ip_sans",
        ),
        (
            json!({"common_name": "x.mesh.local", "sans": ["spiffe://other.org/ns/a/sa/b"]}),
            "spiffe_trust_domain",
        ),
        (
            json!({"common_name": "x.mesh.local", "sans": ["spiffe://example.org/a/b"]}),
            "spiffe_path_pattern",
        ),
        (json!({"common_name": "*.mesh.local"}), "allow_wildcards"),
        (
            json!({"common_name": "x.mesh.local", "role": "other"}),
            "token_role_mismatch",
        ),
    ];
    for (body, rule) in cases {
        let (status, answer) = s
            .call("POST", "/v1/issue", Some(&t), Some(body.clone()))
            .await;
        assert_eq!(status, 403, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(rule) || error_code(&answer) == rule,
            "{body}: {answer}"
        );
    }
    let (status, answer) = s
        .call(
            "POST",
            "/v1/issue",
            Some(&t),
            Some(json!({"common_name": "x.mesh.local", "key_type": "ed25519", "kind": "client"})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_over_mtls_refuses_foreign_expired_and_revoked_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.put_role(mesh_role()).await;
    let t = s.role_token().await;
    let (_, body) = s
        .call(
            "POST",
            "/v1/issue",
            Some(&t),
            Some(json!({"common_name": "web.mesh.local", "ttl": "2h"})),
        )
        .await;
    let chain = body["certificate"].as_str().unwrap().to_owned();
    let key = body["private_key"].as_str().unwrap().to_owned();
    let old = cert_of(&chain);

    // No client certificate.
    let (status, answer) = s.call("POST", "/v1/renew", None, None).await;
    assert_eq!(
        (status, error_code(&answer)),
        (401, "client_certificate_required")
    );

    // The current certificate renews: same names, same key, new serial.
    let mtls = client(&s.ca_pem, Some((&chain, &key)));
    let (status, answer) = call_with(&mtls, &s.url, "POST", "/v1/renew", None, None).await;
    assert_eq!(status, 200, "{answer}");
    let new = cert_of(answer["certificate"].as_str().unwrap());
    assert_eq!(new.subject(), old.subject());
    assert_eq!(new.subject_alt_names(), old.subject_alt_names());
    assert_eq!(new.public_key(), old.public_key());
    assert_ne!(new.serial(), old.serial());

    // A foreign certificate (another CA) is refused with a JSON error, not a TLS alert.
    let foreign_ca = anchorage_ca::BuiltinCa::init(&anchorage_ca::InitOptions::default()).unwrap();
    let req = anchorage_ca::CertificateRequest::new(
        anchorage_ca::Identity::new("web.mesh.local").unwrap(),
        anchorage_ca::CertKind::Service,
    );
    let foreign = anchorage_ca::Issuer::issue(&foreign_ca, &req)
        .await
        .unwrap();
    let fkey = {
        use secrecy::ExposeSecret as _;
        foreign
            .private_key
            .as_ref()
            .unwrap()
            .to_pkcs8_pem()
            .expose_secret()
            .to_owned()
    };
    let fclient = client(&s.ca_pem, Some((&foreign.chain_pem(), &fkey)));
    let (status, answer) = call_with(&fclient, &s.url, "POST", "/v1/renew", None, None).await;
    assert_eq!(
        (status, error_code(&answer)),
        (401, "certificate_foreign"),
        "{answer}"
    );

    // An expired certificate of this CA.
    let expired = expired_leaf(&s);
    let eclient = client(&s.ca_pem, Some((&expired.0, &expired.1)));
    let (status, answer) = call_with(&eclient, &s.url, "POST", "/v1/renew", None, None).await;
    assert_eq!(
        (status, error_code(&answer)),
        (401, "certificate_expired"),
        "{answer}"
    );

    // A revoked one: the certificate revokes itself, then cannot renew.
    let serial = anchorage_serve::authority::serial_hex(&old);
    let (status, answer) = call_with(
        &mtls,
        &s.url,
        "POST",
        "/v1/revoke",
        None,
        Some(json!({"serial": serial, "reason": "key_compromise"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let mtls = client(&s.ca_pem, Some((&chain, &key)));
    let (status, answer) = call_with(&mtls, &s.url, "POST", "/v1/renew", None, None).await;
    assert_eq!(
        (status, error_code(&answer)),
        (403, "certificate_revoked"),
        "{answer}"
    );

    // And a good renewal still works afterwards (the renewed certificate).
    let chain2 = answer_chain(&s, &t).await;
    let m2 = client(&s.ca_pem, Some((&chain2.0, &chain2.1)));
    assert_eq!(
        call_with(&m2, &s.url, "POST", "/v1/renew", None, None)
            .await
            .0,
        200
    );
    s.server.shutdown().await;
}

async fn answer_chain(s: &Running, t: &str) -> (String, String) {
    let (_, body) = s
        .call(
            "POST",
            "/v1/issue",
            Some(t),
            Some(json!({"common_name": "web2.mesh.local"})),
        )
        .await;
    (
        body["certificate"].as_str().unwrap().to_owned(),
        body["private_key"].as_str().unwrap().to_owned(),
    )
}

/// A leaf of the server's CA that expired an hour ago (signed directly with the CA key).
fn expired_leaf(s: &Running) -> (String, String) {
    use secrecy::ExposeSecret as _;
    let ca = s.server.state().authority.ca();
    let (ca_pair, _) =
        anchorage_ca::keys::load_der(anchorage_ca::KeyForm::Pkcs8, ca.signing_key().pkcs8_der())
            .unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_der(&ca.signing_certificate().der().to_vec().into(), ca_pair)
            .unwrap();
    let (pair, private) = anchorage_ca::keys::generate(KeyType::P256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["old.mesh.local".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "old.mesh.local");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(3);
    params.not_after = now - time::Duration::hours(1);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&pair, &issuer).unwrap();
    (
        cert.pem(),
        private.to_pkcs8_pem().expose_secret().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_the_crl_in_der_and_pem() {
    use x509_parser::prelude::FromDer as _;
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let (_, body) = s
        .call(
            "POST",
            "/v1/issue",
            Some(&s.admin),
            Some(json!({"common_name": "r.example.com"})),
        )
        .await;
    let serial = body["serial_number"].as_str().unwrap().to_owned();
    let crl = |bytes: &[u8]| {
        let (_, crl) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(bytes).unwrap();
        let serials: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| r.raw_serial_as_string().replace(':', ""))
            .collect();
        (crl.next_update().map(|t| t.timestamp()), serials)
    };
    let resp = s
        .client
        .get(format!("{}/v1/crl", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/pkix-crl");
    let (next, serials) = crl(&resp.bytes().await.unwrap());
    assert!(next.unwrap() > time::OffsetDateTime::now_utc().unix_timestamp());
    assert!(serials.is_empty());

    // Unknown serial, bad reason, no admin: refused.
    let (status, answer) = s
        .call(
            "POST",
            "/v1/revoke",
            Some(&s.admin),
            Some(json!({"serial": "01ab"})),
        )
        .await;
    assert_eq!((status, error_code(&answer)), (404, "certificate_unknown"));
    let (status, answer) = s
        .call(
            "POST",
            "/v1/revoke",
            Some(&s.admin),
            Some(json!({"serial": serial, "reason": "bored"})),
        )
        .await;
    assert_eq!((status, error_code(&answer)), (400, "invalid_request"));
    let (status, answer) = s
        .call("POST", "/v1/revoke", None, Some(json!({"serial": serial})))
        .await;
    assert_eq!(
        (status, error_code(&answer)),
        (401, "client_certificate_required")
    );

    let (status, answer) = s
        .call(
            "POST",
            "/v1/revoke",
            Some(&s.admin),
            Some(json!({"serial": serial, "reason": "superseded"})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let der = s
        .client
        .get(format!("{}/v1/crl", s.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (_, serials) = crl(&der);
    assert_eq!(serials, vec![serial.clone()]);
    // Signed by the CA.
    let (_, parsed) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(&der).unwrap();
    let ca = s
        .server
        .state()
        .authority
        .ca()
        .signing_certificate()
        .clone();
    let (_, ca) = x509_parser::certificate::X509Certificate::from_der(ca.der()).unwrap();
    parsed.verify_signature(ca.public_key()).unwrap();
    // PEM, and as a bundle format.
    let pem = s
        .client
        .get(format!("{}/v1/crl?format=pem", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pem.starts_with("-----BEGIN X509 CRL-----"));
    let pem2 = s
        .client
        .get(format!("{}/v1/bundle?format=crl", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(pem, pem2);
    // Revoking again is idempotent.
    let (status, answer) = s
        .call(
            "POST",
            "/v1/revoke",
            Some(&s.admin),
            Some(json!({"serial": serial})),
        )
        .await;
    assert_eq!(
        (status, answer["already_revoked"].as_bool()),
        (200, Some(true))
    );
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_etag_long_poll_formats_acks_and_consumers() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let resp = s
        .client
        .get(format!("{}/v1/bundle", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["etag"], "\"1\"");
    let pem = resp.text().await.unwrap();
    assert_eq!(anchorage_x509::decode(pem.as_bytes()).certificates.len(), 1);
    let resp = s
        .client
        .get(format!("{}/v1/bundle", s.url))
        .header("if-none-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 304);
    for (format, magic) in [("pkcs12", 0x30u8), ("jks", 0xfe)] {
        let bytes = s
            .client
            .get(format!("{}/v1/bundle?format={format}", s.url))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(bytes[0], magic, "{format}");
    }
    let tar = s
        .client
        .get(format!("{}/v1/bundle?format=openssl-dir", s.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names.len(), 1);
    assert!(names[0].ends_with(".0"), "{names:?}");
    let (status, answer) = s.call("GET", "/v1/bundle?format=exe", None, None).await;
    assert_eq!((status, error_code(&answer)), (400, "format_unknown"));

    // Long-poll: a waiter sees the version change made by an admin adding a CA.
    let waiter = {
        let client = s.client.clone();
        let url = s.url.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let resp = client
                .get(format!("{url}/v1/bundle?wait=20"))
                .header("if-none-match", "\"1\"")
                .send()
                .await
                .unwrap();
            (
                resp.status().as_u16(),
                resp.headers()["etag"].to_str().unwrap().to_owned(),
                started.elapsed(),
                resp.text().await.unwrap(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let extra = anchorage_ca::BuiltinCa::init(&anchorage_ca::InitOptions {
        common_name: "Extra CA".into(),
        ..Default::default()
    })
    .unwrap();
    let (status, answer) = s
        .call(
            "POST",
            "/v1/bundle/cas",
            Some(&s.admin),
            Some(json!({"add": extra.root().to_pem()})),
        )
        .await;
    assert_eq!(
        (status, answer["bundle_version"].as_u64()),
        (200, Some(2)),
        "{answer}"
    );
    let (status, etag, waited, body) = waiter.await.unwrap();
    assert_eq!((status, etag.as_str()), (200, "\"2\""));
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert_eq!(
        anchorage_x509::decode(body.as_bytes()).certificates.len(),
        2
    );
    // A timed-out wait answers 304.
    let resp = s
        .client
        .get(format!("{}/v1/bundle?wait=1", s.url))
        .header("if-none-match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 304);
    // A leaf is not a CA; a key is refused.
    let (status, answer) = s.call("POST", "/v1/bundle/cas", Some(&s.admin), Some(json!({"add": s.server.state().authority.issuing_ca_pem() + "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"}))).await;
    assert_eq!(
        (status, error_code(&answer)),
        (400, "private_key_refused"),
        "{answer}"
    );
    // An ordinary change carries no rotation mark (the negative control).
    let rotation = |s: &Running| {
        let (client, url) = (s.client.clone(), s.url.clone());
        async move {
            let resp = client.get(format!("{url}/v1/bundle")).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.headers()
                .get("anchorage-rotation")
                .map(|v| v.to_str().unwrap().to_owned())
        }
    };
    assert_eq!(rotation(&s).await, None);
    // Remove it again, as a deliberate rotation step: that version is marked.
    let fp = extra.root().sha256().hex();
    let (status, answer) = s
        .call(
            "POST",
            "/v1/bundle/cas",
            Some(&s.admin),
            Some(json!({"remove": fp, "deliberate_rotation": true})),
        )
        .await;
    assert_eq!(
        (status, answer["bundle_version"].as_u64()),
        (200, Some(3)),
        "{answer}"
    );
    assert_eq!(rotation(&s).await.as_deref(), Some("deliberate"));

    // Acks and consumers.
    s.put_role(mesh_role()).await;
    let t = s.role_token().await;
    let (status, answer) = s.call("POST", "/v1/acks", Some(&t), Some(json!({"consumer": "node-1", "labels": {"zone": "a"}, "bundle_version": 3, "cert_serial": "40ab", "not_after": "2030-01-01T00:00:00Z"}))).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = s
        .call(
            "POST",
            "/v1/acks",
            Some(&t),
            Some(json!({"consumer": "node-2", "bundle_version": 1, "refused": "bundle version 2 holds no CA certificate"})),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = s
        .call(
            "POST",
            "/v1/acks",
            Some(&t),
            Some(json!({"consumer": "bad name!", "bundle_version": 1})),
        )
        .await;
    assert_eq!((status, error_code(&answer)), (400, "invalid_request"));
    let (status, answer) = s.call("GET", "/v1/consumers", Some(&s.admin), None).await;
    assert_eq!(status, 200);
    let list = answer["consumers"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["state"], "current");
    assert_eq!(list[0]["labels"]["zone"], "a");
    assert_eq!(list[1]["state"], "stale");
    // A refusal is stored and shown; a consumer that refused nothing has none.
    assert_eq!(
        list[1]["refused"],
        "bundle version 2 holds no CA certificate"
    );
    assert!(list[0]["refused"].is_null(), "{}", list[0]);

    // Metrics.
    let _ = s
        .call(
            "POST",
            "/v1/issue",
            Some(&t),
            Some(json!({"common_name": "m.mesh.local"})),
        )
        .await;
    let _ = s
        .call(
            "POST",
            "/v1/issue",
            Some(&t),
            Some(json!({"common_name": "m.evil.com"})),
        )
        .await;
    let text = s
        .client
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "anchorage_issuances_total{role=\"mesh\",operation=\"issue\",outcome=\"issued\"} 1",
        "anchorage_issuances_total{role=\"mesh\",operation=\"issue\",outcome=\"refused\"} 1",
        "anchorage_issuance_duration_seconds_count 2",
        "anchorage_bundle_version 3",
        "anchorage_consumers{state=\"current\"} 1",
        "anchorage_consumers{state=\"stale\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    s.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    s.put_role(mesh_role()).await;
    let t = s.role_token().await;
    let mut serials = Vec::new();
    for i in 0..5 {
        let (status, body) = s
            .call(
                "POST",
                "/v1/issue",
                Some(&t),
                Some(json!({"common_name": format!("n{i}.mesh.local")})),
            )
            .await;
        assert_eq!(status, 200);
        serials.push(body["serial_number"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        s.call(
            "POST",
            "/v1/revoke",
            Some(&s.admin),
            Some(json!({"serial": serials[0]}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.call(
            "POST",
            "/v1/acks",
            Some(&t),
            Some(json!({"consumer": "n0", "bundle_version": 1}))
        )
        .await
        .0,
        200
    );
    let ca_before = s.ca_pem.clone();
    let admin_before = s.admin.clone();
    s.server.shutdown().await;

    let s = start(dir.path()).await;
    assert!(!s.server.serving().ca_created);
    assert!(!s.server.serving().admin_token_created);
    assert_eq!(s.ca_pem, ca_before);
    assert_eq!(s.admin, admin_before);
    for serial in &serials {
        assert!(
            s.server
                .state()
                .store
                .get(&format!("serve.certs.{serial}"))
                .await
                .unwrap()
                .is_some()
        );
    }
    // The role token, the role, the revocation and the ack survived.
    assert_eq!(
        s.call(
            "POST",
            "/v1/issue",
            Some(&t),
            Some(json!({"common_name": "after.mesh.local"}))
        )
        .await
        .0,
        200
    );
    let pem = s
        .client
        .get(format!("{}/v1/crl?format=pem", s.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let der = anchorage_trust_crl_der(&pem);
    use x509_parser::prelude::FromDer as _;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der).unwrap();
    assert_eq!(crl.iter_revoked_certificates().count(), 1);
    let (_, answer) = s.call("GET", "/v1/consumers", Some(&s.admin), None).await;
    assert_eq!(answer["consumers"][0]["consumer"], "n0");
    s.server.shutdown().await;
}

fn anchorage_trust_crl_der(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    p.contents
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_hit_the_header_and_body_timeouts() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let addr = s.server.serving().addr;
    let connect = || async {
        let mut roots = rustls::RootCertStore::empty();
        for f in anchorage_x509::decode(s.ca_pem.as_bytes()).certificates {
            roots
                .add(rustls::pki_types::CertificateDer::from(
                    f.certificate.der().to_vec(),
                ))
                .unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await
            .unwrap()
    };
    // Body: headers promise 100 bytes, 10 arrive; 408 with the JSON error after ~2 s.
    let mut tls = connect().await;
    tls.write_all(b"POST /v1/issue HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"common_n").await.unwrap();
    let mut out = Vec::new();
    let started = std::time::Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"body_timeout\""), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    // Headers never finished: the connection is closed after the header timeout.
    let mut tls = connect().await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: loc")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "the connection stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(1500)
            && started.elapsed() < Duration::from_secs(8)
    );
    // A body declared far above the limit: 413 at once, and the connection is closed.
    let mut tls = connect().await;
    tls.write_all(
        b"POST /v1/issue HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100000000\r\n\r\n{",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "the connection stayed open");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"code\":\"body_too_large\""), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    // The server keeps serving.
    assert_eq!(s.call("GET", "/healthz", None, None).await.0, 200);
    s.server.shutdown().await;
}
