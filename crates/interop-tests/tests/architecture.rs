//! The layering ARCHITECTURE.md promises, checked on the manifests (`cargo metadata`) and, where
//! a manifest cannot tell, on the source.
//!
//! - The pure crates (no filesystem, network, clock or environment access of their own) depend,
//!   for building and running, only on other pure crates of ours, and on no third-party crate
//!   whose job is I/O. Dev-dependencies are free: tests may read files.
//! - `anchorage-image` and `anchorage-k8s` build on the bundle model (`anchorage-bundle`), not on
//!   `anchorage-trust`, which reads sources and writes outputs.
//! - The pure crates' production sources name no file system, environment, network, process or
//!   clock API of the standard library (`anchorage-secrets` takes seeds as text: the seed files
//!   and variables are read by `anchorage-secrets-server`). Test code is exempt: a module declared
//!   `#[cfg(test)] mod name;` and an inline `#[cfg(test)] mod name { … }`, which by the
//!   workspace's convention ends its file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The crates of ours that do no I/O. Every normal or build dependency of one of these on a
/// crate of ours must be in this list too.
const PURE: &[&str] = &[
    "anchorage-x509",
    "anchorage-keystore",
    "anchorage-bundle",
    "anchorage-secrets",
    "anchorage-image",
    "anchorage-k8s",
];

/// Third-party crates whose job is I/O (runtimes, HTTP, system calls, temporary files, stores):
/// none may be a direct dependency of a pure crate.
const IO_CRATES: &[&str] = &[
    "tokio",
    "async-nats",
    "reqwest",
    "hyper",
    "kube",
    "oci-client",
    "rustix",
    "libc",
    "nix",
    "tempfile",
    "redb",
    "rustls-native-certs",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn metadata() -> Value {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// Every broken rule, one sentence each.
fn violations(metadata: &Value) -> Vec<String> {
    let packages = metadata["packages"].as_array().expect("packages");
    let ours: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut broken = Vec::new();
    for package in packages {
        let name = package["name"].as_str().unwrap_or_default();
        let deps = package["dependencies"].as_array().expect("dependencies");
        for dep in deps {
            // `null` is a normal dependency; `dev` ones are for tests only.
            if dep["kind"].as_str() == Some("dev") {
                continue;
            }
            let dep_name = dep["name"].as_str().unwrap_or_default();
            if matches!(name, "anchorage-image" | "anchorage-k8s") && dep_name == "anchorage-trust"
            {
                broken.push(format!(
                    "{name} depends on anchorage-trust: use the pure anchorage-bundle instead"
                ));
            }
            if !PURE.contains(&name) {
                continue;
            }
            if ours.contains(&dep_name) && !PURE.contains(&dep_name) {
                broken.push(format!(
                    "pure crate {name} depends on {dep_name}, which does I/O"
                ));
            }
            if IO_CRATES.contains(&dep_name) {
                broken.push(format!(
                    "pure crate {name} depends on the I/O crate {dep_name}"
                ));
            }
        }
    }
    broken
}

#[test]
fn pure_crates_depend_only_on_pure_crates() {
    let metadata = metadata();
    let names: Vec<&str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for pure in PURE {
        assert!(names.contains(pure), "{pure} is not a workspace member");
    }
    let broken = violations(&metadata);
    assert!(broken.is_empty(), "{broken:#?}");
}

/// Negative control: the rules catch what they are for (the tree before the bundle model moved
/// out of anchorage-trust, and a pure crate reaching for the file system).
#[test]
fn the_rules_catch_a_pure_crate_reaching_for_io() {
    let fake = serde_json::json!({ "packages": [
        { "name": "anchorage-trust", "dependencies": [] },
        { "name": "anchorage-image", "dependencies": [
            { "name": "anchorage-trust", "kind": null },
        ]},
        { "name": "anchorage-k8s", "dependencies": [
            { "name": "anchorage-trust", "kind": "dev" },
        ]},
        { "name": "anchorage-secrets", "dependencies": [
            { "name": "tempfile", "kind": null },
        ]},
    ]});
    let broken = violations(&fake);
    assert_eq!(broken.len(), 3, "{broken:#?}");
    assert!(broken[0].contains("anchorage-image depends on anchorage-trust"));
    assert!(broken[1].contains("pure crate anchorage-image depends on anchorage-trust"));
    assert!(broken[2].contains("anchorage-secrets depends on the I/O crate tempfile"));
}

/// What production code of a pure crate must not name (`std::net`'s address types are values,
/// so only its sockets and name lookups are listed).
const FORBIDDEN: &[&str] = &[
    "std::fs",
    "fs::",
    "std::env",
    "env::",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "ToSocketAddrs",
    "std::process",
    "SystemTime::now",
    "Instant::now",
    "tokio::",
];

/// The `.rs` files under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `file:line: pattern` for every forbidden name in the production code of `src`.
fn io_in_production_code(src: &Path) -> Vec<String> {
    let files = rust_files(src);
    // Files that are test-only modules (`#[cfg(test)] mod name;`).
    let mut test_files = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("read source");
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for pair in lines.windows(2) {
            if pair[0] == "#[cfg(test)]"
                && let Some(name) = pair[1]
                    .strip_prefix("mod ")
                    .and_then(|r| r.strip_suffix(';'))
            {
                let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                let dir = file.parent().expect("parent");
                let base = if matches!(stem, "lib" | "mod" | "main") {
                    dir.to_owned()
                } else {
                    dir.join(stem)
                };
                test_files.push(base.join(format!("{name}.rs")));
                test_files.push(base.join(name).join("mod.rs"));
            }
        }
    }
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !test_files.contains(f)) {
        let text = fs::read_to_string(file).expect("read source");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim();
            let next = lines.get(i + 1).map_or("", |l| l.trim());
            if trimmed == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{') {
                break; // the inline test module, the last item of the file
            }
            if trimmed.starts_with("//") {
                continue;
            }
            for pattern in FORBIDDEN {
                if line.contains(pattern) {
                    found.push(format!("{}:{}: {pattern}", file.display(), i + 1));
                }
            }
        }
    }
    found
}

