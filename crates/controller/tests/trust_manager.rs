//! trust-manager's `Bundle` (trust.cert-manager.io/v1alpha1) read from YAML in its documented
//! shape and turned into an anchorage Bundle, whose desired state is then computed as usual;
//! what this slice does not do yet is refused naming the field.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use anchorage_controller::crd::TargetLayout;
use anchorage_controller::trust_manager::{TrustManagerBundle, to_anchorage};
use anchorage_controller::{Namespace, Sources, TargetObject, desired};
use anchorage_test_support::pki;

fn read(yaml: &str) -> TrustManagerBundle {
    serde_yaml_ng::from_str(yaml).unwrap()
}

#[test]
fn a_trust_manager_bundle_becomes_an_anchorage_one_and_yields_its_target() {
    let root = pki::root_ca("Trust Manager Move Root");
    let tm = read(
        "apiVersion: trust.cert-manager.io/v1alpha1\nkind: Bundle\nmetadata: {name: example-bundle}\nspec:\n  sources:\n  - useDefaultCAs: true\n  - secret: {name: my-db-tls, key: ca.crt}\n  target:\n    configMap: {key: trust-bundle.pem}\n    namespaceSelector:\n      matchLabels: {linkerd.io/inject: enabled}\n",
    );
    let b = to_anchorage(&tm).unwrap();
    assert_eq!(kube::ResourceExt::name_any(&b), "example-bundle");
    assert_eq!(b.spec.sources.len(), 2);
    assert_eq!(b.spec.sources[0].mozilla_roots, Some(true));
    assert_eq!(
        b.spec.sources[1].secret.as_ref().unwrap().key.as_deref(),
        Some("ca.crt")
    );
    let keys = b.spec.target.config_map.clone().unwrap();
    assert_eq!(keys.layout, TargetLayout::BundleKey);
    assert_eq!(keys.key.as_deref(), Some("trust-bundle.pem"));

    let mut sources = Sources {
        namespace: "cert-manager".into(),
        ..Sources::default()
    };
    sources.secrets.insert(
        "my-db-tls".into(),
        [("ca.crt".to_owned(), root.pem.clone().into_bytes())].into(),
    );
    let namespaces = [
        Namespace {
            name: "apps".into(),
            labels: [("linkerd.io/inject".to_owned(), "enabled".to_owned())].into(),
        },
        Namespace {
            name: "other".into(),
            labels: Default::default(),
        },
    ];
    let d = desired(&b, &[], &sources, &namespaces).unwrap();
    assert_eq!(d.targets.len(), 1);
    let TargetObject::ConfigMap(cm) = &d.targets[0] else {
        panic!("a ConfigMap")
    };
    let data = cm.data.as_ref().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["trust-bundle.pem"]);
    assert!(data["trust-bundle.pem"].contains(root.pem.trim()));
}

#[test]
fn what_this_slice_does_not_do_is_refused_naming_the_field() {
    let tm = read(
        "apiVersion: trust.cert-manager.io/v1alpha1\nkind: Bundle\nmetadata: {name: b}\nspec:\n  sources:\n  - configMap: {selector: {matchLabels: {a: b}}, key: ca.crt}\n  - inLine: x\n  target:\n    configMap: {key: a.pem}\n    secret: {key: a.pem}\n    additionalFormats: {jks: {key: a.jks}}\n",
    );
    let refusals = to_anchorage(&tm).unwrap_err();
    let text: Vec<String> = refusals.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 2, "{text:?}");
    assert!(text[0].contains("sources[0].configMap.selector"));
    assert!(text[1].contains("a ConfigMap and a Secret target at once"));
}

#[test]
fn additional_formats_are_carried_over_as_java_trust_stores() {
    let root = pki::root_ca("Trust Manager Java Root");
    // trust-manager's documented shape, with its default passwords spelled out.
    let tm = read(
        "apiVersion: trust.cert-manager.io/v1alpha1\nkind: Bundle\nmetadata: {name: java-bundle}\nspec:\n  sources:\n  - secret: {name: my-db-tls, key: ca.crt}\n  target:\n    configMap: {key: trust-bundle.pem}\n    additionalFormats:\n      jks: {key: bundle.jks, password: changeit}\n      pkcs12: {key: bundle.p12, password: \"\", profile: Modern2023}\n",
    );
    let b = to_anchorage(&tm).unwrap();
    let formats = b.spec.target.additional_formats.clone().unwrap();
    assert_eq!(formats.jks.unwrap().key, "bundle.jks");
    assert_eq!(formats.pkcs12.unwrap().key, "bundle.p12");
    let mut sources = Sources {
        namespace: "cert-manager".into(),
        ..Sources::default()
    };
    sources.secrets.insert(
        "my-db-tls".into(),
        [("ca.crt".to_owned(), root.pem.into_bytes())].into(),
    );
    let apps = [Namespace {
        name: "apps".into(),
        labels: Default::default(),
    }];
    let d = desired(&b, &[], &sources, &apps).unwrap();
    let TargetObject::ConfigMap(cm) = &d.targets[0] else {
        panic!("a ConfigMap")
    };
    let binary = cm.binary_data.as_ref().unwrap();
    assert_eq!(
        binary.keys().collect::<Vec<_>>(),
        ["bundle.jks", "bundle.p12"]
    );

    // A JKS password trust-manager would honour but anchorage does not: refused by the desired
    // state, naming the field (never a store sealed with another password than asked).
    let tm = read(
        "apiVersion: trust.cert-manager.io/v1alpha1\nkind: Bundle\nmetadata: {name: b}\nspec:\n  sources:\n  - secret: {name: my-db-tls, key: ca.crt}\n  target:\n    configMap: {key: a.pem}\n    additionalFormats: {jks: {key: a.jks, password: other}}\n",
    );
    let refusals = desired(&to_anchorage(&tm).unwrap(), &[], &sources, &apps).unwrap_err();
    assert!(
        refusals[0]
            .to_string()
            .contains("additionalFormats.jks.password")
    );
}
