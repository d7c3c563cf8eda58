//! The administration commands: against the store directly, or, with an admin seed, sent to
//! the running server over its admin subjects (`remote`).

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anchorage_secrets::{SecretLookup, SecretValue};
use anchorage_secrets_server::{EncryptionKey, Keyring, SecretStore, StoreFailure};
use base64::Engine as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;
use zeroize::Zeroizing;

use super::args::{GetArgs, PutArgs, RotateArgs, SecretsCommand, StoreKind};
use super::context::{NEW_ENCRYPTION_ENV, key_failure, keyring, open, seed_source, store_failure};
use crate::args::OutputFormat;
use crate::exit::{Code, Failure};
use crate::render::print_json;

pub(crate) fn run(cmd: SecretsCommand, tls_ca_paths: &[PathBuf]) -> Result<Code, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Code::Failure, format!("cannot start a runtime: {e}")))?;
    runtime.block_on(run_async(cmd, tls_ca_paths))
}

fn fail(e: &StoreFailure) -> Failure {
    store_failure(e)
}

async fn run_async(cmd: SecretsCommand, tls_ca_paths: &[PathBuf]) -> Result<Code, Failure> {
    if let Some(remote) = cmd.remote()
        && let Some(seed) = super::remote::admin_seed(remote)?
    {
        return super::remote::run(&cmd, remote, seed, tls_ca_paths).await;
    }
    let Some(store_args) = cmd.store() else {
        return Ok(Code::Usage);
    };
    match &cmd {
        SecretsCommand::Serve(_) | SecretsCommand::Keygen(_) => Ok(Code::Usage),
        SecretsCommand::Put(a) => {
            let value = read_value(a)?;
            let needs_key = store_args.store != StoreKind::Openbao;
            let stores = open(store_args, tls_ca_paths, needs_key, true).await?;
            let version = stores
                .values
                .put(&a.name, value)
                .await
                .map_err(|e| fail(&e))?;
            if a.output == OutputFormat::Json {
                print_json(
                    &json!({ "key": a.name, "version": crate::io::version_json(&version), "store": stores.values.kind() }),
                );
            } else {
                outln!(
                    "stored {} version {version} ({} store)",
                    a.name,
                    stores.values.kind()
                );
            }
            Ok(Code::Ok)
        }
        SecretsCommand::Get(a) => get(a, tls_ca_paths).await,
        SecretsCommand::Delete(a) => {
            let stores = open(store_args, tls_ca_paths, false, false).await?;
            let existed = stores.values.delete(&a.name).await.map_err(|e| fail(&e))?;
            if !existed {
                return Err(Failure::new(
                    Code::NotFound,
                    format!(
                        "no secret {:?} in the {} store",
                        a.name,
                        stores.values.kind()
                    ),
                ));
            }
            if a.output == OutputFormat::Json {
                print_json(&json!({ "key": a.name, "deleted": true }));
            } else {
                outln!("deleted {}", a.name);
            }
            Ok(Code::Ok)
        }
        SecretsCommand::List(a) => {
            let stores = open(store_args, tls_ca_paths, false, false).await?;
            let keys = stores.values.keys().await.map_err(|e| fail(&e))?;
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
            let stores = open(store_args, tls_ca_paths, false, adding).await?;
            let now = if adding {
                stores.mappings.add_mapping(&a.entity, &entries).await
            } else {
                stores.mappings.remove_mapping(&a.entity, &entries).await
            }
            .map_err(|e| fail(&e))?;
            if adding {
                warn_missing_secrets(a, stores.values.as_ref()).await;
            }
            if a.output == OutputFormat::Json {
                print_json(&json!({ "entity": a.entity, "secrets": now }));
            } else if now.is_empty() {
                outln!("{} may read no secret", a.entity);
            } else {
                let names: Vec<&str> = now.iter().map(String::as_str).collect();
                outln!("{} may read: {}", a.entity, names.join(", "));
            }
            Ok(Code::Ok)
        }
        SecretsCommand::ListMappings(a) => {
            let stores = open(store_args, tls_ca_paths, false, false).await?;
            let mut all = stores
                .mappings
                .list_mappings()
                .await
                .map_err(|e| fail(&e))?;
            if let Some(entity) = &a.entity {
                all.retain(|k, _| k == entity);
            }
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
        SecretsCommand::RotateEncryptionKey(a) => rotate(a, tls_ca_paths).await,
    }
}

/// Warns about each mapped secret the values store does not hold (yet): the mapping is kept
/// (a secret may be put later), but a typo would otherwise only show as a host's "not found".
/// Secrets bound to another OpenBao mount are not checked, nor is anything when the store
/// cannot list its keys.
async fn warn_missing_secrets(a: &super::args::MappingArgs, values: &dyn SecretStore) {
    if a.mount.is_some() {
        return;
    }
    let keys = match values.keys().await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::debug!(error = %e, "cannot list the secrets to check the mapping");
            return;
        }
    };
    for name in &a.secrets {
        if !keys.iter().any(|k| k == name) {
            diagln!(
                "anchorage: warning: no secret {name:?} in the {} store (yet): {} may read it once it is put (`anchorage secrets put {name} ...`); check the name",
                values.kind(),
                a.entity
            );
        }
    }
}

