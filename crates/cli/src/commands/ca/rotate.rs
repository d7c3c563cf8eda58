//! `anchorage ca rotate start|status|advance|abort|prune`: a zero-downtime root rotation run
//! by a running `anchorage serve` (`GET`/`POST /v1/rotation`, admin token), as
//! `consumers list` reaches it (`--server`, `--token-file`, `--ca`, the data directory for
//! their defaults).
//!
//! The rotation itself (phases, gates, lease) is `anchorage_serve::rotation`; this module
//! reads the import files (`--import` PEM, `--fsm-secret` manifest through `anchorage_k8s`),
//! sends the action, prints the status and picks exit codes. Keys read here go only into the
//! request body (over TLS), never to a message.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::commands::control::ServerArgs;
use crate::exit::{Code, Failure, with_causes};
use crate::globals::Globals;
use crate::options::OutputFormat;

pub(crate) const EXAMPLES: &str = concat!(
    "Examples:\n",
    "  anchorage ca rotate start          # B made by serve, A's key type\n",
    "  anchorage ca rotate status         # phase, since, gate, laggards\n",
    "  anchorage ca rotate advance        # when the gate holds (serve also\n",
    "                                     # advances by itself by default)\n",
    "  anchorage ca rotate advance --force   # override the gate (audited)\n",
    "  anchorage ca rotate abort          # back to A, safely, from any phase\n",
    "  anchorage ca rotate prune          # forget A once done\n",
    "  anchorage ca rotate start --import new-root.pem --cross-sign\n",
    "  kubectl get secret -n fsm-system fsm-ca-bundle -o yaml > fsm.yaml\n",
    "  anchorage ca rotate start --fsm-secret fsm.yaml   # the mesh root is A\n",
    "  anchorage ca rotate start --external --import vault-b.crt --old vault-a.crt\n",
    "  anchorage ca rotate status --server https://anchorage.internal:8443 \\\n",
    "    --token-file admin.token --ca ca.pem --output json | jq .laggards\n",
    "\n",
    "Phases: idle, staged (B trusted beside A, leaves under A), signing (leaves\n",
    "under B, renewals pulled forward), retiring (A out of the bundle), done (the\n",
    "store's CA is B; A kept until prune). Each step waits until every consumer\n",
    "acknowledged what it needs (see status) and the minimum dwell passed.\n",
    "docs/serve.md has the details.\n",
    "\n",
);

