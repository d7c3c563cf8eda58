//! Keys and JWTs minted with wascap as a wasmCloud host does, for unit tests.

use std::collections::HashMap;

use nkeys::{KeyPair, XKey};
use wascap::jwt::{CapabilityProvider, Claims, ClaimsBuilder, Component, Host};
use wasmcloud_secrets_types::{Application, Context, SecretRequest};

pub(crate) struct Identities {
    pub(crate) account: KeyPair,
    pub(crate) component: KeyPair,
    pub(crate) provider: KeyPair,
    pub(crate) cluster: KeyPair,
    pub(crate) host: KeyPair,
}

pub(crate) fn mint_component(
    signer: &KeyPair,
    subject: &KeyPair,
    expires: Option<u64>,
    not_before: Option<u64>,
) -> String {
    let mut claims = component_claims(&signer.public_key(), subject);
    claims.expires = expires;
    claims.not_before = not_before;
    claims.encode(signer).unwrap()
}

fn component_claims(issuer: &str, subject: &KeyPair) -> Claims<Component> {
    ClaimsBuilder::<Component>::new()
        .issuer(issuer)
        .subject(&subject.public_key())
        .with_metadata(Component {
            name: Some("demo".into()),
            module_hash: "abc".into(),
            ..Component::default()
        })
        .build()
}

/// A component token naming `issuer` but signed by `signer`.
pub(crate) fn mint_component_claiming(signer: &KeyPair, issuer: &str, subject: &KeyPair) -> String {
    component_claims(issuer, subject).encode(signer).unwrap()
}

impl Identities {
    pub(crate) fn new() -> Self {
        Self {
            account: KeyPair::new_account(),
            component: KeyPair::new_module(),
            provider: KeyPair::new_service(),
            cluster: KeyPair::new_cluster(),
            host: KeyPair::new_server(),
        }
    }

    pub(crate) fn component_jwt(&self, expires: Option<u64>, not_before: Option<u64>) -> String {
        mint_component(&self.account, &self.component, expires, not_before)
    }

    pub(crate) fn provider_jwt(&self) -> String {
        Claims::<CapabilityProvider>::new(
            "prov".into(),
            self.account.public_key(),
            self.provider.public_key(),
            "vendor".into(),
            None,
            None,
            HashMap::new(),
        )
        .encode(&self.account)
        .unwrap()
    }

    pub(crate) fn host_jwt(&self, expires: Option<u64>) -> String {
        Claims::<Host>::with_dates(
            "host".into(),
            self.cluster.public_key(),
            self.host.public_key(),
            None,
            expires,
            Some(HashMap::new()),
        )
        .encode(&self.cluster)
        .unwrap()
    }

    pub(crate) fn request(&self, key: &str, entity_jwt: String, host_jwt: String) -> SecretRequest {
        SecretRequest {
            key: key.into(),
            field: None,
            version: None,
            context: Context {
                entity_jwt,
                host_jwt,
                application: Application {
                    name: Some("app".into()),
                    policy:
                        r#"{"type":"properties.secret.wasmcloud.dev/v1alpha1","properties":{}}"#
                            .into(),
                },
            },
        }
    }
}

/// Seals a request exactly as `wasmcloud-secrets-client` 0.9 `Client::get` does: JSON string,
/// `request_xkey.seal(bytes, server_xkey)`, the public key in `WasmCloud-Host-Xkey`.
pub(crate) fn seal_like_client(
    request: &SecretRequest,
    server_public: &str,
) -> (XKey, String, Vec<u8>) {
    let request_xkey = XKey::new();
    let server_xkey = XKey::from_public_key(server_public).unwrap();
    let json = serde_json::to_string(request).unwrap();
    let sealed = request_xkey.seal(json.as_bytes(), &server_xkey).unwrap();
    let header = request_xkey.public_key();
    (request_xkey, header, sealed)
}
