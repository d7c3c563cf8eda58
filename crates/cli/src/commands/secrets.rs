//! `anchorage secrets`: serve the wasmCloud secrets protocol over NATS (`serve`), and
//! administer the store (`put`, `get --reveal`, `delete`, `list`, `add-mapping`,
//! `remove-mapping`, `list-mappings`, `rotate-encryption-key`) directly or, with an admin seed,
//! through the running server's signed admin subjects (`remote`).
//!
//! This module resolves what was typed (seeds from files or the environment, NATS and OpenBao
//! credentials, the TLS trust from `--tls-ca-path`) into the library's values, opens the store
//! and picks exit codes and words. Administration never goes through the subjects hosts use:
//! these commands write the store itself, or send signed, sealed requests on
//! `<prefix>.admin.<backend>.<op>`. Seeds, passwords, tokens and values never reach argv
//! (except `put --value`, which says so), an error message or a log.

mod admin;
mod args;
mod context;
mod keygen;
mod remote;
mod serve;

pub(crate) use args::SecretsCommand;
// `anchorage serve --secrets` runs the same backend from the same options.
pub(crate) use args::{KeyArgs, ProtocolArgs};
pub(crate) use context::{ENCRYPTION_ENV, keyring, seed_source};
pub(crate) use serve::{Protocol, protocol, warn_any_issuer};

use crate::exit::{Code, Failure};
use crate::globals::{Globals, Run};

/// Runs `anchorage secrets …`. With `--output json`, `main` prints a failure's
/// `{ "schema", "error", "exit_code" }` on stdout.
impl Run for SecretsCommand {
    fn json(&self) -> bool {
        self.json_output()
    }

    fn connects_out(&self) -> bool {
        true
    }

    fn run(self, globals: &Globals) -> Result<Code, Failure> {
        run(self, globals)
    }
}

fn run(cmd: SecretsCommand, globals: &Globals) -> Result<Code, Failure> {
    // Every subcommand holds a seed, a value or a key: no core dumps, no same-user
    // inspection, before any is read.
    let result = crate::harden::harden()
        .and_then(|()| cmd.check_store_flags())
        .and_then(|()| crate::io::check_inputs(cmd.input_paths()))
        .and_then(|()| match cmd {
            SecretsCommand::Serve(a) => serve::serve(*a, &globals.outbound),
            SecretsCommand::Keygen(a) => keygen::keygen(&a),
            other => admin::run(other, &globals.outbound),
        });
    // With --output json, `main` prints a failure's document.
    result
}
