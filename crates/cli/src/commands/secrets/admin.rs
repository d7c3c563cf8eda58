//! The administration commands: against the store directly, through the executor the
//! server's admin service also runs (`anchorage_secrets_server::admin::Executor`), or, with an
//! admin seed, sent to the running server over its admin subjects (`remote`).

use std::io::IsTerminal as _;

use anchorage_secrets::{SecretValue, XKey};
use anchorage_secrets_server::{
    Executor, Keyring, Operation, OperationError, Outcome, StoreFailure,
};
use base64::Engine as _;
use secrecy::ExposeSecret as _;
use serde_json::json;

use super::args::{GetArgs, RotateArgs, SecretsCommand, StoreKind};
use super::context::{
    NEW_ENCRYPTION_ENV, Stores, key_failure, keyring, open, read_value, seed_source, store_failure,
    warn_missing_secrets,
};
use crate::exit::Classify as _;
use crate::exit::{Code, Failure, with_causes};
use crate::globals::Outbound;
use crate::options::OutputFormat;
use crate::render::print_json;

pub(crate) fn run(cmd: SecretsCommand, outbound: &Outbound) -> Result<Code, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Code::Failure, format!("cannot start a runtime: {e}")))?;
    runtime.block_on(run_async(cmd, outbound))
}

fn fail(e: &StoreFailure) -> Failure {
    store_failure(e)
}

/// The exit code and message of an operation the shared executor refused; store failures as
/// everywhere else in `secrets`.
fn op_failure(e: OperationError) -> Failure {
    let code = e.code();
    match e {
        OperationError::InvalidArgument(m)
        | OperationError::NotFound(m)
        | OperationError::Unsupported(m) => Failure::new(code, m),
        OperationError::Store(e) => fail(&e),
        other => Failure::new(code, with_causes(&other)),
    }
}

/// Runs `op` in-process with the executor the admin service also runs.
async fn execute(stores: &Stores, op: Operation<'_>) -> Result<Outcome, Failure> {
    Executor::new(
        stores.values.as_ref(),
        stores.mappings.as_ref(),
        stores.keyring.as_deref(),
    )
    .run(op)
    .await
    .map_err(op_failure)
}

async fn run_async(cmd: SecretsCommand, outbound: &Outbound) -> Result<Code, Failure> {
    if let Some(remote) = cmd.remote()
        && let Some(seed) = super::remote::admin_seed(remote)?
    {
        return super::remote::run(&cmd, remote, seed, outbound).await;
    }
    let Some(store_args) = cmd.store() else {
        return Ok(Code::Usage);
    };
    match &cmd {
        SecretsCommand::Serve(_) | SecretsCommand::Keygen(_) => Ok(Code::Usage),
        SecretsCommand::Put(a) => {
            let value = read_value(a)?;
            let needs_key = !matches!(store_args.store, StoreKind::Openbao | StoreKind::Kubernetes);
            let stores = open(store_args, outbound, needs_key, true).await?;
            let Outcome::Put {
                key,
                version,
                store,
            } = execute(
                &stores,
                Operation::Put {
                    key: &a.name,
                    value,
                },
            )
            .await?
            else {
                return Err(unexpected());
            };
            if a.output == OutputFormat::Json {
                print_json(
                    &json!({ "key": key, "version": crate::io::version_json(&version), "store": store }),
                );
            } else {
                outln!("stored {key} version {version} ({store} store)");
            }
            Ok(Code::Ok)
        }
        SecretsCommand::Get(a) => get(a, outbound).await,
        SecretsCommand::Delete(a) => {
            let stores = open(store_args, outbound, false, false).await?;
            let Outcome::Deleted { key } =
                execute(&stores, Operation::Delete { key: &a.name }).await?
            else {
                return Err(unexpected());
            };
            if a.output == OutputFormat::Json {
                print_json(&json!({ "key": key, "deleted": true }));
            } else {
                outln!("deleted {key}");
            }
            Ok(Code::Ok)
        }
        SecretsCommand::List(a) => {
            let stores = open(store_args, outbound, false, false).await?;
            let Outcome::Keys(keys) = execute(&stores, Operation::List).await? else {
                return Err(unexpected());
            };
            if a.output == OutputFormat::Json {
                print_json(&json!({ "secrets": keys }));
            } else {
                for k in keys {
                    outln!("{k}");
                }
            }
            Ok(Code::Ok)
        }
        SecretsCommand::AddMapping(a) | SecretsCommand::RemoveMapping(a) => {
            let adding = matches!(cmd, SecretsCommand::AddMapping(_));
            let entries = a.entries()?;
            let stores = open(store_args, outbound, false, adding).await?;
            let op = if adding {
                Operation::AddMapping {
                    entity: &a.entity,
                    secrets: &entries,
                }
            } else {
                Operation::RemoveMapping {
                    entity: &a.entity,
                    secrets: &entries,
                }
            };
            let Outcome::Mapping {
                entity,
                secrets: now,
                missing,
                store,
            } = execute(&stores, op).await?
            else {
                return Err(unexpected());
            };
            warn_missing_secrets(&entity, store, &missing);
            if a.output == OutputFormat::Json {
                print_json(&json!({ "entity": entity, "secrets": now }));
            } else if now.is_empty() {
                outln!("{entity} may read no secret");
            } else {
                let names: Vec<&str> = now.iter().map(String::as_str).collect();
                outln!("{entity} may read: {}", names.join(", "));
            }
            Ok(Code::Ok)
        }
        SecretsCommand::ListMappings(a) => {
            let stores = open(store_args, outbound, false, false).await?;
            let op = Operation::ListMappings {
                entity: a.entity.as_deref(),
            };
            let Outcome::Mappings(all) = execute(&stores, op).await? else {
                return Err(unexpected());
            };
            if a.output == OutputFormat::Json {
                print_json(&json!({ "mappings": all }));
            } else {
                for (entity, names) in &all {
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    outln!("{entity}: {}", names.join(", "));
                }
            }
            Ok(Code::Ok)
        }
        SecretsCommand::RotateEncryptionKey(a) => rotate(a, outbound).await,
    }
}

