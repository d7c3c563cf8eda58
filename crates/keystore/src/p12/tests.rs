use std::process::Command;

use anchorage_test_support::{peer, pki};
use anchorage_x509::Certificate;
use secrecy::SecretString;

use super::*;
use crate::entry::{KeystoreKind, TrustedEntry};
use crate::error::KeystoreError;

/// Fewer iterations than the default keep the unit tests quick in debug builds; one test uses
/// the default.
const FAST: u32 = 50;

fn pw(p: &str) -> SecretString {
    SecretString::from(p)
}

fn options(profile: Pkcs12Profile, password: Option<&str>) -> Pkcs12Options {
    Pkcs12Options {
        profile,
        password: password.map(pw),
        iterations: FAST,
    }
}

fn password_for(profile: Pkcs12Profile) -> Option<&'static str> {
    profile.is_protected().then_some("s3cret-päss")
}

fn certs(names: &[&str]) -> Vec<Certificate> {
    names
        .iter()
        .map(|n| Certificate::from_der(&pki::root_ca(n).der).unwrap())
        .collect()
}

#[test]
fn round_trips_in_every_profile() {
    let certs = certs(&["Round Trip Root CA", "Round Trip Other CA"]);
    let entries = TrustedEntry::from_certificates(&certs);
    for profile in Pkcs12Profile::ALL {
        let password = password_for(profile);
        let bytes = encode_pkcs12(&entries, &options(profile, password)).unwrap();
        assert_eq!(crate::sniff(&bytes), Some(KeystoreKind::Pkcs12));
        let store = decode_pkcs12(&bytes, password.map(pw).as_ref()).unwrap();
        assert_eq!(store.kind, KeystoreKind::Pkcs12);
        assert_eq!(store.integrity_checked, profile.is_protected(), "{profile}");
        assert!(store.key_entries.is_empty());
        assert_eq!(store.certificates.len(), 2, "{profile}");
        for (got, want) in store.certificates.iter().zip(&entries) {
            assert_eq!(got.alias.as_deref(), Some(want.alias.as_str()), "{profile}");
            assert_eq!(got.der, want.der, "{profile}");
            assert!(got.trusted, "{profile}");
            assert_eq!(got.created_ms, None);
        }
        // The generic decoder finds the same.
        assert_eq!(
            crate::decode(&bytes, password.map(pw).as_ref()).unwrap(),
            store
        );
    }
}

#[test]
fn the_default_iteration_count_round_trips() {
    let certs = certs(&["Default Iterations CA"]);
    let entries = TrustedEntry::from_certificates(&certs);
    let options = Pkcs12Options::protected(Pkcs12Profile::Modern2023, pw("changeit"));
    assert_eq!(options.iterations, DEFAULT_ITERATIONS);
    let bytes = encode_pkcs12(&entries, &options).unwrap();
    let store = decode_pkcs12(&bytes, Some(&pw("changeit"))).unwrap();
    assert_eq!(store.certificates[0].der, entries[0].der);
}

#[test]
fn output_is_deterministic_and_depends_on_every_input() {
    let certs = certs(&["Determinism A CA", "Determinism B CA"]);
    let entries = TrustedEntry::from_certificates(&certs);
    for profile in Pkcs12Profile::ALL {
        let password = password_for(profile);
        let one = encode_pkcs12(&entries, &options(profile, password)).unwrap();
        let two = encode_pkcs12(&entries, &options(profile, password)).unwrap();
        assert_eq!(one, two, "{profile}: same inputs, same bytes");
        let fewer = encode_pkcs12(&entries[..1], &options(profile, password)).unwrap();
        assert_ne!(one, fewer, "{profile}");
        if profile.is_protected() {
            let other = encode_pkcs12(&entries, &options(profile, Some("another"))).unwrap();
            assert_ne!(one, other, "{profile}: another password, other bytes");
            let mut more = options(profile, password);
            more.iterations += 1;
            assert_ne!(one, encode_pkcs12(&entries, &more).unwrap(), "{profile}");
        }
    }
    let modern = encode_pkcs12(&entries, &options(Pkcs12Profile::Modern2023, Some("p"))).unwrap();
    let des = encode_pkcs12(&entries, &options(Pkcs12Profile::LegacyDes, Some("p"))).unwrap();
    assert_ne!(modern, des);
}

