//! Connecting to NATS: servers, credentials and TLS, resolved once into a [`NatsConfig`].
//!
//! Credentials are held in [`SecretString`]s and handed to async-nats only when connecting;
//! TLS uses the rustls client configuration the caller built (roots from `--tls-ca-path` through
//! `anchorage_trust::tls::TrustConfig`, with the caller's crypto provider).
//!
//! Every given server is used: a URL may hold several, comma-separated, and the client
//! reconnects to any of them (and to the cluster members the servers advertise), retrying
//! without end at most [`MAX_RECONNECT_DELAY`] apart.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};

/// The longest wait between two reconnection attempts (the first is immediate, then 250 ms
/// more per attempt): after a node comes back, service resumes within this.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// The delay before reconnection attempt `attempts` (1-based).
fn reconnect_delay(attempts: usize) -> Duration {
    let steps = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
    Duration::from_millis(250)
        .saturating_mul(steps)
        .min(MAX_RECONNECT_DELAY)
}

/// The servers of `given`, each URL split at commas, trimmed, empty ones dropped.
pub fn server_list(given: &[String]) -> Vec<String> {
    given
        .iter()
        .flat_map(|url| url.split(','))
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect()
}

/// How to authenticate to NATS.
#[derive(Default)]
pub enum NatsAuth {
    /// No credentials.
    #[default]
    None,
    /// User and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: SecretString,
    },
    /// A token.
    Token(SecretString),
    /// A `.creds` file (user JWT and nkey seed), as `nsc` writes it.
    CredsFile(PathBuf),
    /// An nkey seed (`SU…`).
    NkeySeed(SecretString),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .finish_non_exhaustive(),
            NatsAuth::Token(_) => f.write_str("Token([REDACTED])"),
            NatsAuth::CredsFile(p) => f.debug_tuple("CredsFile").field(p).finish(),
            NatsAuth::NkeySeed(_) => f.write_str("NkeySeed([REDACTED])"),
        }
    }
}

/// Where NATS is and how to connect.
#[derive(Debug)]
pub struct NatsConfig {
    /// Server URLs (`nats://127.0.0.1:4222`, `tls://…`).
    pub servers: Vec<String>,
    /// Credentials.
    pub auth: NatsAuth,
    /// A rustls client configuration: TLS is used when the server offers it or the URL asks
    /// for it; `None` leaves async-nats to its defaults.
    pub tls: Option<rustls::ClientConfig>,
    /// Refuse to connect without TLS.
    pub require_tls: bool,
    /// The connection name shown by the server (`anchorage-secrets`).
    pub name: String,
    /// How long the first connection may take.
    pub connect_timeout: Duration,
}

impl NatsConfig {
    /// `servers` with no credentials and no TLS settings.
    pub fn new(servers: Vec<String>) -> Self {
        Self {
            servers,
            auth: NatsAuth::None,
            tls: None,
            require_tls: false,
            name: "anchorage-secrets".to_owned(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The credentials file could not be read.
    #[error("cannot read the NATS credentials file {}", path.display())]
    CredsFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// No server URL was given.
    #[error("no NATS server URL given")]
    NoServer,
    /// The server could not be reached or refused us.
    #[error("cannot connect to NATS at {servers}")]
    Connect {
        /// The URLs tried.
        servers: String,
        /// What went wrong.
        #[source]
        source: async_nats::ConnectError,
    },
}

impl ConnectError {
    /// True when the server refused the credentials.
    pub fn is_auth(&self) -> bool {
        matches!(self, ConnectError::Connect { source, .. }
            if source.kind() == async_nats::ConnectErrorKind::AuthorizationViolation)
    }
}

/// Connects (one attempt; async-nats reconnects by itself afterwards).
pub async fn connect(config: NatsConfig) -> Result<async_nats::Client, ConnectError> {
    let servers = server_list(&config.servers);
    if servers.is_empty() {
        return Err(ConnectError::NoServer);
    }
    let mut options = match &config.auth {
        NatsAuth::None => async_nats::ConnectOptions::new(),
        NatsAuth::UserPassword { user, password } => async_nats::ConnectOptions::new()
            .user_and_password(user.clone(), password.expose_secret().to_owned()),
        NatsAuth::Token(token) => {
            async_nats::ConnectOptions::new().token(token.expose_secret().to_owned())
        }
        NatsAuth::NkeySeed(seed) => {
            async_nats::ConnectOptions::new().nkey(seed.expose_secret().to_owned())
        }
        NatsAuth::CredsFile(path) => async_nats::ConnectOptions::new()
            .credentials_file(path)
            .await
            .map_err(|source| ConnectError::CredsFile {
                path: path.clone(),
                source,
            })?,
    };
    options = options
        .name(&config.name)
        .connection_timeout(config.connect_timeout)
        .require_tls(config.require_tls)
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                other => tracing::info!(event = %other, "NATS event"),
            }
        });
    if let Some(tls) = config.tls {
        options = options.tls_client_config(tls);
    }
    let joined = servers.join(",");
    options
        .connect(servers)
        .await
        .map_err(|source| ConnectError::Connect {
            servers: joined,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_given_url_is_used() {
        let given = vec![
            "nats://a:4222, nats://b:4222".to_owned(),
            "nats://c:4222".to_owned(),
            " ,".to_owned(),
        ];
        assert_eq!(
            server_list(&given),
            ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
        );
    }

    #[test]
    fn reconnection_delays_are_bounded() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(250));
        assert_eq!(reconnect_delay(1000), MAX_RECONNECT_DELAY);
    }
}
