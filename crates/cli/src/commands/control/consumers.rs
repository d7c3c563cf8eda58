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
    let consumers = answer
        .get("consumers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let version = crate::render::json_cell(&answer, "bundle_version");
    if consumers.is_empty() {
        diagln!("no consumer has acked yet (bundle version {version})");
        return Ok(Code::Ok);
    }
    let columns = [
        ("CONSUMER", "consumer"),
        ("STATE", "state"),
        ("BUNDLE", "bundle_version"),
        ("CERT SERIAL", "cert_serial"),
        ("NOT AFTER", "not_after"),
        ("LAST SEEN", "last_seen"),
        ("REFUSED", "refused"),
    ];
    for line in crate::render::json_table(&columns, &consumers) {
        outln!("{line}");
    }
    diagln!("bundle version served: {version}");
    Ok(Code::Ok)
}
