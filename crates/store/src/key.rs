//! Key syntax, as NATS JetStream KV accepts it.

use crate::error::StoreError;

/// Checks a key against JetStream KV's rule: one or more of `-/_=.a-zA-Z0-9`, not starting or
/// ending with `.`, and (since `.` separates NATS subject tokens) no empty token (`..`).
///
/// Use `.` to build hierarchies (`ca.root.cert`), which [`crate::Store::keys`] can list by
/// prefix.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let bad = |reason: &'static str| {
        Err(StoreError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("a key must not be empty");
    }
    if !key.chars().all(valid_char) {
        return bad("a key may hold only letters, digits and - / _ = .");
    }
    if key.starts_with('.') || key.ends_with('.') {
        return bad("a key must not start or end with '.'");
    }
    if key.contains("..") {
        return bad("a key must not hold an empty token ('..')");
    }
    Ok(())
}

/// Checks a prefix for [`crate::Store::keys`]: empty, or key characters (it may end with `.`).
pub fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.chars().all(valid_char) && !prefix.starts_with('.') && !prefix.contains("..") {
        Ok(())
    } else {
        Err(StoreError::InvalidKey {
            key: prefix.to_owned(),
            reason: "a key prefix may hold only letters, digits and - / _ = ., and no empty token",
        })
    }
}

fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '/' | '_' | '=' | '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jetstream_key_rules() {
        for good in ["a", "ca.root.cert", "A-b_c=d/e.0", "x/y", "=", "-"] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in ["", ".a", "a.", "a..b", "a b", "a*", "a>", "é", "a\n", "a:b"] {
            assert!(
                matches!(validate_key(bad), Err(StoreError::InvalidKey { .. })),
                "{bad:?}"
            );
        }
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("ca.").is_ok());
        assert!(
            matches!(
                validate_prefix("ca*"),
                Err(StoreError::InvalidKey { key, reason })
                    if key == "ca*"
                        && reason == "a key prefix may hold only letters, digits and - / _ = ., and no empty token"
            ),
            "{:?}",
            validate_prefix("ca*")
        );
    }
}