/// `anchorage ca rotate …`.
#[derive(Subcommand, Debug)]
pub(crate) enum RotateAction {
    /// Start a rotation to a new root B (made by serve, or --import), optionally taking an
    /// existing mesh root over as A first (--fsm-secret).
    #[command(after_help = crate::exit::help(
        EXAMPLES,
        &[
            (Code::Ok, "started: the status is printed"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::BadInput, "an import file, the token file or --ca is unusable, or serve\nrefused the request as invalid (the message says why)"),
            (Code::Unreachable, "serve could not be reached, or cannot answer now"),
            (Code::Refused, "a rotation is already under way (or a finished one is not pruned)"),
            (Code::AuthFailed, "the token was refused (an admin token is needed)"),
        ],
        "--import FILE: the new root B as PEM (its certificates and keys).\n--fsm-secret FILE: an FSM/OSM fsm-ca-bundle Secret manifest (ca.crt,\nprivate.key) whose root becomes A, the root the mesh trusts today; serve\nrefuses it while a consumer holds a live leaf under its current CA (--force\noverrides). Both may be given. --external --import B.crt --old A.crt: the trust\nhalf only, for Vault/OpenBao or cert-manager issuers (no key; serve never\nleaves Signing by itself: switch the issuer, then advance).",
    ))]
    Start(StartArgs),
    /// Show the phase, since when, the gate to the next phase and the laggards by name.
    #[command(after_help = crate::exit::help(
        EXAMPLES,
        &[
            (Code::Ok, "shown (whether or not the gate holds)"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::BadInput, "the token file or --ca is missing or unreadable"),
            (Code::Unreachable, "serve could not be reached, or cannot answer now"),
            (Code::AuthFailed, "the token was refused (an admin token is needed)"),
        ],
        "--output json prints serve's document: {\"schema\": 1, \"phase\", \"since\",\n\"gate\": {\"next\", \"holds\", \"reason\", …}, \"laggards\": [{\"consumer\",\n\"bundle_version\", \"leaf\", \"missing\", …}], …}.",
    ))]
    Status(RemoteArgs),
    /// Move to the next phase when its gate holds (--force: even when it does not; audited).
    #[command(after_help = crate::exit::help(
        EXAMPLES,
        &[
            (Code::Ok, "advanced: the status is printed"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::BadInput, "the token file or --ca is missing or unreadable"),
            (Code::Unreachable, "serve could not be reached, or cannot answer now"),
            (Code::Refused, "no phase to advance to (idle or done)"),
            (Code::Conflict, "the rotation changed under the request: look again"),
            (Code::AuthFailed, "the token was refused (an admin token is needed)"),
            (Code::GateNotHolding, "the gate does not hold: the message names every consumer still\nlacking what it needs, or the dwell left"),
        ],
        "",
    ))]
    Advance(AdvanceArgs),
    /// Turn the rotation around: back to A from any phase; B stays trusted until every consumer
    /// acknowledged its removal.
    #[command(after_help = crate::exit::help(
        EXAMPLES,
        &[
            (Code::Ok, "aborting: the status is printed (the abort runs its own gates)"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::BadInput, "the token file or --ca is missing or unreadable"),
            (Code::Unreachable, "serve could not be reached, or cannot answer now"),
            (Code::Refused, "nothing to abort (idle, an abort under way, or A already pruned)"),
            (Code::Conflict, "the rotation changed under the request: look again"),
            (Code::AuthFailed, "the token was refused (an admin token is needed)"),
        ],
        "",
    ))]
    Abort(RemoteArgs),
    /// Remove the retired root (and its key) once the rotation is done.
    #[command(after_help = crate::exit::help(
        EXAMPLES,
        &[
            (Code::Ok, "pruned: the status is printed"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::BadInput, "the token file or --ca is missing or unreadable"),
            (Code::Unreachable, "serve could not be reached, or cannot answer now"),
            (Code::Refused, "nothing to prune (no finished rotation)"),
            (Code::AuthFailed, "the token was refused (an admin token is needed)"),
        ],
        "",
    ))]
    Prune(RemoteArgs),
}

impl RotateAction {
    /// The output format asked for.
    pub(crate) fn output(&self) -> OutputFormat {
        match self {
            RotateAction::Start(a) => a.remote.output,
            RotateAction::Advance(a) => a.remote.output,
            RotateAction::Status(a) | RotateAction::Abort(a) | RotateAction::Prune(a) => a.output,
        }
    }
}

