//! Registries over the OCI distribution API, through `oci-client`.
//!
//! Owns the HTTP client (rustls with the process-default provider, roots given by the caller,
//! plain HTTP only for hosts named insecure), credentials from Docker's `config.json`, and the
//! mapping of registry answers to [`RegistryError`]. The client is async; this module runs it on
//! its own current-thread runtime and offers blocking calls, so the pipeline (and the layer
//! reader, which is `std::io::Read`) stays synchronous.
//!
//! `oci-client` covers everything needed: raw manifest bytes in and out (so digests are those of
//! the exact bytes), `HEAD` for blobs, cross-repository mounts, bearer-token and basic auth.

use std::io::Write;

use anchorage_image::Digest;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::HeaderValue;
use oci_client::RegistryOperation;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::error::{Reach, RegistryError};
use crate::layout::check_digest;

/// Manifest media types asked for (and handled), plus Docker schema 1, asked for so that it can
/// be refused by name rather than as "not found".
const ACCEPT: &[&str] = &[
    anchorage_image::media_type::OCI_INDEX,
    anchorage_image::media_type::OCI_MANIFEST,
    anchorage_image::media_type::DOCKER_LIST,
    anchorage_image::media_type::DOCKER_MANIFEST,
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
];

/// The largest manifest or index accepted, in bytes: 4 MiB, the limit `distribution`
/// (docker-registry) enforces when a manifest is pushed, so no registry holds a larger one
/// legitimately. Checked against `Content-Length` and again while the body streams.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// The largest image configuration accepted, in bytes (it is read into memory whole).
/// Configurations are a few KiB; 16 MiB leaves room for very long histories.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// How registries are reached.
#[derive(Clone, Debug, Default)]
pub struct ClientSettings {
    /// DER certificates trusted for HTTPS (only these: build them with
    /// `anchorage_trust::tls::TrustConfig::load`, so `--tls-ca-path` applies).
    pub roots: Vec<Vec<u8>>,
    /// Hosts (`host[:port]`) spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Read credentials from Docker's `config.json` (`$DOCKER_CONFIG`, else `~/.docker`),
    /// including credential helpers. Off: anonymous.
    pub docker_config: bool,
}

pub(crate) struct Remote {
    runtime: tokio::runtime::Runtime,
    client: Client,
    /// The same trust, timeouts and user agent as `client`'s, for bounded manifest reads.
    http: reqwest::Client,
    insecure_registries: Vec<String>,
    docker_config: bool,
}

