//! `anchorage secrets serve`.

use std::collections::BTreeSet;

use anchorage_secrets::admin::{AdminPolicy, check_admin_key};
use anchorage_secrets::{GetHandler, JwtPolicy, XKey};
use anchorage_secrets_server::{AdminService, Server, ServerConfig, StopSignals, connect};

use super::args::{ProtocolArgs, ServeArgs, StoreKind};
use super::context::{
    ENCRYPTION_ENV, TRANSIT_ENV, connect_failure, key_failure, nats_config, open, seed_source,
};
use crate::exit::{Code, Failure, with_causes};
use crate::globals::Outbound;

/// The admin keys of `--admin-key` and `--admin-keys-file`.
fn admin_keys(args: &ProtocolArgs) -> Result<BTreeSet<String>, Failure> {
    let mut keys = BTreeSet::new();
    for key in &args.admin_key {
        keys.insert(
            check_admin_key(key)
                .map_err(|e| Failure::new(Code::Usage, format!("--admin-key: {e}")))?,
        );
    }
    if let Some(path) = &args.admin_keys_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::new(
                Code::BadInput,
                format!("cannot read the admin keys file {}: {e}", path.display()),
            )
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.insert(check_admin_key(line).map_err(|e| {
                Failure::new(
                    Code::BadInput,
                    format!("{} line {}: {e}", path.display(), n + 1),
                )
            })?);
        }
        if keys.is_empty() {
            return Err(Failure::new(
                Code::BadInput,
                format!("the admin keys file {} holds no key", path.display()),
            ));
        }
    }
    Ok(keys)
}

/// The issuer allow-lists of `--entity-issuer` and `--host-issuer`. Both are required unless
/// `--allow-any-issuer`: without them, anyone who can publish on the get subject can mint a
/// host token and a component token for a mapped entity's key (issue 19, item 2).
fn jwt_policy(args: &ProtocolArgs) -> Result<JwtPolicy, Failure> {
    let mut jwt = JwtPolicy::default();
    for key in &args.entity_issuer {
        if !anchorage_secrets::is_account_key(key) {
            return Err(Failure::new(
                Code::Usage,
                format!(
                    "--entity-issuer {key:?} is not an account public key (A…): give the accounts that sign your components and providers"
                ),
            ));
        }
        jwt.entity_issuers.insert(key.clone());
    }
    for key in &args.host_issuer {
        if !anchorage_secrets::is_cluster_key(key) {
            return Err(Failure::new(
                Code::Usage,
                format!(
                    "--host-issuer {key:?} is not a cluster public key (C…): give the lattice's cluster key(s), which sign the hosts' JWTs"
                ),
            ));
        }
        jwt.host_issuers.insert(key.clone());
    }
    if !args.allow_any_issuer {
        let mut missing = Vec::new();
        if jwt.any_host_issuer() {
            missing.push("--host-issuer C… (the lattice's cluster key, which signs host JWTs)");
        }
        if jwt.any_entity_issuer() {
            missing
                .push("--entity-issuer A… (each account that signs your components and providers)");
        }
        if !missing.is_empty() {
            return Err(Failure::new(
                Code::Usage,
                format!(
                    "no issuer allow-list: pass {}; without them anyone who can publish on the get subject can mint tokens and read mapped secrets. To accept any issuer anyway (tests, closed networks), pass --allow-any-issuer",
                    missing.join(" and ")
                ),
            ));
        }
    }
    Ok(jwt)
}

/// `ANY` or the keys, for the startup line.
fn describe(keys: &BTreeSet<String>) -> String {
    if keys.is_empty() {
        "ANY".to_owned()
    } else {
        keys.iter().cloned().collect::<Vec<_>>().join(",")
    }
}

/// The protocol side of a secrets backend, from its options: what `secrets serve` and
/// `anchorage serve --secrets` both run.
pub(crate) struct Protocol {
    /// The transit key.
    pub(crate) transit: XKey,
    /// The issuer allow-lists.
    pub(crate) jwt: JwtPolicy,
    /// The admin keys (empty: no administration over NATS).
    pub(crate) admin_keys: BTreeSet<String>,
    /// Subjects, queue group and limits (drain and store timeouts at their defaults).
    pub(crate) config: ServerConfig,
}

/// Reads the transit seed and checks the protocol options for `backend`.
pub(crate) fn protocol(args: &ProtocolArgs, backend: &str) -> Result<Protocol, Failure> {
    let Some(transit_source) = seed_source(args.transit_seed_file.as_deref(), TRANSIT_ENV) else {
        return Err(Failure::new(
            Code::Usage,
            "no transit seed: set ANCHORAGE_SECRETS_TRANSIT_SEED or give --transit-seed-file (an xkey seed, SX…; hosts cache its public key, so keep it stable)",
        ));
    };
    let transit = transit_source
        .read()
        .and_then(|seed| XKey::from_seed(&seed, &transit_source.origin()))
        .map_err(|e| key_failure(&e))?;
    let jwt = jwt_policy(args)?;
    let mut config = ServerConfig::new(&args.prefix, backend);
    if let Some(group) = &args.queue_group {
        config.queue_group.clone_from(group);
    }
    config.max_in_flight = args.max_in_flight;
    config.max_request_bytes = args.max_request_bytes;
    let admin_keys = admin_keys(args)?;
    Ok(Protocol {
        transit,
        jwt,
        admin_keys,
        config,
    })
}

