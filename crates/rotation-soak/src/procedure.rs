//! The two procedures the soak compares.
//!
//! - `naive`: what the mesh documentation describes — stop the control plane, replace the
//!   root, start it again. Nothing tells the workloads: each agent keeps its leaf from the old
//!   root A until it renews, is refused by serve (a foreign certificate) and gets a leaf from B
//!   with its token, while its peers' trust still holds A only (and it refuses the B-only
//!   bundle, which drops the root of its current leaf). Handshakes fail: the negative control.
//! - `anchorage`: `POST /v1/rotation {"action":"start"}`, then `advance` whenever serve's gate
//!   allows it, through Staged → Signing → Retiring → Done, every step acknowledged by the
//!   agents before the next.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::error::SoakError;
use crate::files::AgentFiles;
use crate::harness::{RunArgs, signal};
use crate::monitor::Monitor;
use crate::serve::Serve;

/// Which rotation.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Procedure {
    /// Replace the root and restart serve.
    Naive,
    /// serve's rotation state machine.
    Anchorage,
}

/// A phase of serve's rotation (for `--abort-at`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RotationPhase {
    /// B trusted beside A, leaves still from A.
    Staged,
    /// Leaves from B.
    Signing,
    /// A leaving the bundle.
    Retiring,
}

impl RotationPhase {
    fn name(self) -> &'static str {
        match self {
            Self::Staged => "staged",
            Self::Signing => "signing",
            Self::Retiring => "retiring",
        }
    }
}

/// Runs the procedure; returns notes for the summary.
pub(crate) async fn drive(
    args: &RunArgs,
    serve: &mut Serve,
    monitor: &Monitor,
    agent_pids: &[i32],
    files: &[AgentFiles],
) -> Result<Value, SoakError> {
    match args.procedure {
        Procedure::Naive => naive(serve, monitor).await,
        Procedure::Anchorage => anchorage(args, serve, monitor, agent_pids, files).await,
    }
}