#[test]
fn pure_crates_production_code_does_no_io() {
    let metadata = metadata();
    let mut found = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        if !PURE.contains(&name) {
            continue;
        }
        let manifest = Path::new(package["manifest_path"].as_str().unwrap());
        let src = manifest.parent().unwrap().join("src");
        assert!(src.is_dir(), "{name}: no src at {}", src.display());
        found.extend(io_in_production_code(&src));
    }
    assert!(found.is_empty(), "I/O in a pure crate: {found:#?}");
}

/// Negative control: the scan finds a seed file read and an environment lookup (what
/// `anchorage-secrets` did before its seeds moved to the server), and skips test code.
#[test]
fn the_source_scan_finds_io_and_skips_tests() {
    let dir = anchorage_test_support::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let write = |name: &str, text: &str| {
        #[allow(clippy::disallowed_methods)] // test fixture
        fs::write(src.join(name), text).unwrap();
    };
    write(
        "lib.rs",
        "//! Reads nothing (std::fs in a comment is fine).\n#[cfg(test)]\nmod testkit;\nmod xkey;\n",
    );
    write(
        "testkit.rs",
        "pub fn f() { std::fs::read(\"x\").unwrap(); }\n",
    );
    write(
        "xkey.rs",
        "use zeroize::Zeroizing;\n\
         pub fn seed(path: &std::path::Path) -> Vec<u8> { std::fs::read(path).unwrap() }\n\
         pub fn var() -> String { std::env::var(\"SEED\").unwrap() }\n\
         #[cfg(test)]\nmod tests {\n    fn t() { let _ = std::time::SystemTime::now(); }\n}\n",
    );
    let found = io_in_production_code(&src);
    let found: Vec<String> = found
        .iter()
        .map(|f| f.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        found,
        [
            "xkey.rs:2: std::fs",
            "xkey.rs:2: fs::",
            "xkey.rs:3: std::env",
            "xkey.rs:3: env::",
        ],
        "{found:#?}"
    );
}