#[test]
fn a_wrong_password_is_wrong_password_not_malformed() {
    let certs = certs(&["Wrong Password CA"]);
    let entries = TrustedEntry::from_certificates(&certs);
    for (profile, check) in [
        (Pkcs12Profile::Modern2023, "HMAC-SHA256 MAC"),
        (Pkcs12Profile::LegacyDes, "HMAC-SHA1 MAC"),
        (Pkcs12Profile::LegacyRc2, "HMAC-SHA1 MAC"),
    ] {
        let bytes = encode_pkcs12(&entries, &options(profile, Some("right"))).unwrap();
        assert_eq!(
            decode_pkcs12(&bytes, Some(&pw("wrong"))),
            Err(KeystoreError::WrongPassword {
                kind: KeystoreKind::Pkcs12,
                check
            }),
            "{profile}"
        );
        // Without a password the encrypted certificates cannot be read, and the error says so.
        assert!(matches!(
            decode_pkcs12(&bytes, None),
            Err(KeystoreError::PasswordRequired { .. })
        ));
    }
    // The unprotected profile has nothing to check: any password, or none, reads it.
    let open = encode_pkcs12(&entries, &options(Pkcs12Profile::Unprotected, None)).unwrap();
    let read = decode_pkcs12(&open, Some(&pw("anything"))).unwrap();
    assert!(!read.integrity_checked);
    assert_eq!(read.certificates.len(), 1);
}

#[test]
fn passwords_and_iterations_are_checked_before_encoding() {
    let certs = certs(&["Options CA"]);
    let entries = TrustedEntry::from_certificates(&certs);
    let encode = |o: Pkcs12Options| encode_pkcs12(&entries, &o);
    assert!(matches!(
        encode(options(Pkcs12Profile::Modern2023, None)),
        Err(KeystoreError::PasswordRequired { what }) if what.contains("modern-2023")
    ));
    assert_eq!(
        encode(options(Pkcs12Profile::Unprotected, Some("x"))),
        Err(KeystoreError::PasswordNotUsed)
    );
    assert_eq!(
        encode(options(Pkcs12Profile::LegacyDes, Some(""))),
        Err(KeystoreError::EmptyPassword)
    );
    for iterations in [0, MAX_ITERATIONS + 1] {
        let mut o = options(Pkcs12Profile::LegacyRc2, Some("x"));
        o.iterations = iterations;
        assert_eq!(
            encode(o),
            Err(KeystoreError::Iterations {
                iterations,
                max: MAX_ITERATIONS
            })
        );
    }
    let mut twice = entries.clone();
    twice.push(TrustedEntry {
        alias: entries[0].alias.to_uppercase(),
        ..entries[0].clone()
    });
    assert!(matches!(
        encode_pkcs12(&twice, &options(Pkcs12Profile::Unprotected, None)),
        Err(KeystoreError::DuplicateAlias { .. })
    ));
    let beyond_bmp = [TrustedEntry {
        alias: "clef-𝄞".into(),
        ..entries[0].clone()
    }];
    assert!(matches!(
        encode_pkcs12(&beyond_bmp, &options(Pkcs12Profile::Unprotected, None)),
        Err(KeystoreError::InvalidAlias { .. })
    ));
}

#[test]
fn debug_never_shows_the_password() {
    let o = Pkcs12Options::protected(Pkcs12Profile::Modern2023, pw("hunter2-topsecret"));
    let debug = format!("{o:?} {o:#?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(
        debug.contains("[redacted]") && debug.contains("Modern2023"),
        "{debug}"
    );
    let none = format!("{:?}", Pkcs12Options::unprotected());
    assert!(none.contains("password: None"), "{none}");
    // Nor do the errors of a wrong password.
    let certs = certs(&["Debug CA"]);
    let entries = TrustedEntry::from_certificates(&certs);
    let bytes = encode_pkcs12(&entries, &o).unwrap();
    let err = decode_pkcs12(&bytes, Some(&pw("hunter3-guess"))).unwrap_err();
    assert!(!format!("{err} {err:?}").contains("hunter"));
}

