//! Issue 18: `kill -9` of `anchorage secrets serve` (the real binary, on the embedded store)
//! during admin writes, at random points: after every kill the store opens and every
//! acknowledged write is there.
//!
//! Each round starts the server on the same data directory with admin keys, and four writers
//! send signed, sealed admin requests over a real nats-server (`AdminClient`, as
//! `anchorage secrets put --admin-seed-file` does): puts of new secrets and added mappings.
//! The server is killed with SIGKILL after a delay drawn from a fixed-seed schedule over
//! 0–4 s after spawn (start-up included). Then the test opens the store file itself (which
//! fails while another process holds it, so the dead server's lock is gone too) and checks
//! that every put answered in the round is there with its version and value, and every
//! answered mapping; the next round's server must open the file again. At the end every
//! acknowledged write of every round is checked once more.
//!
//! `ANCHORAGE_SECRETS_KILLS` sets the number of kills: 10 in CI, 200 by hand
//! (`ANCHORAGE_SECRETS_KILLS=200 cargo test -p anchorage --test secrets_kill_random -- --nocapture`).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions
#![allow(clippy::print_stdout)] // what the kills hit, for docs/faults.md

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anchorage_secrets::admin::{AdminClaims, AdminOp, AdminRequest, AdminSigner};
use anchorage_secrets::{SecretLookup, SecretValue, XKey};
use anchorage_secrets_server::{
    AdminCallError, AdminClient, EmbeddedSecrets, Keyring, MappingStore as _, SecretStore as _,
    SeedSource,
};
use anchorage_store::EmbeddedStore;
use anchorage_test_support::nats::NatsServer;
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

/// Seed of the delay schedule: a failure replays with the same delays.
const SEED: u64 = 0x5ec2_e75c_1a11_2026;
/// Delays are drawn from `[0, MAX_DELAY]` after the server is spawned.
const MAX_DELAY: Duration = Duration::from_millis(4000);
const WRITERS: usize = 4;
const STORE_FILE: &str = "secrets.redb";

/// xorshift64*: enough for a delay schedule.
struct Schedule(u64);

impl Schedule {
    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn private_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    writeln!(file, "{text}").unwrap();
    path
}

/// Kills the server if a panic leaves it running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Setup {
    dir: tempfile::TempDir,
    nats_url: String,
    encryption: PathBuf,
    keys: PathBuf,
    transit: String,
    admin: SecretString,
}

impl Setup {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&self) -> KillOnDrop {
        let child = Command::new(env!("CARGO_BIN_EXE_anchorage"))
            .args(["secrets", "serve", "--nats-url", &self.nats_url])
            .arg("--data-dir")
            .arg(self.data())
            .arg("--encryption-seed-file")
            .arg(&self.encryption)
            .arg("--admin-keys-file")
            .arg(&self.keys)
            .args(["--allow-any-issuer"])
            .env_remove("ANCHORAGE_LOG")
            .env_remove("ANCHORAGE_DATA_DIR")
            .env_remove("ANCHORAGE_NATS_URL")
            .env_remove("ANCHORAGE_SECRETS_ENCRYPTION_SEED")
            .env("ANCHORAGE_SECRETS_TRANSIT_SEED", &self.transit)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        KillOnDrop(child)
    }
}

fn put_request(key: &str, value: &str) -> AdminRequest {
    AdminRequest {
        op: Some(AdminOp::Put),
        claims: AdminClaims {
            key: Some(key.into()),
            ..AdminClaims::default()
        },
        value: Some(Zeroizing::new(value.as_bytes().to_vec())),
    }
}

fn mapping_request(entity: &str, secret: &str) -> AdminRequest {
    AdminRequest {
        op: Some(AdminOp::AddMapping),
        claims: AdminClaims {
            entity: Some(entity.into()),
            secrets: vec![secret.to_owned()],
            ..AdminClaims::default()
        },
        value: None,
    }
}

/// What the server acknowledged: each put (key → (version, value)) and each mapping
/// (entity → secrets).
#[derive(Default)]
struct Acked {
    puts: BTreeMap<String, (String, String)>,
    mappings: BTreeMap<String, BTreeSet<String>>,
}

