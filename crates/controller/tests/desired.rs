//! The desired-state function, pure (layer 1 of issue 17's three test layers): sources and
//! namespaces in, target objects or typed refusals out. Proves the content of targets and every
//! refusal; says nothing about the API server (tests/loop.rs does).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::BTreeMap;

use anchorage_controller::crd::{
    AdditionalFormats, BundleSource, BundleTarget, ClusterTrustBundleTarget, KeySelector,
    KeystoreFormat, NamespaceSelector, ObjectKey, ServeSource, TargetKeys, TargetLayout,
};
use anchorage_controller::desired::{BUNDLE_LABEL, CONTENT_HASH_ANNOTATION};
use anchorage_controller::{
    Bundle, BundleSpec, Namespace, Refusal, Sources, TargetObject, desired,
};
use anchorage_test_support::pki;

fn ns(name: &str, labels: &[(&str, &str)]) -> Namespace {
    Namespace {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
    }
}

fn cm_source(name: &str, sel: impl FnOnce(&mut KeySelector)) -> BundleSource {
    let mut s = KeySelector {
        name: name.into(),
        ..KeySelector::default()
    };
    sel(&mut s);
    BundleSource {
        config_map: Some(s),
        ..BundleSource::default()
    }
}

fn bundle(name: &str, sources: Vec<BundleSource>, target: BundleTarget) -> Bundle {
    Bundle::new(name, BundleSpec { sources, target })
}

fn cm_target(layout: TargetLayout) -> BundleTarget {
    BundleTarget {
        config_map: Some(TargetKeys { layout, key: None }),
        ..BundleTarget::default()
    }
}

struct Fixture {
    sources: Sources,
    a: pki::Issued,
    b: pki::Issued,
}

fn fixture() -> Fixture {
    let a = pki::root_ca("Controller Test Root A");
    let b = pki::root_ca("Controller Test Root B");
    let mut sources = Sources {
        namespace: "trust".into(),
        ..Sources::default()
    };
    let data: BTreeMap<String, Vec<u8>> = [
        ("a.crt".to_owned(), a.pem.clone().into_bytes()),
        ("b.crt".to_owned(), b.pem.clone().into_bytes()),
        ("README".to_owned(), b"not a certificate".to_vec()),
    ]
    .into();
    sources.config_maps.insert("cas".into(), data);
    Fixture { sources, a, b }
}

fn data_of(t: &TargetObject) -> BTreeMap<String, String> {
    match t {
        TargetObject::ConfigMap(cm) => cm.data.clone().unwrap_or_default(),
        TargetObject::Secret(s) => s
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect(),
        TargetObject::ClusterTrustBundle(o) => {
            [("trustBundle".to_owned(), o.spec.trust_bundle.clone())].into()
        }
    }
}

#[test]
fn a_suffix_source_becomes_the_certs_dir_layout_in_each_selected_namespace() {
    let f = fixture();
    let mut target = cm_target(TargetLayout::CertsDir);
    target.namespace_selector = Some(NamespaceSelector {
        match_labels: [("trust".to_owned(), "on".to_owned())].into(),
        ..NamespaceSelector::default()
    });
    let b = bundle(
        "trust",
        vec![cm_source("cas", |s| s.key_suffix = Some(".crt".into()))],
        target,
    );
    let namespaces = [
        ns("apps", &[("trust", "on")]),
        ns("other", &[]),
        ns("web", &[("trust", "on")]),
    ];
    let d = desired(&b, &[], &f.sources, &namespaces).unwrap();
    assert_eq!(d.certificates, 2);
    let names: Vec<String> = d.targets.iter().map(TargetObject::namespace).collect();
    assert_eq!(names, ["apps", "web"]);
    let t = &d.targets[0];
    assert_eq!(t.kind(), "ConfigMap");
    assert_eq!(t.name(), "trust");
    let data = data_of(t);
    let bundle_pem = &data["ca-certificates.crt"];
    assert!(bundle_pem.contains(f.a.pem.trim()) && bundle_pem.contains(f.b.pem.trim()));
    assert_eq!(
        data.keys()
            .filter(|k| anchorage_bundle::is_openssl_hash_name(k))
            .count(),
        2,
        "one <hash>.<n> key per certificate: {:?}",
        data.keys().collect::<Vec<_>>()
    );
    let TargetObject::ConfigMap(cm) = t else {
        panic!()
    };
    assert_eq!(cm.metadata.labels.as_ref().unwrap()[BUNDLE_LABEL], "trust");
    assert!(
        cm.metadata
            .annotations
            .as_ref()
            .unwrap()
            .contains_key(CONTENT_HASH_ANNOTATION)
    );
}