/// How to reach serve (the data directory is `ca`'s `--data-dir`).
#[derive(Args, Debug, Clone)]
pub(crate) struct RemoteArgs {
    /// The server's URL [default: $ANCHORAGE_SERVER, else https://127.0.0.1:8443].
    #[arg(long, value_name = "URL")]
    pub(crate) server: Option<String>,
    /// A file holding an admin token [default: DIR/admin.token, which serve writes].
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// The CA file the server's certificate is checked against [default: DIR/ca.pem].
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// text: a summary and the laggards; json: serve's status document ("schema": 1).
    #[arg(short, long, value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

/// `ca rotate start`.
#[derive(Args, Debug)]
pub(crate) struct StartArgs {
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    /// Key type of the new root made by serve: p256, p384, ed25519, rsa2048, rsa3072,
    /// rsa4096 (default: the current root's).
    #[arg(long, value_name = "TYPE")]
    pub(crate) key_type: Option<String>,
    /// The new root B as PEM: its certificate(s) and key(s).
    #[arg(long, value_name = "FILE")]
    pub(crate) import: Option<PathBuf>,
    /// An FSM/OSM `fsm-ca-bundle` Secret manifest (YAML or JSON): its root becomes A, the root
    /// rotated away from.
    #[arg(long, value_name = "FILE")]
    pub(crate) fsm_secret: Option<PathBuf>,
    /// Also cross-sign B's signing CA with A's root and send it in chains, so peers that trust
    /// only A verify leaves of B.
    #[arg(long)]
    pub(crate) cross_sign: bool,
    /// With --fsm-secret: take over even while consumers hold live leaves under serve's CA.
    #[arg(long)]
    pub(crate) force: bool,
    /// The trust half only, for an external issuer (Vault/OpenBao, cert-manager): --import is
    /// B's root certificate (no key), --old A's; serve moves the bundle and gates, you switch
    /// the issuer while in Signing and advance.
    #[arg(long, requires_all = ["import", "old"], conflicts_with_all = ["fsm_secret", "cross_sign", "key_type"])]
    pub(crate) external: bool,
    /// With --external: the root certificate the issuer chains to now (A).
    #[arg(long, value_name = "FILE", requires = "external")]
    pub(crate) old: Option<PathBuf>,
}

/// `ca rotate advance`.
#[derive(Args, Debug)]
pub(crate) struct AdvanceArgs {
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    /// Advance although the gate does not hold (logged and audited by serve).
    #[arg(long)]
    pub(crate) force: bool,
}

/// Runs one `ca rotate` command.
pub(crate) fn run(
    action: RotateAction,
    data_dir: Option<PathBuf>,
    globals: &Globals,
) -> Result<Code, Failure> {
    let (remote, body) = match &action {
        RotateAction::Status(r) => (r, None),
        RotateAction::Abort(r) => (r, Some(json!({"action": "abort"}))),
        RotateAction::Prune(r) => (r, Some(json!({"action": "prune"}))),
        RotateAction::Advance(a) => (
            &a.remote,
            Some(json!({"action": "advance", "force": a.force})),
        ),
        RotateAction::Start(a) => (&a.remote, Some(start_body(a)?)),
    };
    let server = ServerArgs {
        server: remote.server.clone(),
        token_file: remote.token_file.clone(),
        ca: remote.ca.clone(),
        data_dir,
    };
    let client = server.client(&globals.outbound)?;
    let answer = match &body {
        None => client.call(reqwest::Method::GET, "/v1/rotation", None),
        Some(b) => client.call(reqwest::Method::POST, "/v1/rotation", Some(b)),
    }
    .map_err(remap)?;
    if remote.output == OutputFormat::Json {
        crate::render::print_json(&answer);
    } else {
        print_status(&answer);
    }
    Ok(Code::Ok)
}

/// serve's stable error codes, as exit codes of their own.
fn remap(mut failure: Failure) -> Failure {
    if failure.message.contains(": gate_not_holding:") {
        failure.code = Code::GateNotHolding;
    } else if failure.message.contains(": rotation_wrong_phase:") {
        failure.code = Code::Refused;
    } else if failure.message.contains(": conflict:") {
        failure.code = Code::Conflict;
    }
    failure
}

fn start_body(args: &StartArgs) -> Result<Value, Failure> {
    let mut body = json!({
        "action": "start",
        "cross_sign": args.cross_sign,
        "force": args.force,
    });
    if let Some(k) = &args.key_type {
        let key_type: anchorage_ca::KeyType = k
            .parse()
            .map_err(|e| Failure::new(Code::Usage, format!("--key-type {k}: {e}")))?;
        body["key_type"] = serde_json::to_value(key_type)
            .map_err(|e| Failure::new(Code::Failure, e.to_string()))?;
    }
    if let Some(path) = &args.import {
        let bytes = crate::io::read_input("--import", path)?;
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
            Failure::new(
                Code::BadInput,
                format!("--import {}: not PEM text", crate::io::display(path)),
            )
        })?;
        body["import_pem"] = Value::String(text);
    }
    if args.external {
        body["external"] = Value::Bool(true);
    }
    if let Some(path) = &args.old {
        let bytes = crate::io::read_input("--old", path)?;
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
            Failure::new(
                Code::BadInput,
                format!("--old {}: not PEM text", crate::io::display(path)),
            )
        })?;
        body["old_pem"] = Value::String(text);
    }
    if let Some(path) = &args.fsm_secret {
        let bytes = crate::io::read_input("--fsm-secret", path)?;
        let file = crate::io::display(path);
        let secret = anchorage_k8s::read_ca_secret(&bytes).map_err(|e| {
            Failure::new(
                Code::BadInput,
                format!("--fsm-secret {file}: {}", with_causes(&e)),
            )
        })?;
        let now = anchorage_x509::Timestamp::from_unix(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        );
        let ca =
            anchorage_ca::BuiltinCa::from_fsm_secret_data(secret.data(), now).map_err(|e| {
                Failure::new(
                    Code::BadInput,
                    format!("--fsm-secret {file}: {}", with_causes(&e)),
                )
            })?;
        let text = anchorage_serve::rotation::ca_pem_text(&ca);
        body["takeover_pem"] =
            Value::String(secrecy::ExposeSecret::expose_secret(&text).to_owned());
    }
    Ok(body)
}

