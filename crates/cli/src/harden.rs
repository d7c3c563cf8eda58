//! Process hardening for the commands that hold keys (`secrets …`, `ca …`): no core dumps and
//! a non-dumpable process ([`anchorage_secrets_server::harden_process`]).

use crate::exit::{Code, Failure, with_causes};

/// Hardens the process; a failure stops the command before any key is read.
pub(crate) fn harden() -> Result<(), Failure> {
    anchorage_secrets_server::harden_process().map_err(|e| {
        Failure::new(
            Code::Failure,
            format!("{}; refusing to handle keys", with_causes(&e)),
        )
    })
}