#[test]
fn the_certs_dir_target_holds_the_bytes_bundle_build_writes() {
    // The same certificates through anchorage-trust's loader and anchorage-k8s (what `anchorage
    // k8s configmap` / `bundle build` use): the data must be byte-identical.
    let f = fixture();
    let b = bundle(
        "trust",
        vec![cm_source("cas", |s| s.key_suffix = Some(".crt".into()))],
        cm_target(TargetLayout::CertsDir),
    );
    let d = desired(&b, &[], &f.sources, &[ns("apps", &[])]).unwrap();
    let loaded = anchorage_trust::load(
        &[anchorage_trust::Source::Bytes {
            name: "x".into(),
            bytes: format!("{}{}", f.a.pem, f.b.pem).into_bytes(),
        }],
        &anchorage_trust::LoadOptions::default(),
    );
    let reference = anchorage_bundle::Bundle::new(
        loaded
            .certificates
            .into_iter()
            .map(|c| (c.certificate, c.origin)),
    );
    let expected = anchorage_k8s::trust_configmap(
        &reference,
        &anchorage_k8s::ObjectName::new("trust").in_namespace("apps"),
        &anchorage_k8s::Layout::default(),
    )
    .unwrap();
    assert_eq!(data_of(&d.targets[0]), expected.data.unwrap());
}

#[test]
fn a_changed_source_changes_the_content_hash_and_an_unchanged_one_does_not() {
    let f = fixture();
    let b = bundle(
        "trust",
        vec![cm_source("cas", |s| s.key = Some("a.crt".into()))],
        cm_target(TargetLayout::BundleKey),
    );
    let one = desired(&b, &[], &f.sources, &[ns("apps", &[])]).unwrap();
    let again = desired(&b, &[], &f.sources, &[ns("apps", &[])]).unwrap();
    assert_eq!(
        one.targets[0].content_hash(),
        again.targets[0].content_hash()
    );
    let mut changed = f.sources.clone();
    changed
        .config_maps
        .get_mut("cas")
        .unwrap()
        .insert("a.crt".into(), f.b.pem.into_bytes());
    let other = desired(&b, &[], &changed, &[ns("apps", &[])]).unwrap();
    assert_ne!(
        one.targets[0].content_hash(),
        other.targets[0].content_hash()
    );
    // BundleKey: the bundle alone, no hashed keys.
    assert_eq!(
        data_of(&one.targets[0]).keys().collect::<Vec<_>>(),
        ["ca-certificates.crt"]
    );
}

#[test]
fn a_private_key_in_a_source_is_refused_naming_object_and_key_never_the_value() {
    let mut f = fixture();
    let leaf = pki::server_leaf(&["x.test"], &f.a);
    f.sources.secrets.insert(
        "leaky".into(),
        [(
            "tls.crt".to_owned(),
            format!("{}{}", leaf.pem, leaf.key_pem).into_bytes(),
        )]
        .into(),
    );
    let b = bundle(
        "trust",
        vec![BundleSource {
            secret: Some(KeySelector {
                name: "leaky".into(),
                include_all_keys: Some(true),
                ..KeySelector::default()
            }),
            ..BundleSource::default()
        }],
        cm_target(TargetLayout::CertsDir),
    );
    let refusals = desired(&b, &[], &f.sources, &[ns("apps", &[])]).unwrap_err();
    assert_eq!(
        refusals,
        [Refusal::PrivateKey {
            object: "Secret trust/leaky".into(),
            key: "tls.crt".into()
        }]
    );
    let text = refusals[0].to_string();
    assert!(text.contains("Secret trust/leaky") && text.contains("tls.crt"));
    assert!(!text.contains("PRIVATE KEY") && !text.contains(&leaf.key_pem[40..80]));
    assert_eq!(refusals[0].reason(), "PrivateKeyInSource");
}

