//! The agent's identity and status files on a full disk (issue 18, row 8 of docs/faults.md): a
//! clear error naming the file and the OS's reason, every previous file whole (and the identity
//! still a matching key and certificate), nothing staged left behind, and the next write working
//! once there is space again.
//!
//! The disk is a 1 MiB `tmpfs` in a private user and mount namespace: the test binary runs
//! itself again under `unshare -rm` (`disk_child` below), the child mounts the `tmpfs` and runs
//! the scenario in-process; its panics are the test's failures. It is filled with a file, less
//! one page, so the new key fits but the new chain (larger than a page) does not: the disk
//! fills in the middle of the set. Found here, then fixed: the files were written one by one,
//! so the new key replaced the old one and the old certificate stayed beside it.
#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stdout)] // the errors seen, for docs/faults.md

use std::io::Write as _;
use std::path::Path;

use anchorage_agent::client::Issued;
use anchorage_agent::identity::{Current, install};
use anchorage_agent::{IdentityConfig, Status, read_status, write_status};
use anchorage_test_support::pki;
use anchorage_test_support::small_disk::{self, fill, mount_tmpfs};
use secrecy::SecretString;

const CHILD_DIR: &str = "ANCHORAGE_AGENT_DISK_CHILD_DIR";
const PAGE: usize = 4096;

/// An answer of serve for a new leaf under `root`, with `copies` of the intermediate in its
/// chain (to make the chain file as large as wanted), and the leaf's key.
fn answer(root: &pki::Issued, copies: usize) -> (Issued, SecretString) {
    let intermediate = pki::intermediate_ca("Disk Intermediate", root);
    let leaf = pki::server_leaf(&["agent.test"], &intermediate);
    let issued = Issued {
        certificate: leaf.pem.clone(),
        chain: vec![intermediate.pem; copies],
        ca: vec![root.pem.clone()],
        serial_number: String::new(),
    };
    (issued, SecretString::from(leaf.key_pem))
}

fn der(pem: &str) -> Vec<u8> {
    anchorage_x509::decode(pem.as_bytes()).certificates[0]
        .certificate
        .der()
        .to_vec()
}

fn files(config: &IdentityConfig) -> Vec<(String, Vec<u8>)> {
    [&config.key, &config.cert, &config.chain, &config.ca]
        .iter()
        .map(|p| (p.display().to_string(), std::fs::read(p).unwrap()))
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
#[ignore = "helper process of the agent's files on a full disk"]
fn disk_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let mnt = std::path::PathBuf::from(dir);
    mount_tmpfs(&mnt, "1m");
    let out = mnt.join("identity");
    std::fs::create_dir(&out).unwrap();
    let config = IdentityConfig::in_dir("agent.test", &out);
    let status_file = mnt.join("status.json");
    let root = pki::root_ca("Disk Root");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;

    // The identity and status in place, with room.
    let (first, first_key) = answer(&root, 1);
    install(&config, &first, first_key, now).unwrap();
    let mut status = Status {
        bundle_version: Some(1),
        ..Status::default()
    };
    write_status(&status_file, &status).unwrap();
    let before = files(&config);
    let listed = names(&out);
    let status_before = std::fs::read(&status_file).unwrap();

    // Full but for a page: the new key fits, the new chain (several pages) does not.
    let spacer = mnt.join("spacer");
    std::fs::File::create(&spacer)
        .unwrap()
        .write_all(&[0u8; PAGE])
        .unwrap();
    fill(&mnt);
    let (second, second_key) = answer(&root, 24);
    assert!(second.chain.concat().len() > 2 * PAGE);
    std::fs::remove_file(&spacer).unwrap();
    let e = install(&config, &second, second_key, now).unwrap_err();
    let message = e.to_string();
    println!("disk full, identity: {message}");
    assert!(
        message.contains("No space left on device (os error 28)"),
        "{message}"
    );
    assert!(message.contains("the previous files are kept"), "{message}");
    let changed: Vec<String> = files(&config)
        .into_iter()
        .zip(&before)
        .filter(|(now, then)| now != *then)
        .map(|(now, _)| now.0)
        .collect();
    assert!(
        changed.is_empty(),
        "previous identity files changed: {changed:?}"
    );
    assert_eq!(names(&out), listed, "something staged was left behind");
    let current = Current::load(&config, now).expect("the previous identity still loads");
    assert_eq!(current.leaf.der(), der(&first.certificate));

    // Quite full now (what was staged was removed, giving its page back).
    fill(&mnt);
    status.bundle_version = Some(2);
    let e = write_status(&status_file, &status).unwrap_err();
    println!("disk full, status: {e}");
    assert!(e.to_string().contains("os error 28"), "{e}");
    assert_eq!(std::fs::read(&status_file).unwrap(), status_before);
    assert_eq!(read_status(&status_file).unwrap().bundle_version, Some(1));

    // Space again: both are written, the new identity whole.
    std::fs::remove_file(mnt.join("fill")).unwrap();
    let (third, third_key) = answer(&root, 24);
    install(&config, &third, third_key, now).unwrap();
    let current = Current::load(&config, now).expect("the new identity loads");
    assert_eq!(current.leaf.der(), der(&third.certificate));
    assert_eq!(names(&out), listed);
    write_status(&status_file, &status).unwrap();
    assert_eq!(read_status(&status_file).unwrap().bundle_version, Some(2));
    println!("space again: identity and status written");
}

#[test]
fn the_identity_and_status_files_on_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let Some((stdout, _stderr)) = small_disk::run_child("disk_child", CHILD_DIR, dir.path()) else {
        return;
    };
    for line in stdout
        .lines()
        .filter(|l| l.contains("disk full") || l.starts_with("space again"))
    {
        println!("{line}");
    }
}
