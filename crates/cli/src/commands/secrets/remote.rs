//! The administration commands over NATS: signed by the admin seed, sealed to the running
//! server's transit key, answered by that server from its own store (so the embedded store can
//! be administered while `serve` holds it). Same outputs as against the store.

use std::io::IsTerminal as _;
use std::time::Duration;

use anchorage_secrets::admin::{AdminError, AdminOp, AdminRequest, AdminSigner};
use anchorage_secrets_server::{AdminCallError, AdminClient, connect};
use base64::Engine as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::args::{ADMIN_SEED_ENV, RemoteArgs, SecretsCommand};
use super::context::{connect_failure, nats_config, read_line_file};
use crate::exit::Classify as _;
use crate::exit::{Code, Failure, with_causes};
use crate::globals::Outbound;
use crate::render::print_json;

/// The admin seed, when the command is to go over NATS.
pub(crate) fn admin_seed(remote: &RemoteArgs) -> Result<Option<(SecretString, String)>, Failure> {
    if let Some(path) = &remote.admin_seed_file {
        let seed = read_line_file(path, "admin seed")?;
        return Ok(Some((seed, path.display().to_string())));
    }
    Ok(std::env::var(ADMIN_SEED_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| {
            (
                SecretString::from(v),
                format!("environment variable {ADMIN_SEED_ENV}"),
            )
        }))
}

fn call_failure(e: &AdminCallError) -> Failure {
    let code = e.code();
    let message = match e {
        // The server's words as they are: they name the secret or the key refused.
        AdminCallError::Refused(
            AdminError::NotFound(m)
            | AdminError::Conflict(m)
            | AdminError::InvalidArgument(m)
            | AdminError::Unsupported(m)
            | AdminError::Store(m),
        ) => m.clone(),
        other => with_causes(other),
    };
    Failure::new(code, message)
}

/// Runs an admin command against the running server.
pub(crate) async fn run(
    cmd: &SecretsCommand,
    remote: &RemoteArgs,
    seed: (SecretString, String),
    outbound: &Outbound,
) -> Result<Code, Failure> {
    let signer = AdminSigner::from_seed(&seed.0, &seed.1)
        .map_err(|e| Failure::new(Code::BadInput, with_causes(&e)))?;
    drop(seed);
    let mut request = AdminRequest::default();
    let claims = &mut request.claims;
    let op = match cmd {
        SecretsCommand::Serve(_) | SecretsCommand::Keygen(_) => return Ok(Code::Usage),
        SecretsCommand::Put(a) => {
            let value = super::context::read_value(a)?;
            claims.key = Some(a.name.clone());
            claims.binary = a.binary;
            request.value = Some(Zeroizing::new(match &value {
                anchorage_secrets::SecretValue::String(s) => s.expose_secret().as_bytes().to_vec(),
                anchorage_secrets::SecretValue::Binary(b) => b.expose_secret().to_vec(),
            }));
            AdminOp::Put
        }
        SecretsCommand::Get(a) => {
            claims.key = Some(a.name.clone());
            claims.version.clone_from(&a.version);
            claims.field.clone_from(&a.field);
            claims.reveal = a.reveal;
            AdminOp::Get
        }
        SecretsCommand::Delete(a) => {
            claims.key = Some(a.name.clone());
            AdminOp::Delete
        }
        SecretsCommand::List(_) => AdminOp::List,
        SecretsCommand::AddMapping(a) | SecretsCommand::RemoveMapping(a) => {
            claims.entity = Some(a.entity.clone());
            claims.secrets = a.entries()?;
            if matches!(cmd, SecretsCommand::AddMapping(_)) {
                AdminOp::AddMapping
            } else {
                AdminOp::RemoveMapping
            }
        }
        SecretsCommand::ListMappings(a) => {
            claims.entity.clone_from(&a.entity);
            AdminOp::ListMappings
        }
        SecretsCommand::RotateEncryptionKey(a) => {
            if a.new_seed_file.is_some() {
                return Err(Failure::new(
                    Code::Usage,
                    "over NATS no seed is sent: write the new seed to the server's --encryption-seed-file, then run rotate-encryption-key without --new-seed-file",
                ));
            }
            AdminOp::RotateEncryptionKey
        }
    };
    request.op = Some(op);
    let Some(store) = cmd.store() else {
        return Ok(Code::Usage);
    };
    let client = connect(nats_config(&store.nats, outbound)?)
        .await
        .map_err(|e| connect_failure(&e))?;
    let admin = AdminClient::new(client, &remote.prefix, &store.backend, signer)
        .with_timeout(Duration::from_secs(remote.timeout.max(1)));
    let result = admin.call(&request).await.map_err(|e| call_failure(&e))?;
    drop(request);
    render(cmd, &result)
}

fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Failure> {
    serde_json::from_slice(bytes).map_err(|e| {
        Failure::new(
            Code::Failure,
            format!(
                "the server's result does not parse ({:?} error at column {})",
                e.classify(),
                e.column()
            ),
        )
    })
}

fn render(cmd: &SecretsCommand, result: &[u8]) -> Result<Code, Failure> {
    let json_out = cmd.json_output();
    match cmd {
        SecretsCommand::Serve(_) | SecretsCommand::Keygen(_) => Ok(Code::Usage),
        SecretsCommand::Put(_) => {
            #[derive(Deserialize)]
            struct Put {
                key: String,
                version: String,
                store: String,
            }
            let r: Put = parse(result)?;
            if json_out {
                print_json(
                    &json!({ "key": r.key, "version": crate::io::version_json(&r.version), "store": r.store }),
                );
            } else {
                outln!("stored {} version {} ({} store)", r.key, r.version, r.store);
            }
            Ok(Code::Ok)
        }
        SecretsCommand::Get(a) => get(a.reveal, json_out, result),
        SecretsCommand::Delete(_) => {
            #[derive(Deserialize)]
            struct Delete {
                key: String,
            }
            let r: Delete = parse(result)?;
            if json_out {
                print_json(&json!({ "key": r.key, "deleted": true }));
            } else {
                outln!("deleted {}", r.key);
            }
            Ok(Code::Ok)
        }
        SecretsCommand::List(_) => {
            #[derive(Deserialize)]
            struct List {
                secrets: Vec<String>,
            }
            let r: List = parse(result)?;
            if json_out {
                print_json(&json!({ "secrets": r.secrets }));
            } else {
                for k in r.secrets {
                    outln!("{k}");
                }
            }
            Ok(Code::Ok)
        }
        SecretsCommand::AddMapping(_) | SecretsCommand::RemoveMapping(_) => {
            #[derive(Deserialize)]
            struct Mapping {
                entity: String,
                secrets: Vec<String>,
                /// Added secrets the server's store does not hold (yet), with its kind.
                #[serde(default)]
                missing: Vec<String>,
                #[serde(default)]
                store: String,
            }
            let r: Mapping = parse(result)?;
            super::context::warn_missing_secrets(&r.entity, &r.store, &r.missing);
            if json_out {
                print_json(&json!({ "entity": r.entity, "secrets": r.secrets }));
            } else if r.secrets.is_empty() {
                outln!("{} may read no secret", r.entity);
            } else {
                outln!("{} may read: {}", r.entity, r.secrets.join(", "));
            }
            Ok(Code::Ok)
        }
        SecretsCommand::ListMappings(_) => {
            #[derive(Deserialize)]
            struct Mappings {
                mappings: std::collections::BTreeMap<String, Vec<String>>,
            }
            let r: Mappings = parse(result)?;
            if json_out {
                print_json(&json!({ "mappings": r.mappings }));
            } else {
                for (entity, names) in &r.mappings {
                    outln!("{entity}: {}", names.join(", "));
                }
            }
            Ok(Code::Ok)
        }
        SecretsCommand::RotateEncryptionKey(_) => {
            #[derive(Deserialize)]
            struct Rotate {
                encryption_key: String,
                changed: bool,
                report: serde_json::Value,
            }
            let r: Rotate = parse(result)?;
            if json_out {
                print_json(&json!({
                    "encryption_key": r.encryption_key,
                    "changed": r.changed,
                    "report": r.report,
                }));
            } else {
                let count = |k: &str| r.report[k].as_u64().unwrap_or(0);
                outln!(
                    "re-sealed {} value(s) of {} secret(s) with {} ({} already were)",
                    count("resealed"),
                    count("secrets"),
                    r.encryption_key,
                    count("already_current")
                );
                if count("stale_copies") > 0 {
                    outln!(
                        "{} older revision(s) remain sealed with the previous key",
                        count("stale_copies")
                    );
                }
                if let Some(remains) = r.report["remains"].as_str() {
                    outln!("left behind: {remains}");
                }
                if r.changed {
                    outln!("the server now seals with {}", r.encryption_key);
                } else {
                    outln!(
                        "the server's encryption key is unchanged: its seed source still holds {}",
                        r.encryption_key
                    );
                }
            }
            Ok(Code::Ok)
        }
    }
}

