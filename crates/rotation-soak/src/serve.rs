//! `anchorage serve` as a child process (its own TLS certificate from a control-plane CA apart
//! from the mesh root being rotated, so agents reach serve whatever the root is), and the
//! admin calls the harness makes.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::SoakError;

/// A `serve` the harness starts, stops, kills and restarts on one data directory and port.
pub(crate) struct Serve {
    pub(crate) bin: PathBuf,
    pub(crate) data: PathBuf,
    pub(crate) port: u16,
    pub(crate) tls_cert: PathBuf,
    pub(crate) tls_key: PathBuf,
    /// The control-plane CA (what agents and this harness check serve against).
    pub(crate) cp_ca: PathBuf,
    pub(crate) log: PathBuf,
    child: Option<Child>,
    http: reqwest::Client,
    /// Starts (for the summary).
    pub(crate) starts: u32,
    /// More `serve` options (the rotation's dwell and interval).
    pub(crate) extra_args: Vec<String>,
}

impl Serve {
    pub(crate) fn new(
        bin: PathBuf,
        work: &std::path::Path,
        cp_ca: PathBuf,
        tls_cert: PathBuf,
        tls_key: PathBuf,
    ) -> Result<Self, SoakError> {
        let pem = std::fs::read(&cp_ca).map_err(|e| SoakError::file("read", &cp_ca, e))?;
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| SoakError::Usage(e.to_string()))?
        .with_root_certificates({
            let mut roots = rustls::RootCertStore::empty();
            use rustls::pki_types::pem::PemObject as _;
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem).flatten() {
                let _ = roots.add(c);
            }
            roots
        })
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| SoakError::Usage(format!("HTTP client: {e}")))?;
        Ok(Self {
            bin,
            data: work.join("serve"),
            port: anchorage_test_support::peer::free_port(),
            tls_cert,
            tls_key,
            cp_ca,
            log: work.join("serve.log"),
            child: None,
            http,
            starts: 0,
            extra_args: Vec::new(),
        })
    }

    pub(crate) fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn admin_token(&self) -> Result<String, SoakError> {
        let path = self.data.join("admin.token");
        std::fs::read_to_string(&path)
            .map(|t| t.trim().to_owned())
            .map_err(|e| SoakError::file("read", path, e))
    }

    /// Starts serve and waits until `/readyz` answers 200.
    pub(crate) async fn start(&mut self) -> Result<(), SoakError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| SoakError::file("open", &self.log, e))?;
        let child = Command::new(&self.bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--tls-cert")
            .arg(&self.tls_cert)
            .arg("--tls-key")
            .arg(&self.tls_key)
            .args(["--drain-timeout", "2s"])
            .args(&self.extra_args)
            .env_remove("ANCHORAGE_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| SoakError::Spawn {
                program: self.bin.display().to_string(),
                source,
            })?;
        self.child = Some(child);
        self.starts += 1;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.url())).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(c) = &mut self.child
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(SoakError::NotReady {
                    what: "anchorage serve".into(),
                    seconds: 0,
                    detail: format!("exited with {status}; see {}", self.log.display()),
                });
            }
            if Instant::now() > deadline {
                return Err(SoakError::NotReady {
                    what: "anchorage serve".into(),
                    seconds: 60,
                    detail: format!("see {}", self.log.display()),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM and wait (graceful drain); SIGKILL after 15 s.
    pub(crate) async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            crate::openssl::terminate(c.id() as i32);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL (a crash) and reap.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// An admin call; the JSON answer (or `null` for an empty body).
    pub(crate) async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, SoakError> {
        let operation = format!("{method} {path}");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url()))
            .bearer_auth(self.admin_token()?);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| SoakError::Serve {
            operation: operation.clone(),
            message: e.to_string(),
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(SoakError::Serve {
                operation,
                message: format!("{status}: {text}"),
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| SoakError::Serve {
            operation,
            message: format!("not JSON ({e}): {text}"),
        })
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}