#[test]
fn a_non_pem_value_a_missing_source_and_a_missing_key_are_each_refused() {
    let f = fixture();
    let b = bundle(
        "trust",
        vec![
            cm_source("cas", |s| s.include_all_keys = Some(true)),
            cm_source("absent", |s| s.key = Some("ca.crt".into())),
            cm_source("cas", |s| s.key = Some("nope.crt".into())),
            cm_source("cas", |s| s.key_suffix = Some(".pem".into())),
        ],
        cm_target(TargetLayout::CertsDir),
    );
    let refusals = desired(&b, &[], &f.sources, &[ns("apps", &[])]).unwrap_err();
    let reasons: Vec<&str> = refusals.iter().map(Refusal::reason).collect();
    assert_eq!(
        reasons,
        [
            "NotPem",
            "SourceMissing",
            "SourceKeyMissing",
            "SourceKeyMissing"
        ]
    );
    assert!(
        matches!(&refusals[0], Refusal::NotPem { object, key, .. } if object == "ConfigMap trust/cas" && key == "README")
    );
    assert!(refusals[1].to_string().contains("ConfigMap trust/absent"));
    assert!(refusals[2].to_string().contains("`nope.crt`"));
    assert!(refusals[3].to_string().contains("ending in `.pem`"));
    // Negative control: the good keys alone are accepted.
    let good = bundle(
        "trust",
        vec![cm_source("cas", |s| s.key_suffix = Some(".crt".into()))],
        cm_target(TargetLayout::CertsDir),
    );
    assert!(desired(&good, &[], &f.sources, &[ns("apps", &[])]).is_ok());
}

#[test]
fn zero_certificates_is_refused() {
    let f = fixture();
    // PrivateOnly over Mozilla's roots alone: nothing private is left.
    let mozilla: Vec<_> = webpki_mozilla(3);
    let sources = Sources {
        mozilla,
        ..f.sources
    };
    let b = bundle(
        "trust",
        vec![BundleSource {
            mozilla_roots: Some(true),
            ..BundleSource::default()
        }],
        cm_target(TargetLayout::PrivateOnly),
    );
    assert_eq!(
        desired(&b, &[], &sources, &[ns("apps", &[])]).unwrap_err(),
        [Refusal::NoCertificates]
    );
    let empty = bundle("trust", vec![], cm_target(TargetLayout::CertsDir));
    assert_eq!(
        desired(&empty, &[], &sources, &[ns("apps", &[])]).unwrap_err(),
        [Refusal::NoCertificates]
    );
}

#[test]
fn private_only_keeps_what_mozilla_lacks() {
    let f = fixture();
    let sources = Sources {
        mozilla: webpki_mozilla(3),
        ..f.sources.clone()
    };
    let b = bundle(
        "trust",
        vec![
            BundleSource {
                mozilla_roots: Some(true),
                ..BundleSource::default()
            },
            cm_source("cas", |s| s.key = Some("a.crt".into())),
        ],
        cm_target(TargetLayout::PrivateOnly),
    );
    let d = desired(&b, &[], &sources, &[ns("apps", &[])]).unwrap();
    assert_eq!(d.certificates, 1);
    let data = data_of(&d.targets[0]);
    assert_eq!(data.keys().collect::<Vec<_>>(), ["extra-ca.pem"]);
    assert!(data["extra-ca.pem"].contains(f.a.pem.trim()));
}

#[test]
fn a_target_over_one_mib_is_refused() {
    // Inline PEM of the full Mozilla set repeated under distinct roots would be slow to make;
    // instead, many distinct test roots (each ~600 bytes of PEM, twice with the hashed keys).
    let mut pem = String::new();
    for i in 0..1000 {
        pem.push_str(&pki::root_ca(&format!("Controller Big Root {i:04} {}", "x".repeat(40))).pem);
    }
    let b = bundle(
        "trust",
        vec![BundleSource {
            inline: Some(pem),
            ..BundleSource::default()
        }],
        cm_target(TargetLayout::CertsDir),
    );
    let refusals = desired(&b, &[], &Sources::default(), &[ns("apps", &[])]).unwrap_err();
    assert_eq!(refusals.len(), 1);
    assert_eq!(refusals[0].reason(), "TargetInvalid", "{}", refusals[0]);
    assert!(
        refusals[0].to_string().contains("1 MiB") || refusals[0].to_string().contains("1048576"),
        "{}",
        refusals[0]
    );
}