#[derive(Deserialize)]
struct GetResult {
    key: String,
    version: String,
    kind: String,
    bytes: u64,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

impl std::fmt::Debug for GetResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetResult")
            .field("key", &self.key)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Drop for GetResult {
    fn drop(&mut self) {
        if let Some(v) = self.value.take() {
            drop(Zeroizing::new(v));
        }
    }
}

fn get(reveal: bool, json_out: bool, result: &[u8]) -> Result<Code, Failure> {
    let mut r: GetResult = parse(result)?;
    if json_out {
        let mut doc = json!({ "key": r.key, "version": crate::io::version_json(&r.version), "kind": r.kind, "bytes": r.bytes });
        if reveal && let Some(value) = &r.value {
            // The JSON text is a copy of the value by nature; it goes to stdout only.
            doc["value"] = json!(value);
            doc["encoding"] = json!(r.encoding.as_deref().unwrap_or("utf-8"));
        }
        print_json(&doc);
        return Ok(Code::Ok);
    }
    if !reveal {
        outln!(
            "{} version {} ({}, {} bytes; --reveal prints it)",
            r.key,
            r.version,
            r.kind,
            r.bytes
        );
        return Ok(Code::Ok);
    }
    let value = Zeroizing::new(r.value.take().unwrap_or_default());
    if r.kind == "string" {
        outln!("{}", value.as_str());
        return Ok(Code::Ok);
    }
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        return Err(Failure::new(
            Code::Usage,
            "a binary value is not written to a terminal: redirect stdout, or use --output json (base64)",
        ));
    }
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(value.as_bytes())
            .map_err(|_| Failure::new(Code::Failure, "the server's binary value is not base64"))?,
    );
    crate::io::write_stdout_bytes(&bytes)?;
    Ok(Code::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_exit_codes() {
        let refused = |e: AdminError| call_failure(&AdminCallError::Refused(e)).code;
        assert_eq!(
            refused(AdminError::UnknownAdminKey("U".into())),
            Code::AuthFailed
        );
        assert_eq!(refused(AdminError::Replayed("x".into())), Code::AuthFailed);
        assert_eq!(refused(AdminError::NotFound("x".into())), Code::NotFound);
        assert_eq!(refused(AdminError::Conflict("x".into())), Code::Conflict);
        let timeout = AdminCallError::Timeout {
            subject: "s".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(call_failure(&timeout).code, Code::Unreachable);
        let none = AdminCallError::NoResponders {
            subject: "s".into(),
        };
        assert_eq!(call_failure(&none).code, Code::Unreachable);
    }

    #[test]
    fn get_result_debug_hides_the_value() {
        let r: GetResult = serde_json::from_str(
            r#"{"key":"k","version":"1","kind":"string","bytes":7,"value":"hunter2","encoding":"utf-8"}"#,
        )
        .unwrap();
        assert!(!format!("{r:?}").contains("hunter2"));
    }
}
