//! OCI registries and image layouts for `anchorage image inject`.
//!
//! [`inject`] runs the whole pipeline over the pure core of `anchorage-image`: it fetches the
//! source's manifest or index ([`ImageRef`]: a registry reference or `oci:PATH[:tag]`), reads
//! each selected platform's layers top down only as far as the plan needs (a layer is
//! downloaded when first opened, never with `--replace`), appends one reproducible layer,
//! updates config, manifest and index, and pushes only what the destination lacks: original
//! blobs are skipped when present and mounted within one registry; the new config and layer are
//! uploaded; manifests go by digest, the tag last.
//!
//! Registry access is `oci-client` (see [`ClientSettings`]): HTTPS verified against exactly the
//! roots given, plain HTTP only for hosts named insecure, anonymous or Docker `config.json`
//! credentials (basic, and bearer tokens the registry hands out). The HTTP stack needs a rustls
//! crypto provider installed as the process default (the binary installs ring);
//! [`RegistryError::NoCryptoProvider`] otherwise. Everything here blocks: the async client runs
//! on a private current-thread runtime, so do not call it from inside an async task.
//!
//! ```
//! use anchorage_registry::{ImageRef, parse_platform};
//!
//! let source = ImageRef::parse("registry.corp.example:5000/mirror/debian:12")?;
//! assert_eq!(source.registry(), Some("registry.corp.example:5000"));
//! let layout = ImageRef::parse("oci:./images/debian:12-corp")?;
//! assert!(layout.registry().is_none());
//! assert_eq!(parse_platform("linux/arm64/v8")?.to_string(), "linux/arm64/v8");
//! # Ok::<(), anchorage_registry::RegistryError>(())
//! ```

mod error;
mod inject;
mod layout;
mod reference;
mod remote;

pub use error::{Reach, RegistryError};
pub use inject::{
    Event, InjectReport, InjectRequest, LayerInfo, PlatformResult, inject, matches, parse_platform,
};
pub use layout::REF_NAME;
pub use reference::ImageRef;
pub use remote::{ClientSettings, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