#[test]
fn two_bundles_writing_one_target_the_first_by_name_keeps_it() {
    let f = fixture();
    let mut target = cm_target(TargetLayout::CertsDir);
    target.name = Some("shared".into());
    let first = bundle(
        "alpha",
        vec![cm_source("cas", |s| s.key = Some("a.crt".into()))],
        target.clone(),
    );
    let second = bundle(
        "beta",
        vec![cm_source("cas", |s| s.key = Some("b.crt".into()))],
        target,
    );
    let namespaces = [ns("apps", &[])];
    let d1 = desired(
        &first,
        std::slice::from_ref(&second),
        &f.sources,
        &namespaces,
    )
    .unwrap();
    assert_eq!(d1.targets.len(), 1);
    assert!(d1.refused.is_empty());
    let d2 = desired(
        &second,
        std::slice::from_ref(&first),
        &f.sources,
        &namespaces,
    )
    .unwrap();
    assert!(d2.targets.is_empty());
    assert_eq!(d2.refused.len(), 1);
    assert_eq!(d2.refused[0].1.reason(), "TargetConflict");
    assert!(
        d2.refused[0]
            .1
            .to_string()
            .contains("ConfigMap apps/shared is written by Bundle `alpha`")
    );
}

#[test]
fn selector_expressions_pick_namespaces() {
    let sel = NamespaceSelector {
        match_expressions: vec![
            anchorage_controller::crd::LabelRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: vec!["prod".into()],
            },
            anchorage_controller::crd::LabelRequirement {
                key: "skip".into(),
                operator: "DoesNotExist".into(),
                values: vec![],
            },
        ],
        ..NamespaceSelector::default()
    };
    let l = |p: &[(&str, &str)]| {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    assert!(sel.matches(&l(&[("env", "prod")])));
    assert!(!sel.matches(&l(&[("env", "dev")])));
    assert!(!sel.matches(&l(&[("env", "prod"), ("skip", "1")])));
    assert!(NamespaceSelector::default().matches(&l(&[])));
}

fn webpki_mozilla(n: usize) -> Vec<(anchorage_x509::Certificate, anchorage_bundle::Origin)> {
    let loaded = anchorage_trust::load(
        &[anchorage_trust::Source::Mozilla],
        &anchorage_trust::LoadOptions::default(),
    );
    loaded
        .certificates
        .into_iter()
        .take(n)
        .map(|c| (c.certificate, c.origin))
        .collect()
}

/// `additionalFormats`: a PKCS#12 and a JKS trust store of the same certificates next to the PEM,
/// binary (`binaryData`), deterministic (so the content hash is stable), read back by our
/// decoder and by Java's `keytool`; a non-default password is refused naming the field.
#[test]
fn additional_formats_add_java_trust_stores_of_the_same_certificates() {
    let f = fixture();
    let mut target = cm_target(TargetLayout::BundleKey);
    target.additional_formats = Some(AdditionalFormats {
        pkcs12: Some(KeystoreFormat {
            key: "truststore.p12".into(),
            password: Some(String::new()),
        }),
        jks: Some(KeystoreFormat {
            key: "truststore.jks".into(),
            password: None,
        }),
    });
    let source = || vec![cm_source("cas", |s| s.key_suffix = Some(".crt".into()))];
    let b = bundle("java", source(), target.clone());
    let namespaces = [ns("apps", &[])];
    let d = desired(&b, &[], &f.sources, &namespaces).unwrap();
    let TargetObject::ConfigMap(cm) = &d.targets[0] else {
        panic!("a ConfigMap")
    };
    let binary = cm.binary_data.clone().unwrap();
    assert_eq!(
        binary.keys().collect::<Vec<_>>(),
        ["truststore.jks", "truststore.p12"]
    );
    let changeit = secrecy::SecretString::from("changeit");
    let jks = anchorage_keystore::decode(&binary["truststore.jks"].0, Some(&changeit)).unwrap();
    let p12 = anchorage_keystore::decode(&binary["truststore.p12"].0, None).unwrap();
    assert_eq!(jks.certificates.len(), 2);
    assert_eq!(p12.certificates.len(), 2);
    // Same input, same bytes and hash: an unchanged Bundle is not rewritten.
    let again = desired(&b, &[], &f.sources, &namespaces).unwrap();
    assert_eq!(again.targets[0].content_hash(), d.targets[0].content_hash());
    // Negative control: without additionalFormats there is no binary key.
    let plain = bundle("plain", source(), cm_target(TargetLayout::BundleKey));
    let TargetObject::ConfigMap(cm_plain) = &desired(&plain, &[], &f.sources, &namespaces)
        .unwrap()
        .targets[0]
    else {
        panic!("a ConfigMap")
    };
    assert!(cm_plain.binary_data.is_none());

    // Java's own reader lists both certificates in each store.
    if let Some(keytool) = anchorage_test_support::peer::require("keytool") {
        let dir = anchorage_test_support::tempdir().unwrap();
        for (key, kind) in [("truststore.jks", "JKS"), ("truststore.p12", "PKCS12")] {
            let path = dir.path().join(key);
            #[allow(clippy::disallowed_methods)] // a test fixture for keytool, not an output
            std::fs::write(&path, &binary[key].0).unwrap();
            let out = std::process::Command::new(&keytool)
                .args([
                    "-list",
                    "-storetype",
                    kind,
                    "-storepass",
                    "changeit",
                    "-keystore",
                ])
                .arg(&path)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{key}: {text}");
            assert_eq!(text.matches("trustedCertEntry").count(), 2, "{key}: {text}");
        }
    }

    // A password other than the default: refused, naming the field; nothing is written.
    for (p12, jks, field) in [
        (Some("secret"), None, "additionalFormats.pkcs12.password"),
        (None, Some("hunter2"), "additionalFormats.jks.password"),
    ] {
        let mut t = target.clone();
        let formats = t.additional_formats.as_mut().unwrap();
        formats.pkcs12.as_mut().unwrap().password = p12.map(String::from);
        formats.jks.as_mut().unwrap().password = jks.map(String::from);
        let refusals =
            desired(&bundle("pw", source(), t), &[], &f.sources, &namespaces).unwrap_err();
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        assert!(refusals[0].to_string().contains(field), "{}", refusals[0]);
        assert!(!refusals[0].to_string().contains("hunter2"));
        assert!(!refusals[0].to_string().contains("secret\""));
    }
}