impl Remote {
    pub(crate) fn new(settings: &ClientSettings) -> Result<Self, RegistryError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(RegistryError::NoCryptoProvider);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RegistryError::Temp)?;
        let config = ClientConfig {
            protocol: if settings.insecure_registries.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(settings.insecure_registries.clone())
            },
            tls_certs_only: settings
                .roots
                .iter()
                .map(|der| Certificate {
                    encoding: CertificateEncoding::Der,
                    data: der.clone(),
                })
                .collect(),
            // Monolithic uploads: one POST and one PUT per blob (our blobs are small; the
            // originals are mounted or skipped).
            use_monolithic_push: true,
            platform_resolver: None,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: Some(std::time::Duration::from_secs(300)),
            user_agent: concat!("anchorage/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let building = |detail: String| RegistryError::Registry {
            registry: "-".into(),
            operation: "building the HTTP client".into(),
            detail,
        };
        let (client, http) = {
            // reqwest resolves the system proxy and TLS set-up at build time; inside the runtime
            // for its timers.
            let _guard = runtime.enter();
            let client = Client::try_from(config).map_err(|e| building(causes(&e)))?;
            let mut http = reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(30))
                .read_timeout(std::time::Duration::from_secs(300))
                .user_agent(concat!("anchorage/", env!("CARGO_PKG_VERSION")));
            if !settings.roots.is_empty() {
                let roots = settings
                    .roots
                    .iter()
                    .map(|der| reqwest::Certificate::from_der(der))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| building(causes(&e)))?;
                http = http.tls_certs_only(roots);
            }
            (client, http.build().map_err(|e| building(causes(&e)))?)
        };
        Ok(Self {
            runtime,
            client,
            http,
            insecure_registries: settings.insecure_registries.clone(),
            docker_config: settings.docker_config,
        })
    }

    /// Credentials for `reference`'s registry, from Docker's config when enabled.
    fn auth(&self, reference: &Reference) -> RegistryAuth {
        if !self.docker_config {
            return RegistryAuth::Anonymous;
        }
        let server = match reference.resolve_registry() {
            "index.docker.io" | "registry-1.docker.io" | "docker.io" => {
                "https://index.docker.io/v1/".to_owned()
            }
            other => other.to_owned(),
        };
        match docker_credential::get_credential(&server) {
            Ok(docker_credential::DockerCredential::UsernamePassword(user, password)) => {
                RegistryAuth::Basic(user, password)
            }
            Ok(docker_credential::DockerCredential::IdentityToken(_)) => {
                tracing::warn!(registry = %server, "Docker identity tokens are not supported; trying anonymously");
                RegistryAuth::Anonymous
            }
            Err(e) => {
                tracing::debug!(registry = %server, error = %e, "no Docker credentials");
                RegistryAuth::Anonymous
            }
        }
    }

    fn ensure_auth(&self, reference: &Reference) {
        let auth = self.auth(reference);
        self.runtime.block_on(
            self.client
                .store_auth_if_needed(reference.resolve_registry(), &auth),
        );
    }

    /// The manifest (or index) `reference` names: its exact bytes and digest, at most
    /// [`MAX_MANIFEST_BYTES`].
    ///
    /// oci-client does the token exchange (and caches the token); the GET is ours, because
    /// oci-client reads a manifest body whole and a hostile registry could send gigabytes.
    pub(crate) fn manifest(&self, reference: &Reference) -> Result<(Bytes, Digest), RegistryError> {
        let auth = self.auth(reference);
        let registry = reference.resolve_registry().to_owned();
        let whole = reference.whole();
        let wanted = reference
            .digest()
            .map(|d| {
                Digest::parse(d).map_err(|source| RegistryError::InvalidDigest {
                    origin: format!("image reference {whole}"),
                    source,
                })
            })
            .transpose()?;
        let body = self.runtime.block_on(async {
            let token = self
                .client
                .auth(reference, &auth, RegistryOperation::Pull)
                .await
                .map_err(|e| map_error(reference, "get manifest", &whole, e))?;
            let scheme = if self.insecure_registries.contains(&registry) {
                "http"
            } else {
                "https"
            };
            let target = reference.digest().or(reference.tag()).unwrap_or("latest");
            let url = format!(
                "{scheme}://{registry}/v2/{}/manifests/{target}",
                reference.repository()
            );
            let mut request = self
                .http
                .get(&url)
                .header(http::header::ACCEPT, ACCEPT.join(", "));
            match (token, &auth) {
                (Some(token), _) => request = request.bearer_auth(token),
                (None, RegistryAuth::Basic(user, password)) => {
                    request = request.basic_auth(user, Some(password));
                }
                _ => {}
            }
            let unreachable = |e: reqwest::Error| RegistryError::Unreachable {
                registry: registry.clone(),
                detail: format!("get manifest {whole}: {}", causes(&e)),
                reach: Reach::of(&e),
            };
            let response = request.send().await.map_err(unreachable)?;
            let status = response.status();
            let too_large = || RegistryError::TooLarge {
                registry: registry.clone(),
                what: format!("manifest {whole}"),
                limit: MAX_MANIFEST_BYTES,
            };
            if response
                .content_length()
                .is_some_and(|n| n > MAX_MANIFEST_BYTES)
            {
                return Err(too_large());
            }
            let mut stream = response.bytes_stream();
            let mut body = Vec::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(unreachable)?;
                if (body.len() + chunk.len()) as u64 > MAX_MANIFEST_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            match status.as_u16() {
                200..=299 => Ok(body),
                404 => Err(RegistryError::NotFound {
                    what: whole.clone(),
                }),
                401 | 403 => Err(RegistryError::AuthFailed {
                    registry: registry.clone(),
                    detail: format!("get manifest {whole}: HTTP {status}"),
                }),
                _ => Err(RegistryError::Registry {
                    registry: registry.clone(),
                    operation: "get manifest".into(),
                    detail: format!("HTTP {status}: {}", snippet(&body)),
                }),
            }
        })?;
        let digest = match wanted {
            Some(wanted) => {
                check_digest(&wanted, &body)?;
                wanted
            }
            None => Digest::sha256(&body),
        };
        Ok((Bytes::from(body), digest))
    }

    pub(crate) fn blob_exists(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        self.ensure_auth(reference);
        self.runtime
            .block_on(self.client.blob_exists(reference, digest.as_str()))
            .map_err(|e| {
                map_error(
                    reference,
                    &format!("check blob {digest}"),
                    digest.as_str(),
                    e,
                )
            })
    }

    /// Mounts a blob from another repository of the same registry; `false` when the registry
    /// declined (it then expects an upload).
    pub(crate) fn mount(
        &self,
        reference: &Reference,
        from: &Reference,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        self.ensure_auth(reference);
        match self
            .runtime
            .block_on(self.client.mount_blob(reference, from, digest.as_str()))
        {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::debug!(%digest, error = %e, "mount declined; uploading");
                Ok(false)
            }
        }
    }

    /// Downloads a blob into `out`, checking its digest and refusing more than `size` bytes
    /// (its descriptor's size) while it streams; returns its length.
    pub(crate) fn blob_into(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, RegistryError> {
        self.ensure_auth(reference);
        let what = format!("get blob {digest}");
        let total = self.runtime.block_on(async {
            let sized = self
                .client
                .pull_blob_stream(reference, digest.as_str())
                .await
                .map_err(|e| map_error(reference, &what, digest.as_str(), e))?;
            let too_large = || RegistryError::TooLarge {
                registry: reference.resolve_registry().to_owned(),
                what: format!("blob {digest}"),
                limit: size,
            };
            if sized.content_length.is_some_and(|n| n > size) {
                return Err(too_large());
            }
            let mut stream = sized.stream;
            let mut hasher = digest.hasher();
            let mut total = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| RegistryError::Unreachable {
                    registry: reference.resolve_registry().to_owned(),
                    detail: format!("{what}: {}", causes(&e)),
                    reach: Reach::of(&e),
                })?;
                if total + chunk.len() as u64 > size {
                    return Err(too_large());
                }
                hasher.update(&chunk);
                out.write_all(&chunk).map_err(RegistryError::Temp)?;
                total += chunk.len() as u64;
                progress(chunk.len() as u64);
            }
            let actual = hasher.finish();
            if &actual != digest {
                return Err(RegistryError::DigestMismatch {
                    expected: digest.to_string(),
                    actual: actual.to_string(),
                });
            }
            Ok(total)
        })?;
        Ok(total)
    }

    pub(crate) fn push_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        data: Bytes,
    ) -> Result<(), RegistryError> {
        self.ensure_auth(reference);
        self.runtime
            .block_on(self.client.push_blob(reference, data, digest.as_str()))
            .map_err(|e| {
                map_error(
                    reference,
                    &format!("push blob {digest}"),
                    digest.as_str(),
                    e,
                )
            })?;
        Ok(())
    }

    /// Uploads a blob from a file in one streamed PUT (never held in memory whole).
    pub(crate) fn push_blob_file(
        &self,
        reference: &Reference,
        digest: &Digest,
        file: std::fs::File,
        size: u64,
    ) -> Result<(), RegistryError> {
        use std::io::Read as _;
        self.ensure_auth(reference);
        // The state is the file until the end or the first error (then the stream ends).
        let stream = futures_util::stream::unfold(Some(file), |state| async move {
            let mut file = state?;
            let mut buf = vec![0u8; 1 << 20];
            match file.read(&mut buf) {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), Some(file)))
                }
                Err(e) => Some((Err(OciDistributionError::IoError(e)), None)),
            }
        });
        self.runtime
            .block_on(
                self.client
                    .push_blob_stream(reference, stream, digest.as_str(), Some(size)),
            )
            .map_err(|e| {
                map_error(
                    reference,
                    &format!("push blob {digest}"),
                    digest.as_str(),
                    e,
                )
            })?;
        Ok(())
    }

    /// Pushes manifest bytes under `reference` (a tag or a digest).
    pub(crate) fn push_manifest(
        &self,
        reference: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), RegistryError> {
        self.ensure_auth(reference);
        let content_type =
            HeaderValue::from_str(media_type).map_err(|_| RegistryError::UnsupportedMediaType {
                what: "manifest".into(),
                media_type: media_type.to_owned(),
            })?;
        self.runtime
            .block_on(self.client.push_manifest_raw(
                reference,
                Bytes::copy_from_slice(bytes),
                content_type,
            ))
            .map_err(|e| map_error(reference, "push manifest", &reference.whole(), e))?;
        Ok(())
    }
}

