//! Replays every committed corpus file (`fuzz/corpus/<target>/*`: seeds and regression
//! inputs) through its target on stable, so CI runs the fuzz targets without nightly.

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

#[test]
fn every_corpus_file_replays_without_a_panic() {
    let mut total = 0;
    for (name, target) in anchorage_fuzz_targets::TARGETS {
        let dir = corpus_dir(name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}; every target needs a seed corpus", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no seed", dir.display());
        for file in &files {
            let data = std::fs::read(file).expect("read corpus file");
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} panicked", file.display());
        }
        total += files.len();
    }
    assert!(total >= anchorage_fuzz_targets::TARGETS.len());
}

#[test]
fn every_target_has_a_fuzz_binary() {
    for (name, _) in anchorage_fuzz_targets::TARGETS {
        let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/fuzz_targets")
            .join(format!("{name}.rs"));
        let text =
            std::fs::read_to_string(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        assert!(
            text.contains(&format!("anchorage_fuzz_targets::{name}(")),
            "{} calls its target",
            bin.display()
        );
    }
}

/// A target that panics is reported by the replay (the negative control of the test above).
#[test]
#[should_panic(expected = "panicked")]
fn a_panicking_target_fails_the_replay() {
    let target: anchorage_fuzz_targets::Target = |_| panic!("boom");
    let outcome = std::panic::catch_unwind(|| target(b"x"));
    assert!(outcome.is_ok(), "control: panicked");
}

/// The seeds of the targets whose decoders are lenient about what they refuse (serve bodies,
/// Vault answers) decode, so the fuzzer starts past the decoders, not at their first error.
#[test]
fn the_body_and_answer_seeds_decode() {
    for name in ["serve_request_body", "vault_answer"] {
        for entry in std::fs::read_dir(corpus_dir(name)).unwrap() {
            let path = entry.unwrap().path();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            if !file.starts_with("seed-") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let decoded = if name == "serve_request_body" {
                usize::from(anchorage_serve::fuzzing::request_body(&data))
            } else {
                anchorage_ca_vault::fuzzing::decode_answer(&data)
            };
            // The error answers (OpenBao's, a proxy's page) only go through the error text.
            let error_answer = file.contains("errors") || file.contains("proxy");
            assert_eq!(decoded > 0, !error_answer, "{name}/{file}: {decoded}");
        }
    }
}
