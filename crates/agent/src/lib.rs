//! `anchorage-agent`: the workload side of `anchorage serve`. It keeps a workload's trust
//! bundle and (optionally) its identity current, makes the workload use them, and tells serve
//! what is really installed.
//!
//! - **Trust** ([`trust`]): the bundle by HTTP long-poll (`GET /v1/bundle?wait=` with the
//!   ETag), checked ([`Refusal`]: unparseable, empty, or dropping the root the agent's own
//!   certificate chains to, unless serve marks a deliberate rotation step with
//!   [`ROTATION_HEADER`]), merged with local sources as `bundle build` merges them, and written
//!   with `bundle build`'s writers (PEM, hashed directory, extra PEM, PKCS#12, JKS, CRL, and a
//!   wasmCloud `--tls-ca-path` directory): same bytes, same unchanged detection.
//! - **Identity** ([`identity`]): a key made here (never sent), a certificate from
//!   `/v1/sign` (token), renewed through `/v1/renew` (mTLS, a new key) at 2/3 of its life
//!   ± 10 %, with jittered backoff when serve is unreachable; the last good files stay.
//! - **Reload** ([`reload`]): SIGHUP to a PID or pidfile, a command with a timeout, a touched
//!   file; a failed action means "not installed".
//! - **Ack** ([`client`]): `POST /v1/acks` only once files are in place and reloaded, with the
//!   bundle version, certificate serial and not-after, consumer name and labels; repeated as a
//!   heartbeat. A refusal is reported in the ack's `refused` field (serve shows it in
//!   `GET /v1/consumers`).
//! - **Status** ([`status`]): a JSON file written atomically after every step; [`health`]
//!   serves it as `/healthz` for sidecars.
//!
//! [`Agent::once`] writes everything and returns (a second run reports `unchanged`);
//! [`Agent::run`] keeps going until its shutdown future resolves. `docs/agent.md` is the guide.

pub mod agent;
pub mod client;
pub mod config;
pub mod error;
pub mod health;
pub mod identity;
pub mod reload;
pub mod status;
pub mod trust;

pub use agent::{Agent, Outcome};
pub use client::{AckAnswer, CONSUMER_HEADER, ROTATION_HEADER, ServeClient};
pub use config::{AgentConfig, IdentityConfig, PolicySettings, Timing, TrustOutputs};
pub use error::AgentError;
pub use health::serve_health;
pub use reload::Action;
pub use status::{AckRecord, Status, read_status, write_status};
pub use trust::Refusal;