/// One writer: puts a new secret, then maps a new entity to it, until `stop`; every answered
/// write goes into `acked`. Unanswered ones (the kill) are unknown and not recorded.
async fn writer(
    admin: Arc<AdminClient>,
    round: usize,
    w: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acked>>,
) {
    let mut n = 0usize;
    while !stop.load(Ordering::Acquire) {
        let key = format!("r{round}-w{w}-n{n}");
        let value = format!("value of {key} {}", n * 7919 + round);
        match admin.call(&put_request(&key, &value)).await {
            Ok(plain) => {
                let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
                let version = v["version"].as_str().unwrap().to_owned();
                acked
                    .lock()
                    .unwrap()
                    .puts
                    .insert(key.clone(), (version, value));
            }
            Err(AdminCallError::NoResponders { .. }) => {
                // Not up yet (or dead): try again shortly.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(AdminCallError::Refused(e)) => panic!("{key}: refused: {e}"),
            Err(_) => continue,
        }
        let entity = nkeys::KeyPair::new_module().public_key();
        if admin.call(&mapping_request(&entity, &key)).await.is_ok() {
            acked
                .lock()
                .unwrap()
                .mappings
                .entry(entity)
                .or_default()
                .insert(key);
        }
        n += 1;
    }
}

/// Opens the store file (the killed server's lock must be gone) and checks every acknowledged
/// write. Returns how many puts and mappings were checked.
async fn check(data: &Path, keyring: &Arc<Keyring>, acked: &Acked, when: &str) -> (usize, usize) {
    let raw = match EmbeddedStore::open(data.join(STORE_FILE)) {
        Ok(raw) => raw,
        Err(e) => panic!("{when}: the store does not open: {e}"),
    };
    let store = EmbeddedSecrets::new(Arc::new(raw), Arc::clone(keyring));
    for (key, (version, value)) in &acked.puts {
        // That very version: a put the client gave up on (no answer in time) and sent again
        // may commit after the acknowledged one, as a later version of the same value.
        let lookup = SecretLookup {
            key,
            field: None,
            version: Some(version),
            policy: "{}",
        };
        let found = store.get(lookup).await.unwrap();
        let found = found
            .unwrap_or_else(|| panic!("{when}: acknowledged put {key} version {version} lost"));
        assert_eq!(&found.version, version, "{when}: {key}");
        match &found.value {
            SecretValue::String(s) => assert!(s.expose_secret() == value, "{when}: {key}"),
            SecretValue::Binary(_) => panic!("{when}: {key} came back binary"),
        }
    }
    let mappings = store.list_mappings().await.unwrap();
    for (entity, secrets) in &acked.mappings {
        let stored = mappings
            .get(entity)
            .unwrap_or_else(|| panic!("{when}: acknowledged mapping of {entity} lost"));
        assert!(
            secrets.is_subset(stored),
            "{when}: {entity}: {secrets:?} not in {stored:?}"
        );
    }
    (acked.puts.len(), acked.mappings.len())
}

#[test]
fn kill_9_of_secrets_serve_loses_no_acknowledged_admin_write() {
    let kills: usize = std::env::var("ANCHORAGE_SECRETS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let encryption_seed = XKey::generate().seed();
    let encryption = private_file(
        dir.path(),
        "encryption.seed",
        encryption_seed.expose_secret(),
    );
    let admin = SecretString::from(nkeys::KeyPair::new_user().seed().unwrap());
    let signer = || AdminSigner::from_seed(&admin, "test").unwrap();
    let keys = private_file(
        dir.path(),
        "admin-keys",
        &format!("# operators\n{}\n", signer().public_key()),
    );
    let setup = Setup {
        nats_url: nats.url(),
        encryption: encryption.clone(),
        keys,
        transit: XKey::generate().seed().expose_secret().to_owned(),
        admin: admin.clone(),
        dir,
    };
    let keyring = Arc::new(Keyring::new(
        XKey::load(&SeedSource::File(encryption)).unwrap(),
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let mut schedule = Schedule(SEED);
    let mut all = Acked::default();
    let (mut during_start, mut under_load) = (0usize, 0usize);
    rt.block_on(async {
        let nc = anchorage_secrets_server::async_nats::connect(setup.nats_url.as_str())
            .await
            .unwrap();
        let admin = Arc::new(
            AdminClient::new(
                nc,
                "wasmcloud.secrets",
                "nats-kv",
                AdminSigner::from_seed(&setup.admin, "test").unwrap(),
            )
            .with_timeout(Duration::from_millis(1500)),
        );
        for round in 0..kills {
            let delay = MAX_DELAY.mul_f64(schedule.next_unit());
            let mut child = setup.spawn();
            let stop = Arc::new(AtomicBool::new(false));
            let acked = Arc::new(Mutex::new(Acked::default()));
            let tasks: Vec<_> = (0..WRITERS)
                .map(|w| {
                    tokio::spawn(writer(
                        Arc::clone(&admin),
                        round,
                        w,
                        Arc::clone(&stop),
                        Arc::clone(&acked),
                    ))
                })
                .collect();
            tokio::time::sleep(delay).await;
            child.0.kill().unwrap();
            child.0.wait().unwrap();
            stop.store(true, Ordering::Release);
            for task in tasks {
                task.await.unwrap();
            }
            let acked = Arc::try_unwrap(acked)
                .ok()
                .unwrap()
                .into_inner()
                .unwrap();
            if acked.puts.is_empty() {
                during_start += 1;
            } else {
                under_load += 1;
            }
            check(&setup.data(), &keyring, &acked, &format!("round {round}")).await;
            all.puts.extend(acked.puts);
            for (entity, secrets) in acked.mappings {
                all.mappings.entry(entity).or_default().extend(secrets);
            }
        }
        // The last server is dead: one more start must open the file; then the whole check.
        let (puts, mappings) = check(&setup.data(), &keyring, &all, "at the end").await;
        println!(
            "{kills} kills ({during_start} before the first acknowledged write, {under_load} under load) in {:.0?}: {puts} puts and {mappings} mappings acknowledged, none lost",
            started.elapsed()
        );
        assert!(
            under_load * 2 >= kills,
            "too few kills landed under load: {under_load} of {kills}"
        );
    });
    drop(nats);
}
