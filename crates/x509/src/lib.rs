//! The certificate model every other Anchorage crate stands on.
//!
//! This crate takes bytes and returns facts. It decodes certificates from PEM (several per file,
//! comments and CRLF tolerated, OpenSSL's `TRUSTED CERTIFICATE` form), DER and PKCS#7 certs-only
//! bundles (`.p7b`, PEM or DER), and exposes what a trust store needs to know about each one:
//! subject, issuer, serial, validity, key type, fingerprints, basic constraints, key usage, SANs,
//! name constraints (read, written for a new CA, and matched: [`NameConstraints`]),
//! whether it is self-signed, and the OpenSSL subject-name hash used to name `<hash>.<n>` entries.
//!
//! It does no I/O, spawns nothing and never prints: callers attach the file name to the
//! [`Position`]s it reports.
//!
//! ```
//! use anchorage_x509::{decode, Input};
//!
//! let garbage = b"# a comment\n-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
//! let decoded = decode(garbage);
//! assert!(decoded.certificates.is_empty());
//! assert_eq!(decoded.problems[0].position.line, Some(2));
//! assert_eq!(decoded.input, Input::Pem);
//! ```

mod certificate;
mod decode;
mod der;
mod error;
mod fingerprint;
mod name_constraints;
mod pem;
mod subject_hash;
mod timestamp;

pub use certificate::{
    BasicConstraints, Certificate, KeyKind, KeyUsage, PublicKeyInfo, SubjectAltName,
};
pub use decode::{Decoded, Found, Input, MAX_ITEMS_PER_INPUT, Position, Problem, decode};
pub use error::DecodeError;
pub use fingerprint::{Sha1Fingerprint, Sha256Fingerprint};
pub use name_constraints::{NAME_CONSTRAINTS_OID, NameConstraints, NameSubtree, Violation};
pub use subject_hash::{SubjectHash, subject_hash_of_name};
pub use timestamp::Timestamp;
