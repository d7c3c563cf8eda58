//! What reading one PKCS#12 file may cost in key derivation, checked before any derivation runs.
//!
//! A PKCS#12 file names its own key derivations (iteration counts, scrypt parameters) and may
//! hold any number of encrypted ContentInfos, each with its own. A hostile file (a trust store
//! pulled from an untrusted image, say) can therefore ask for seconds of CPU per ContentInfo or
//! gigabytes of scrypt memory in a few hundred bytes. So before the MAC is computed or anything
//! decrypted, every derivation the file asks for is priced here, and the file is refused
//! ([`KeystoreError::KdfLimit`]) when one scrypt exceeds [`MAX_SCRYPT_LOG_N`], [`MAX_SCRYPT_R`],
//! [`MAX_SCRYPT_P`] or [`MAX_SCRYPT_MEMORY`], or when the whole file exceeds [`MAX_KDF_WORK`].
//!
//! Work is counted in hash iterations: one iteration of PBKDF2 or of the RFC 7292 appendix B
//! derivation, per output block of the hash. scrypt's unit (one `N·r·p` step, four Salsa20/8
//! cores plus a random 128-byte memory access) is weighted [`SCRYPT_STEP_WORK`] iterations.

use crate::entry::KeystoreKind;
use crate::error::KeystoreError;

/// The most key-derivation work (in hash iterations, see the module docs) one PKCS#12 file may
/// ask for, MAC and every encrypted ContentInfo together: 20 million, about 1 to 2 seconds on
/// one core in a release build.
///
/// It is the cost of the largest store Java writes within its own per-value limit
/// ([`super::MAX_ITERATIONS`], 5,000,000): a 3DES store (key, 2 blocks, and IV, 1 block) with
/// an HMAC-SHA1 MAC (1 block) at 5,000,000 iterations each. What `keytool` and OpenSSL write by
/// default (one encrypted ContentInfo and a MAC at 10,000 or 2,048 iterations) costs a
/// thousandth of it; a file that repeats encrypted ContentInfos at Java's per-value limit does
/// not fit.
pub const MAX_KDF_WORK: u64 = 4 * super::MAX_ITERATIONS as u64;

/// The largest scrypt cost parameter accepted, as a power of two: `N <= 2^20` (RFC 7914's
/// largest example).
pub const MAX_SCRYPT_LOG_N: u32 = 20;

/// The largest scrypt block size `r` accepted (8 is what everyone uses).
pub const MAX_SCRYPT_R: u64 = 16;

/// The largest scrypt parallelization `p` accepted (1 is what everyone uses).
pub const MAX_SCRYPT_P: u64 = 16;

/// The most memory one scrypt derivation may take, `128 · N · r` bytes: 64 MiB (for example
/// `N = 2^16, r = 8`, four times OpenSSL's default `N = 2^14, r = 8`).
pub const MAX_SCRYPT_MEMORY: u64 = 64 * 1024 * 1024;

/// The work, in hash iterations, one scrypt step (`N·r·p` of them per derivation) counts for.
pub const SCRYPT_STEP_WORK: u64 = 4;

/// Adds up the work of a file's derivations and refuses a file that asks for too much.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    spent: u64,
}

impl Budget {
    /// Counts `iterations` of a hash-based derivation producing `blocks` hash outputs.
    pub(crate) fn hash_kdf(
        &mut self,
        what: &str,
        iterations: u64,
        blocks: u64,
    ) -> Result<(), KeystoreError> {
        self.add(what, iterations.saturating_mul(blocks.max(1)))
    }

