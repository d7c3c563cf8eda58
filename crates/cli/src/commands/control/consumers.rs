//! `anchorage consumers list`: who installed which trust bundle and certificate, as a running
//! `anchorage serve` recorded their acks (`GET /v1/consumers`, admin token).

use clap::{Args, Subcommand};
use serde_json::Value;

use super::ServerArgs;
use crate::exit::{Code, Failure};
use crate::globals::{Globals, Run};
use crate::options::OutputFormat;

/// `anchorage consumers …`.
#[derive(Subcommand, Debug)]
pub(crate) enum ConsumersCommand {
    /// List the consumers a running server knows: the bundle version and certificate each
    /// installed, when it was last seen, and whether it is current, stale or silent.
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  anchorage consumers list\n",
            "  anchorage consumers list --server https://anchorage.internal:8443 \\\n",
            "    --token-file admin.token --ca ca.pem --output json \\\n",
            "    | jq '.consumers[] | select(.state != \"current\")'\n",
            "\n",
            "state: current (acked the bundle version served now), stale (an older one), silent (no\n",
            "ack for an hour). REFUSED: why the consumer refused the bundle served last (it keeps\n",
            "running BUNDLE).\n",
            "\n",
        ),
        &[
            (Code::Ok, "listed"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line"),
            (Code::BadInput, "the token file or --ca is missing or unreadable"),
            (Code::Unreachable, "the server could not be reached, or cannot answer now"),
            (Code::AuthFailed, "the token was refused (consumers need an admin token)"),
        ],
        "",
    ))]
    List(ConsumersListArgs),
}

/// `anchorage consumers list`.
#[derive(Args, Debug)]
pub(crate) struct ConsumersListArgs {
    #[command(flatten)]
    pub(crate) remote: ServerArgs,
    /// text: a table; json: the server's document {"bundle_version", "consumers": [...]}.
    #[arg(short, long, value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

impl Run for ConsumersCommand {
    fn json(&self) -> bool {
        match self {
            ConsumersCommand::List(a) => a.output == OutputFormat::Json,
        }
    }

    fn connects_out(&self) -> bool {
        true
    }

    fn run(self, globals: &Globals) -> Result<Code, Failure> {
        match self {
            ConsumersCommand::List(a) => list(&a, globals),
        }
    }
}

fn list(args: &ConsumersListArgs, globals: &Globals) -> Result<Code, Failure> {
    let client = args.remote.client(&globals.outbound)?;
    let answer = client.call(reqwest::Method::GET, "/v1/consumers", None)?;
    if args.output == OutputFormat::Json {
        crate::render::print_json(&answer);
        return Ok(Code::Ok);
    }
    let text = |v: &Value, key: &str| match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    };
    let consumers = answer
        .get("consumers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let version = text(&answer, "bundle_version");
    if consumers.is_empty() {
        diagln!("no consumer has acked yet (bundle version {version})");
        return Ok(Code::Ok);
    }
    let header = [
        "CONSUMER",
        "STATE",
        "BUNDLE",
        "CERT SERIAL",
        "NOT AFTER",
        "LAST SEEN",
        "REFUSED",
    ];
    let keys = [
        "consumer",
        "state",
        "bundle_version",
        "cert_serial",
        "not_after",
        "last_seen",
        "refused",
    ];
    let rows: Vec<Vec<String>> = consumers
        .iter()
        .map(|c| keys.iter().map(|k| text(c, k)).collect())
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    outln!("{}", line(&header.map(str::to_owned)));
    for row in &rows {
        outln!("{}", line(row));
    }
    diagln!("bundle version served: {version}");
    Ok(Code::Ok)
}
