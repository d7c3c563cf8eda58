//! `/healthz` for a sidecar: a minimal HTTP/1.1 endpoint over the status file.
//!
//! `GET /healthz` answers `200` with the status JSON once a bundle is installed (and, for an
//! agent keeping an identity, its certificate too), `503` (same body) before: a native
//! sidecar's startup probe, so the app starts only with its files in place. Staleness (serve unreachable) is in the body (`stale`) but does not fail the
//! check: the installed files stay usable, and restarting the workload would not bring serve
//! back. Anything else is `404`. One request per connection.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::status::read_status;

/// Serves `/healthz` on `listener` until `shutdown` resolves; with `needs_identity`, `200` only
/// once the identity's certificate is installed too.
pub async fn serve_health(
    listener: TcpListener,
    status_file: PathBuf,
    needs_identity: bool,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let file = status_file.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, file, needs_identity)).await;
                    });
                }
            }
            () = &mut shutdown => return,
        }
    }
}

async fn answer(
    mut stream: TcpStream,
    status_file: PathBuf,
    needs_identity: bool,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (code, body) = if method == "GET" && path.split('?').next() == Some("/healthz") {
        match read_status(&status_file) {
            Ok(status) => {
                let body = serde_json::to_string(&status).unwrap_or_default();
                if status.bundle_version.is_some()
                    && (!needs_identity || status.cert_serial.is_some())
                {
                    ("200 OK", body)
                } else {
                    ("503 Service Unavailable", body)
                }
            }
            Err(e) => (
                "503 Service Unavailable",
                serde_json::json!({ "error": e.to_string() }).to_string(),
            ),
        }
    } else {
        ("404 Not Found", "{\"error\":\"not found\"}".to_owned())
    };
    let head = format!(
        "HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Status, write_status};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn healthz_is_503_until_a_bundle_is_installed_then_200() {
        let tmp = anchorage_test_support::tempdir().unwrap();
        let file = tmp.path().join("status.json");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_health(listener, file.clone(), false, async {
            let _ = rx.await;
        }));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 503"));
        let mut status = Status::default();
        write_status(&file, &status).unwrap();
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 503"));
        status.bundle_version = Some(3);
        status.stale = true;
        write_status(&file, &status).unwrap();
        let answer = get(addr, "/healthz").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"bundle_version\":3") && answer.contains("\"stale\":true"));
        assert!(get(addr, "/other").await.starts_with("HTTP/1.1 404"));
        drop(tx);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn with_an_identity_healthz_waits_for_its_certificate_too() {
        let tmp = anchorage_test_support::tempdir().unwrap();
        let file = tmp.path().join("status.json");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_health(listener, file.clone(), true, async {
            let _ = rx.await;
        }));
        let mut status = Status {
            bundle_version: Some(1),
            ..Status::default()
        };
        write_status(&file, &status).unwrap();
        let answer = get(addr, "/healthz").await;
        assert!(answer.starts_with("HTTP/1.1 503"), "bundle only: {answer}");
        status.cert_serial = Some("0a1b".into());
        write_status(&file, &status).unwrap();
        let answer = get(addr, "/healthz").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        drop(tx);
        server.await.unwrap();
    }
}
