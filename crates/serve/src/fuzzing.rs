//! The request body decoders of every JSON endpoint, driven from outside the crate by the fuzz
//! targets (`anchorage-fuzz-targets`, issue 18). Not an API: hidden from the documentation and
//! free to change with the targets.
//!
//! The bodies are private types read by the `JsonBody`/`VaultBody` extractors; [`request_body`]
//! decodes bytes as one of them exactly as the extractors do once the body arrived
//! (`http::parse_body`), then makes the pure checks its handler makes first. Driving the whole
//! router instead would need a CA, a store and a runtime per input for the same parsers.

use crate::api::{AckBody, CasBody, IssueBody, RenewBody, RevokeBody, SignBody, TokenBody};
use crate::http::parse_body;
use crate::roles::Role;
use crate::rotation::ActionRequest;
use crate::vault::{Login, VaultIssue, VaultRole};

/// The bodies, in the order byte 0 of a fuzz input picks them.
pub const BODIES: &[&str] = &[
    "POST /v1/issue",
    "POST /v1/sign",
    "POST /v1/renew",
    "POST /v1/revoke",
    "PUT /v1/bundle (CAS)",
    "POST /v1/ack",
    "POST /v1/rotation",
    "PUT /v1/roles/<name>",
    "POST /v1/tokens",
    "Vault issue/sign",
    "Vault role",
    "Vault login",
];

/// Byte 0 picks the body ([`BODIES`], modulo their count); the rest is the body. True when the
/// body decoded (so seeds can be checked to reach past the decoder). Panics only when an
/// invariant breaks: a decoder or check panics, or a role does not survive encode → decode.
pub fn request_body(data: &[u8]) -> bool {
    let Some((&pick, body)) = data.split_first() else {
        return false;
    };
    match usize::from(pick) % BODIES.len() {
        0 => {
            let Ok(b) = parse_body::<IssueBody>(body) else {
                return false;
            };
            let _ = b.check();
            true
        }
        1 => {
            let Ok(b) = parse_body::<SignBody>(body) else {
                return false;
            };
            let _ = b.check();
            true
        }
        2 => parse_body::<RenewBody>(body).is_ok(),
        3 => parse_body::<RevokeBody>(body).is_ok(),
        4 => parse_body::<CasBody>(body).is_ok(),
        5 => parse_body::<AckBody>(body).is_ok(),
        6 => parse_body::<ActionRequest>(body).is_ok(),
        7 => {
            let Ok(role) = parse_body::<Role>(body) else {
                return false;
            };
            let again = serde_json::to_vec(&role).expect("a role encodes");
            let back: Role = parse_body(&again).expect("an encoded role decodes");
            assert_eq!(back, role, "role round trip");
            true
        }
        8 => parse_body::<TokenBody>(body).is_ok(),
        9 => parse_body::<VaultIssue>(body).is_ok(),
        10 => parse_body::<VaultRole>(body).is_ok(),
        _ => parse_body::<Login>(body).is_ok(),
    }
}
