//! The cryptography of PKCS#12: the RFC 7292 appendix B key derivation (for the MAC and the
//! legacy PBE ciphers, from the `pkcs12` crate), HMAC, 3DES and 40-bit RC2 in CBC mode, and
//! PBES2 (from the `pkcs5` crate).

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut as _, BlockEncryptMut as _, InnerIvInit as _, KeyIvInit as _};
use der::asn1::ObjectIdentifier;
use hmac::digest::core_api::BlockSizeUser;
use hmac::digest::{Digest, FixedOutputReset};
use hmac::{Mac as _, SimpleHmac};
use pkcs12::kdf::{Pkcs12KeyType, derive_key};
use zeroize::Zeroizing;

use super::oid;

/// The password as the PKCS#12 key derivation takes it: UTF-16BE code units then two zero bytes
/// (RFC 7292 B.1), which is what Java's `char[]` gives (characters beyond the BMP as surrogate
/// pairs).
pub(crate) fn bmp_password(password: &str) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(password.len() * 2 + 2));
    for unit in password.encode_utf16() {
        out.extend_from_slice(&unit.to_be_bytes());
    }
    out.extend_from_slice(&[0, 0]);
    out
}

/// The digest of a PKCS#12 MAC (the key comes from the appendix B derivation with ID 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MacDigest {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl MacDigest {
    pub(crate) fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        [
            (oid::SHA1, Self::Sha1),
            (oid::SHA224, Self::Sha224),
            (oid::SHA256, Self::Sha256),
            (oid::SHA384, Self::Sha384),
            (oid::SHA512, Self::Sha512),
        ]
        .into_iter()
        .find_map(|(o, d)| (o == oid).then_some(d))
    }

    pub(crate) fn oid(self) -> ObjectIdentifier {
        match self {
            Self::Sha1 => oid::SHA1,
            Self::Sha224 => oid::SHA224,
            Self::Sha256 => oid::SHA256,
            Self::Sha384 => oid::SHA384,
            Self::Sha512 => oid::SHA512,
        }
    }

    /// How the check is named in errors.
    pub(crate) fn check_name(self) -> &'static str {
        match self {
            Self::Sha1 => "HMAC-SHA1 MAC",
            Self::Sha224 => "HMAC-SHA224 MAC",
            Self::Sha256 => "HMAC-SHA256 MAC",
            Self::Sha384 => "HMAC-SHA384 MAC",
            Self::Sha512 => "HMAC-SHA512 MAC",
        }
    }

    /// The MAC of `data` under `password` (as [`bmp_password`] gives it).
    pub(crate) fn mac(self, password: &[u8], salt: &[u8], iterations: i32, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => mac_with::<sha1::Sha1>(password, salt, iterations, data),
            Self::Sha224 => mac_with::<sha2::Sha224>(password, salt, iterations, data),
            Self::Sha256 => mac_with::<sha2::Sha256>(password, salt, iterations, data),
            Self::Sha384 => mac_with::<sha2::Sha384>(password, salt, iterations, data),
            Self::Sha512 => mac_with::<sha2::Sha512>(password, salt, iterations, data),
        }
    }
}

fn mac_with<D>(password: &[u8], salt: &[u8], iterations: i32, data: &[u8]) -> Vec<u8>
where
    D: Digest + FixedOutputReset + BlockSizeUser,
{
    let key = Zeroizing::new(derive_key::<D>(
        password,
        salt,
        Pkcs12KeyType::Mac,
        iterations,
        <D as Digest>::output_size(),
    ));
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <SimpleHmac<D> as hmac::digest::KeyInit>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The PKCS#12 (appendix C) password-based ciphers we write and read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LegacyCipher {
    /// `pbeWithSHAAnd3-KeyTripleDES-CBC`.
    TripleDes,
    /// `pbeWithSHAAnd40BitRC2-CBC`.
    Rc2_40,
}

impl LegacyCipher {
    pub(crate) fn oid(self) -> ObjectIdentifier {
        match self {
            Self::TripleDes => pkcs12::PKCS_12_PBE_WITH_SHAAND3_KEY_TRIPLE_DES_CBC,
            Self::Rc2_40 => pkcs12::PKCS_12_PBEWITH_SHAAND40_BIT_RC2_CBC,
        }
    }

    pub(crate) fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        [Self::TripleDes, Self::Rc2_40]
            .into_iter()
            .find(|c| c.oid() == oid)
    }

    pub(crate) fn key_len(self) -> usize {
        match self {
            Self::TripleDes => 24,
            Self::Rc2_40 => 5,
        }
    }

    /// Key and IV from the appendix B derivation with SHA-1 (IDs 1 and 2).
    fn key_iv(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: i32,
    ) -> (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>) {
        let derive = |id, len| {
            Zeroizing::new(derive_key::<sha1::Sha1>(
                password, salt, id, iterations, len,
            ))
        };
        (
            derive(Pkcs12KeyType::EncryptionKey, self.key_len()),
            derive(Pkcs12KeyType::Iv, 8),
        )
    }

    pub(crate) fn encrypt(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: i32,
        plaintext: &[u8],
    ) -> Vec<u8> {
        let (key, iv) = self.key_iv(password, salt, iterations);
        // Key and IV lengths are fixed above, so construction cannot fail.
        match self {
            Self::TripleDes => cbc::Encryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
                .unwrap_or_else(|_| unreachable!("24-byte key, 8-byte IV"))
                .encrypt_padded_vec_mut::<Pkcs7>(plaintext),
            Self::Rc2_40 => cbc::Encryptor::<rc2::Rc2>::inner_iv_slice_init(
                rc2::Rc2::new_with_eff_key_len(&key, 40),
                &iv,
            )
            .unwrap_or_else(|_| unreachable!("8-byte IV"))
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext),
        }
    }

    /// `None` when the padding is wrong (a wrong password, or damage).
    pub(crate) fn decrypt(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: i32,
        ciphertext: &[u8],
    ) -> Option<Vec<u8>> {
        let (key, iv) = self.key_iv(password, salt, iterations);
        match self {
            Self::TripleDes => cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
                .ok()?
                .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
                .ok(),
            Self::Rc2_40 => cbc::Decryptor::<rc2::Rc2>::inner_iv_slice_init(
                rc2::Rc2::new_with_eff_key_len(&key, 40),
                &iv,
            )
            .ok()?
            .decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
            .ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bmp_password_is_utf16be_with_a_terminator() {
        assert_eq!(*bmp_password("ab"), vec![0, b'a', 0, b'b', 0, 0]);
        assert_eq!(*bmp_password("é"), vec![0, 0xe9, 0, 0]);
        // Beyond the BMP: a surrogate pair, as Java's char[] holds it.
        assert_eq!(*bmp_password("𝄞"), vec![0xd8, 0x34, 0xdd, 0x1e, 0, 0]);
    }

    #[test]
    fn legacy_ciphers_round_trip_and_refuse_a_wrong_key() {
        let pw = bmp_password("changeit");
        let other = bmp_password("changeme");
        for cipher in [LegacyCipher::TripleDes, LegacyCipher::Rc2_40] {
            let ct = cipher.encrypt(&pw, b"saltsalt", 3, b"hello, trust store");
            assert_eq!(ct.len() % 8, 0);
            assert_eq!(
                cipher.decrypt(&pw, b"saltsalt", 3, &ct).as_deref(),
                Some(&b"hello, trust store"[..])
            );
            assert_ne!(
                cipher.decrypt(&other, b"saltsalt", 3, &ct).as_deref(),
                Some(&b"hello, trust store"[..])
            );
        }
    }
}
