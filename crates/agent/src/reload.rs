//! On-change actions: make the workload use the new files. A failed action means the change is
//! not installed (not acknowledged; retried).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::error::AgentError;

/// One on-change action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// SIGHUP to this process.
    SignalPid(i32),
    /// SIGHUP to the process whose PID this file holds (read at each change).
    SignalPidfile(PathBuf),
    /// Run a program (no shell) and wait for it; a non-zero exit or the timeout fails.
    Command {
        /// The program.
        program: String,
        /// Its arguments.
        args: Vec<String>,
        /// Killed after this long.
        timeout: Duration,
    },
    /// Create the file or set its modification time to now.
    Touch(PathBuf),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::SignalPid(pid) => write!(f, "signal HUP to PID {pid}"),
            Action::SignalPidfile(p) => write!(f, "signal HUP to the PID in {}", p.display()),
            Action::Command { program, .. } => write!(f, "command {program}"),
            Action::Touch(p) => write!(f, "touch {}", p.display()),
        }
    }
}

fn failed(action: &Action, message: impl Into<String>) -> AgentError {
    AgentError::Reload {
        action: action.to_string(),
        message: message.into(),
    }
}

fn hup(action: &Action, pid: i32) -> Result<(), AgentError> {
    let target = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| failed(action, format!("{pid} is not a process ID")))?;
    rustix::process::kill_process(target, rustix::process::Signal::HUP)
        .map_err(|e| failed(action, format!("kill({pid}, SIGHUP): {e}")))
}

/// Runs one action.
pub async fn run(action: &Action) -> Result<(), AgentError> {
    match action {
        Action::SignalPid(pid) => hup(action, *pid),
        Action::SignalPidfile(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| failed(action, format!("cannot read the pidfile: {e}")))?;
            let pid: i32 = text
                .trim()
                .parse()
                .map_err(|_| failed(action, "the pidfile does not hold a process ID"))?;
            hup(action, pid)
        }
        Action::Command {
            program,
            args,
            timeout,
        } => {
            let mut child = tokio::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| failed(action, format!("cannot start: {e}")))?;
            match tokio::time::timeout(*timeout, child.wait()).await {
                Ok(Ok(status)) if status.success() => Ok(()),
                Ok(Ok(status)) => Err(failed(action, format!("exited with {status}"))),
                Ok(Err(e)) => Err(failed(action, e.to_string())),
                Err(_) => {
                    let _ = child.kill().await;
                    Err(failed(
                        action,
                        format!("still running after {timeout:?}; killed"),
                    ))
                }
            }
        }
        Action::Touch(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| failed(action, e.to_string()))?;
            file.set_modified(SystemTime::now())
                .map_err(|e| failed(action, e.to_string()))
        }
    }
}

/// Runs every action in order; the first failure stops and is returned.
pub async fn run_all(actions: &[Action]) -> Result<(), AgentError> {
    for action in actions {
        run(action).await?;
        tracing::info!(action = %action, "on-change action done");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sighup_through_a_pidfile_reaches_the_process() {
        // A process whose SIGHUP has its default action even when this test inherited it
        // ignored (a run under `nohup` passes SIG_IGN on through exec, and `sleep` would then
        // outlive the signal): Python resets it, then waits.
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import signal, time; signal.signal(signal.SIGHUP, signal.SIG_DFL); time.sleep(30)",
            ])
            .spawn()
            .unwrap();
        let tmp = anchorage_test_support::tempdir().unwrap();
        let pidfile = tmp.path().join("app.pid");
        anchorage_trust::atomic::write_file(&pidfile, format!("{}\n", child.id()).as_bytes())
            .unwrap();
        run(&Action::SignalPidfile(pidfile)).await.unwrap();
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(1), "SIGHUP ended sleep: {status:?}");
        // A pidfile naming no process fails.
        let gone = tmp.path().join("gone.pid");
        anchorage_trust::atomic::write_file(&gone, b"999999999\n").unwrap();
        assert!(run(&Action::SignalPidfile(gone)).await.is_err());
        assert!(
            run(&Action::SignalPidfile(tmp.path().join("none")))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_command_fails_on_exit_status_and_timeout() {
        let cmd = |program: &str, args: &[&str], ms| Action::Command {
            program: program.into(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            timeout: Duration::from_millis(ms),
        };
        run(&cmd("true", &[], 5_000)).await.unwrap();
        let e = run(&cmd("false", &[], 5_000)).await.unwrap_err();
        assert!(e.to_string().contains("exited with"), "{e}");
        let started = std::time::Instant::now();
        let e = run(&cmd("sleep", &["30"], 200)).await.unwrap_err();
        assert!(e.to_string().contains("killed"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(run(&cmd("/nonexistent/reload", &[], 1_000)).await.is_err());
    }

    #[tokio::test]
    async fn touch_creates_then_bumps_the_time() {
        let tmp = anchorage_test_support::tempdir().unwrap();
        let path = tmp.path().join("reload");
        run(&Action::Touch(path.clone())).await.unwrap();
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        run(&Action::Touch(path.clone())).await.unwrap();
        assert!(std::fs::metadata(&path).unwrap().modified().unwrap() > old);
    }
}
