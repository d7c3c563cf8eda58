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

/// Writes `bytes` to `path` atomically (mode 0644), unless `path` already holds exactly these
/// bytes as a regular 0644 file: then it is left alone (`changed: false`). The one body behind
/// every single-file writer.
pub fn write_file_if_changed(
    path: &std::path::Path,
    bytes: &[u8],
    entries: usize,
) -> Result<Written, crate::TrustError> {
    let changed = !crate::atomic::file_holds(path, bytes);
    if changed {
        crate::atomic::write_file(path, bytes).map_err(|source| crate::TrustError::Output {
            path: path.to_owned(),
            source,
        })?;
    } else {
        crate::atomic::remove_stale_beside(path);
    }
    Ok(Written { entries, changed })
}
