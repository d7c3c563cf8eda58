//! The fix: what to do about a [`Diagnosis`] (and its [`Finding`]s), as sentences and the
//! commands that carry it out. Never "disable verification".

use anchorage_x509::Certificate;
use serde::Serialize;

use super::DiagnoseParams;
use super::classify::is_anchor;
use super::diagnosis::{Diagnosis, Finding};
use crate::chain;

/// What to do about the diagnosis: a sentence and the commands to run, if any. Never "disable
/// verification".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fix {
    /// What to do, in one or more sentences.
    pub summary: String,
    /// Commands that carry it out (shell syntax, paths quoted when needed).
    pub commands: Vec<String>,
}

/// A path as a shell word: bare when it is plain, else in single quotes.
fn shell_quote(path: &std::path::Path) -> String {
    let text = path.display().to_string();
    if !text.is_empty()
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ':' | '@' | ',')
        })
    {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn bundle_command(file: &std::path::Path) -> String {
    format!(
        "anchorage bundle build {} --mozilla --pem ca-bundle.pem",
        shell_quote(file)
    )
}

fn save_chain_command(target: &str) -> String {
    format!("anchorage doctor {target} --save-chain presented-chain.pem")
}

pub(super) fn fix(
    chain: &[Certificate],
    params: &DiagnoseParams<'_>,
    primary: &Diagnosis,
    findings: &[Finding],
) -> Fix {
    let fix = |summary: String, commands: Vec<String>| Fix { summary, commands };
    match primary {
        Diagnosis::Trusted {
            anchor,
            anchor_is_intermediate: true,
            anchor_issuer,
        } => {
            let root = anchor_issuer
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            let holder = params.candidates.iter().find(|(_, certs)| {
                certs
                    .iter()
                    .any(|c| c.subject() == anchor && is_anchor(params.roots, c))
            });
            let mut summary = format!(
                "the chain is trusted through the intermediate {anchor}, given as a trust anchor: rustls (wasmCloud), Go, Java and Node.js accept that, but OpenSSL-based clients (curl, Python, Ruby, openssl) also need the root above it{root} unless they set partial-chain (X509_V_FLAG_PARTIAL_CHAIN, `openssl verify -partial_chain`); trust that root instead where you can"
            );
            if let Some((file, _)) = holder {
                summary.push_str(&format!(
                    ". To keep trusting {} as it is, the command below builds a bundle of it plus Mozilla's roots",
                    file.display()
                ));
            }
            if !findings.is_empty() {
                summary.push_str(
                    ". The findings above are for the server's operator to address before they become failures",
                );
            }
            fix(
                summary,
                holder
                    .map(|(file, _)| vec![bundle_command(file)])
                    .unwrap_or_default(),
            )
        }
        Diagnosis::Trusted { .. } if findings.is_empty() => {
            fix("nothing to fix: the chain is trusted and healthy".into(), Vec::new())
        }
        Diagnosis::Trusted { .. } => fix(
            "the chain is trusted; the findings above are for the server's operator to address before they become failures".into(),
            Vec::new(),
        ),
        Diagnosis::NoCertificate => fix(
            "the server presented no certificate: configure it with a certificate and key".into(),
            Vec::new(),
        ),
        Diagnosis::UnknownIssuer {
            missing_issuer,
            authority_key_id,
            root_sent,
            same_name_trusted,
            candidate_files,
            subject,
            ..
        } => {
            let key_note = if *same_name_trusted {
                " (a trusted root has that name but a different key: the CA got a new key, or this is not the CA you trust)"
            } else {
                ""
            };
            if let Some(first) = candidate_files.first() {
                let files = candidate_files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                fix(
                    format!(
                        "{files} holds the missing issuer {missing_issuer}{key_note}: add it to the trust you use (the command below builds a bundle of it plus Mozilla's roots; point your client at ca-bundle.pem, or pass --ca {} to check again)",
                        shell_quote(first)
                    ),
                    vec![bundle_command(first)],
                )
            } else if *root_sent {
                fix(
                    format!(
                        "the server sent its root {subject}, which you do not trust{key_note}. Save the chain for review, confirm the root's SHA-256 fingerprint with its owner out of band, and trust it explicitly only if it is intended (anchorage bundle build <root file> --mozilla --pem ca-bundle.pem)"
                    ),
                    vec![save_chain_command(params.target)],
                )
            } else {
                let key = authority_key_id
                    .as_ref()
                    .map(|k| format!(" (key id {k})"))
                    .unwrap_or_default();
                fix(
                    format!(
                        "none of the trusted roots is {missing_issuer}{key}{key_note}. Get that CA certificate from your PKI team or the server's operator, check its fingerprint, then add it to your trust; pass it with --ca FILE to check first"
                    ),
                    vec!["anchorage bundle build <issuer file> --mozilla --pem ca-bundle.pem".into()],
                )
            }
        }
        Diagnosis::MissingIntermediate {
            issuer,
            aia_ca_issuers,
            candidate_files,
            ..
        } => {
            let mut summary = format!(
                "the server sent only its own certificate; it must also send the intermediate {issuer} (configure its certificate chain file: the leaf followed by the intermediate)"
            );
            if let Some(url) = aia_ca_issuers.first() {
                summary.push_str(&format!(
                    "; the leaf says the intermediate can be downloaded from {url}"
                ));
            }
            if let Some(file) = candidate_files.first() {
                summary.push_str(&format!(
                    "; {} holds it: append it to the server's chain file",
                    file.display()
                ));
            }
            summary.push_str(&format!(
                ". If {issuer} is your own root rather than an intermediate, trust it instead: anchorage bundle build <root file> --mozilla --pem ca-bundle.pem"
            ));
            fix(summary, Vec::new())
        }
        Diagnosis::SelfSignedLeaf {
            subject,
            sha256,
            is_ca: false,
            ..
        } => fix(
            format!(
                "the server presents a self-signed certificate {subject} (SHA-256 {sha256}). Better, have it issued by your CA. Otherwise save it for review, confirm the fingerprint with the server's operator, and trust that certificate explicitly only if that is intended"
            ),
            vec![save_chain_command(params.target)],
        ),
        Diagnosis::SelfSignedLeaf {
            subject,
            sha256,
            is_ca: true,
            in_trust,
        } => fix(
            format!(
                "the server's self-signed certificate {subject} (SHA-256 {sha256}) is marked CA:TRUE; rustls-based clients (and webpki) refuse a CA certificate as a server certificate even when it is trusted{}. Reissue it with basicConstraints CA:FALSE (openssl req -x509 … -addext basicConstraints=critical,CA:FALSE, with a subjectAltName for {}) or, better, issue it from your CA, and install the new certificate on the server{}",
                if *in_trust { ", as it is here" } else { ", so trusting it would not help" },
                params.server_name,
                if *in_trust {
                    "; then trust the new certificate (or your CA) instead of this one"
                } else {
                    "; then review it and trust it (or your CA) explicitly only if that is intended"
                }
            ),
            Vec::new(),
        ),
        Diagnosis::Expired {
            certificate,
            subject,
            not_after,
            seconds_ago,
        } => {
            let what = if *certificate == 0 {
                format!("the server's certificate {subject} expired {} ago ({not_after}): renew it and reload the server", chain::duration(*seconds_ago))
            } else {
                format!("certificate {certificate} of the chain, {subject}, expired {} ago ({not_after}): the server's chain file holds an old CA certificate; replace it with the current one from the CA", chain::duration(*seconds_ago))
            };
            fix(
                format!("{what}. If that date is wrong, check this machine's clock (now: {})", params.now),
                Vec::new(),
            )
        }
        Diagnosis::NotYetValid {
            subject,
            not_before,
            seconds_until,
            ..
        } => fix(
            format!(
                "{subject} is valid only from {not_before} (in {}): check this machine's clock (now: {}) and the clock of the CA that issued it",
                chain::duration(*seconds_until),
                params.now
            ),
            Vec::new(),
        ),
        Diagnosis::NameMismatch { asked, presented } => fix(
            format!(
                "the certificate is not valid for {asked}; it holds {}. Connect with a name it holds (or --servername one of them), or have it reissued with DNS:{asked} in its subjectAltName",
                if presented.is_empty() { "no subjectAltName at all".to_owned() } else { presented.join(", ") }
            ),
            Vec::new(),
        ),
        Diagnosis::WrongKeyUsage {
            subject,
            extended_key_usage,
            ..
        } => fix(
            format!(
                "{subject} may not be used by a TLS server: its extended key usage is {} without serverAuth. Have it reissued with extendedKeyUsage serverAuth",
                extended_key_usage.join(", ")
            ),
            Vec::new(),
        ),
        Diagnosis::BadSignature { certificate, .. } => fix(
            format!(
                "a signature in the chain does not verify{}: the server's chain file mixes certificates of different CAs or keys; reinstall the certificate and chain exactly as the CA issued them",
                certificate
                    .and_then(|i| chain.get(i).map(|c| format!(" ({} is not signed by the next certificate)", c.subject())))
                    .unwrap_or_default()
            ),
            Vec::new(),
        ),
        Diagnosis::CaUsedAsLeaf { subject, .. } => fix(
            format!(
                "the server is configured with its CA certificate {subject} instead of its own certificate: set its certificate file to the certificate issued to the server (for this name), followed by the intermediates; the CA certificate belongs in the trust of clients, not in the server's certificate slot"
            ),
            Vec::new(),
        ),
        Diagnosis::WeakSignature {
            certificate,
            subject,
            algorithm,
        } => fix(
            format!(
                "certificate {certificate} of the chain, {subject}, is signed with {algorithm}, which current clients refuse: have it reissued with a SHA-256 (or stronger) signature{}",
                if *certificate == 0 { " and install the new certificate on the server" } else { " and send the new CA certificate in the server's chain" }
            ),
            Vec::new(),
        ),
        Diagnosis::WeakKey {
            certificate,
            subject,
            bits,
        } => fix(
            format!(
                "certificate {certificate} of the chain, {subject}, has an RSA key of only {bits} bits, which current clients refuse: generate a new key (RSA 2048 bits or more, or ECDSA P-256) and have the certificate reissued for it{}",
                if *certificate == 0 { "" } else { "; every certificate that CA issued must be reissued too" }
            ),
            Vec::new(),
        ),
        Diagnosis::Untrusted { error } => fix(
            format!("rustls refused the chain: {error}; save it for review with --save-chain and compare it with what the CA issued"),
            vec![save_chain_command(params.target)],
        ),
        Diagnosis::HandshakeSignatureFailed {
            scheme,
            weak_scheme: true,
            ..
        } => fix(
            format!(
                "the server signs the TLS handshake with {scheme}, which current clients refuse: configure it to sign with SHA-256 or stronger (RSA-PSS, or RSA PKCS#1 / ECDSA with SHA-256): in OpenSSL-based servers remove the SHA-1 entries from the signature algorithms (SignatureAlgorithms, -sigalgs) and do not lower the security level to allow SHA-1; then run the doctor again"
            ),
            vec![format!("anchorage doctor {}", params.target)],
        ),
        Diagnosis::HandshakeSignatureFailed { scheme, .. } => fix(
            format!(
                "the server's {scheme} handshake signature does not verify with the key in its certificate: the server is configured with a private key that does not belong to its certificate (or something between it and us alters the handshake); install the key issued with the certificate"
            ),
            Vec::new(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use anchorage_x509::{Sha256Fingerprint, Timestamp};
    use rustls::RootCertStore;

    use super::*;
    use crate::diagnose::DEFAULT_EXPIRY_WINDOW;

    /// One value of every variant; the `match` fails to compile when a variant is added, so
    /// the fix test below cannot miss one.
    fn every_diagnosis() -> Vec<Diagnosis> {
        let at = Timestamp::from_unix(1_800_000_000);
        let all = vec![
            Diagnosis::Trusted {
                anchor: "CN=Root".into(),
                anchor_is_intermediate: false,
                anchor_issuer: None,
            },
            Diagnosis::Trusted {
                anchor: "CN=Issuing".into(),
                anchor_is_intermediate: true,
                anchor_issuer: Some("CN=Root".into()),
            },
            Diagnosis::NoCertificate,
            Diagnosis::UnknownIssuer {
                certificate: 1,
                subject: "CN=Issuing".into(),
                missing_issuer: "CN=Root".into(),
                authority_key_id: Some("ab12".into()),
                root_sent: false,
                same_name_trusted: true,
                candidate_files: Vec::new(),
            },
            Diagnosis::UnknownIssuer {
                certificate: 1,
                subject: "CN=Root".into(),
                missing_issuer: "CN=Root".into(),
                authority_key_id: None,
                root_sent: true,
                same_name_trusted: false,
                candidate_files: Vec::new(),
            },
            Diagnosis::UnknownIssuer {
                certificate: 1,
                subject: "CN=Issuing".into(),
                missing_issuer: "CN=Root".into(),
                authority_key_id: None,
                root_sent: false,
                same_name_trusted: false,
                candidate_files: vec![PathBuf::from("/etc/corp root.pem")],
            },
            Diagnosis::MissingIntermediate {
                issuer: "CN=Issuing".into(),
                authority_key_id: Some("ab12".into()),
                aia_ca_issuers: vec!["http://pki.test.invalid/issuing.crt".into()],
                candidate_files: vec![PathBuf::from("issuing.pem")],
            },
            Diagnosis::SelfSignedLeaf {
                subject: "CN=localhost".into(),
                sha256: Sha256Fingerprint::of(b"leaf"),
                is_ca: false,
                in_trust: false,
            },
            Diagnosis::SelfSignedLeaf {
                subject: "CN=localhost".into(),
                sha256: Sha256Fingerprint::of(b"leaf"),
                is_ca: true,
                in_trust: true,
            },
            Diagnosis::SelfSignedLeaf {
                subject: "CN=localhost".into(),
                sha256: Sha256Fingerprint::of(b"leaf"),
                is_ca: true,
                in_trust: false,
            },
            Diagnosis::CaUsedAsLeaf {
                subject: "CN=Issuing".into(),
                issuer: "CN=Root".into(),
            },
            Diagnosis::Expired {
                certificate: 0,
                subject: "CN=localhost".into(),
                not_after: at,
                seconds_ago: 3 * 86_400,
            },
            Diagnosis::Expired {
                certificate: 1,
                subject: "CN=Issuing".into(),
                not_after: at,
                seconds_ago: 86_400,
            },
            Diagnosis::NotYetValid {
                certificate: 0,
                subject: "CN=localhost".into(),
                not_before: at,
                seconds_until: 2 * 86_400,
            },
            Diagnosis::NameMismatch {
                asked: "foo.example".into(),
                presented: vec!["DNS:localhost".into()],
            },
            Diagnosis::WrongKeyUsage {
                certificate: 0,
                subject: "CN=localhost".into(),
                extended_key_usage: vec!["clientAuth".into()],
            },
            Diagnosis::WeakSignature {
                certificate: 0,
                subject: "CN=localhost".into(),
                algorithm: "sha1WithRSAEncryption".into(),
            },
            Diagnosis::WeakKey {
                certificate: 1,
                subject: "CN=Issuing".into(),
                bits: 1024,
            },
            Diagnosis::BadSignature {
                certificate: Some(0),
                detail: "invalid peer certificate: BadSignature".into(),
            },
            Diagnosis::Untrusted {
                error: "invalid peer certificate: Other".into(),
            },
            Diagnosis::HandshakeSignatureFailed {
                scheme: "RSA_PKCS1_SHA1".into(),
                weak_scheme: true,
                detail: "peer misbehaved".into(),
            },
            Diagnosis::HandshakeSignatureFailed {
                scheme: "ECDSA_NISTP256_SHA256".into(),
                weak_scheme: false,
                detail: "invalid signature".into(),
            },
        ];
        for d in &all {
            match d {
                Diagnosis::Trusted { .. }
                | Diagnosis::NoCertificate
                | Diagnosis::UnknownIssuer { .. }
                | Diagnosis::MissingIntermediate { .. }
                | Diagnosis::SelfSignedLeaf { .. }
                | Diagnosis::CaUsedAsLeaf { .. }
                | Diagnosis::Expired { .. }
                | Diagnosis::NotYetValid { .. }
                | Diagnosis::NameMismatch { .. }
                | Diagnosis::WrongKeyUsage { .. }
                | Diagnosis::WeakSignature { .. }
                | Diagnosis::WeakKey { .. }
                | Diagnosis::BadSignature { .. }
                | Diagnosis::Untrusted { .. }
                | Diagnosis::HandshakeSignatureFailed { .. } => {}
            }
        }
        all
    }

    #[test]
    fn no_fix_ever_suggests_turning_verification_off() {
        let roots = RootCertStore::empty();
        let params = DiagnoseParams {
            target: "localhost:443",
            server_name: "localhost",
            roots: &roots,
            root_certificates: &[],
            candidates: &[],
            now: Timestamp::from_unix(1_800_000_000),
            expiry_window: DEFAULT_EXPIRY_WINDOW,
            handshake_signature: None,
        };
        let finding = [Finding::ChainOutOfOrder {
            path: vec![0, 2, 1],
        }];
        for diagnosis in every_diagnosis() {
            for findings in [&[][..], &finding[..]] {
                let fix = fix(&[], &params, &diagnosis, findings);
                assert!(!fix.summary.is_empty(), "{diagnosis:?}");
                for text in std::iter::once(&fix.summary).chain(&fix.commands) {
                    let lower = text.to_ascii_lowercase();
                    for banned in ["insecure", "-k", "verify=false", "disable"] {
                        assert!(
                            !lower.contains(banned),
                            "{diagnosis:?}: fix mentions {banned:?}: {text}"
                        );
                    }
                    assert!(!text.contains("InsecureSkipVerify"), "{text}");
                }
            }
            // Every diagnosis reads as a sentence too.
            assert!(!diagnosis.to_string().is_empty());
        }
    }

    #[test]
    fn weak_crypto_fixes_say_what_to_reissue_with() {
        let params_roots = RootCertStore::empty();
        let params = DiagnoseParams {
            target: "localhost:443",
            server_name: "localhost",
            roots: &params_roots,
            root_certificates: &[],
            candidates: &[],
            now: Timestamp::from_unix(1_800_000_000),
            expiry_window: DEFAULT_EXPIRY_WINDOW,
            handshake_signature: None,
        };
        let all = every_diagnosis();
        let weak_sig = all
            .iter()
            .find(|d| matches!(d, Diagnosis::WeakSignature { .. }))
            .expect("weak signature");
        assert!(fix(&[], &params, weak_sig, &[]).summary.contains("SHA-256"));
        let weak_key = all
            .iter()
            .find(|d| matches!(d, Diagnosis::WeakKey { .. }))
            .expect("weak key");
        let summary = fix(&[], &params, weak_key, &[]).summary;
        assert!(
            summary.contains("RSA 2048 bits or more") && summary.contains("P-256"),
            "{summary}"
        );
        let ca_leaf = all
            .iter()
            .find(|d| matches!(d, Diagnosis::CaUsedAsLeaf { .. }))
            .expect("ca as leaf");
        assert!(fix(&[], &params, ca_leaf, &[]).summary.contains(
            "configured with its CA certificate CN=Issuing instead of its own certificate"
        ));
    }

    #[test]
    fn shell_quoting_leaves_plain_paths_bare() {
        assert_eq!(
            shell_quote(std::path::Path::new("/etc/ca.pem")),
            "/etc/ca.pem"
        );
        assert_eq!(
            shell_quote(std::path::Path::new("a b's.pem")),
            "'a b'\\''s.pem'"
        );
    }
}