#[test]
fn damaged_input_is_malformed_with_a_reason() {
    let certs = certs(&["Damage CA"]);
    let entries = TrustedEntry::from_certificates(&certs);
    let bytes = encode_pkcs12(&entries, &options(Pkcs12Profile::Modern2023, Some("p"))).unwrap();
    for cut in [bytes.len() - 1, bytes.len() / 2, 10] {
        let err = decode_pkcs12(&bytes[..cut], Some(&pw("p"))).unwrap_err();
        assert!(
            matches!(&err, KeystoreError::Malformed { kind: KeystoreKind::Pkcs12, reason } if reason.starts_with("PFX")),
            "cut at {cut}: {err}"
        );
    }
    let err = decode_pkcs12(b"\x30\x03\x02\x01\x03", None).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("malformed PKCS#12 keystore: PFX"),
        "{err}"
    );
    assert_eq!(
        crate::decode(b"not a keystore", None),
        Err(KeystoreError::NotAKeystore)
    );
}

/// OpenSSL reads every protected profile with the right password, shows our aliases and Oracle's
/// attribute, and refuses a wrong password.
#[test]
fn openssl_reads_every_profile() {
    let Some(openssl) = peer::require("openssl") else {
        return;
    };
    let tmp = anchorage_test_support::tempdir().unwrap();
    let certs = certs(&["OpenSSL Check Root CA", "OpenSSL Check Other CA"]);
    let entries = TrustedEntry::from_certificates(&certs);
    for profile in Pkcs12Profile::ALL {
        let password = password_for(profile);
        let mut o = options(profile, password);
        o.iterations = 2048;
        let bytes = encode_pkcs12(&entries, &o).unwrap();
        let path = tmp.path().join(format!("{profile}.p12"));
        #[allow(clippy::disallowed_methods)] // a test input
        std::fs::write(&path, &bytes).unwrap();
        let run = |pass: &str| {
            let mut cmd = Command::new(&openssl);
            cmd.args(["pkcs12", "-info", "-nokeys", "-in"])
                .arg(&path)
                .arg("-passin")
                .arg(format!("pass:{pass}"));
            if profile == Pkcs12Profile::LegacyRc2 {
                cmd.arg("-legacy");
            }
            if profile == Pkcs12Profile::Unprotected {
                cmd.arg("-nomacver");
            }
            cmd.env_remove("OPENSSL_CONF").output().unwrap()
        };
        let out = run(password.unwrap_or(""));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{profile}: {text}");
        for entry in &entries {
            assert!(
                text.contains(&format!("friendlyName: {}", entry.alias)),
                "{profile}: {text}"
            );
        }
        assert_eq!(
            text.matches("2.16.840.1.113894.746875.1.1").count(),
            2,
            "{profile}: {text}"
        );
        assert_eq!(text.matches("-----BEGIN CERTIFICATE-----").count(), 2);
        let expected = match profile {
            Pkcs12Profile::Modern2023 => &[
                "MAC: sha256, Iteration 2048",
                "PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256",
            ][..],
            Pkcs12Profile::LegacyDes => &[
                "MAC: sha1, Iteration 2048",
                "pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048",
            ],
            Pkcs12Profile::LegacyRc2 => &[
                "MAC: sha1, Iteration 2048",
                "pbeWithSHA1And40BitRC2-CBC, Iteration 2048",
            ],
            Pkcs12Profile::Unprotected => &["PKCS7 Data"],
        };
        for line in expected {
            assert!(text.contains(line), "{profile}: no {line:?} in {text}");
        }
        if profile.is_protected() {
            let wrong = run("not-the-password");
            assert!(!wrong.status.success(), "{profile}");
            assert!(String::from_utf8_lossy(&wrong.stderr).contains("Mac verify error"));
        } else {
            assert!(
                !text.contains("MAC:"),
                "no MAC in the unprotected profile: {text}"
            );
        }
    }
}

