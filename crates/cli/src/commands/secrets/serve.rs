//! `anchorage secrets serve`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anchorage_secrets::admin::{AdminPolicy, check_admin_key};
use anchorage_secrets::{GetHandler, JwtPolicy, TransitKey};
use anchorage_secrets_server::{AdminService, Server, ServerConfig, connect, shutdown_signal};

use super::args::{ServeArgs, StoreKind};
use super::context::{
    ENCRYPTION_ENV, TRANSIT_ENV, connect_failure, key_failure, nats_config, open, seed_source,
};
use crate::exit::{Code, Failure, with_causes};

/// The admin keys of `--admin-key` and `--admin-keys-file`.
fn admin_keys(args: &ServeArgs) -> Result<BTreeSet<String>, Failure> {
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

pub(crate) fn serve(args: ServeArgs, tls_ca_paths: &[PathBuf]) -> Result<Code, Failure> {
    let Some(transit_source) = seed_source(args.transit_seed_file.as_deref(), TRANSIT_ENV) else {
        return Err(Failure::new(
            Code::Usage,
            "no transit seed: set ANCHORAGE_SECRETS_TRANSIT_SEED or give --transit-seed-file (an xkey seed, SX…; hosts cache its public key, so keep it stable)",
        ));
    };
    let transit = transit_source
        .read()
        .and_then(|seed| TransitKey::from_seed(&seed, &transit_source.origin()))
        .map_err(|e| key_failure(&e))?;
    let mut jwt = JwtPolicy::default();
    jwt.entity_issuers
        .extend(args.entity_issuer.iter().cloned());
    jwt.host_issuers.extend(args.host_issuer.iter().cloned());
    let mut config = ServerConfig::new(&args.prefix, &args.store.backend);
    if let Some(group) = &args.queue_group {
        config.queue_group.clone_from(group);
    }
    config.max_in_flight = args.max_in_flight;
    config.max_request_bytes = args.max_request_bytes;
    let admin_keys = admin_keys(&args)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Code::Failure, format!("cannot start a runtime: {e}")))?;
    runtime.block_on(async {
        let needs_values_key = args.store.store != StoreKind::Openbao;
        let stores = open(&args.store, tls_ca_paths, needs_values_key, true).await?;
        let client = match stores.nats {
            Some(c) => c,
            None => connect(nats_config(&args.store.nats, tls_ca_paths)?)
                .await
                .map_err(|e| connect_failure(&e))?,
        };
        eprintln!(
            "anchorage: serving {}.> (queue group {}, {} store, server xkey {})",
            config.base_subject(),
            config.queue_group,
            stores.values.kind(),
            transit.public_key()
        );
        let mut admin = None;
        if !admin_keys.is_empty() {
            let subjects =
                anchorage_secrets::admin::AdminSubjects::new(&args.prefix, &args.store.backend);
            eprintln!(
                "anchorage: administration on {} for {} admin key(s)",
                subjects.wildcard(),
                admin_keys.len()
            );
            // Rotation over NATS re-reads this source (a file can change; a variable cannot).
            let source = needs_values_key
                .then(|| seed_source(args.store.encryption_seed_file.as_deref(), ENCRYPTION_ENV))
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
        server
            .run(client, shutdown_signal())
            .await
            .map_err(|e| Failure::new(Code::Usage, with_causes(&e)))?;
        eprintln!("anchorage: stopped");
        Ok(Code::Ok)
    })
}