/// An outcome of another operation than the one run: a bug, not an input.
fn unexpected() -> Failure {
    Failure::new(
        Code::Failure,
        "the secrets executor answered another operation (a bug)",
    )
}

async fn get(a: &GetArgs, outbound: &Outbound) -> Result<Code, Failure> {
    // Without --reveal the embedded store tells version, kind and size from the record alone:
    // no encryption seed is needed. JetStream's must open the value to tell.
    let needs_key = match a.store.store {
        StoreKind::Embedded => a.reveal,
        StoreKind::Jetstream => true,
        StoreKind::Openbao | StoreKind::Kubernetes => false,
    };
    let stores = open(&a.store, outbound, needs_key, false).await?;
    let op = Operation::Get {
        key: &a.name,
        field: a.field.as_deref(),
        version: a.version.as_deref(),
        reveal: a.reveal,
    };
    let Outcome::Secret(secret) = execute(&stores, op).await? else {
        return Err(unexpected());
    };
    let kind = secret.kind();
    let Some(value) = &secret.value else {
        if a.output == OutputFormat::Json {
            print_json(
                &json!({ "key": secret.key, "version": secret.version, "kind": kind, "bytes": secret.bytes }),
            );
        } else {
            outln!(
                "{} version {} ({kind}, {} bytes; --reveal prints it)",
                secret.key,
                secret.version,
                secret.bytes
            );
        }
        return Ok(Code::Ok);
    };
    if a.output == OutputFormat::Json {
        let mut doc = json!({ "key": secret.key, "version": crate::io::version_json(&secret.version), "kind": kind, "bytes": secret.bytes });
        // The JSON text is a copy of the value by nature; it goes to stdout only.
        doc["value"] = match value {
            SecretValue::String(s) => json!(s.expose_secret()),
            SecretValue::Binary(b) => {
                json!(base64::engine::general_purpose::STANDARD.encode(b.expose_secret()))
            }
        };
        doc["encoding"] = json!(if secret.string { "utf-8" } else { "base64" });
        print_json(&doc);
        return Ok(Code::Ok);
    }
    let stdout = std::io::stdout();
    match value {
        SecretValue::String(s) => outln!("{}", s.expose_secret()),
        SecretValue::Binary(b) => {
            if stdout.is_terminal() {
                return Err(Failure::new(
                    Code::Usage,
                    "a binary value is not written to a terminal: redirect stdout, or use --output json (base64)",
                ));
            }
            crate::io::write_stdout_bytes(b.expose_secret())?;
        }
    }
    Ok(Code::Ok)
}

async fn rotate(a: &RotateArgs, outbound: &Outbound) -> Result<Code, Failure> {
    if a.store.store == StoreKind::Openbao {
        return Err(Failure::new(
            Code::Usage,
            "the openbao store keeps no encryption key of ours: OpenBao encrypts its own storage",
        ));
    }
    if a.store.store == StoreKind::Kubernetes {
        return Err(Failure::new(
            Code::Usage,
            "the kubernetes store keeps no encryption key of ours: the API server encrypts Secrets at rest with its own configuration",
        ));
    }
    let Some(new_source) = seed_source(a.new_seed_file.as_deref(), &[NEW_ENCRYPTION_ENV]) else {
        return Err(Failure::new(
            Code::Usage,
            "no new encryption seed: set ANCHORAGE_SECRETS_NEW_ENCRYPTION_SEED or give --new-seed-file",
        ));
    };
    let new = XKey::load(&new_source).map_err(|e| key_failure(&e))?;
    let current = keyring(&a.store.keys)?;
    let new_public = new.public_key().to_owned();
    // Seal with the new key; open with it or with the current (and previous) keys.
    let old = XKey::from_seed(&current.current().seed(), "current").map_err(|e| key_failure(&e))?;
    let ring = Keyring::new(new).with_previous(old);
    let stores = super::context::open_with_keyring(&a.store, outbound, ring).await?;
    let op = Operation::RotateEncryptionKey { reread: None };
    let Outcome::Rotated { report, .. } = execute(&stores, op).await? else {
        return Err(unexpected());
    };
    if a.output == OutputFormat::Json {
        print_json(&json!({ "encryption_key": new_public, "report": report }));
    } else {
        outln!(
            "re-sealed {} value(s) of {} secret(s) with {new_public} ({} already were)",
            report.resealed,
            report.secrets,
            report.already_current
        );
        if report.stale_copies > 0 {
            outln!(
                "{} older revision(s) remain sealed with the previous key",
                report.stale_copies
            );
        }
        outln!("left behind: {}", report.remains);
        outln!("servers now need ANCHORAGE_SECRETS_ENCRYPTION_SEED set to the new seed");
    }
    Ok(Code::Ok)
}