/// The `WasmCloud` layout: one `.crt` key per certificate and nothing else (what the wasmCloud
/// operator passes to a host as `--tls-ca-path`), in a ConfigMap or a Secret; `key` refused.
#[test]
fn the_wasmcloud_layout_writes_one_crt_key_per_certificate() {
    let f = fixture();
    let source = || vec![cm_source("cas", |s| s.key_suffix = Some(".crt".into()))];
    let namespaces = [ns("lattice", &[])];
    let b = bundle(
        "wasmcloud-cas",
        source(),
        cm_target(TargetLayout::WasmCloud),
    );
    let d = desired(&b, &[], &f.sources, &namespaces).unwrap();
    let data = data_of(&d.targets[0]);
    assert_eq!(data.len(), 2, "{:?}", data.keys().collect::<Vec<_>>());
    let mut found = Vec::new();
    for (key, value) in &data {
        assert!(key.ends_with(".crt"), "{key}");
        let decoded = anchorage_x509::decode(value.as_bytes());
        assert_eq!(decoded.certificates.len(), 1, "{key}");
        found.push(value.trim().to_owned());
    }
    found.sort();
    let mut expected = vec![f.a.pem.trim().to_owned(), f.b.pem.trim().to_owned()];
    expected.sort();
    assert_eq!(found, expected);

    // A Secret target carries the same keys and values.
    let secret = bundle(
        "wasmcloud-cas",
        source(),
        BundleTarget {
            secret: Some(TargetKeys {
                layout: TargetLayout::WasmCloud,
                key: None,
            }),
            ..BundleTarget::default()
        },
    );
    let ds = desired(&secret, &[], &f.sources, &namespaces).unwrap();
    assert_eq!(ds.targets[0].kind(), "Secret");
    assert_eq!(data_of(&ds.targets[0]), data);

    // Negative control: a `key` does not apply to this layout and is refused, not ignored.
    let keyed = bundle(
        "wasmcloud-cas",
        source(),
        BundleTarget {
            config_map: Some(TargetKeys {
                layout: TargetLayout::WasmCloud,
                key: Some("ca.crt".into()),
            }),
            ..BundleTarget::default()
        },
    );
    let refusals = desired(&keyed, &[], &f.sources, &namespaces).unwrap_err();
    assert!(
        refusals[0].to_string().contains("WasmCloud layout"),
        "{}",
        refusals[0]
    );
}

