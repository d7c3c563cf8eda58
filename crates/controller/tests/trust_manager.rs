//! trust-manager's `Bundle` (trust.cert-manager.io/v1alpha1) read from YAML in its documented
//! shape and turned into an anchorage Bundle, whose desired state is then computed as usual;
//! a source `selector` over the trust namespace's labels; what this slice does not do yet is
//! refused naming the field.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use anchorage_controller::crd::TargetLayout;
use anchorage_controller::trust_manager::{
    TrustManagerBundle, TrustNamespaceLabels, to_anchorage, to_anchorage_in,
};
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
        "apiVersion: trust.cert-manager.io/v1alpha1\nkind: Bundle\nmetadata: {name: b}\nspec:\n  sources:\n  - configMap: {selector: {matchExpressions: [{key: a, operator: Sideways}]}, key: ca.crt}\n  - secret: {key: ca.crt}\n  - inLine: x\n  target:\n    configMap: {key: a.pem}\n    secret: {key: a.pem}\n    additionalFormats: {jks: {key: a.jks}}\n",
    );
    let refusals = to_anchorage(&tm).unwrap_err();
    let text: Vec<String> = refusals.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 3, "{text:?}");
    assert!(
        text[0].contains("sources[0].configMap.selector is not a label selector"),
        "{text:?}"
    );
    assert!(
        text[1].contains("sources[1].secret needs exactly one of `name` and `selector`"),
        "{text:?}"
    );
    assert!(text[2].contains("a ConfigMap and a Secret target at once"));
}

/// A source `selector` (trust-manager's `metav1.LabelSelector`) becomes one source per object
/// of the trust namespace it matches, by name, with the source's key; `matchExpressions` as
/// the API server reads them; nothing matching: nothing from it (no refusal), as trust-manager.
#[test]
fn a_source_selector_becomes_one_source_per_matching_object() {
    let tm = read(
        "apiVersion: trust.cert-manager.io/v1alpha1\nkind: Bundle\nmetadata: {name: b}\nspec:\n  sources:\n  - configMap:\n      selector:\n        matchLabels: {trust: corp}\n        matchExpressions: [{key: tier, operator: NotIn, values: [test]}]\n      key: ca.crt\n  - secret: {selector: {matchLabels: {trust: corp}}, includeAllKeys: true}\n  - configMap: {selector: {matchLabels: {nothing: here}}, key: ca.crt}\n  target:\n    configMap: {key: trust-bundle.pem}\n",
    );
    let labels = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let mut trust_ns = TrustNamespaceLabels::default();
    trust_ns
        .config_maps
        .insert("corp-b".into(), labels(&[("trust", "corp")]));
    trust_ns.config_maps.insert(
        "corp-a".into(),
        labels(&[("trust", "corp"), ("tier", "prod")]),
    );
    trust_ns.config_maps.insert(
        "corp-test".into(),
        labels(&[("trust", "corp"), ("tier", "test")]),
    );
    trust_ns
        .config_maps
        .insert("other".into(), labels(&[("trust", "other")]));
    trust_ns
        .secrets
        .insert("corp-secret".into(), labels(&[("trust", "corp")]));
    let b = to_anchorage_in(&tm, &trust_ns).unwrap();
    let names: Vec<(&str, &str, Option<&str>, Option<bool>)> = b
        .spec
        .sources
        .iter()
        .map(|s| {
            let (kind, k) = match (&s.config_map, &s.secret) {
                (Some(k), None) => ("configMap", k),
                (None, Some(k)) => ("secret", k),
                _ => panic!("{s:?}"),
            };
            (kind, k.name.as_str(), k.key.as_deref(), k.include_all_keys)
        })
        .collect();
    assert_eq!(
        names,
        [
            ("configMap", "corp-a", Some("ca.crt"), None),
            ("configMap", "corp-b", Some("ca.crt"), None),
            ("secret", "corp-secret", None, Some(true)),
        ]
    );
    // Without labels (what conflict detection uses) the selectors match nothing.
    assert!(to_anchorage(&tm).unwrap().spec.sources.is_empty());
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