    /// Checks one scrypt derivation's parameters against the per-derivation limits, then counts
    /// its work.
    pub(crate) fn scrypt(&mut self, n: u64, r: u64, p: u64) -> Result<(), KeystoreError> {
        let what = format!("scrypt N={n}, r={r}, p={p}");
        let refuse = |limit: String| KeystoreError::KdfLimit {
            kind: KeystoreKind::Pkcs12,
            what: what.clone(),
            limit,
        };
        if n < 2 || !n.is_power_of_two() || r == 0 || p == 0 {
            return Err(KeystoreError::malformed(
                KeystoreKind::Pkcs12,
                format!("{what}: N must be a power of two above 1, r and p positive"),
            ));
        }
        if n.trailing_zeros() > MAX_SCRYPT_LOG_N {
            return Err(refuse(format!("N at most 2^{MAX_SCRYPT_LOG_N}")));
        }
        if r > MAX_SCRYPT_R {
            return Err(refuse(format!("r at most {MAX_SCRYPT_R}")));
        }
        if p > MAX_SCRYPT_P {
            return Err(refuse(format!("p at most {MAX_SCRYPT_P}")));
        }
        // Cannot overflow: n <= 2^20, r <= 16.
        let memory = 128 * n * r;
        if memory > MAX_SCRYPT_MEMORY {
            return Err(refuse(format!(
                "128·N·r = {memory} bytes of memory, at most {MAX_SCRYPT_MEMORY} (64 MiB)"
            )));
        }
        self.add(&what, n * r * p * SCRYPT_STEP_WORK)
    }

    fn add(&mut self, what: &str, work: u64) -> Result<(), KeystoreError> {
        self.spent = self.spent.saturating_add(work);
        if self.spent > MAX_KDF_WORK {
            return Err(KeystoreError::KdfLimit {
                kind: KeystoreKind::Pkcs12,
                what: format!(
                    "{what} brings the file's key derivations to {} hash iterations",
                    self.spent
                ),
                limit: format!(
                    "{MAX_KDF_WORK} hash iterations per keystore, MAC and every encrypted ContentInfo together"
                ),
            });
        }
        Ok(())
    }

    /// The work counted so far.
    #[cfg(test)]
    pub(crate) fn spent(&self) -> u64 {
        self.spent
    }
}

/// How many hash outputs make `key_len` bytes.
pub(crate) fn blocks(key_len: usize, hash_len: usize) -> u64 {
    key_len.div_ceil(hash_len.max(1)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p12::MAX_ITERATIONS;

    #[test]
    fn the_largest_store_java_writes_fits() {
        let max = u64::from(MAX_ITERATIONS);
        let mut budget = Budget::default();
        // 3DES: key (24 bytes of SHA-1) and IV, then the HMAC-SHA1 MAC.
        budget.hash_kdf("PBE key", max, blocks(24, 20)).unwrap();
        budget.hash_kdf("PBE IV", max, blocks(8, 20)).unwrap();
        budget.hash_kdf("MAC", max, blocks(20, 20)).unwrap();
        assert_eq!(budget.spent(), MAX_KDF_WORK);
        // One more iteration does not.
        assert!(matches!(
            budget.hash_kdf("more", 1, 1),
            Err(KeystoreError::KdfLimit { .. })
        ));
    }

    #[test]
    fn scrypt_is_bounded_per_derivation() {
        let ok = |n, r, p| Budget::default().scrypt(n, r, p);
        ok(1 << 14, 8, 1).unwrap(); // OpenSSL's default
        ok(1 << 16, 8, 1).unwrap(); // 64 MiB
        ok(1 << 19, 1, 1).unwrap();
        for (n, r, p, says) in [
            (1u64 << 21, 1, 1, "N at most 2^20"),
            (1 << 10, 17, 1, "r at most 16"),
            (1 << 10, 8, 17, "p at most 16"),
            (1 << 17, 8, 1, "64 MiB"),
            (1 << 20, 8, 1, "64 MiB"),
        ] {
            let err = ok(n, r, p).unwrap_err();
            assert!(
                matches!(&err, KeystoreError::KdfLimit { limit, .. } if limit.contains(says)),
                "{n} {r} {p}: {err}"
            );
        }
        assert!(matches!(
            ok(1000, 8, 1),
            Err(KeystoreError::Malformed { .. })
        ));
        // Within each limit, but p = 16 at 64 MiB is too much work for one file.
        assert!(matches!(
            ok(1 << 16, 8, 16),
            Err(KeystoreError::KdfLimit { limit, .. }) if limit.contains("per keystore")
        ));
    }
}
