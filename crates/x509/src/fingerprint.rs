//! Certificate fingerprints: SHA-256 (identity everywhere in Anchorage) and SHA-1 (what older
//! tools and `openssl rehash` print).

use std::fmt;

use serde::{Serialize, Serializer};
use sha1::Digest as _;

macro_rules! fingerprint {
    ($name:ident, $len:expr, $hasher:ty, $doc:expr) => {
        #[doc = $doc]
        ///
        /// `Display` gives OpenSSL's form (upper-case hex pairs joined by `:`); [`Self::hex`] gives
        /// plain lower-case hex for file names and JSON keys.
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Computes the fingerprint of a certificate's DER encoding.
            pub fn of(der: &[u8]) -> Self {
                Self(<$hasher>::digest(der).into())
            }

            /// The raw digest bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lower-case hex without separators.
            pub fn hex(&self) -> String {
                self.0.iter().map(|b| format!("{b:02x}")).collect()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for (i, b) in self.0.iter().enumerate() {
                    if i > 0 {
                        f.write_str(":")?;
                    }
                    write!(f, "{b:02X}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.hex())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.hex())
            }
        }
    };
}

fingerprint!(
    Sha256Fingerprint,
    32,
    sha2::Sha256,
    "SHA-256 of a certificate's DER encoding."
);
fingerprint!(
    Sha1Fingerprint,
    20,
    sha1::Sha1,
    "SHA-1 of a certificate's DER encoding."
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let fp = Sha256Fingerprint::of(b"abc");
        assert_eq!(
            fp.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(fp.to_string().starts_with("BA:78:16:BF:"));
        assert_eq!(
            Sha1Fingerprint::of(b"abc").hex(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}
