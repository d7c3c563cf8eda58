//! Where each agent's files and its peers' state live in the work directory.

use std::path::{Path, PathBuf};

use crate::error::SoakError;

/// The files of agent `i` (`<work>/a<i>/`): what the agent writes, and what its workload
/// peers (the rustls peer, the openssl s_server) record.
#[derive(Clone, Debug)]
pub(crate) struct AgentFiles {
    /// The agent's directory.
    pub(crate) dir: PathBuf,
}

impl AgentFiles {
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The trust bundle (`--pem`): what every server and client of this agent trusts.
    pub(crate) fn bundle(&self) -> PathBuf {
        self.dir.join("bundle.pem")
    }
    /// The identity directory (`--identity-dir`).
    pub(crate) fn id_dir(&self) -> PathBuf {
        self.dir.join("id")
    }
    /// The leaf.
    pub(crate) fn cert(&self) -> PathBuf {
        self.id_dir().join("cert.pem")
    }
    /// The key (0600).
    pub(crate) fn key(&self) -> PathBuf {
        self.id_dir().join("key.pem")
    }
    /// Leaf then intermediates.
    pub(crate) fn chain(&self) -> PathBuf {
        self.id_dir().join("chain.pem")
    }
    /// The agent's status file.
    pub(crate) fn status(&self) -> PathBuf {
        self.dir.join("status.json")
    }
    /// The rustls peer's PID (the agent's `--on-change-pidfile`).
    pub(crate) fn rustls_pid(&self) -> PathBuf {
        self.dir.join("rustls.pid")
    }
    /// The rustls peer's server port.
    pub(crate) fn rustls_port(&self) -> PathBuf {
        self.dir.join("rustls.port")
    }
    /// The openssl side: generations of copied files, the current s_server.
    pub(crate) fn ossl(&self) -> PathBuf {
        self.dir.join("ossl")
    }
    /// `<port> <generation dir> <pid>` of the s_server in service.
    pub(crate) fn ossl_current(&self) -> PathBuf {
        self.ossl().join("current")
    }
    /// Every identity file and the bundle exist.
    pub(crate) fn complete(&self) -> bool {
        [self.bundle(), self.cert(), self.key(), self.chain()]
            .iter()
            .all(|p| p.is_file())
    }
}

/// Writes `text` to `path` atomically (a temp file beside it, renamed over it).
pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<(), SoakError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    #[allow(clippy::disallowed_methods)] // harness state, not an anchorage output
    std::fs::write(&tmp, text).map_err(|e| SoakError::file("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| SoakError::file("rename onto", path, e))
}

/// Reads a small text file, trimmed; `None` when absent or unreadable.
pub(crate) fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}
