//! The decoders of OpenBao/Vault answers, driven from outside the crate by the fuzz targets
//! (`anchorage-fuzz-targets`, issue 18). Not an API: hidden from the documentation and free to
//! change with the targets.
//!
//! [`decode_answer`] runs every reader `VaultIssuer` applies to an answer body, as it applies
//! them: the error text of a refusal, the CA chain envelope, the issue/sign envelope (with the
//! private key unescaped into zeroizing memory) and the AppRole login answer (with the client
//! token and the header made from it). It panics only when an invariant breaks: a reader
//! panics, or the hand-written unescaping of a secret string disagrees with `serde_json`'s.

use serde_json::value::RawValue;

use crate::http::secret_header;
use crate::issuer::parse_certificates;
use crate::wire::{self, ChainData, ChainField, Envelope, IssueData, LoginAnswer};

/// Every reader of an answer body over `body`; see the module docs. Returns how many of the
/// three envelopes (chain, issue, login) decoded with their block present, so seeds can be
/// checked to reach past the decoders.
pub fn decode_answer(body: &[u8]) -> usize {
    let mut decoded = 0;
    let text = wire::error_text(body);
    assert!(
        !text.chars().any(char::is_control),
        "error text keeps control characters"
    );
    if let Ok(envelope) = serde_json::from_slice::<Envelope<ChainData>>(body)
        && let Some(data) = envelope.data
    {
        let mut pems = match data.ca_chain {
            Some(ChainField::List(list)) => list,
            Some(ChainField::One(one)) => vec![one],
            None => Vec::new(),
        };
        if pems.is_empty() {
            pems.extend(data.certificate);
        }
        let _ = parse_certificates(pems.iter().map(String::as_str));
        decoded += 1;
    }
    if let Ok(envelope) = serde_json::from_slice::<Envelope<IssueData<'_>>>(body) {
        let _ = envelope.warnings.map(|w| w.len());
        if let Some(data) = envelope.data {
            decoded += 1;
            let _ = parse_certificates([data.certificate.as_str()]);
            let _ = parse_certificates([data.issuing_ca.as_str()]);
            if let Some(chain) = &data.ca_chain {
                let _ = parse_certificates(chain.iter().map(String::as_str));
            }
            if let Some(raw) = data.private_key {
                check_secret_string(raw);
                if let Ok(Some(pem)) = wire::secret_string(raw) {
                    let _ = anchorage_ca::keys::load(pem.as_bytes());
                }
            }
        }
    }
    if let Ok(answer) = serde_json::from_slice::<LoginAnswer<'_>>(body)
        && let Some(auth) = answer.auth
    {
        check_secret_string(auth.client_token);
        if let Ok(Some(token)) = wire::secret_string(auth.client_token)
            && let Ok(header) = secret_header(&token)
        {
            assert_eq!(header.as_bytes(), token.as_bytes(), "header is the token");
            assert!(header.is_sensitive(), "token header not marked sensitive");
        }
        decoded += 1;
    }
    decoded
}

/// `wire::secret_string` against `serde_json` on the same raw value: where both read it, the
/// same text (surrogate escapes aside, which the hand-written reader refuses on purpose).
fn check_secret_string(raw: &RawValue) {
    let ours = wire::secret_string(raw);
    let theirs = serde_json::from_str::<Option<String>>(raw.get());
    match (&ours, &theirs) {
        (Ok(Some(ours)), Ok(Some(theirs))) => assert_eq!(ours.as_str(), theirs, "unescaping"),
        (Ok(None), Ok(theirs)) => assert!(theirs.is_none(), "null read as a string"),
        (Ok(Some(_)), _) => panic!("a value serde_json refuses was read: {theirs:?}"),
        (Err(_), Ok(Some(text))) => assert!(
            // Ours refuses what never occurs in PEM or tokens: surrogates (`\ud83d…`).
            raw.get().to_ascii_lowercase().contains("\\ud"),
            "a string serde_json reads was refused: {:?}, {text:?}",
            ours.err()
        ),
        _ => {}
    }
}
