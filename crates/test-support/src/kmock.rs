//! PyPI's `kmock` Kubernetes emulator (someone else's fake API server), started through the
//! controller's launcher script `crates/controller/tests/support/kmock_server.py`, which declares
//! the resources and prints `PORT <n>`. The process is killed when the handle is dropped.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

/// A running kmock; killed on drop.
pub struct Kmock {
    child: Child,
    /// Its port on 127.0.0.1 (plain HTTP).
    pub port: u16,
}

impl Drop for Kmock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Kmock {
    /// kmock with the launcher's resources (and `envs`, such as
    /// `KMOCK_CLUSTER_TRUST_BUNDLES=1`), or `None` after [`crate::peer::skip`] saying that
    /// `what` did not run, when python3 or kmock is missing.
    ///
    /// # Panics
    ///
    /// When the launcher does not print its port (a test failure).
    pub fn start(what: &str, envs: &[(&str, &str)]) -> Option<Self> {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../controller/tests/support/kmock_server.py"
        );
        let has_kmock = Command::new("python3")
            .args(["-c", "import kmock"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_kmock {
            crate::peer::skip(&format!(
                "python3 with PyPI's kmock is not installed (scripts/install-test-deps.sh installs it), so {what} did not run"
            ));
            return None;
        }
        #[allow(clippy::unwrap_used)] // test support: a launcher that cannot start is a failure
        let mut child = Command::new("python3")
            .arg(script)
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        #[allow(clippy::unwrap_used)]
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("kmock_server.py printed {line:?}"));
        Some(Self { child, port })
    }

    /// Its base URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A kubeconfig naming it (no credentials), with `namespace` as the context's namespace.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: kmock\nclusters:\n- name: kmock\n  cluster:\n    server: {}\ncontexts:\n- name: kmock\n  context:\n    cluster: kmock\n    user: nobody\n    namespace: {namespace}\nusers:\n- name: nobody\n  user: {{}}\n",
            self.url()
        )
    }

    /// `POST path` with the JSON `body`: the answer's status and body (plain HTTP/1.1, one
    /// request per connection), for tests without a Kubernetes client of their own.
    ///
    /// # Panics
    ///
    /// When kmock does not answer (a test failure).
    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        self.request("POST", path, Some(body))
    }

    /// `GET path`: the answer's status and body.
    ///
    /// # Panics
    ///
    /// When kmock does not answer (a test failure).
    pub fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, None)
    }

    fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        use std::io::{Read as _, Write as _};
        #[allow(clippy::unwrap_used)] // test support: kmock not answering is a failure
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let body = body.unwrap_or("");
        #[allow(clippy::unwrap_used)]
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        #[allow(clippy::unwrap_used)]
        stream.read_to_string(&mut answer).unwrap();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{method} {path}: not an HTTP answer: {answer}"));
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }
}