fn ctb_target(signer: Option<&str>) -> BundleTarget {
    BundleTarget {
        cluster_trust_bundle: Some(ClusterTrustBundleTarget {
            signer_name: signer.map(String::from),
        }),
        ..BundleTarget::default()
    }
}

/// A `clusterTrustBundle` target: one cluster-scoped object, named as Kubernetes requires for
/// its signer, holding the certificates as bare PEM blocks (no comments, no headers), with the
/// label and content hash of every target.
#[test]
fn a_cluster_trust_bundle_target_is_one_object_named_for_its_signer() {
    let f = fixture();
    let source = || vec![cm_source("cas", |s| s.key_suffix = Some(".crt".into()))];
    let namespaces = [ns("apps", &[]), ns("web", &[])];
    let b = bundle("corp-trust", source(), ctb_target(Some("example.com/mesh")));
    let d = desired(&b, &[], &f.sources, &namespaces).unwrap();
    assert_eq!(d.targets.len(), 1, "one object, whatever the namespaces");
    let TargetObject::ClusterTrustBundle(ctb) = &d.targets[0] else {
        panic!("a ClusterTrustBundle")
    };
    assert_eq!(d.targets[0].kind(), "ClusterTrustBundle");
    assert_eq!(d.targets[0].namespace(), "");
    assert_eq!(d.targets[0].name(), "example.com:mesh:corp-trust");
    assert_eq!(ctb.spec.signer_name.as_deref(), Some("example.com/mesh"));
    let pem = &ctb.spec.trust_bundle;
    assert!(pem.contains(f.a.pem.trim()) && pem.contains(f.b.pem.trim()));
    assert!(!pem.contains('#'), "no comments: {pem}");
    assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 2);
    assert_eq!(
        ctb.metadata.labels.as_ref().unwrap()[BUNDLE_LABEL],
        "corp-trust"
    );
    let again = desired(&b, &[], &f.sources, &namespaces).unwrap();
    assert_eq!(again.targets[0].content_hash(), d.targets[0].content_hash());
    assert!(d.targets[0].content_hash().is_some());
    // Without a signer the Bundle's name is the object's.
    let plain = bundle("corp-trust", source(), ctb_target(None));
    let d = desired(&plain, &[], &f.sources, &namespaces).unwrap();
    assert_eq!(d.targets[0].name(), "corp-trust");
    // The JSON is what the API server takes (k8s-openapi's own type, camelCase fields).
    let TargetObject::ClusterTrustBundle(ctb) = &d.targets[0] else {
        panic!()
    };
    let json = serde_json::to_value(ctb).unwrap();
    assert!(json["spec"]["trustBundle"].is_string(), "{json}");
}

/// What Kubernetes would refuse is refused first, naming the field or the certificate: a leaf
/// (ClusterTrustBundles hold CA certificates only), a malformed signer name, a `:` in a name
/// without a signer, a namespace selector; and a second Bundle writing the same object.
#[test]
fn cluster_trust_bundle_refusals() {
    let f = fixture();
    let namespaces = [ns("apps", &[])];
    let source = || vec![cm_source("cas", |s| s.key_suffix = Some(".crt".into()))];

    let leaf = pki::server_leaf(&["svc.example"], &f.a);
    let mut sources = f.sources.clone();
    sources
        .config_maps
        .get_mut("cas")
        .unwrap()
        .insert("leaf.crt".into(), leaf.pem.into_bytes());
    let b = bundle("corp-trust", source(), ctb_target(Some("example.com/mesh")));
    let refusals = desired(&b, &[], &sources, &namespaces).unwrap_err();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    let text = refusals[0].to_string();
    assert!(
        text.contains("not a CA certificate") && text.contains("ConfigMap trust/cas key leaf.crt"),
        "{text}"
    );
    assert!(
        text.contains("not a CA certificate") && text.contains("key leaf.crt")
            || text.contains("ConfigMap trust/cas"),
        "{text}"
    );
    // Negative control: the same Bundle into a ConfigMap takes the leaf.
    let cm = bundle("corp-trust", source(), cm_target(TargetLayout::BundleKey));
    assert!(desired(&cm, &[], &sources, &namespaces).is_ok());

    for (target, needle) in [
        (ctb_target(Some("mesh")), "not a signer name"),
        (ctb_target(Some("example.com/")), "not a signer name"),
        (
            BundleTarget {
                name: Some("a:b".into()),
                ..ctb_target(None)
            },
            "reserves for signer-linked",
        ),
        (
            BundleTarget {
                namespace_selector: Some(NamespaceSelector::default()),
                ..ctb_target(None)
            },
            "remove namespaceSelector",
        ),
        (
            BundleTarget {
                config_map: Some(TargetKeys::default()),
                ..ctb_target(None)
            },
            "exactly one of configMap, secret and clusterTrustBundle",
        ),
    ] {
        let refusals =
            desired(&bundle("x", source(), target), &[], &f.sources, &namespaces).unwrap_err();
        assert!(refusals[0].to_string().contains(needle), "{}", refusals[0]);
    }

    // Two Bundles, one object: the first by name keeps it.
    let first = bundle(
        "a-first",
        source(),
        BundleTarget {
            name: Some("shared".into()),
            ..ctb_target(None)
        },
    );
    let second = bundle(
        "b-second",
        source(),
        BundleTarget {
            name: Some("shared".into()),
            ..ctb_target(None)
        },
    );
    let d = desired(
        &second,
        std::slice::from_ref(&first),
        &f.sources,
        &namespaces,
    )
    .unwrap();
    assert!(d.targets.is_empty());
    assert_eq!(d.refused.len(), 1);
    assert_eq!(d.refused[0].0, "cluster");
    assert!(
        d.refused[0].1.to_string().contains("a-first"),
        "{}",
        d.refused[0].1
    );
    let d = desired(
        &first,
        std::slice::from_ref(&second),
        &f.sources,
        &namespaces,
    )
    .unwrap();
    assert_eq!(d.targets.len(), 1);
}