/// Warns on stderr when `--allow-any-issuer` leaves an issuer open.
pub(crate) fn warn_any_issuer(jwt: &JwtPolicy, config: &ServerConfig) {
    if jwt.any_host_issuer() || jwt.any_entity_issuer() {
        eprintln!(
            "anchorage: WARNING: --allow-any-issuer: JWTs signed by ANY {} are accepted; anyone who can publish on {}.get can mint tokens for a mapped entity's key and read its secrets (unless its mapping is bound with add-mapping --issuer)",
            match (jwt.any_host_issuer(), jwt.any_entity_issuer()) {
                (true, true) => "host or entity issuer",
                (true, false) => "host issuer",
                _ => "entity issuer",
            },
            config.base_subject()
        );
    }
}

pub(crate) fn serve(args: ServeArgs, outbound: &Outbound) -> Result<Code, Failure> {
    let Protocol {
        transit,
        jwt,
        admin_keys,
        mut config,
    } = protocol(&args.protocol, &args.store.backend)?;
    config.drain_timeout = args.drain_timeout;
    config.store_timeout = args.store_timeout;
    if args.store.store == StoreKind::Kubernetes && !admin_keys.is_empty() {
        return Err(Failure::new(
            Code::Usage,
            "--admin-key with --store kubernetes: the store is read-only and mappings live in its ConfigMap; administer Kubernetes Secrets and that ConfigMap with kubectl",
        ));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Code::Failure, format!("cannot start a runtime: {e}")))?;
    let result = runtime.block_on(async {
        let needs_values_key =
            !matches!(args.store.store, StoreKind::Openbao | StoreKind::Kubernetes);
        let stores = open(&args.store, outbound, needs_values_key, true).await?;
        let client = match stores.nats {
            Some(c) => c,
            None => connect(nats_config(&args.store.nats, outbound)?)
                .await
                .map_err(|e| connect_failure(&e))?,
        };
        warn_any_issuer(&jwt, &config);
        eprintln!(
            "anchorage: serving {}.> (queue group {}, {} store, server xkey {}, host issuers {}, entity issuers {}{})",
            config.base_subject(),
            config.queue_group,
            stores.values.kind(),
            transit.public_key(),
            describe(&jwt.host_issuers),
            describe(&jwt.entity_issuers),
            if args.protocol.allow_any_issuer {
                ", --allow-any-issuer"
            } else {
                ""
            }
        );
        if let Some((replicas, buckets)) = &stores.buckets {
            eprintln!(
                "anchorage: jetstream: buckets created get {} replica(s) ({}); reads: {}",
                replicas.replicas,
                replicas.reason,
                if args.store.consistent_reads {
                    "through the stream leader (--consistent-reads)"
                } else {
                    "direct gets from any replica"
                }
            );
            for bucket in buckets {
                if bucket.under_replicated() || !bucket.serializable_cas {
                    eprintln!("anchorage: WARNING: {bucket}");
                } else {
                    eprintln!("anchorage: {bucket}");
                }
            }
        }
        let mut admin = None;
        if !admin_keys.is_empty() {
            let subjects =
                anchorage_secrets::admin::AdminSubjects::new(&args.protocol.prefix, &args.store.backend);
            eprintln!(
                "anchorage: administration on {} for {} admin key(s)",
                subjects.wildcard(),
                admin_keys.len()
            );
            // Rotation over NATS re-reads this source (a file can change; a variable cannot).
            let source = needs_values_key
                .then(|| seed_source(args.store.keys.encryption_seed_file.as_deref(), ENCRYPTION_ENV))
                .flatten();
            admin = Some(
                AdminService::new(
                    AdminPolicy::new(admin_keys),
                    &args.store.backend,
                    stores.keyring.clone(),
                    source,
                )
                .with_replay_guard(stores.replay.clone()),
            );
        }
        let handler = GetHandler::new(transit, jwt);
        let mut server = Server::new(handler, stores.values, stores.mappings, config);
        if let Some(admin) = admin {
            server = server.with_admin(admin);
        }
        // The handlers are installed only now: a signal during start-up still kills at once.
        let mut signals = StopSignals::new().map_err(|e| {
            Failure::new(Code::Failure, format!("cannot listen for SIGTERM/SIGINT: {e}"))
        })?;
        let drain = args.drain_timeout;
        let (first, stop) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let name = signals.recv().await;
            eprintln!(
                "anchorage: {name} received: draining (up to {} s; send it again to exit at once)",
                drain.as_secs_f32()
            );
            let _ = first.send(());
            let name = signals.recv().await;
            eprintln!(
                "anchorage: second signal ({name}): exiting at once, drain cut short (exit {})",
                Code::DrainCutShort as u8
            );
            std::process::exit(i32::from(Code::DrainCutShort as u8));
        });
        let stopped = server
            .run(client, async {
                let _ = stop.await;
            })
            .await
            .map_err(|e| Failure::new(Code::Usage, with_causes(&e)))?;
        if stopped.drained() {
            eprintln!("anchorage: stopped: {stopped}");
            Ok(Code::Ok)
        } else {
            eprintln!(
                "anchorage: stopped: {stopped} (exit {})",
                Code::DrainCutShort as u8
            );
            Ok(Code::DrainCutShort)
        }
    });
    // Nothing may hold the exit: not a NATS client still trying to reconnect, nor a store call
    // of an abandoned request.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}
