//! Every request leaves one audit event (target `anchorage::audit`) naming the entity, host,
//! key and outcome, and never the value.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use anchorage_secrets::{SecretValue, TransitKey};
use anchorage_secrets_server::{
    EmbeddedSecrets, EncryptionKey, Keyring, MappingStore, SecretStore, ServerConfig,
};
use anchorage_store::MemoryStore;
use anchorage_test_support::nats::NatsServer;
use common::{BACKEND, Identities, PREFIX, client, get, serve};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_name_who_and_what_never_the_value() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("anchorage::audit=info")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let store = Arc::new(EmbeddedSecrets::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Keyring::new(EncryptionKey::generate())),
    ));
    let ids = Identities::new();
    store
        .put(
            "db-password",
            SecretValue::String("hunter2-very-secret".into()),
        )
        .await
        .unwrap();
    store
        .add_mapping(&ids.entity(), &["db-password".to_owned()])
        .await
        .unwrap();
    let seed = TransitKey::generate().seed();
    let server = serve(
        &nats.url(),
        &seed,
        store.clone(),
        store,
        ServerConfig::new(PREFIX, BACKEND),
    )
    .await;
    let c = client(&nats.url()).await;
    let (s, _, _) = get(&c, ids.request("db-password", None)).await.unwrap();
    assert_eq!(s.as_deref(), Some("hunter2-very-secret"));
    assert!(get(&c, ids.request("other", None)).await.is_err());
    server.stop().await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("anchorage::audit"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let served = lines[0];
    assert!(
        served.contains("result=\"served\"") || served.contains("result=served"),
        "{served}"
    );
    assert!(served.contains(&ids.entity()) && served.contains(&ids.host.public_key()));
    // Both issuers: the account that signed the component, the cluster key that signed the host.
    assert!(served.contains(&format!("entity_issuer=\"{}\"", ids.account.public_key())));
    assert!(served.contains(&format!("host_issuer=\"{}\"", ids.cluster.public_key())));
    assert!(served.contains("key=\"db-password\"") && served.contains("served_version=\"1\""));
    assert!(lines[1].contains("Unauthorized") && lines[1].contains("other"));
    assert!(!text.contains("hunter2"), "{text}");
}