fn serve_source(url: &str) -> BundleSource {
    BundleSource {
        serve: Some(ServeSource {
            url: url.into(),
            ca_config_map: ObjectKey {
                name: "serve-ca".into(),
                key: "ca.pem".into(),
            },
        }),
        ..BundleSource::default()
    }
}

/// A `serve` source: what the URL answered (fetched by the reconciler) is read like any other
/// value; unreachable, a private key in the answer, or a plain http:// URL refuse the Bundle, so
/// the targets keep what they have.
#[test]
fn a_serve_source_reads_what_serve_answered_and_refuses_when_it_cannot() {
    let f = fixture();
    let url = "https://anchorage-serve.anchorage:8443";
    let namespaces = [ns("apps", &[])];
    let b = bundle(
        "from-serve",
        vec![serve_source(url)],
        cm_target(TargetLayout::BundleKey),
    );

    let mut sources = f.sources.clone();
    sources
        .fetched
        .insert(url.into(), Ok(f.a.pem.clone().into_bytes()));
    let d = desired(&b, &[], &sources, &namespaces).unwrap();
    assert_eq!(d.certificates, 1);
    assert!(data_of(&d.targets[0])["ca-certificates.crt"].contains(f.a.pem.trim()));

    // Unreachable: refused, naming the URL and why.
    sources
        .fetched
        .insert(url.into(), Err("connection refused".into()));
    let r = desired(&b, &[], &sources, &namespaces).unwrap_err();
    assert_eq!(r[0].reason(), "SourceUnavailable");
    assert!(r[0].to_string().contains(url) && r[0].to_string().contains("connection refused"));
    // Not fetched at all (no entry): the same refusal.
    let r = desired(&b, &[], &f.sources, &namespaces).unwrap_err();
    assert_eq!(r[0].reason(), "SourceUnavailable");

    // A private key in the answer: refused like a private key in a ConfigMap.
    let leaf = pki::server_leaf(&["x.test"], &f.a);
    sources.fetched.insert(
        url.into(),
        Ok(format!("{}{}", leaf.pem, leaf.key_pem).into_bytes()),
    );
    let r = desired(&b, &[], &sources, &namespaces).unwrap_err();
    assert_eq!(r[0].reason(), "PrivateKeyInSource");
    assert!(!r[0].to_string().contains("PRIVATE KEY-----\n"), "{}", r[0]);

    // http:// is refused before anything is fetched.
    let plain = bundle(
        "from-serve",
        vec![serve_source("http://anchorage-serve:8443")],
        cm_target(TargetLayout::BundleKey),
    );
    let r = desired(&plain, &[], &sources, &namespaces).unwrap_err();
    assert!(r[0].to_string().contains("not an https:// URL"), "{}", r[0]);
}
