//! Writers: each turns a [`Bundle`](crate::Bundle) into bytes in one format and writes them
//! through [`atomic`](crate::atomic).

pub(crate) mod java;
pub(crate) mod openssl_dir;
pub(crate) mod pem;

/// What a writer did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    /// Certificates in the output (hashed entries for a directory).
    pub entries: usize,
    /// `false` when the target already held exactly these bytes (names, contents, links and
    /// modes) and was left alone: no rewrite, no new modification time, no wake-up for watchers.
    pub changed: bool,
}
