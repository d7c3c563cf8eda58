//! The public API end to end, as a server loop will use it: a host mints its JWTs with wascap,
//! fetches the server xkey, seals a `SecretRequest` the way `wasmcloud-secrets-client` does, and
//! reads the reply the way it does. The phases are driven one by one, as an async server would.

use std::collections::HashMap;
use std::time::SystemTime;

use anchorage_secrets::protocol::{Application, Context};
use anchorage_secrets::{
    GetHandler, JwtPolicy, Mappings, Outcome, RESPONSE_XKEY, SecretRequest, SecretValue, Subjects,
    VersionedSecret, XKey,
};
use nkeys::KeyPair;
use secrecy::SecretString;
use wascap::jwt::{Claims, ClaimsBuilder, Component, Host};

fn jwts() -> (String, String, String) {
    let account = KeyPair::new_account();
    let component = KeyPair::new_module();
    let cluster = KeyPair::new_cluster();
    let host = KeyPair::new_server();
    let entity = ClaimsBuilder::<Component>::new()
        .issuer(&account.public_key())
        .subject(&component.public_key())
        .with_metadata(Component {
            module_hash: "h".into(),
            ..Component::default()
        })
        .build()
        .encode(&account)
        .expect("entity jwt");
    let host_jwt = Claims::<Host>::new(
        "host".into(),
        cluster.public_key(),
        host.public_key(),
        Some(HashMap::new()),
    )
    .encode(&cluster)
    .expect("host jwt");
    (component.public_key(), entity, host_jwt)
}

#[test]
fn host_gets_a_secret_through_the_phases() {
    let seed = XKey::generate().seed();
    let handler = GetHandler::new(
        XKey::from_seed(&seed, "test").unwrap(),
        JwtPolicy::default(),
    );
    // A restart with the same seed answers `server_xkey` identically.
    let restarted = XKey::from_seed(&seed, "test").unwrap();
    assert_eq!(
        handler.server_xkey_body(),
        restarted.public_key().as_bytes()
    );

    let subjects = Subjects::new("wasmcloud.secrets", "anchorage");
    assert!(subjects.operation(&subjects.get()).is_some());

    let (component, entity_jwt, host_jwt) = jwts();
    let mut mappings = Mappings::new();
    mappings.allow(&component, "api-token");

    let request = SecretRequest {
        key: "api-token".into(),
        field: None,
        version: None,
        context: Context {
            entity_jwt,
            host_jwt,
            application: Application {
                name: None,
                policy: String::new(),
            },
        },
    };
    let server_xkey =
        nkeys::XKey::from_public_key(std::str::from_utf8(handler.server_xkey_body()).unwrap())
            .unwrap();
    let request_xkey = nkeys::XKey::new();
    let sealed = request_xkey
        .seal(
            serde_json::to_string(&request).unwrap().as_bytes(),
            &server_xkey,
        )
        .unwrap();

    let mut verified = handler
        .open(Some(&request_xkey.public_key()), &sealed, SystemTime::now())
        .unwrap();
    assert_eq!(verified.entity().public_key, component);
    assert!(verified.is_allowed_by(&mappings));
    assert_eq!(verified.lookup().key, "api-token");
    let reply = handler.respond(
        verified,
        Ok(Some(VersionedSecret {
            version: "9".into(),
            value: SecretValue::String(SecretString::from("s3cr3t")),
        })),
    );
    assert_eq!(reply.audit.outcome, Outcome::Served);
    let headers = reply.headers();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].0, RESPONSE_XKEY);
    let opened = request_xkey
        .open(
            &reply.body,
            &nkeys::XKey::from_public_key(headers[0].1).unwrap(),
        )
        .unwrap();
    let response: anchorage_secrets::protocol::SecretResponse =
        serde_json::from_slice(&opened).unwrap();
    let secret = response.secret.unwrap();
    assert_eq!(secret.version, "9");
    assert_eq!(secret.string_secret.as_deref(), Some("s3cr3t"));
    assert!(!format!("{:?}", reply.audit).contains("s3cr3t"));
}
