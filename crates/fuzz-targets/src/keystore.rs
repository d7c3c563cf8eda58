//! Targets over anchorage-keystore: the PKCS#12 and JKS decoders, with encode → decode round
//! trips of whatever decoded.

use anchorage_keystore::{
    Keystore, KeystoreKind, Pkcs12Options, SecretString, StoredCertificate, TrustedEntry, decode,
    decode_jks, decode_pkcs12, encode_jks, encode_pkcs12, sniff,
};

fn changeit() -> SecretString {
    SecretString::from("changeit")
}

/// The first byte picks the password: none, or Java's `changeit`.
fn password(first: u8) -> Option<SecretString> {
    (first % 2 == 1).then(changeit)
}

/// The store's certificates as entries to write again, when every one is a trusted entry with
/// an alias and there is no key entry (what our encoders write).
fn entries(store: &Keystore) -> Option<Vec<TrustedEntry>> {
    if !store.key_entries.is_empty() {
        return None;
    }
    store
        .certificates
        .iter()
        .map(|c| {
            Some(TrustedEntry {
                alias: c.alias.clone().filter(|_| c.trusted)?,
                der: c.der.clone(),
                created_ms: c.created_ms.unwrap_or(0),
            })
        })
        .collect()
}

fn same(got: &[StoredCertificate], want: &[TrustedEntry], kind: KeystoreKind) {
    assert_eq!(got.len(), want.len(), "{kind:?} round trip: entry count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.der, w.der, "{kind:?} round trip: certificate");
        assert!(g.trusted, "{kind:?} round trip: trusted");
        assert_eq!(
            g.alias.as_deref().map(str::to_lowercase),
            Some(w.alias.to_lowercase()),
            "{kind:?} round trip: alias"
        );
        if kind == KeystoreKind::Jks {
            assert_eq!(g.created_ms, Some(w.created_ms), "JKS round trip: date");
        }
    }
}

fn common(data: &[u8], password: Option<&SecretString>) {
    let _ = sniff(data);
    if let Err(e) = decode(data, password) {
        let _ = e.to_string();
    }
}

/// `decode_pkcs12` (and sniffing) on any bytes; a store that decodes is written again
/// password-less and must read back to the same certificates and aliases.
pub fn keystore_pkcs12(data: &[u8]) {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let password = password(*first);
    common(rest, password.as_ref());
    let Ok(store) = decode_pkcs12(rest, password.as_ref()) else {
        return;
    };
    let Some(entries) = entries(&store) else {
        return;
    };
    let Ok(bytes) = encode_pkcs12(&entries, &Pkcs12Options::unprotected()) else {
        return;
    };
    let again = decode_pkcs12(&bytes, None).expect("a PKCS#12 store we wrote decodes");
    assert!(again.key_entries.is_empty());
    same(&again.certificates, &entries, KeystoreKind::Pkcs12);
}

/// `decode_jks` (and sniffing) on any bytes; a store that decodes is written again with
/// `changeit` and must read back, digest checked, to the same entries.
pub fn keystore_jks(data: &[u8]) {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let password = password(*first);
    common(rest, password.as_ref());
    let Ok(store) = decode_jks(rest, password.as_ref()) else {
        return;
    };
    let Some(entries) = entries(&store) else {
        return;
    };
    let Ok(bytes) = encode_jks(&entries, &changeit()) else {
        return;
    };
    let again = decode_jks(&bytes, Some(&changeit())).expect("a JKS store we wrote decodes");
    assert!(again.integrity_checked && again.key_entries.is_empty());
    same(&again.certificates, &entries, KeystoreKind::Jks);
}