/// A PKCS#12 that holds a private key (as `openssl pkcs12 -export` writes it): the key is
/// counted by alias, never decrypted, and the certificate is not a trusted entry.
#[test]
fn key_bags_are_reported_not_read() {
    let Some(openssl) = peer::require("openssl") else {
        return;
    };
    let tmp = anchorage_test_support::tempdir().unwrap();
    let root = pki::root_ca("Key Bag CA");
    let cert = root.write_pem(tmp.path(), "cert.pem");
    let key = tmp.path().join("key.pem");
    #[allow(clippy::disallowed_methods)] // a test input
    std::fs::write(&key, &root.key_pem).unwrap();
    let p12 = tmp.path().join("with-key.p12");
    let out = Command::new(&openssl)
        .args([
            "pkcs12",
            "-export",
            "-name",
            "Server Key",
            "-passout",
            "pass:kp",
        ])
        .arg("-in")
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&p12)
        .env_remove("OPENSSL_CONF")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&p12).unwrap();
    let store = decode_pkcs12(&bytes, Some(&pw("kp"))).unwrap();
    assert!(store.integrity_checked);
    assert_eq!(store.key_entries.len(), 1);
    assert_eq!(store.key_entries[0].alias.as_deref(), Some("Server Key"));
    assert_eq!(store.certificates.len(), 1);
    assert!(
        !store.certificates[0].trusted,
        "a key's certificate is no trust anchor"
    );
    assert_eq!(store.certificates[0].der, root.der);
    assert!(
        !format!("{store:?}").contains("PRIVATE"),
        "no key material kept"
    );
    assert!(matches!(
        decode_pkcs12(&bytes, Some(&pw("wrong"))),
        Err(KeystoreError::WrongPassword { .. })
    ));
}

/// A PFX of `infos` with no MAC (as a hostile store in an image would be: nothing to verify,
/// so every derivation it names would run).
fn crafted(infos: Vec<cms::content_info::ContentInfo>) -> Vec<u8> {
    use der::Encode as _;
    let auth_safe = infos.to_der().unwrap();
    pkcs12::pfx::Pfx {
        version: pkcs12::pfx::Version::V3,
        auth_safe: cms::content_info::ContentInfo {
            content_type: oid::DATA,
            content: der::asn1::Any::new(der::Tag::OctetString, auth_safe).unwrap(),
        },
        mac_data: None,
    }
    .to_der()
    .unwrap()
}

/// An `encryptedData` ContentInfo under PBES2 with `kdf`, AES-256-CBC and 16 bytes of noise.
fn pbes2_info(kdf: pkcs5::pbes2::Kdf<'_>) -> cms::content_info::ContentInfo {
    let params = pkcs5::pbes2::Parameters {
        kdf,
        encryption: pkcs5::pbes2::EncryptionScheme::Aes256Cbc { iv: &[7; 16] },
    };
    let algorithm = spki::AlgorithmIdentifierOwned {
        oid: oid::PBES2,
        parameters: Some(der::asn1::Any::encode_from(&params).unwrap()),
    };
    encode::encrypted_data(algorithm, vec![0x55; 16]).unwrap()
}

/// A MAC-less store whose one encrypted ContentInfo uses scrypt with these parameters.
fn scrypt_store(log_n: u32, r: u16, p: u16) -> Vec<u8> {
    let kdf = pkcs5::pbes2::Kdf::Scrypt(pkcs5::pbes2::ScryptParams {
        salt: b"saltsaltsaltsalt",
        cost_parameter: 1 << log_n,
        block_size: r,
        parallelization: p,
        key_length: None,
    });
    crafted(vec![pbes2_info(kdf)])
}