use crate::render::json_cell as text;

fn ca_line(v: &Value) -> String {
    if v.is_null() {
        return "-".to_owned();
    }
    let sha = text(v, "sha256");
    format!(
        "{} (sha256 {}…, until {})",
        text(v, "subject"),
        sha.get(..16).unwrap_or(&sha),
        text(v, "not_after")
    )
}

fn print_status(answer: &Value) {
    let phase = text(answer, "phase");
    let aborted = answer
        .get("aborted_from")
        .and_then(Value::as_str)
        .map(|p| format!(" (aborting a rotation left in {p})"))
        .unwrap_or_default();
    outln!("phase: {phase}{aborted} since {}", text(answer, "since"));
    if !answer["old"].is_null() {
        outln!("old:   {}", ca_line(&answer["old"]));
        outln!("new:   {}", ca_line(&answer["new"]));
        outln!("signs: {}", ca_line(&answer["signer"]));
    }
    if !answer["previous"].is_null() {
        outln!("kept until prune: {}", ca_line(&answer["previous"]));
    }
    outln!("bundle version: {}", text(answer, "bundle_version"));
    let gate = &answer["gate"];
    if !gate["next"].is_null() {
        let holds = gate["holds"].as_bool().unwrap_or(false);
        outln!(
            "gate to {}: {} ({} of {} consumers pass, {} needed)",
            text(gate, "next"),
            if holds { "holds" } else { "does not hold" },
            text(gate, "passed"),
            text(gate, "counted"),
            text(gate, "required"),
        );
        let dwell = gate["dwell_remaining_s"].as_u64().unwrap_or(0);
        if dwell > 0 {
            outln!("  minimum dwell: {dwell}s to go");
        }
        if let Some(excluded) = gate["excluded"].as_array().filter(|e| !e.is_empty()) {
            let names: Vec<String> = excluded
                .iter()
                .map(|e| text(&json!({"n": e}), "n"))
                .collect();
            outln!("  left out as stale: {}", names.join(", "));
        }
    }
    let laggards = answer["laggards"].as_array().cloned().unwrap_or_default();
    if laggards.is_empty() {
        return;
    }
    outln!("laggards ({}):", laggards.len());
    let columns = [
        ("CONSUMER", "consumer"),
        ("BUNDLE", "bundle_version"),
        ("LEAF", "leaf"),
        ("LAST SEEN", "last_seen"),
        ("MISSING", "missing"),
    ];
    for line in crate::render::json_table(&columns, &laggards) {
        outln!("  {line}");
    }
}
