//! Java trust stores (`javax.net.ssl.trustStore`) rendered from a bundle over
//! [`anchorage_keystore`].
//!
//! Every certificate of the bundle becomes a trusted-certificate entry named by
//! [`anchorage_keystore::aliases`], in bundle order; a JKS entry's creation date is the
//! certificate's notBefore. The encoders are deterministic: the same bundle gives the same bytes.

use anchorage_keystore::{KeystoreError, TrustedEntry, encode_jks, encode_pkcs12};
pub use anchorage_keystore::{Pkcs12Options, Pkcs12Profile};
use secrecy::SecretString;

use crate::bundle::Bundle;

/// Renders the bundle as a PKCS#12 trust store.
pub fn render_pkcs12(bundle: &Bundle, options: &Pkcs12Options) -> Result<Vec<u8>, KeystoreError> {
    encode_pkcs12(
        &TrustedEntry::from_certificates(bundle.certificates()),
        options,
    )
}

/// Renders the bundle as a JKS trust store sealed with `password` (Java's default is
/// `changeit`).
pub fn render_jks(bundle: &Bundle, password: &SecretString) -> Result<Vec<u8>, KeystoreError> {
    encode_jks(
        &TrustedEntry::from_certificates(bundle.certificates()),
        password,
    )
}