/// The crafted store other crates' tests read (the trust loader, the image planner): scrypt
/// with N = 2^20, r = 8, 1 GiB. Kept as a file so that they need no ASN.1 of their own;
/// `ANCHORAGE_WRITE_FIXTURES=1` writes it again.
#[test]
fn the_scrypt_fixture_is_the_crafted_store() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/scrypt-1gib.p12");
    let bytes = scrypt_store(20, 8, 1);
    if std::env::var_os("ANCHORAGE_WRITE_FIXTURES").is_some() {
        #[allow(clippy::disallowed_methods)] // a test fixture
        std::fs::write(path, &bytes).unwrap();
    }
    assert_eq!(std::fs::read(path).unwrap(), bytes);
}

/// Attack (issue 19, item 5): a ~200-byte store whose scrypt asks for N = 2^20, r = 8 (1 GiB of
/// memory and seconds of CPU). Refused before scrypt runs, with or without a password.
#[test]
fn a_store_asking_for_a_huge_scrypt_is_refused_before_deriving() {
    for (log_n, r, p) in [
        (20u32, 8u16, 1u16),
        (40, 8, 1),
        (14, 8, 60_000),
        (16, 64, 1),
    ] {
        let bytes = scrypt_store(log_n, r, p);
        assert!(bytes.len() < 300, "a small file: {}", bytes.len());
        for password in [Some(pw("changeit")), None] {
            let err = decode_pkcs12(&bytes, password.as_ref()).unwrap_err();
            assert!(
                matches!(&err, KeystoreError::KdfLimit { kind: KeystoreKind::Pkcs12, what, .. } if what.contains("scrypt")),
                "2^{log_n} {r} {p}: {err}"
            );
            let text = err.to_string();
            assert!(text.contains("beyond the limit"), "{text}");
        }
    }
}

/// Negative control for the scrypt bound: a store encrypted with an ordinary scrypt (N = 2^10,
/// r = 8, p = 1) is priced, accepted, and decrypts (here to garbage: wrong password, no MAC).
#[test]
fn an_ordinary_scrypt_store_is_read() {
    let bytes = scrypt_store(10, 8, 1);
    let err = decode_pkcs12(&bytes, Some(&pw("changeit"))).unwrap_err();
    assert!(
        matches!(err, KeystoreError::WrongPassword { .. }),
        "past the budget, into decryption: {err}"
    );
}

/// Attack (issue 19, item 5): a few kilobytes of `encryptedData` ContentInfos, each at Java's
/// per-value limit of 5,000,000 PBKDF2 iterations (each allowed alone), adding up to minutes
/// of CPU. Refused by the per-keystore budget before any derivation runs.
#[test]
fn many_contentinfos_at_the_iteration_cap_are_refused_by_the_total_budget() {
    let salt = [1u8; 20];
    let iv = [2u8; 16];
    let one = || {
        let params =
            pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(MAX_ITERATIONS, &salt, &iv).unwrap();
        pbes2_info(params.kdf)
    };
    let bytes = crafted((0..20).map(|_| one()).collect());
    assert!(bytes.len() < 4096, "{}", bytes.len());
    for password in [Some(pw("changeit")), None] {
        let err = crate::decode(&bytes, password.as_ref()).unwrap_err();
        assert!(
            matches!(&err, KeystoreError::KdfLimit { limit, .. } if limit.contains("per keystore")),
            "{err}"
        );
    }

    // The legacy ciphers too: 3DES costs three derivations' worth per ContentInfo.
    let legacy = || {
        let params = pkcs12::pbe_params::Pkcs12PbeParams {
            salt: der::asn1::OctetString::new(salt).unwrap(),
            iterations: i32::try_from(MAX_ITERATIONS).unwrap(),
        };
        let algorithm = spki::AlgorithmIdentifierOwned {
            oid: crypto::LegacyCipher::TripleDes.oid(),
            parameters: Some(der::asn1::Any::encode_from(&params).unwrap()),
        };
        encode::encrypted_data(algorithm, vec![0x55; 16]).unwrap()
    };
    let bytes = crafted(vec![legacy(), legacy()]);
    assert!(matches!(
        decode_pkcs12(&bytes, Some(&pw("changeit"))),
        Err(KeystoreError::KdfLimit { .. })
    ));
}