pub(crate) fn read_value(a: &PutArgs) -> Result<SecretValue, Failure> {
    let bad = |m: String| Failure::new(Code::BadInput, m);
    let bytes: Zeroizing<Vec<u8>> = if let Some(var) = &a.value_env {
        let v = std::env::var_os(var)
            .ok_or_else(|| bad(format!("environment variable {var} is not set")))?;
        Zeroizing::new(v.into_encoded_bytes())
    } else if let Some(path) = &a.value_file {
        // `--value-file -` is standard input, as `--value-stdin`.
        crate::io::read_input("--value-file", path)?
    } else if a.value_stdin {
        crate::io::read_stdin("--value-stdin")?
    } else if let Some(v) = &a.value {
        Zeroizing::new(v.as_bytes().to_vec())
    } else {
        return Err(Failure::new(
            Code::Usage,
            "give the value with --value-env, --value-file, --value-stdin or --value",
        ));
    };
    if a.binary {
        return Ok(SecretValue::Binary(Box::<[u8]>::from(&bytes[..]).into()));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        bad("the value is not UTF-8 text: add --binary to store it as bytes".to_owned())
    })?;
    Ok(SecretValue::String(SecretString::from(text.to_owned())))
}

async fn get(a: &GetArgs, tls_ca_paths: &[PathBuf]) -> Result<Code, Failure> {
    // Without --reveal the embedded store tells version, kind and size from the record alone:
    // no encryption seed is needed. JetStream's must open the value to tell.
    let needs_key = match a.store.store {
        StoreKind::Embedded => a.reveal,
        StoreKind::Jetstream => true,
        StoreKind::Openbao => false,
    };
    let stores = open(&a.store, tls_ca_paths, needs_key, false).await?;
    let lookup = SecretLookup {
        key: &a.name,
        field: a.field.as_deref(),
        version: a.version.as_deref(),
        policy: "",
    };
    let not_found = || {
        let version = a
            .version
            .as_deref()
            .map_or(String::new(), |v| format!(" version {v}"));
        Failure::new(
            Code::NotFound,
            format!(
                "no secret {:?}{version} in the {} store",
                a.name,
                stores.values.kind()
            ),
        )
    };
    if !a.reveal {
        let info = stores
            .values
            .describe(lookup)
            .await
            .map_err(|e| fail(&e))?
            .ok_or_else(not_found)?;
        let kind = if info.string { "string" } else { "binary" };
        if a.output == OutputFormat::Json {
            print_json(
                &json!({ "key": a.name, "version": info.version, "kind": kind, "bytes": info.bytes }),
            );
        } else {
            outln!(
                "{} version {} ({kind}, {} bytes; --reveal prints it)",
                a.name,
                info.version,
                info.bytes
            );
        }
        return Ok(Code::Ok);
    }
    let found = stores.values.get(lookup).await.map_err(|e| fail(&e))?;
    let Some(secret) = found else {
        return Err(not_found());
    };
    let (kind, len) = match &secret.value {
        SecretValue::String(s) => ("string", s.expose_secret().len()),
        SecretValue::Binary(b) => ("binary", b.expose_secret().len()),
    };
    if a.output == OutputFormat::Json {
        let mut doc = json!({ "key": a.name, "version": crate::io::version_json(&secret.version), "kind": kind, "bytes": len });
        if a.reveal {
            // The JSON text is a copy of the value by nature; it goes to stdout only.
            doc["value"] = match &secret.value {
                SecretValue::String(s) => json!(s.expose_secret()),
                SecretValue::Binary(b) => {
                    json!(base64::engine::general_purpose::STANDARD.encode(b.expose_secret()))
                }
            };
            doc["encoding"] = json!(if kind == "string" { "utf-8" } else { "base64" });
        }
        print_json(&doc);
        return Ok(Code::Ok);
    }
    if !a.reveal {
        outln!(
            "{} version {} ({kind}, {len} bytes; --reveal prints it)",
            a.name,
            secret.version
        );
        return Ok(Code::Ok);
    }
    let stdout = std::io::stdout();
    match &secret.value {
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

async fn rotate(a: &RotateArgs, tls_ca_paths: &[PathBuf]) -> Result<Code, Failure> {
    if a.store.store == StoreKind::Openbao {
        return Err(Failure::new(
            Code::Usage,
            "the openbao store keeps no encryption key of ours: OpenBao encrypts its own storage",
        ));
    }
    let Some(new_source) = seed_source(a.new_seed_file.as_deref(), &[NEW_ENCRYPTION_ENV]) else {
        return Err(Failure::new(
            Code::Usage,
            "no new encryption seed: set ANCHORAGE_SECRETS_NEW_ENCRYPTION_SEED or give --new-seed-file",
        ));
    };
    let new = EncryptionKey::load(&new_source).map_err(|e| key_failure(&e))?;
    let current = keyring(&a.store)?;
    let new_public = new.public_key().to_owned();
    // Seal with the new key; open with it or with the current (and previous) keys.
    let old = EncryptionKey::from_seed(&current.current().seed(), "current")
        .map_err(|e| key_failure(&e))?;
    let ring = Keyring::new(new).with_previous(old);
    let stores = super::context::open_with_keyring(&a.store, tls_ca_paths, ring).await?;
    let report = stores.values.reencrypt().await.map_err(|e| fail(&e))?;
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