async fn naive(serve: &mut Serve, monitor: &Monitor) -> Result<Value, SoakError> {
    monitor.phase("naive");
    let began = Instant::now();
    serve.stop().await;
    let out = std::process::Command::new(&serve.bin)
        .args(["ca", "init", "--force", "--cn", "Soak Root B", "--data-dir"])
        .arg(&serve.data)
        .env_remove("ANCHORAGE_DATA_DIR")
        .output()
        .map_err(|source| SoakError::Spawn {
            program: serve.bin.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(SoakError::Rotation(format!(
            "anchorage ca init --force: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    serve.start().await?;
    let seconds = began.elapsed().as_secs_f64();
    monitor.say(&format!(
        "root replaced and serve restarted in {seconds:.1} s (anchorage ca init --force)"
    ));
    Ok(json!({"serve_down_seconds": (seconds * 10.0).round() / 10.0}))
}

/// The phase name in a `GET /v1/rotation` answer (lower case), `None` when no rotation runs.
fn phase_of(v: &Value) -> Option<String> {
    let p = v
        .get("phase")
        .or_else(|| v.get("rotation").and_then(|r| r.get("phase")))?;
    p.as_str().map(str::to_lowercase)
}

async fn status(serve: &Serve) -> Result<Value, SoakError> {
    serve.api(reqwest::Method::GET, "/v1/rotation", None).await
}

async fn action(serve: &Serve, action: &str) -> Result<Value, SoakError> {
    serve
        .api(
            reqwest::Method::POST,
            "/v1/rotation",
            Some(&json!({"action": action, "force": false})),
        )
        .await
}

/// Kills serve (SIGKILL), starts it again and checks the rotation resumes in `phase`.
async fn crash_and_resume(
    serve: &mut Serve,
    monitor: &Monitor,
    phase: &str,
) -> Result<Value, SoakError> {
    let began = Instant::now();
    serve.kill();
    serve.start().await?;
    let after = status(serve).await?;
    let resumed = phase_of(&after);
    monitor.say(&format!(
        "serve killed and restarted in {:.1} s: phase {resumed:?} (was {phase})",
        began.elapsed().as_secs_f64()
    ));
    if resumed.as_deref() != Some(phase) {
        return Err(SoakError::Rotation(format!(
            "after a restart in {phase}, serve reports {resumed:?}: {after}"
        )));
    }
    Ok(json!({"phase": phase, "resumed": true, "seconds": began.elapsed().as_secs_f64()}))
}

async fn anchorage(
    args: &RunArgs,
    serve: &mut Serve,
    monitor: &Monitor,
    agent_pids: &[i32],
    files: &[AgentFiles],
) -> Result<Value, SoakError> {
    let _ = files;
    let mut notes = json!({"restarts": [], "refusals": 0});
    let frozen = args.freeze_agent.then(|| agent_pids[0]);
    if let Some(pid) = frozen {
        signal(pid, rustix::process::Signal::STOP);
        monitor.say("agent peer-0 frozen (SIGSTOP)");
    }
    let started = action(serve, "start").await?;
    let mut phase = phase_of(&started)
        .or(phase_of(&status(serve).await?))
        .ok_or_else(|| SoakError::Rotation(format!("no phase after start: {started}")))?;
    monitor.phase(&phase);
    let began = Instant::now();
    let mut frozen_since: Option<Instant> = None;
    let mut thawed = frozen.is_none();
    let mut restarted = std::collections::BTreeSet::new();
    let mut aborted = false;
    loop {
        if args.restart_serve_in_each_phase && restarted.insert(phase.clone()) {
            let r = crash_and_resume(serve, monitor, &phase).await?;
            if let Some(list) = notes["restarts"].as_array_mut() {
                list.push(r);
            }
        }
        if matches!(phase.as_str(), "done" | "idle" | "aborted" | "none") {
            break;
        }
        if began.elapsed() > args.max_rotation {
            return Err(SoakError::Rotation(format!(
                "still in {phase} after {:?} (--max-rotation)",
                args.max_rotation
            )));
        }
        if !aborted && args.abort_at.is_some_and(|p| p.name() == phase) {
            let a = action(serve, "abort").await?;
            monitor.say(&format!("abort requested in {phase}"));
            notes["aborted_in"] = json!(phase);
            aborted = true;
            if let Some(p) = phase_of(&a)
                && p != phase
            {
                phase = p;
                monitor.phase(&format!("abort:{phase}"));
                continue;
            }
        }
        let step = if aborted {
            status(serve).await
        } else {
            action(serve, "advance").await
        };
        match step {
            Ok(v) => {
                let now = phase_of(&v).or(phase_of(&status(serve).await?));
                if let Some(p) = now
                    && p != phase
                {
                    phase = p;
                    monitor.phase(&if aborted {
                        format!("abort:{phase}")
                    } else {
                        phase.clone()
                    });
                    continue;
                }
            }
            Err(SoakError::Serve { message, .. }) => {
                // The gate holds: serve says why (and names the laggards).
                notes["refusals"] = json!(notes["refusals"].as_u64().unwrap_or(0) + 1);
                if notes.get("first_refusal").is_none() {
                    monitor.say(&format!("advance refused in {phase}: {message}"));
                    notes["first_refusal"] = json!(message);
                }
                if frozen.is_some() && !thawed {
                    let st = status(serve).await.unwrap_or(Value::Null);
                    let named = st.to_string().contains("peer-0") || message.contains("peer-0");
                    if notes.get("frozen_named").is_none() || named {
                        notes["frozen_named"] = json!(named);
                        notes["frozen_status"] = st;
                    }
                    let since = *frozen_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= args.freeze_for {
                        if let Some(pid) = frozen {
                            signal(pid, rustix::process::Signal::CONT);
                        }
                        thawed = true;
                        notes["frozen_held_seconds"] = json!(since.elapsed().as_secs_f64());
                        monitor.say("agent peer-0 thawed (SIGCONT)");
                    }
                }
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if frozen.is_some() && !thawed {
        // The rotation moved although an agent was frozen: the gate did not hold.
        notes["frozen_gate_held"] = json!(false);
        if let Some(pid) = frozen {
            signal(pid, rustix::process::Signal::CONT);
        }
    } else if frozen.is_some() {
        notes["frozen_gate_held"] = json!(true);
    }
    notes["final_phase"] = json!(phase);
    notes["rotation_seconds"] = json!(began.elapsed().as_secs_f64());
    Ok(notes)
}
