//! [`RegistryError`]: everything that can go wrong moving an image.

use anchorage_image::ImageError;

/// What failed, with the facts needed to fix it.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// An image reference could not be parsed.
    #[error("{reference:?} is not an image reference ({reason})")]
    Reference {
        /// What was given.
        reference: String,
        /// Why it was refused.
        reason: String,
    },
    /// The image, tag, manifest or blob does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for (`registry/repo:tag`, `blob sha256:…`, `oci:PATH:tag`).
        what: String,
    },
    /// The registry refused the credentials (or asked for some and none were given).
    #[error("registry {registry} refused the credentials ({detail})")]
    AuthFailed {
        /// The registry host.
        registry: String,
        /// What the registry or client said.
        detail: String,
    },
    /// The registry could not be reached, or the TLS handshake failed.
    #[error("registry {registry} could not be reached: {detail}")]
    Unreachable {
        /// The registry host.
        registry: String,
        /// The connection or TLS failure, with its causes.
        detail: String,
        /// What the TLS layer said, when it explains the failure (the CLI turns it into the
        /// option that fixes it).
        reach: Reach,
    },
    /// The registry answered something other than what the distribution spec says.
    #[error("registry {registry} failed {operation}: {detail}")]
    Registry {
        /// The registry host.
        registry: String,
        /// What we asked (`push blob sha256:…`).
        operation: String,
        /// What it said.
        detail: String,
    },
    /// A manifest (or index) media type we do not handle.
    #[error("{what} has media type {media_type:?}, which is not handled")]
    UnsupportedMediaType {
        /// The manifest or layer.
        what: String,
        /// Its media type.
        media_type: String,
    },
    /// A named platform is not in the image.
    #[error("platform {platform} is not in the image (it has: {available})")]
    PlatformNotFound {
        /// The platform asked for.
        platform: String,
        /// The image platforms, comma-separated.
        available: String,
    },
    /// A blob's bytes do not have the digest they were fetched by.
    #[error("blob {expected} has digest {actual}: corrupted in transit or in the store")]
    DigestMismatch {
        /// The digest asked for.
        expected: String,
        /// The digest of what came.
        actual: String,
    },
    /// The image could not be read or the new layer planned.
    #[error("{platform}")]
    Image {
        /// The platform whose image failed (or `image`).
        platform: String,
        /// What the image core said.
        #[source]
        source: ImageError,
    },
    /// An OCI image layout directory could not be read or written.
    #[error("OCI layout {path}: {operation} failed")]
    Layout {
        /// The layout directory.
        path: String,
        /// What was being done.
        operation: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An OCI image layout directory is not valid (no `index.json`, an unreadable index).
    #[error("OCI layout {path} is not valid: {problem}")]
    InvalidLayout {
        /// The layout directory.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// A digest from a registry, manifest, index or layout is malformed: refused before it
    /// names any file or URL (a hostile registry could otherwise steer a path).
    #[error("{origin} holds an invalid digest")]
    InvalidDigest {
        /// Where the digest came from (`registry HOST: manifest REF`, `OCI layout PATH`).
        origin: String,
        /// What is wrong with it.
        #[source]
        source: ImageError,
    },
    /// A registry answer is larger than the limit for what it is (a manifest or index over
    /// [`crate::MAX_MANIFEST_BYTES`], or a blob longer than its descriptor's size).
    #[error("{what} from registry {registry} is larger than {limit} bytes; refusing it")]
    TooLarge {
        /// The registry host.
        registry: String,
        /// `manifest REF`, `blob sha256:…`.
        what: String,
        /// The limit applied (the descriptor's size for blobs).
        limit: u64,
    },
    /// No rustls crypto provider is installed as the process default (the HTTP client needs
    /// one; the binary installs ring).
    #[error("no rustls crypto provider is installed as the process default")]
    NoCryptoProvider,
    /// A temporary file for a blob could not be created or written.
    #[error("temporary blob storage failed")]
    Temp(#[source] std::io::Error),
}

/// Why a registry could not be reached, when the TLS layer says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reach {
    /// The server answered the TLS hello with something that is not TLS (rustls:
    /// `InvalidContentType`): it speaks plain HTTP, so it must be named as an insecure registry.
    PlainHttp,
    /// The server's certificate chain leads to no trusted root (rustls: `UnknownIssuer`): its
    /// CA must be added to the trust.
    UnknownIssuer,
    /// Anything else: a refused connection, a timeout, another TLS failure.
    Other,
}

impl Reach {
    /// Reads the TLS failure out of `error`'s chain of causes.
    pub(crate) fn of(error: &(dyn std::error::Error + 'static)) -> Self {
        let from_rustls = |e: &rustls::Error| match e {
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
                Some(Self::PlainHttp)
            }
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                Some(Self::UnknownIssuer)
            }
            _ => None,
        };
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<rustls::Error>().and_then(from_rustls) {
                return found;
            }
            // io::Error's source() skips the error it wraps: look inside.
            if let Some(found) = e
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .and_then(from_rustls)
            {
                return found;
            }
            next = e.source();
        }
        // The same facts as rustls words them, should a layer in between have flattened the
        // error into text.
        let text = format!("{error:?} {error}");
        if text.contains("InvalidContentType") {
            Self::PlainHttp
        } else if text.contains("UnknownIssuer") {
            Self::UnknownIssuer
        } else {
            Self::Other
        }
    }
}

impl RegistryError {
    pub(crate) fn layout(
        path: &std::path::Path,
        operation: impl Into<String>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.display().to_string();
        let operation = operation.into();
        move |source| Self::Layout {
            path,
            operation,
            source,
        }
    }
}
