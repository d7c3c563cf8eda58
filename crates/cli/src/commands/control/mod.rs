//! The control plane (`anchorage-serve`): `anchorage serve` runs it; `anchorage token create`
//! mints its API tokens (on the store in the data directory, or through a running server's
//! `POST /v1/tokens`); `anchorage consumers list` asks a running server who installed which
//! bundle. The library decides everything; these modules resolve options, print, and take exit
//! codes from [`crate::exit`].
//!
//! `ca` and `serve` use one data directory (`--data-dir`, else `$ANCHORAGE_DATA_DIR`,
//! `$XDG_DATA_HOME/anchorage`, `~/.local/share/anchorage`), so `anchorage ca` and `serve` see one
//! CA. The submodules share the helpers here; none imports a sibling.

pub(crate) mod consumers;
pub(crate) mod serve;
pub(crate) mod token;

use std::path::{Path, PathBuf};

use clap::Args;
use zeroize::Zeroizing;

use crate::exit::{Classify as _, Code, Failure, api_status_code, with_causes};
use crate::globals::Outbound;

/// The default address of a local `anchorage serve`.
pub(crate) const DEFAULT_SERVER: &str = "https://127.0.0.1:8443";

/// The data directory: `--data-dir`, else the one `anchorage ca` uses.
pub(crate) fn data_dir(given: Option<PathBuf>) -> Result<PathBuf, Failure> {
    given.or_else(anchorage_ca::persist::data_dir).ok_or_else(|| {
        Failure::new(
            Code::Usage,
            "no data directory: give --data-dir DIR or set ANCHORAGE_DATA_DIR (HOME is not set)",
        )
    })
}

/// A current-thread runtime for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Code::Failure, format!("cannot start a runtime: {e}")))
}

/// How to reach a running `anchorage serve`: its URL, the admin token, the CA that signed its
/// certificate.
#[derive(Args, Debug, Clone)]
pub(crate) struct ServerArgs {
    /// The server's URL [default: $ANCHORAGE_SERVER, else https://127.0.0.1:8443].
    #[arg(long, value_name = "URL")]
    pub(crate) server: Option<String>,
    /// A file holding an admin token [default: DIR/admin.token, which serve writes].
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// The CA file the server's certificate is checked against, on top of the OS store and
    /// --tls-ca-path [default: DIR/ca.pem when it exists, which serve writes].
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// The data directory of the server, for the defaults above (default: $ANCHORAGE_DATA_DIR,
    /// else $XDG_DATA_HOME/anchorage, else ~/.local/share/anchorage).
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
}

/// A client of a running server's API, with its admin token.
pub(crate) struct ApiClient {
    base: String,
    token: Zeroizing<String>,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl ServerArgs {
    /// The server URL (option, environment, default), without a trailing `/`.
    pub(crate) fn url(&self) -> String {
        self.server
            .clone()
            .or_else(|| {
                std::env::var("ANCHORAGE_SERVER")
                    .ok()
                    .filter(|v| !v.is_empty())
            })
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned())
            .trim_end_matches('/')
            .to_owned()
    }

    /// Reads the token and the trust, builds the client. Missing files are exit 3.
    pub(crate) fn client(&self, outbound: &Outbound) -> Result<ApiClient, Failure> {
        let dir = self
            .data_dir
            .clone()
            .or_else(anchorage_ca::persist::data_dir);
        let in_dir = |name: &str| dir.as_ref().map(|d| d.join(name));
        let token_file = self
            .token_file
            .clone()
            .or_else(|| in_dir(anchorage_serve::ADMIN_TOKEN_FILE))
            .ok_or_else(|| {
                Failure::new(Code::Usage, "give --token-file FILE (no data directory)")
            })?;
        let token = read_token(&token_file)?;
        let ca = match &self.ca {
            Some(ca) => {
                crate::io::check_input("--ca", ca)?;
                Some(ca.clone())
            }
            None => in_dir(anchorage_serve::CA_FILE).filter(|p| p.is_file()),
        };
        let mut trust = outbound.trust();
        trust.extra_ca_paths.extend(ca);
        let (tls, _) = trust
            .client_config(outbound.provider())
            .map_err(|e| Failure::new(e.code(), format!("--ca: {}", with_causes(&e))))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Failure::new(Code::Failure, with_causes(&e)))?;
        Ok(ApiClient {
            base: self.url(),
            token,
            http,
            runtime: runtime()?,
        })
    }
}

/// Reads a token file (its first line; exit 3 when missing or empty).
fn read_token(path: &Path) -> Result<Zeroizing<String>, Failure> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            Code::BadInput,
            format!(
                "cannot read the token file {}: {e}; give --token-file (serve writes admin.token into its data directory)",
                path.display()
            ),
        )
    })?);
    let line = text.lines().next().unwrap_or_default().trim();
    if line.is_empty() {
        return Err(Failure::new(
            Code::BadInput,
            format!("the token file {} is empty", path.display()),
        ));
    }
    Ok(Zeroizing::new(line.to_owned()))
}

impl ApiClient {
    /// `method path` with the admin token and an optional JSON body: the answer's JSON, or a
    /// failure naming the server's error code and message (the token is never shown).
    pub(crate) fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(self.token.as_str());
        if let Some(body) = body {
            request = request.json(body);
        }
        self.runtime.block_on(async {
            let response = request.send().await.map_err(|e| {
                Failure::new(
                    e.code(),
                    format!(
                        "{method} {url}: {}; is `anchorage serve` running there (--server), and is its CA trusted (--ca)?",
                        with_causes(&e)
                    ),
                )
            })?;
            let status = response.status();
            let text = response.text().await.map_err(|e| {
                Failure::new(e.code(), format!("{method} {url}: {}", with_causes(&e)))
            })?;
            let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
            if !status.is_success() {
                let (code, message) = json
                    .as_ref()
                    .and_then(|j| j.get("error"))
                    .map(|e| {
                        (
                            e.get("code").and_then(|c| c.as_str()).unwrap_or_default(),
                            e.get("message").and_then(|c| c.as_str()).unwrap_or_default(),
                        )
                    })
                    .unwrap_or(("", ""));
                return Err(Failure::new(
                    api_status_code(status.as_u16()),
                    format!("{method} {url}: the server answered {status}: {code}: {message}"),
                ));
            }
            json.ok_or_else(|| {
                Failure::new(
                    Code::Failure,
                    format!("{method} {url}: the answer is not JSON"),
                )
            })
        })
    }
}
