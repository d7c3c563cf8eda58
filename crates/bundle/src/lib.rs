//! The bundle model, pure: no filesystem, network, clock or environment access.
//!
//! - [`Bundle`]: certificates sorted (subject, then SHA-256) and de-duplicated by SHA-256 at
//!   construction, each with the [`Origin`]s it was found at, so every rendering is deterministic.
//! - [`render_pem`]: the PEM text of a bundle; [`render_pkcs12`] and [`render_jks`]: Java trust
//!   stores over `anchorage-keystore`.
//! - [`hashed_names`]: OpenSSL `<hash>.<n>` names numbered as `openssl rehash` numbers them, and
//!   [`HashedName::dir_entries`]: the files and links of a hashed directory in a [`DirLayout`].
//!
//! Reading sources and writing outputs is `anchorage-trust`'s job (which re-exports all of this);
//! `anchorage-k8s` and `anchorage-image` build on this crate alone, so they stay pure too.

mod bundle;
mod hashed;
mod java;
mod origin;
mod pem;

pub use bundle::{Bundle, Entry};
pub use hashed::{
    DirEntry, DirLayout, HashedName, hashed_names, is_openssl_hash_name, is_plain_file_name,
};
pub use java::{Pkcs12Options, Pkcs12Profile, render_jks, render_pkcs12};
pub use origin::Origin;
pub use pem::{PemOptions, render_pem};

/// `1 certificate`, `2 certificates`: a count with its noun in the right number, for messages
/// (nouns whose plural takes an `s`).
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
