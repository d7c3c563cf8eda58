//! Every request leaves one audit event (target `anchorage::audit`) naming the entity, host,
//! key and outcome, and never the value.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use anchorage_secrets::{SecretValue, XKey};
use anchorage_secrets_server::{EmbeddedSecrets, Keyring, MappingStore, SecretStore, ServerConfig};
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
        Arc::new(Keyring::new(XKey::generate())),
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
    let seed = XKey::generate().seed();
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
    assert_eq!(
        get(&c, ids.request("other", None)).await.unwrap_err(),
        "server error: Error fetching secret: unauthorized"
    );
    server.stop().await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("anchorage::audit"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let served = lines[0];
    // The whole event after the target, field by field: who (both issuers), what, the outcome.
    let who = format!(
        "entity=\"{}\" entity_kind=Some(Component) entity_issuer=\"{}\" host=\"{}\" host_issuer=\"{}\"",
        ids.entity(),
        ids.account.public_key(),
        ids.host.public_key(),
        ids.cluster.public_key()
    );
    let event = |line: &str| -> String {
        line.split_once("anchorage::audit: ")
            .unwrap_or_else(|| panic!("{line}"))
            .1
            .to_owned()
    };
    assert_eq!(
        event(served),
        format!(
            "secret request result=\"served\" error=\"-\" reason=- {who} key=\"db-password\" field=- requested_version=- mount=- served_version=\"1\""
        )
    );
    assert_eq!(
        event(lines[1]),
        format!(
            "secret request result=\"rejected\" error=\"Unauthorized\" reason=- {who} key=\"other\" field=- requested_version=- mount=- served_version=-"
        )
    );
    assert!(!text.contains("hunter2"), "{text}");
}
