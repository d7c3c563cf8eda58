//! `inject --replace` (and the default merge) into a small image and into one whose lower layers
//! hold 550 MB of incompressible data, against a real `docker-registry` on loopback.
//!
//! Reports, per image, the median wall time of a run and what each run uploaded, and checks the
//! two claims of issue 7: with `--replace` the time does not grow with the image (within 1.2x),
//! and a run uploads at most the new layer, the new config and the manifest. Each run adds a
//! fresh CA (so it really uploads a new layer) to a fresh tag of the same repository (so the
//! original layers are already there, as when a mirror is re-injected).
//!
//! Run: `TMPDIR=/dev/shm cargo bench -p anchorage-registry --bench inject` (the images and the
//! registry storage take about 1.2 GB under TMPDIR, removed at the end).

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::io::Write as _;
use std::time::{Duration, Instant};

use anchorage_image::{Depth, Mode, PlanOptions};
use anchorage_registry::{ClientSettings, ImageRef, InjectReport, InjectRequest, inject};
use anchorage_test_support::pki::root_ca;
use anchorage_test_support::registry::{
    LayoutBuilder, Registry, images, require_image_tools, skopeo_copy,
};
use anchorage_trust::{Bundle, Origin};
use anchorage_x509::{Certificate, Position};

const ROUNDS: usize = 11;
const BIG_LAYERS: usize = 5;
const BIG_LAYER_BYTES: usize = 110 * 1024 * 1024;

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (Some(registry), Some(())) = (Registry::start(), require_image_tools()) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let builder = LayoutBuilder::init(&work.path().join("layout"));
    let distro = [root_ca("Distro Root").pem];

    images::debian_like(&builder, "small", &distro);
    // The big image: incompressible lower layers, then the same Debian-like layers on top.
    let started = Instant::now();
    builder.new_image("big");
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for n in 0..BIG_LAYERS {
        let dir = tempfile::tempdir_in(work.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let mut file = std::fs::File::create(dir.path().join(format!("data/blob-{n}"))).unwrap();
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..BIG_LAYER_BYTES >> 20 {
            for word in chunk.chunks_exact_mut(8) {
                // xorshift64*: incompressible enough for gzip.
                seed ^= seed >> 12;
                seed ^= seed << 25;
                seed ^= seed >> 27;
                word.copy_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
            }
            file.write_all(&chunk).unwrap();
        }
        drop(file);
        builder.add_tree("big", dir.path());
    }
    images::debian_like_layers(&builder, "big", &distro);
    for tag in ["small", "big"] {
        skopeo_copy(
            &format!("oci:{}:{tag}", builder.path.display()),
            &format!("docker://{}", registry.reference(&format!("bench:{tag}"))),
        );
    }
    // The layout copy is no longer needed: free the space.
    std::fs::remove_dir_all(&builder.path).unwrap();
    println!(
        "built and pushed: small and big ({} x {} MiB incompressible lower layers) in {:.1?}",
        BIG_LAYERS,
        BIG_LAYER_BYTES >> 20,
        started.elapsed()
    );

    for mode in ["replace", "merge"] {
        let mut times = [Vec::new(), Vec::new()];
        let mut reports: [Option<InjectReport>; 2] = [None, None];
        for round in 0..ROUNDS {
            // Interleaved, so drift in machine load hits both images alike.
            for (i, tag) in ["small", "big"].iter().enumerate() {
                let ca = root_ca(&format!("Bench CA {mode} {round} {tag}"));
                let request = InjectRequest {
                    source: ImageRef::parse(&registry.reference(&format!("bench:{tag}"))).unwrap(),
                    destination: ImageRef::parse(
                        &registry.reference(&format!("bench:{tag}-{mode}-{round}")),
                    )
                    .unwrap(),
                    cas: Bundle::new([(
                        Certificate::from_der(&ca.der).unwrap(),
                        Origin {
                            source: "bench".into(),
                            detail: None,
                            position: Position::default(),
                        },
                    )]),
                    plan: PlanOptions {
                        mode: if mode == "replace" {
                            Mode::Replace {
                                paths: vec!["/etc/ssl/certs/ca-certificates.crt".into()],
                            }
                        } else {
                            Mode::Merge
                        },
                        ..PlanOptions::default()
                    },
                    depth: Depth::UntilBundle,
                    platforms: Vec::new(),
                    client: ClientSettings {
                        roots: Vec::new(),
                        insecure_registries: vec![registry.host()],
                        docker_config: false,
                    },
                };
                let start = Instant::now();
                let report = inject(&request, &mut |_| {}).unwrap();
                times[i].push(start.elapsed());
                check_uploads(&report);
                reports[i] = Some(report);
            }
        }
        let median = |t: &mut Vec<Duration>| {
            t.sort();
            t[t.len() / 2]
        };
        let (small, big) = (median(&mut times[0]), median(&mut times[1]));
        let ratio = big.as_secs_f64() / small.as_secs_f64();
        println!("--{mode}: median of {ROUNDS} runs each");
        for (name, time, report) in [("small", small, &reports[0]), ("big", big, &reports[1])] {
            let report = report.as_ref().unwrap();
            let layer = report.platforms[0].layer.as_ref().unwrap();
            println!(
                "  {name:5} {:>8.1} ms  uploaded {:>7} B (layer {} B, {} blobs)  downloaded {:>7} B  layers read {}",
                time.as_secs_f64() * 1e3,
                report.bytes_uploaded,
                layer.size,
                report.blobs_uploaded,
                report.bytes_downloaded,
                report.platforms[0].layers_read
            );
        }
        println!("  big/small time ratio: {ratio:.2}");
        if mode == "replace" {
            assert!(
                ratio <= 1.2,
                "--replace time grew with the image: {ratio:.2}x"
            );
        }
    }
}

/// A run uploads the new layer, the new config and the manifest, nothing else.
fn check_uploads(report: &InjectReport) {
    let layer = report.platforms[0].layer.as_ref().unwrap();
    assert_eq!(report.blobs_uploaded, 2, "{report:?}");
    // Config and manifest are a few kilobytes at most.
    assert!(
        report.bytes_uploaded <= layer.size + 16 * 1024,
        "uploaded {} for a {}-byte layer",
        report.bytes_uploaded,
        layer.size
    );
}
