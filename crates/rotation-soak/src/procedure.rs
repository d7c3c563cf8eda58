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
) -> Result<Value, SoakError> {
    match args.procedure {
        Procedure::Naive => naive(serve, monitor).await,
        Procedure::Anchorage => anchorage(args, serve, monitor, agent_pids).await,
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

/// The phase name in a `GET /v1/rotation` answer (lower case).
fn phase_of(v: &Value) -> Option<String> {
    v.get("phase")?.as_str().map(str::to_lowercase)
}

/// The rank of a phase in a forward rotation (a restart may let the driver move on at once).
fn rank(phase: &str) -> u8 {
    match phase {
        "staged" => 1,
        "signing" => 2,
        "retiring" => 3,
        "done" => 4,
        _ => 0,
    }
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

/// Kills serve (SIGKILL), starts it again and checks the same rotation resumes in `phase` (or
/// the driver already moved it on).
async fn crash_and_resume(
    serve: &mut Serve,
    monitor: &Monitor,
    before: &Value,
) -> Result<Value, SoakError> {
    let phase = phase_of(before).unwrap_or_default();
    let began = Instant::now();
    serve.kill();
    serve.start().await?;
    let after = status(serve).await?;
    let resumed = phase_of(&after).unwrap_or_default();
    let seconds = began.elapsed().as_secs_f64();
    monitor.say(&format!(
        "serve killed (SIGKILL) in {phase} and started again in {seconds:.1} s: phase {resumed}"
    ));
    let same_rotation = after.get("id") == before.get("id");
    let aborted = before.get("aborted_from").is_some_and(|a| !a.is_null());
    let in_order = if aborted {
        !resumed.is_empty()
    } else {
        rank(&resumed) >= rank(&phase)
    };
    if !same_rotation || !in_order {
        return Err(SoakError::Rotation(format!(
            "after a restart in {phase}, serve reports another rotation or phase: {after}"
        )));
    }
    Ok(json!({"phase": phase, "resumed_in": resumed, "seconds": (seconds * 10.0).round() / 10.0}))
}

/// Who the status names as holding the gate.
fn laggards(v: &Value) -> Vec<String> {
    v.get("laggards")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|c| c.get("consumer").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn anchorage(
    args: &RunArgs,
    serve: &mut Serve,
    monitor: &Monitor,
    agent_pids: &[i32],
) -> Result<Value, SoakError> {
    let mut notes = json!({"restarts": [], "phases": []});
    let frozen = args.freeze_agent.then(|| agent_pids[0]);
    if let Some(pid) = frozen {
        signal(pid, rustix::process::Signal::STOP);
        monitor.say("agent peer-0 frozen (SIGSTOP)");
    }
    let mut st = action(serve, "start").await?;
    let mut phase = phase_of(&st).unwrap_or_default();
    monitor.phase(&phase);
    let began = Instant::now();
    let mut entered = Instant::now();
    let mut thawed = frozen.is_none();
    let mut held_since: Option<Instant> = None;
    let mut restarted = std::collections::BTreeSet::new();
    let mut aborted = false;
    loop {
        if args.restart_serve_in_each_phase && restarted.insert(format!("{aborted}{phase}")) {
            let r = crash_and_resume(serve, monitor, &st).await?;
            if let Some(list) = notes["restarts"].as_array_mut() {
                list.push(r);
            }
        }
        if phase == "done" && !aborted {
            // A stays in "previous" until pruned; prune drops it and ends the rotation.
            let p = action(serve, "prune").await?;
            monitor.say(&format!(
                "pruned: phase {}",
                phase_of(&p).unwrap_or_default()
            ));
            notes["pruned"] = json!(true);
            break;
        }
        if phase == "idle" {
            break;
        }
        if began.elapsed() > args.max_rotation {
            return Err(SoakError::Rotation(format!(
                "still in {phase} after {:?} (--max-rotation): {st}",
                args.max_rotation
            )));
        }
        // Abort once the phase is fully deployed (every agent acked what it asks: the gate
        // holds) or its dwell is over: the most the phase has changed by then.
        let deployed = st["gate"]["holds"].as_bool() == Some(true)
            || st["gate"]["dwell_remaining_s"].as_u64() == Some(0);
        if !aborted && deployed && args.abort_at.is_some_and(|p| p.name() == phase) {
            let turned = action(serve, "abort").await?;
            monitor.say(&format!("abort in {phase}"));
            notes["aborted_in"] = json!(phase);
            aborted = true;
            // The turned-around rotation (old = B, new = A) starts in the phase that matches
            // what is deployed, often the same name: a phase of its own in the figures.
            if let Some(list) = notes["phases"].as_array_mut() {
                list.push(json!({"phase": phase, "seconds": (entered.elapsed().as_secs_f64() * 10.0).round() / 10.0}));
            }
            phase = phase_of(&turned).unwrap_or(phase);
            entered = Instant::now();
            monitor.phase(&format!("abort:{phase}"));
        } else {
            let gate = &st["gate"];
            let holds = gate["holds"].as_bool().unwrap_or(false);
            if let Some(pid) = frozen
                && !thawed
            {
                // The gate must hold the rotation while peer-0 cannot acknowledge: once the
                // dwell is over, the gate alone keeps it; serve must name peer-0.
                let dwell_over = gate["dwell_remaining_s"].as_u64() == Some(0);
                if dwell_over {
                    let since = *held_since.get_or_insert_with(Instant::now);
                    if notes.get("frozen_refusal").is_none() {
                        let refusal = match action(serve, "advance").await {
                            Ok(v) => format!("advance accepted: {}", v["phase"]),
                            Err(e) => e.to_string(),
                        };
                        monitor.say(&format!("advance with peer-0 frozen: {refusal}"));
                        notes["frozen_refusal"] = json!(refusal);
                        notes["frozen_laggards"] = json!(laggards(&st));
                        notes["frozen_named"] = json!(laggards(&st).iter().any(|l| l == "peer-0"));
                    }
                    if since.elapsed() >= args.freeze_for {
                        signal(pid, rustix::process::Signal::CONT);
                        thawed = true;
                        notes["frozen_held_seconds"] =
                            json!((since.elapsed().as_secs_f64() * 10.0).round() / 10.0);
                        notes["frozen_phase_kept"] = json!(phase);
                        monitor.say("agent peer-0 thawed (SIGCONT)");
                    }
                }
            } else if holds {
                // The driver advances by itself; asking too is harmless (a lost race is 409).
                let _ = action(serve, "advance").await;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        st = status(serve).await?;
        let now = phase_of(&st).unwrap_or_default();
        if now != phase {
            if let Some(list) = notes["phases"].as_array_mut() {
                list.push(json!({"phase": phase, "seconds": (entered.elapsed().as_secs_f64() * 10.0).round() / 10.0}));
            }
            if frozen.is_some() && !thawed {
                notes["frozen_gate_held"] = json!(false);
            }
            phase = now;
            entered = Instant::now();
            monitor.phase(&if aborted {
                format!("abort:{phase}")
            } else {
                phase.clone()
            });
        }
    }
    if let Some(pid) = frozen {
        if !thawed {
            signal(pid, rustix::process::Signal::CONT);
        }
        if notes.get("frozen_gate_held").is_none() {
            notes["frozen_gate_held"] = json!(true);
        }
    }
    notes["final_phase"] = json!(phase);
    notes["rotation_seconds"] = json!((began.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    Ok(notes)
}
