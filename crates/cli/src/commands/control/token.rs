//! `anchorage token create`: an API token of `anchorage serve` — one-time (audience = one
//! endpoint, at most 5 minutes, one use), or long-lived bound to a role, or admin. Minted with
//! the signing key in the store of the data directory (`anchorage_serve::mint_token`), or, with
//! `--server`, by the running server (`POST /v1/tokens` with an admin token): the embedded store
//! is opened by one process at a time, so while `serve` runs on the directory, use `--server`.
//!
//! The token goes to stdout only (never to stderr or a log).

use std::path::Path;
use std::time::Duration;

use anchorage_serve::{TokenKind, TokenRequest};
use anchorage_store::EmbeddedStore;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use zeroize::Zeroizing;

use super::{ServerArgs, data_dir, runtime};
use crate::exit::{Classify as _, Code, Failure, with_causes};
use crate::globals::{Globals, Run};
use crate::options::{OutputFormat, parse_duration};

/// `anchorage token …`.
#[derive(Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// Mint an API token for `anchorage serve` (printed on stdout only).
    #[command(after_help = crate::exit::help(
        concat!(
            "Examples:\n",
            "  # one-time token for one CSR signing by web.mesh.local (serve running here)\n",
            "  T=$(anchorage token create --role mesh --sub web.mesh.local --server \\\n",
            "    https://127.0.0.1:8443)\n",
            "  curl --cacert ~/.local/share/anchorage/ca.pem -H \"Authorization: Bearer $T\" \\\n",
            "    https://127.0.0.1:8443/v1/sign -d \"$(jq -n --rawfile csr web.csr '{csr: $csr}')\"\n",
            "  # a long-lived role token for a controller, minted on the store (serve stopped)\n",
            "  anchorage token create --kind role --role mesh --sub mesh-controller\n",
            "\n",
            "One-time tokens (--kind ott, the default) name one endpoint (--aud, default /v1/sign),\n",
            "live at most 5 minutes (--ttl, default 5m) and are refused once used; the names requested\n",
            "must be --sub or a --san. Role tokens (--kind role) last until --ttl (default: no end)\n",
            "or until revoked (DELETE /v1/tokens/<jti>). Without --server the token is minted with the\n",
            "key in the data directory's store, which only one process opens at a time: while\n",
            "`anchorage serve` runs on it, give --server (the admin token is read from\n",
            "DIR/admin.token, or --token-file).\n",
            "\n",
        ),
        &[
            (Code::Ok, "minted and printed"),
            (Code::Failure, "unexpected failure"),
            (Code::Usage, "invalid command line (no --role, a TTL out of range, empty --sub)"),
            (Code::BadInput, "the token file or --ca is missing or unreadable; the role does not exist; the server\nrefused the request as invalid"),
            (Code::Unreachable, "--server: the server could not be reached"),
            (Code::CaMissing, "no store in the data directory: run `anchorage serve` once"),
            (Code::Store, "the store cannot be used (in use by a running serve: add --server)"),
            (Code::AuthFailed, "--server: the admin token was refused"),
        ],
        "",
    ))]
    Create(TokenCreateArgs),
}

/// The kinds of token.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum KindArg {
    /// One-time: one request to one endpoint, at most 5 minutes.
    #[default]
    Ott,
    /// Long-lived, bound to a role (controllers).
    Role,
    /// Long-lived, every operation.
    Admin,
}

/// `anchorage token create`.
#[derive(Args, Debug)]
pub(crate) struct TokenCreateArgs {
    /// The role the token issues under (required but for --kind admin).
    #[arg(long, value_name = "ROLE")]
    pub(crate) role: Option<String>,
    /// Who the token is for: a workload's name (the certificate's name for a one-time token)
    /// or a controller.
    #[arg(long, value_name = "NAME")]
    pub(crate) sub: String,
    /// The token's kind.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) kind: KindArg,
    /// One-time tokens: the endpoint it is for.
    #[arg(long, value_name = "ENDPOINT", default_value = "/v1/sign")]
    pub(crate) aud: String,
    /// One-time tokens: another name it may request besides --sub. Repeatable.
    #[arg(long, value_name = "NAME")]
    pub(crate) san: Vec<String>,
    /// Lifetime (one-time: at most 5m, the default; role and admin: none by default).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) ttl: Option<Duration>,
    #[command(flatten)]
    pub(crate) remote: ServerArgs,
    /// text: the token alone on stdout; json: {"token", "kind", "sub", "role", "aud"}.
    #[arg(short, long, value_enum, default_value_t)]
    pub(crate) output: OutputFormat,
}

