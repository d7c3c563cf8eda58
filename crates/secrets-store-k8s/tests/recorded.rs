//! A Secret as a real API server returns it (testdata/README.md says where it was recorded):
//! it decodes with k8s-openapi, and the store reads the merged `data` key with the server's
//! `resourceVersion` as the version.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use anchorage_secrets::SecretValue;
use anchorage_secrets_store_k8s::value_of;
use k8s_openapi::api::core::v1::Secret;
use secrecy::ExposeSecret as _;

fn recorded() -> Secret {
    let text = include_str!("../testdata/docs-mysecret.yaml");
    serde_yaml_ng::from_str(text).unwrap()
}

#[test]
fn a_recorded_secret_is_read_by_data_key_and_resource_version() {
    let secret = recorded();
    assert!(
        secret.string_data.is_none(),
        "servers never return stringData"
    );
    let found = value_of(secret, "username", None).unwrap();
    assert_eq!(found.version, "7579");
    let SecretValue::String(text) = found.value else {
        panic!("a UTF-8 value is a string secret")
    };
    // stringData won over data when the object was written: the server's merge, as recorded.
    assert_eq!(text.expose_secret(), "administrator");

    // Negative controls on the same payload: another key, another version.
    assert!(value_of(recorded(), "password", None).is_none());
    assert!(value_of(recorded(), "username", Some("7225")).is_none());
    assert!(value_of(recorded(), "username", Some("7579")).is_some());
}
