//! Targets over anchorage-secrets: the `get` request (xkey envelope, request JSON, JWTs), the
//! JWT checks alone, and signed admin requests.
//!
//! The envelope is a NaCl box: random bytes never open, so the structured modes seal the
//! fuzzer's bytes to a fixed transit key first, and the fuzzer works on what is behind it. The
//! keys below are fuzzing keys, published here on purpose and used nowhere else.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use anchorage_secrets::admin::{
    AdminPolicy, AdminVerifier, DEFAULT_ADMIN_MAX_LIFETIME, DEFAULT_ADMIN_SKEW,
    DEFAULT_MAX_ADMIN_REQUEST_BYTES,
};
use anchorage_secrets::{
    GetHandler, JwtPolicy, Mappings, PublicXKey, XKey, verify_entity, verify_host,
};
use secrecy::SecretString;

/// The transit xkey seed of the fuzzed server (a test key, public on purpose).
pub const TRANSIT_SEED: &str = "SXAGXBA7OAVT72TGNAZZ54UDDJXO5L2DUBM4KIBFE4LPS4WPXATP2XOXWY";
/// The admin user nkey seed the fuzzed server trusts (a test key, public on purpose).
pub const ADMIN_SEED: &str = "SUADDGUGDUDC73FNQKN6XK5OHYALZZQOOCNXWMX75JSJNXF7FSAQP6YM24";
/// The clock of every target: admin seeds are signed for it (2027-01-15T08:00:00Z).
pub const NOW_UNIX: u64 = 1_800_000_000;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW_UNIX)
}

/// The fuzzed server's transit key, from [`TRANSIT_SEED`].
pub fn transit_key() -> XKey {
    XKey::from_seed(&SecretString::from(TRANSIT_SEED), "fuzz").expect("fuzz transit seed")
}

struct Server {
    handler: GetHandler,
    admin: AdminVerifier,
    mappings: Mappings,
    transit_public: PublicXKey,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let transit = transit_key();
        let transit_public = PublicXKey::parse(transit.public_key()).expect("transit public key");
        let admin_key = anchorage_secrets::admin::AdminSigner::from_seed(
            &SecretString::from(ADMIN_SEED),
            "fuzz",
        )
        .expect("fuzz admin seed")
        .public_key();
        let policy = AdminPolicy {
            keys: BTreeSet::from([admin_key]),
            skew: DEFAULT_ADMIN_SKEW,
            max_lifetime: DEFAULT_ADMIN_MAX_LIFETIME,
            max_request_bytes: DEFAULT_MAX_ADMIN_REQUEST_BYTES,
        };
        let mut mappings = Mappings::new();
        mappings.allow(
            "MBFUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZ",
            "db-password",
        );
        Server {
            handler: GetHandler::new(transit, JwtPolicy::default()),
            admin: AdminVerifier::new(policy, "fuzz"),
            mappings,
            transit_public,
        }
    })
}

/// Seals `plain` to the server's transit key as a host would: the one-time public key for the
/// header, and the body.
fn seal(plain: &[u8]) -> Option<(String, Vec<u8>)> {
    XKey::seal_reply(plain, &server().transit_public).ok()
}

/// `GetHandler::handle_get`. First byte even: the rest is the sealed body as received (the
/// envelope parser); odd: the rest is the request JSON, sealed here first.
pub fn secrets_get(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let server = server();
    let (header, body) = if mode % 2 == 0 {
        (XKey::generate().public_key().to_owned(), rest.to_vec())
    } else {
        let Some(sealed) = seal(rest) else {
            return;
        };
        sealed
    };
    let reply = server
        .handler
        .handle_get(Some(&header), &body, &server.mappings, now(), |_| Ok(None));
    assert!(
        !reply.is_success(),
        "no secret exists, so no request succeeds"
    );
    let _ = reply.headers();
}

/// `verify_entity` and `verify_host` on the bytes as a token.
pub fn secrets_jwt(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let policy = JwtPolicy::default();
    if let Err(e) = verify_entity(token, &policy, now()) {
        let _ = e.to_string();
    }
    if let Err(e) = verify_host(token, &policy, now()) {
        let _ = e.to_string();
    }
}

const ADMIN_OPS: &[&str] = &[
    "put",
    "get",
    "delete",
    "list",
    "add_mapping",
    "remove_mapping",
    "list_mappings",
    "rotate_encryption_key",
    "bogus",
];

/// `AdminVerifier::verify`: the first byte picks the subject's operation, the rest is the
/// request JSON (`{"jwt":…,"value":…}`), sealed here to the transit key. A fresh verifier each
/// time, so a replayed token is not refused for having been seen.
pub fn secrets_admin(data: &[u8]) {
    let Some((op, rest)) = data.split_first() else {
        return;
    };
    let server = server();
    let op = ADMIN_OPS[usize::from(*op) % ADMIN_OPS.len()];
    let Some((header, body)) = seal(rest) else {
        return;
    };
    let policy = AdminPolicy {
        keys: server.admin.keys().clone(),
        skew: DEFAULT_ADMIN_SKEW,
        max_lifetime: DEFAULT_ADMIN_MAX_LIFETIME,
        max_request_bytes: DEFAULT_MAX_ADMIN_REQUEST_BYTES,
    };
    let verifier = AdminVerifier::new(policy, "fuzz");
    let transit = transit_key();
    match verifier.verify(op, Some(&header), &body, &transit, now()) {
        Ok(verified) => {
            let _ = (
                verified.token_id(),
                verified.replay_key(),
                verified.remember_until(),
            );
            let _ = verified.seal_result(b"{}");
        }
        Err(refused) => {
            let (error, _audit) = *refused;
            let _ = (error.code(), error.body());
        }
    }
}