/// Sorts an `oci-client` error into what the user must do about it.
fn map_error(
    reference: &Reference,
    operation: &str,
    subject: &str,
    error: OciDistributionError,
) -> RegistryError {
    let registry = reference.resolve_registry().to_owned();
    match &error {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => RegistryError::AuthFailed {
            registry,
            detail: causes(&error),
        },
        OciDistributionError::ImageManifestNotFoundError(_) => RegistryError::NotFound {
            what: subject.to_owned(),
        },
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                RegistryError::AuthFailed {
                    registry,
                    detail: envelope.to_string(),
                }
            } else if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            }) {
                RegistryError::NotFound {
                    what: subject.to_owned(),
                }
            } else {
                RegistryError::Registry {
                    registry,
                    operation: operation.to_owned(),
                    detail: envelope.to_string(),
                }
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => RegistryError::NotFound {
            what: subject.to_owned(),
        },
        OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => RegistryError::AuthFailed {
            registry,
            detail: causes(&error),
        },
        // A HEAD (blob check) has no body to carry an error envelope: only the status says
        // the credentials or the token were refused.
        OciDistributionError::RequestError(e)
            if matches!(e.status().map(|s| s.as_u16()), Some(401 | 403)) =>
        {
            RegistryError::AuthFailed {
                registry,
                detail: causes(&error),
            }
        }
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            RegistryError::Unreachable {
                registry,
                detail: causes(&error),
                reach: Reach::of(&error),
            }
        }
        // A TLS failure the HTTP client did not class as a connection error.
        _ if Reach::of(&error) != Reach::Other => RegistryError::Unreachable {
            registry,
            detail: causes(&error),
            reach: Reach::of(&error),
        },
        _ => RegistryError::Registry {
            registry,
            operation: operation.to_owned(),
            detail: causes(&error),
        },
    }
}

/// The start of an error body, printable, for a message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The error's message followed by each cause's, `: `-separated.
fn causes(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}
