//! `harden_process` in a test binary of its own (the settings hold for the whole process):
//! before, the process may dump core and is dumpable (the negative control); after, the core
//! limit is 0 (soft and hard), `prctl(PR_GET_DUMPABLE)` says 0, and the kernel shows the core
//! limit in `/proc/self/limits` too.

use anchorage_secrets_server::hardening::{harden_process, is_hardened};
use rustix::process::{DumpableBehavior, Resource, dumpable_behavior, getrlimit};

fn core_limit_line() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .expect("read /proc/self/limits")
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("a core file size line")
        .to_owned()
}

#[test]
fn no_core_dumps_and_not_dumpable_after_hardening() {
    // A test process is dumpable unless the environment says otherwise.
    assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::Dumpable);
    assert!(!is_hardened());

    harden_process().unwrap();

    assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::NotDumpable);
    let core = getrlimit(Resource::Core);
    assert_eq!((core.current, core.maximum), (Some(0), Some(0)));
    let line = core_limit_line();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{line}");
    assert!(is_hardened());
    // Idempotent.
    harden_process().unwrap();
    // Threads started afterwards are covered too (the settings are per process).
    std::thread::spawn(|| assert!(is_hardened()))
        .join()
        .unwrap();
}