impl Run for TokenCommand {
    fn json(&self) -> bool {
        match self {
            TokenCommand::Create(a) => a.output == OutputFormat::Json,
        }
    }

    fn connects_out(&self) -> bool {
        true
    }

    fn run(self, globals: &Globals) -> Result<Code, Failure> {
        match self {
            TokenCommand::Create(a) => create(&a, globals),
        }
    }
}

#[derive(Serialize)]
struct TokenView<'a> {
    token: &'a str,
    kind: &'static str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    minted_by: &'a str,
}

fn create(args: &TokenCreateArgs, globals: &Globals) -> Result<Code, Failure> {
    let (kind, kind_name) = match args.kind {
        KindArg::Ott => (TokenKind::Ott, "ott"),
        KindArg::Role => (TokenKind::Role, "role"),
        KindArg::Admin => (TokenKind::Admin, "admin"),
    };
    if kind != TokenKind::Admin && args.role.is_none() {
        return Err(Failure::new(
            Code::Usage,
            format!("a {kind_name} token needs --role (the role it issues under)"),
        ));
    }
    let ttl_seconds = args
        .ttl
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let (token, minted_by) = if args.remote.server.is_some() {
        let client = args.remote.client(&globals.outbound)?;
        let mut body = serde_json::json!({
            "kind": kind_name,
            "sub": args.sub,
            "audience": args.aud,
            "sans": args.san,
        });
        if let Some(role) = &args.role {
            body["role"] = role.clone().into();
        }
        if let Some(ttl) = ttl_seconds {
            body["ttl_seconds"] = ttl.into();
        }
        let answer = client.call(reqwest::Method::POST, "/v1/tokens", Some(&body))?;
        let token = answer
            .get("token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| Failure::new(Code::Failure, "the server's answer holds no token"))?;
        (Zeroizing::new(token.to_owned()), args.remote.url())
    } else {
        let dir = data_dir(args.remote.data_dir.clone())?;
        let request = TokenRequest {
            kind,
            subject: args.sub.clone(),
            role: args.role.clone(),
            audience: args.aud.clone(),
            sans: args.san.clone(),
            ttl_seconds,
        };
        let token = mint_on_store(&dir, &request)?;
        (
            token,
            dir.join(EmbeddedStore::FILE_NAME).display().to_string(),
        )
    };
    if args.output == OutputFormat::Json {
        crate::render::print_json(&TokenView {
            token: &token,
            kind: kind_name,
            sub: &args.sub,
            role: args.role.as_deref(),
            aud: (kind == TokenKind::Ott).then_some(args.aud.as_str()),
            minted_by: &minted_by,
        });
    } else {
        outln!("{}", token.as_str());
    }
    Ok(Code::Ok)
}

/// Mints on the embedded store of `dir`: the role must exist there.
fn mint_on_store(dir: &Path, request: &TokenRequest) -> Result<Zeroizing<String>, Failure> {
    let path = dir.join(EmbeddedStore::FILE_NAME);
    if !path.is_file() {
        return Err(Failure::new(
            Code::CaMissing,
            format!(
                "no store at {}: run `anchorage serve` once (it creates the CA and the token key), or point --data-dir at its directory",
                path.display()
            ),
        ));
    }
    let store = EmbeddedStore::open(&path).map_err(|e| {
        let mut message = with_causes(&e);
        if message.contains("already open") || message.contains("lock") {
            message.push_str(
                "; `anchorage serve` is probably running on this data directory: add --server URL to mint through it",
            );
        }
        Failure::new(e.code(), message)
    })?;
    runtime()?.block_on(async {
        if let Some(role) = &request.role {
            let found = anchorage_serve::roles::get_role(&store, role)
                .await
                .map_err(|e| Failure::new(e.code(), with_causes(&e)))?;
            if found.is_none() {
                return Err(Failure::new(
                    Code::BadInput,
                    format!(
                        "there is no role {role:?} in {}: create it (serve --roles FILE, or PUT /v1/roles/{role} with the admin token)",
                        path.display()
                    ),
                ));
            }
        }
        anchorage_serve::mint_token(&store, request)
            .await
            .map(Zeroizing::new)
            .map_err(|e| Failure::new(e.code(), with_causes(&e)))
    })
}
