//! Concurrent `create`s of distinct keys on an [`EmbeddedStore`] (one redb file, every write
//! durable): write operations per second at 1, 8 and 64 concurrent tasks.
//!
//! `cargo bench -p anchorage-store --bench concurrent_writes` (`BENCH_SECONDS` per row, default
//! 3; `BENCH_DIR` for the store file's directory, default the system temporary directory). A
//! plain program (`harness = false`): each row opens a fresh store, runs N tasks that each
//! create distinct keys in a loop for the duration, and prints creates/s and the p50/p99 latency
//! of one create.

#![allow(clippy::print_stdout)] // A benchmark's output is its figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anchorage_store::{EmbeddedStore, Store as _};

fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let base = std::env::var_os("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    println!("| tasks | creates | creates/s | p50 ms | p99 ms |");
    println!("|---:|---:|---:|---:|---:|");
    for tasks in [1usize, 8, 64] {
        let dir = tempfile::tempdir_in(&base).expect("a temporary directory");
        let store = Arc::new(EmbeddedStore::open_in(dir.path()).expect("open the store"));
        let duration = Duration::from_secs_f64(seconds);
        let (count, mut latencies) = runtime.block_on(async {
            let start = Instant::now();
            let mut handles = Vec::new();
            for task in 0..tasks {
                let store = Arc::clone(&store);
                handles.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut i = 0u64;
                    while start.elapsed() < duration {
                        let began = Instant::now();
                        store
                            .create(&format!("serial.{task}.{i}"), vec![0x5a; 64])
                            .await
                            .expect("create");
                        latencies.push(began.elapsed());
                        i += 1;
                    }
                    latencies
                }));
            }
            let mut all = Vec::new();
            for handle in handles {
                all.extend(handle.await.expect("a bench task"));
            }
            (all.len(), all)
        });
        latencies.sort();
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "| {tasks} | {count} | {:.0} | {:.2} | {:.2} |",
            count as f64 / seconds,
            pct(0.50),
            pct(0.99)
        );
    }
}
