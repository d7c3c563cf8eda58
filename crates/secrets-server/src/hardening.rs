//! Process hardening for the processes that hold keys (`secrets serve`, the CA commands): no
//! core dumps, and no inspection by other processes of the same user.
//!
//! [`harden_process`] sets, for the whole process (every thread):
//!
//! - `RLIMIT_CORE` to 0 (soft and hard): the kernel writes no core file, so the keys in memory
//!   (transit and encryption seeds, secret values, CA keys) never land on disk after a crash;
//! - `PR_SET_DUMPABLE` to 0: no core dump even through a `core_pattern` pipe (which ignores
//!   `RLIMIT_CORE`), and `/proc/<pid>/mem`, `environ` and `ptrace` are closed to other
//!   processes of the same user (only a process with `CAP_SYS_PTRACE` gets in).
//!
//! Both are inherited by threads; `PR_SET_DUMPABLE` is reset by an `execve` of another
//! program, which these processes never do. Call it first thing, before a key is read.

/// Why the process could not be hardened. Neither step carries secrets; the caller decides
/// whether to go on (the CLI refuses to start).
#[derive(Debug, thiserror::Error)]
pub enum HardeningError {
    /// `setrlimit(RLIMIT_CORE, 0)` failed.
    #[error("cannot disable core dumps (setrlimit RLIMIT_CORE 0)")]
    CoreLimit(#[source] std::io::Error),
    /// `prctl(PR_SET_DUMPABLE, 0)` failed.
    #[error("cannot mark the process non-dumpable (prctl PR_SET_DUMPABLE 0)")]
    Dumpable(#[source] std::io::Error),
}

/// Disables core dumps and makes the process non-dumpable (see the module documentation).
/// Idempotent.
pub fn harden_process() -> Result<(), HardeningError> {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .map_err(|e| HardeningError::CoreLimit(e.into()))?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(|e| HardeningError::Dumpable(e.into()))?;
    Ok(())
}

/// Whether the process is hardened as [`harden_process`] leaves it: a core limit of 0 and not
/// dumpable. For checks and tests.
pub fn is_hardened() -> bool {
    use rustix::process::{DumpableBehavior, Resource, dumpable_behavior, getrlimit};
    let core = getrlimit(Resource::Core);
    core.current == Some(0)
        && core.maximum == Some(0)
        && matches!(dumpable_behavior(), Ok(DumpableBehavior::NotDumpable))
}
