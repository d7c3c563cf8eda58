//! Test helpers shared by every Anchorage test tier.
//!
//! - [`pki`]: a test PKI made with rcgen (root → intermediate → leaf for `localhost`, plain CAs,
//!   expired CAs, names of every string type);
//! - [`peer`]: finding real tools (`openssl`, `curl`, `gnutls-cli`, `python3`) and starting real
//!   servers on a free loopback port; a missing tool skips the test with a loud message locally and
//!   fails it in CI (`CI=true`);
//! - [`tempdir`]: a temporary directory that is removed when dropped.
//!
//! Unpublished: only tests depend on it.

// Test helpers talk to the person running the tests (e.g. `SKIPPED: ...`).
#![allow(clippy::print_stderr, clippy::print_stdout)]

pub mod fake_registry;
pub mod kmock;
pub mod manifests;
pub mod nats;
pub mod openbao;
pub mod peer;
pub mod pki;
pub mod registry;
pub mod small_disk;

pub use tempfile::{TempDir, tempdir};
