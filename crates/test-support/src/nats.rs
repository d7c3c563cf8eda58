//! A real `nats-server` (with JetStream) on a free loopback port, for the secrets tests.
//!
//! [`NatsServer::start`] runs `nats-server -js` on 127.0.0.1 with its store in a temporary
//! directory (from a generated config file, so credentials and limits can be set), waits until
//! the port accepts connections, and kills the server when dropped. `nats-server` comes from
//! Debian (`apt-get install nats-server`, see `scripts/install-test-deps.sh`); a missing binary
//! skips the test with a loud message locally and fails it in CI, as
//! [`crate::peer::require`] does for every peer.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::peer::{free_port, require, wait_for_port};

/// What to configure on the server.
#[derive(Clone, Debug, Default)]
pub struct NatsOptions {
    /// Require this user and password.
    pub user_password: Option<(String, String)>,
    /// Require this token.
    pub token: Option<String>,
    /// Require this user nkey (public key `U…`).
    pub nkey_user: Option<String>,
    /// The largest message the server accepts (default 1 MiB).
    pub max_payload: Option<u32>,
    /// Serve TLS with this certificate chain file (leaf first) and key file.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Users with passwords and permissions (replaces the single-credential options above).
    pub users: Vec<NatsUser>,
}

/// A user with a password and, optionally, the subjects it may publish and subscribe to
/// (NATS `permissions`; `None` leaves that direction unrestricted).
#[derive(Clone, Debug, Default)]
pub struct NatsUser {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
    /// Subjects the user may publish to.
    pub publish: Option<Vec<String>>,
    /// Subjects the user may subscribe to.
    pub subscribe: Option<Vec<String>>,
}

impl NatsUser {
    /// `nats://user:password@127.0.0.1:PORT` for `server`.
    pub fn url(&self, server: &NatsServer) -> String {
        format!("nats://{}:{}@{}", self.user, self.password, server.addr())
    }

    fn config(&self) -> String {
        let list = |subjects: &[String]| {
            subjects
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut permissions = Vec::new();
        if let Some(publish) = &self.publish {
            permissions.push(format!("publish: {{ allow: [{}] }}", list(publish)));
        }
        if let Some(subscribe) = &self.subscribe {
            permissions.push(format!("subscribe: {{ allow: [{}] }}", list(subscribe)));
        }
        let permissions = if permissions.is_empty() {
            String::new()
        } else {
            format!(", permissions: {{ {} }}", permissions.join(", "))
        };
        format!(
            "    {{ user: \"{}\", password: \"{}\"{permissions} }}\n",
            self.user, self.password
        )
    }
}

/// A running `nats-server -js`, killed when dropped.
pub struct NatsServer {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl NatsServer {
    /// Starts a server without authentication. `None` when `nats-server` is missing locally.
    pub fn start() -> Option<Self> {
        Self::start_with(&NatsOptions::default())
    }

    /// Starts a server with `options`. `None` when `nats-server` is missing locally.
    pub fn start_with(options: &NatsOptions) -> Option<Self> {
        let binary = require("nats-server")?;
        let dir = tempfile::tempdir().expect("temp dir for nats-server");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("nats.conf");
            let mut text = format!(
                "listen: \"127.0.0.1:{port}\"\njetstream {{\n  store_dir: \"{}\"\n}}\n",
                dir.path().join("js").display()
            );
            if let Some(max) = options.max_payload {
                text.push_str(&format!("max_payload: {max}\n"));
            }
            if !options.users.is_empty() {
                text.push_str("authorization {\n  users = [\n");
                for user in &options.users {
                    text.push_str(&user.config());
                }
                text.push_str("  ]\n}\n");
            }
            match (&options.user_password, &options.token, &options.nkey_user) {
                _ if !options.users.is_empty() => {}
                (Some((user, password)), _, _) => text.push_str(&format!(
                    "authorization {{\n  user: \"{user}\"\n  password: \"{password}\"\n}}\n"
                )),
                (None, Some(token), _) => {
                    text.push_str(&format!("authorization {{\n  token: \"{token}\"\n}}\n"));
                }
                (None, None, Some(nkey)) => text.push_str(&format!(
                    "authorization {{\n  users = [ {{ nkey: \"{nkey}\" }} ]\n}}\n"
                )),
                (None, None, None) => {}
            }
            if let Some((cert, key)) = &options.tls {
                text.push_str(&format!(
                    "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
                    cert.display(),
                    key.display()
                ));
            }
            #[allow(clippy::disallowed_methods)] // test fixture, not an output
            std::fs::write(&config, text).expect("write the nats-server config");
            let log_path = dir.path().join("server.log");
            let log = std::fs::File::create(&log_path).expect("create the nats-server log");
            let mut child = Command::new(&binary)
                .arg("-c")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .spawn()
                .expect("start nats-server");
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                wait_for_port(addr, &mut child, Duration::from_secs(20));
            }));
            match started {
                Ok(()) => return Some(Self { child, addr, dir }),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = std::fs::read_to_string(&log_path).unwrap_or_default();
                }
            }
        }
        panic!("nats-server could not start on any free port:\n{last}");
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// The loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The temporary directory (store and config).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
