//! A hostile registry: a tiny HTTP/1.1 server on loopback that answers fixed bodies for fixed
//! paths, so tests can serve what no honest registry would (digests that are paths, manifests
//! larger than any registry accepts, blobs longer than their descriptor says).
//!
//! Written here, not taken from a crate, because its whole point is to break the protocol in
//! ways a real registry (`docker-registry`, which the other tests use) refuses to store. It
//! answers `GET /v2/` with 200, each configured path with its reply, and 404 otherwise; every
//! connection carries one request (`Connection: close`), and every request line is recorded.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One canned answer.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// The body (left out for `HEAD`).
    pub body: Vec<u8>,
}

impl Reply {
    /// 200 with a body of the given type.
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            content_type: content_type.to_owned(),
            body: body.into(),
        }
    }
}

/// A running fake registry; stopped when dropped.
pub struct FakeRegistry {
    host: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FakeRegistry {
    /// Serves `routes` (`(path, reply)`, the path as requested, e.g.
    /// `/v2/app/manifests/1`) on a free loopback port.
    pub fn start(routes: Vec<(String, Reply)>) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind loopback");
        let host = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopping) = (Arc::clone(&requests), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let routes = routes.clone();
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || {
                    let _ = answer(stream, &routes, &seen);
                });
            }
        });
        Self {
            host,
            requests,
            stop,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// The request lines seen so far (`GET /v2/app/blobs/sha256:… HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.host);
    }
}

fn answer(
    stream: TcpStream,
    routes: &[(String, Reply)],
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end().to_owned();
    // Skip the headers.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    if let Ok(mut seen) = seen.lock() {
        seen.push(line.clone());
    }
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let not_found = Reply {
        status: 404,
        content_type: "application/json".into(),
        body: br#"{"errors":[{"code":"NOT_FOUND","message":"not here"}]}"#.to_vec(),
    };
    let reply = if path == "/v2/" {
        Reply::ok("application/json", "{}")
    } else {
        routes
            .iter()
            .find(|(p, _)| p == path)
            .map_or(not_found, |(_, r)| r.clone())
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Docker-Distribution-API-Version: registry/2.0\r\nConnection: close\r\n\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    )?;
    if method != "HEAD" {
        out.write_all(&reply.body)?;
    }
    out.flush()
}
