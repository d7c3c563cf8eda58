//! A TLS server of our own (rustls) that reloads its certificate and its client trust on
//! SIGHUP keeps serving through 10 renewals of its certificate by the agent, with 0 failed
//! handshakes from a client loop, checked per handshake (the server certificate verified
//! against the CA the agent wrote).
//!
//! Its own test binary: it installs a SIGHUP handler for the whole process, and the agent's
//! on-change action signals this process.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anchorage_agent::{Action, Agent, AgentConfig, IdentityConfig, Timing, read_status};
use anchorage_serve::{Limits, ServeConfig, Server};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    anchorage_x509::decode(&std::fs::read(path).unwrap())
        .certificates
        .into_iter()
        .map(|f| CertificateDer::from(f.certificate.der().to_vec()))
        .collect()
}

fn roots(path: &Path) -> Arc<rustls::RootCertStore> {
    let mut store = rustls::RootCertStore::empty();
    for c in certs(path) {
        store.add(c).unwrap();
    }
    Arc::new(store)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's configuration from the agent's files: chain + key, client trust from the
/// bundle (client certificates optional).
fn server_config(id: &IdentityConfig, bundle: &Path) -> Arc<rustls::ServerConfig> {
    let (_, key) = anchorage_ca::keys::load(&std::fs::read(&id.key).unwrap()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()));
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(bundle), provider())
            .allow_unauthenticated()
            .build()
            .unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs(&id.chain), key)
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_server_keeps_serving_through_ten_renewals() {
    // The handler first: the agent's first install already signals.
    let mut hups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();

    let tmp = anchorage_test_support::tempdir().unwrap();
    let data = tmp.path().join("serve");
    let mut sc = ServeConfig::new(&data);
    sc.listen = "127.0.0.1:0".parse().unwrap();
    sc.limits = Limits {
        drain_timeout: Duration::from_secs(2),
        max_wait: Duration::from_secs(30),
        ..Limits::default()
    };
    let server = Server::start(sc).await.unwrap();
    let url = server.serving().url.clone();
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots(&data.join("ca.pem")))
                .with_no_client_auth(),
        )
        .build()
        .unwrap();
    let post = |path: &str, body: serde_json::Value, method: &str| {
        http.request(method.parse().unwrap(), format!("{url}{path}"))
            .bearer_auth(admin.trim())
            .json(&body)
            .send()
    };
    let r = post(
        "/v1/roles/mesh",
        json!({"allowed_domains": ["mesh.local"], "allow_subdomains": true,
               "allowed_kinds": ["server", "service"], "max_ttl_seconds": 3600}),
        "PUT",
    )
    .await
    .unwrap();
    assert!(r.status().is_success());
    let token: serde_json::Value = post(
        "/v1/tokens",
        json!({"kind": "role", "sub": "soak", "role": "mesh"}),
        "POST",
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, token["token"].as_str().unwrap()).unwrap();

    let dir = tmp.path().join("agent");
    let mut config = AgentConfig::new(&url, data.join("ca.pem"), "soak-1", dir.join("status.json"));
    config.token_file = Some(token_file);
    config.trust.pem = Some(dir.join("bundle.pem"));
    let mut id = IdentityConfig::in_dir("soak.mesh.local", dir.join("id"));
    id.ttl = Some(Duration::from_secs(60));
    config.identity = Some(id.clone());
    config.on_change = vec![Action::SignalPid(std::process::id() as i32)];
    // Renew every ~1.2 s (2 % of serve's shortest lifetime, 60 s).
    config.timing = Timing {
        renew_fraction: 0.02,
        wait: Duration::from_secs(20),
        ..Timing::default()
    };
    let status_file = config.status_file.clone();
    let (stop_agent, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(async move {
        let mut agent = Agent::new(config).unwrap();
        agent
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });

    // The first install (and its SIGHUP) before the server starts.
    hups.recv().await;
    let bundle = dir.join("bundle.pem");
    let current = Arc::new(RwLock::new(server_config(&id, &bundle)));
    let reloads = Arc::new(AtomicU64::new(0));
    {
        let (current, reloads, id, bundle) = (
            Arc::clone(&current),
            Arc::clone(&reloads),
            id.clone(),
            bundle.clone(),
        );
        tokio::spawn(async move {
            while hups.recv().await.is_some() {
                *current.write().unwrap() = server_config(&id, &bundle);
                reloads.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    {
        let current = Arc::clone(&current);
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let config = current.read().unwrap().clone();
                tokio::spawn(async move {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let mut buf = [0u8; 4];
                        let _ = tls.read_exact(&mut buf).await;
                        let _ = tls.write_all(b"pong").await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
    }

    // The client loop: every handshake verified against the CA file the agent wrote.
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let serials = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let mut handshakes = 0u64;
    let ca_file: PathBuf = id.ca.clone();
    let start = Instant::now();
    while reloads.load(Ordering::SeqCst) < 10 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "only {} reloads in 60 s: {:?}",
            reloads.load(Ordering::SeqCst),
            read_status(&status_file)
        );
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots(&ca_file))
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = ServerName::try_from("soak.mesh.local").unwrap();
        let result = async {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let mut tls = connector.connect(name, tcp).await?;
            tls.write_all(b"ping").await?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
            Ok::<_, std::io::Error>(leaf)
        }
        .await;
        handshakes += 1;
        match result {
            Ok(leaf) => {
                let cert = anchorage_x509::Certificate::from_der(&leaf).unwrap();
                serials.lock().unwrap().insert(cert.serial().to_owned());
            }
            Err(e) => failures.lock().unwrap().push(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let failures = failures.lock().unwrap().clone();
    let serials = serials.lock().unwrap().len();
    eprintln!(
        "{handshakes} handshakes, {} reloads, {serials} server certificates seen, {} failed",
        reloads.load(Ordering::SeqCst),
        failures.len()
    );
    assert!(failures.is_empty(), "failed handshakes: {failures:?}");
    assert!(
        serials >= 10,
        "the server's certificate changed {serials} times"
    );
    let _ = stop_agent.send(());
    agent.await.unwrap();
    server.shutdown().await;
}
