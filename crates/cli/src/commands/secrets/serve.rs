//! `anchorage secrets serve`.

use std::path::PathBuf;

use anchorage_secrets::{GetHandler, JwtPolicy, TransitKey};
use anchorage_secrets_server::{Server, ServerConfig, connect, shutdown_signal};

use super::args::{ServeArgs, StoreKind};
use super::context::{TRANSIT_ENV, connect_failure, key_failure, nats_config, open, seed_source};
use crate::exit::{Code, Failure};

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
        let handler = GetHandler::new(transit, jwt);
        Server::new(handler, stores.values, stores.mappings, config)
            .run(client, shutdown_signal())
            .await
            .map_err(|e| Failure::new(Code::Usage, crate::exit::with_causes(&e)))?;
        eprintln!("anchorage: stopped");
        Ok(Code::Ok)
    })
}
