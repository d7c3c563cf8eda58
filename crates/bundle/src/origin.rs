//! [`Origin`]: where a certificate or a problem was found.

use std::fmt;
use std::path::Path;

use anchorage_x509::Position;
use serde::Serialize;

/// Where a certificate or a problem was found: source, detail (Kubernetes object and key), and
/// position (line, PKCS#7 index).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Origin {
    /// A path, `system trust store` or `Mozilla roots`.
    pub source: String,
    /// For Kubernetes manifests: document, object and key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Line and index inside the source (or inside the key's value).
    pub position: Position,
}

impl Origin {
    /// The origin named by a path (displayed, never opened), at no particular position.
    pub fn path(path: &Path) -> Self {
        Self {
            source: path.display().to_string(),
            detail: None,
            position: Position::default(),
        }
    }

    /// The same origin at another position inside it.
    #[must_use]
    pub fn at(&self, position: Position) -> Self {
        Self {
            position,
            ..self.clone()
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        if self.position != Position::default() {
            write!(f, ": {}", self.position)?;
        }
        Ok(())
    }
}
