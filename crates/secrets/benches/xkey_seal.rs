//! CPU of the per-request xkey work: the reply sealed from a one-time key as nkeys does it
//! (curve25519-dalek) and as [`XKey::seal_reply`] does it (ring's X25519), and the request
//! opened with the transit key. `cargo bench -p anchorage-secrets --bench xkey_seal`
//! (`XKEY_ITERATIONS`, default 5,000).

#![allow(clippy::print_stdout, clippy::unwrap_used)] // A benchmark's output is its figures.

use std::time::Instant;

use anchorage_secrets::{PublicXKey, XKey};
use nkeys::XKey as NkXKey;

fn time(name: &str, n: u32, mut f: impl FnMut()) {
    f();
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    let per = start.elapsed() / n;
    println!("{name:<40} {:>8.1} µs", per.as_secs_f64() * 1e6);
}

fn main() {
    let n: u32 = std::env::var("XKEY_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let host = NkXKey::new();
    let host_pub = PublicXKey::parse(&host.public_key()).unwrap();
    let plain = [7u8; 200];
    time("seal reply: nkeys (dalek)", n, || {
        let one_time = NkXKey::new();
        let sealed = one_time
            .seal(
                &plain,
                &NkXKey::from_public_key(&host.public_key()).unwrap(),
            )
            .unwrap();
        std::hint::black_box((one_time.public_key(), sealed));
    });
    time("seal reply: XKey::seal_reply (ring)", n, || {
        std::hint::black_box(XKey::seal_reply(&plain, &host_pub).unwrap());
    });
    let transit = XKey::generate();
    let request = host
        .seal(
            &plain,
            &NkXKey::from_public_key(transit.public_key()).unwrap(),
        )
        .unwrap();
    time("open request: XKey::open (dalek)", n, || {
        std::hint::black_box(transit.open(&request, &host_pub).unwrap());
    });
}
