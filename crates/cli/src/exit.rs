//! Exit codes: each one means one thing, and `--help` lists them.
//!
//! Everything about them is here: the one [`Code`] enum, the mapping from each library error
//! type to a code ([`Classify`], and the `From` conversions into [`Failure`]), and the exit-code
//! tables of every `--help` ([`all_codes_help`], [`help`]), generated from [`Code`] so a code is
//! never listed twice or with another number. Commands only build messages.

use std::process::ExitCode;

/// The documented exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Code {
    /// Done; warnings, if any, were printed.
    Ok = 0,
    /// An unexpected failure.
    Failure = 1,
    /// An invalid combination of options (clap uses 2 for its own usage errors too).
    Usage = 2,
    /// Bad input: nothing usable, or a problem under --strict.
    BadInput = 3,
    /// A private key was found among the certificates.
    PrivateKey = 4,
    /// An output could not be written (the previous one is untouched), or stdout (full, closed).
    Output = 5,
    /// `doctor`: the server's chain is not trusted, or is trusted with problems.
    Untrusted = 6,
    /// `doctor`: no TLS handshake could be completed; `ca issue --backend vault`: the server
    /// could not be reached or answered an error.
    Unreachable = 7,
    /// `ca`: no CA in the store yet (`ca init` or `ca import` first).
    CaMissing = 8,
    /// `ca init`/`ca import`: a CA already exists and --force was not given.
    CaExists = 9,
    /// `ca`: the stored CA key is encrypted and the passphrase is missing or wrong.
    Passphrase = 10,
    /// `ca`: the store cannot be used (in use, unreadable) or its CA record is damaged.
    Store = 11,
    /// `ca issue`: the issuer refused the request (an OpenBao role that does not allow the
    /// name; the built-in CA: a name outside its name constraints, or a wildcard over a public
    /// suffix).
    Refused = 12,
    /// `secrets`: the secret (or version) does not exist; `image inject`: the source image or
    /// tag does not exist.
    NotFound = 13,
    /// `secrets`: the store changed under the operation (compare-and-swap lost); retry.
    Conflict = 14,
    /// `secrets serve`/`image inject`: the NATS server or the registry refused the credentials.
    AuthFailed = 15,
    /// `image inject`: the image cannot be handled (a manifest media type we do not handle, a
    /// layer that is not a valid tar); `serve --store jetstream`: a replicated bucket on a
    /// nats-server older than 2.9.21.
    Unsupported = 16,
    /// `secrets serve`: stopped by a signal, but the drain was cut short (requests abandoned at
    /// `--drain-timeout`, replies not flushed, or a second signal).
    DrainCutShort = 17,
    /// `serve`: the listen address cannot be bound (in use by another process, or not allowed).
    Listen = 18,
    /// `ca rotate advance`: the gate to the next phase does not hold (consumers named in the
    /// message have not installed what it needs, or the dwell has not passed).
    GateNotHolding = 19,
}

impl Code {
    /// Every code, in order (`ALL[n] as u8 == n`).
    pub(crate) const ALL: [Code; 20] = [
        Code::Ok,
        Code::Failure,
        Code::Usage,
        Code::BadInput,
        Code::PrivateKey,
        Code::Output,
        Code::Untrusted,
        Code::Unreachable,
        Code::CaMissing,
        Code::CaExists,
        Code::Passphrase,
        Code::Store,
        Code::Refused,
        Code::NotFound,
        Code::Conflict,
        Code::AuthFailed,
        Code::Unsupported,
        Code::DrainCutShort,
        Code::Listen,
        Code::GateNotHolding,
    ];

    /// What the code means, as `anchorage --help` lists it (each command's `--help` says it in
    /// its own words).
    pub(crate) fn meaning(self) -> &'static str {
        match self {
            Code::Ok => "done (warnings, if any, were printed on stderr)",
            Code::Failure => "unexpected failure",
            Code::Usage => "invalid command line",
            Code::BadInput => "bad input: no usable certificate, or any problem with --strict",
            Code::PrivateKey => {
                "a private key was found among the certificates (refused, never copied)"
            }
            Code::Output => {
                "an output or stdout could not be written (the previous output is untouched)"
            }
            Code::Untrusted => "doctor: untrusted, or trusted with problems",
            Code::Unreachable => "a server could not be reached or completed no handshake",
            Code::CaMissing => "ca: no CA in the store",
            Code::CaExists => "ca: a CA already exists (--force replaces it)",
            Code::Passphrase => "ca: the CA key's passphrase is missing or wrong",
            Code::Store => "the store cannot be used, or its record is damaged",
            Code::Refused => "ca issue: the issuer refused the request",
            Code::NotFound => "not found: the secret, version, image or tag",
            Code::Conflict => "the store changed under the operation: retry",
            Code::AuthFailed => "the server refused the credentials",
            Code::Unsupported => "image inject: an image that cannot be handled",
            Code::DrainCutShort => "secrets serve: stopped by a signal, drain cut short",
            Code::Listen => "serve: the listen address is in use or not allowed",
            Code::GateNotHolding => "ca rotate advance: the rotation's gate does not hold",
        }
    }
}

/// `Exit codes:` and one line per code, `{code:>3}  {meaning}`, a meaning's further lines
/// indented under the first. The codes must be in increasing order (so none is listed twice).
fn table(rows: &[(Code, &str)]) -> String {
    let mut text = String::from("Exit codes:");
    let mut last: Option<u8> = None;
    for (code, meaning) in rows {
        let n = *code as u8;
        assert!(
            last.is_none_or(|l| l < n),
            "exit code {n} listed out of order or twice"
        );
        last = Some(n);
        let mut lines = meaning.lines();
        text.push_str(&format!("\n{n:>3}  {}", lines.next().unwrap_or_default()));
        for line in lines {
            text.push_str(&format!("\n     {line}"));
        }
    }
    text
}

/// The `after_help` of a command: `before` (examples, notes), the exit-code table of `codes`
/// (in the command's words), then `after`.
pub(crate) fn help(before: &str, codes: &[(Code, &str)], after: &str) -> String {
    let mut text = format!("{before}{}", table(codes));
    if !after.is_empty() {
        text.push_str("\n\n");
        text.push_str(after);
    }
    text
}

/// The `after_help` of `anchorage` itself: every code with its meaning.
pub(crate) fn all_codes_help() -> String {
    let rows: Vec<(Code, &str)> = Code::ALL.iter().map(|c| (*c, c.meaning())).collect();
    table(&rows)
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> Self {
        ExitCode::from(code as u8)
    }
}

/// A failed command: the message for stderr, the exit code, and what the policy reported before
/// the failure (for `--output json`), when it got that far.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: Code,
    pub(crate) message: String,
    pub(crate) report: Option<Box<anchorage_trust::Report>>,
    /// What the failure document of `--output json` says besides `error` and `exit_code`.
    pub(crate) json: FailureJson,
}

/// The fields a command adds to its JSON failure document (printed by
/// [`crate::render::print_failure_json`], the one printer of failure documents).
#[derive(Debug, Default)]
pub(crate) struct FailureJson {
    /// `"target"` first (`doctor`).
    pub(crate) target: Option<String>,
    /// `"problems"` and `"findings"` of [`Failure::report`] last, empty without one
    /// (`bundle build`).
    pub(crate) report: bool,
}

impl Failure {
    /// A failure before any certificate was looked at.
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            report: None,
            json: FailureJson::default(),
        }
    }

    /// Names the target in the JSON failure document (`"target"` before `"error"`).
    pub(crate) fn with_json_target(mut self, target: &str) -> Self {
        self.json.target = Some(target.to_owned());
        self
    }

    /// Puts the report's problems and findings in the JSON failure document.
    pub(crate) fn with_json_report(mut self) -> Self {
        self.json.report = true;
        self
    }

    /// Attaches the policy's report of a build that failed later (writing an output).
    pub(crate) fn with_report(mut self, report: &anchorage_trust::Report) -> Self {
        self.report = Some(Box::new(report.clone()));
        self
    }
}

impl From<anchorage_trust::TrustError> for Failure {
    fn from(e: anchorage_trust::TrustError) -> Self {
        use anchorage_trust::TrustError as E;
        let code = e.code();
        // Show the OS error behind an output failure too.
        let mut message = with_causes(&e);
        // What to do about the usual OS refusals of an atomic swap.
        if let E::Output { source, .. } = &e {
            let hint = match source.kind() {
                std::io::ErrorKind::CrossesDevices | std::io::ErrorKind::ResourceBusy => Some(
                    "the target is a mount point (a volume or bind mount), which cannot be swapped: write to a path inside the mounted directory instead",
                ),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                    Some(
                        "the target's parent directory must be writable: the new output is created beside it and swapped in",
                    )
                }
                _ => None,
            };
            if let Some(hint) = hint {
                message.push_str("; ");
                message.push_str(hint);
            }
        }
        let report = match e {
            E::NoCertificates { report } | E::Strict { report, .. } => Some(report),
            _ => None,
        };
        Self {
            code,
            message,
            report,
            json: FailureJson::default(),
        }
    }
}

impl From<anchorage_trust::tls::TlsTrustError> for Failure {
    fn from(e: anchorage_trust::tls::TlsTrustError) -> Self {
        Self::new(e.code(), with_causes(&e))
    }
}

impl From<anchorage_k8s::K8sError> for Failure {
    fn from(e: anchorage_k8s::K8sError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl Classify for anchorage_k8s::K8sError {
    fn code(&self) -> Code {
        use anchorage_k8s::K8sError;
        match self {
            // The bundle does not fit, or the workload is not what was said: the input is wrong.
            K8sError::TooLarge { .. }
            | K8sError::EmptyBundle { .. }
            | K8sError::NotCa { .. }
            | K8sError::ContainerNotFound { .. }
            | K8sError::WrongKind { .. }
            | K8sError::NoPodSpec { .. }
            | K8sError::MalformedObject { .. }
            | K8sError::AuthorityConflict { .. } => Code::BadInput,
            K8sError::Yaml(_) | K8sError::Json(_) | K8sError::Keystore { .. } => Code::Failure,
            // A name, key, label, path or option Kubernetes would refuse, all from the command
            // line (`--container App` included): exit 2, as the help says.
            _ => Code::Usage,
        }
    }
}

/// The exit code of a library error. Every mapping from an error type to a [`Code`] is in this
/// module; commands build the message (with what to do) and take the code from here.
pub(crate) trait Classify {
    /// The exit code this error ends the command with.
    fn code(&self) -> Code;
}

impl Classify for anchorage_trust::TrustError {
    fn code(&self) -> Code {
        use anchorage_trust::TrustError as E;
        match self {
            E::PrivateKey { .. } => Code::PrivateKey,
            E::Strict { .. } | E::NoCertificates { .. } => Code::BadInput,
            E::Output { .. } => Code::Output,
            // The keystore options cannot be honoured (a password rule): nothing was written.
            E::Keystore { .. } => Code::BadInput,
            _ => Code::Failure,
        }
    }
}

impl Classify for anchorage_trust::tls::TlsTrustError {
    fn code(&self) -> Code {
        use anchorage_trust::tls::TlsTrustError as E;
        match self {
            E::PrivateKey { .. } => Code::PrivateKey,
            E::Provider { .. } => Code::Failure,
            _ => Code::BadInput,
        }
    }
}

impl Classify for anchorage_trust::install::InstallError {
    fn code(&self) -> Code {
        use anchorage_trust::install::InstallError as E;
        match self {
            E::Io { .. } => Code::Output,
            E::Unusable(_) => Code::Usage,
            E::Spawn { .. } | E::Failed { .. } => Code::Failure,
        }
    }
}

impl Classify for anchorage_doctor::DoctorError {
    fn code(&self) -> Code {
        use anchorage_doctor::DoctorError as E;
        match self {
            E::BadTarget { .. } | E::BadServerName { .. } => Code::Usage,
            E::Provider { .. } => Code::Failure,
            _ => Code::Unreachable,
        }
    }
}

impl Classify for anchorage_registry::RegistryError {
    fn code(&self) -> Code {
        use anchorage_image::ImageError;
        use anchorage_registry::RegistryError as E;
        match self {
            E::Reference { .. } => Code::Usage,
            E::NotFound { .. } | E::PlatformNotFound { .. } => Code::NotFound,
            E::AuthFailed { .. } => Code::AuthFailed,
            E::Unreachable { .. } => Code::Unreachable,
            E::UnsupportedMediaType { .. } | E::InvalidDigest { .. } | E::TooLarge { .. } => {
                Code::Unsupported
            }
            E::Image {
                source:
                    ImageError::Layer { .. }
                    | ImageError::UnsupportedMediaType { .. }
                    | ImageError::FileTooLarge { .. }
                    | ImageError::TarExtensionTooLarge { .. }
                    | ImageError::TarPathTooLong { .. }
                    | ImageError::LayerTooLarge { .. }
                    | ImageError::LayerIndexTooLarge { .. }
                    | ImageError::SymlinkLoop { .. }
                    | ImageError::DanglingHardLink { .. }
                    | ImageError::JavaStore { .. }
                    | ImageError::JavaStoreNotOnlyTrusted { .. }
                    | ImageError::HashSlotsExhausted { .. }
                    | ImageError::Json { .. }
                    | ImageError::InvalidDigest { .. },
                ..
            } => Code::Unsupported,
            E::InvalidLayout { .. } => Code::BadInput,
            E::Layout { .. } => Code::Output,
            _ => Code::Failure,
        }
    }
}

/// `ca issue`, built-in or Vault.
impl Classify for anchorage_ca::IssueError {
    fn code(&self) -> Code {
        use anchorage_ca::IssueError as E;
        match self {
            E::Request(_) | E::UnsupportedKeyType { .. } => Code::Usage,
            E::CaNotValid { .. } | E::LifetimeExceedsCa { .. } => Code::BadInput,
            E::Refused { .. } | E::NameNotPermitted { .. } | E::PublicSuffixWildcard { .. } => {
                Code::Refused
            }
            E::Backend { .. } | E::Timeout { .. } => Code::Unreachable,
            _ => Code::Failure,
        }
    }
}

impl Classify for anchorage_ca_vault::VaultError {
    fn code(&self) -> Code {
        use anchorage_ca_vault::VaultError as E;
        match self {
            E::InvalidAddress { .. } | E::InvalidSetting { .. } | E::InvalidSecret { .. } => {
                Code::Usage
            }
            // A --tls-ca-path that is missing, holds no certificate, or holds a key.
            E::Trust { .. } => Code::BadInput,
            _ => Code::Failure,
        }
    }
}

/// The CA in the store, loaded or saved (`ca init`, `issue`, `show`, `export`, `import`).
impl Classify for anchorage_ca::CaError {
    fn code(&self) -> Code {
        use anchorage_ca::CaError as E;
        match self {
            E::NotInitialised { .. } => Code::CaMissing,
            E::AlreadyInitialised { .. } => Code::CaExists,
            E::PassphraseRequired | E::WrongPassphrase => Code::Passphrase,
            // Another `ca init`/`ca import --force` replaced the CA during ours.
            E::Store(s) if s.is_conflict() => Code::CaExists,
            E::Store(_) => Code::Store,
            E::Crypto { .. } => Code::Failure,
            // Anything else read back from the store means the record is damaged.
            _ => Code::Store,
        }
    }
}

/// A CA that `ca import` read from files: anything but a crypto failure is bad input.
pub(crate) fn import_code(e: &anchorage_ca::CaError) -> Code {
    match e {
        anchorage_ca::CaError::Crypto { .. } => Code::Failure,
        _ => Code::BadInput,
    }
}

/// A Secret manifest of `ca import` that cannot be read or lacks an entry.
impl Classify for anchorage_k8s::CaSecretError {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

/// The embedded store (`ca`, `secrets --store embedded`): in use, unreadable or damaged.
impl Classify for anchorage_store::StoreError {
    fn code(&self) -> Code {
        Code::Store
    }
}

impl Classify for anchorage_secrets::KeyError {
    fn code(&self) -> Code {
        match self {
            anchorage_secrets::KeyError::MissingEnv { .. } => Code::Usage,
            _ => Code::BadInput,
        }
    }
}

impl Classify for anchorage_secrets_server::ConnectError {
    fn code(&self) -> Code {
        use anchorage_secrets_server::ConnectError as E;
        match self {
            E::CredsFile { .. } => Code::BadInput,
            E::NoServer => Code::Usage,
            _ if self.is_auth() => Code::AuthFailed,
            _ => Code::Unreachable,
        }
    }
}

impl Classify for anchorage_secrets_server::StoreFailure {
    fn code(&self) -> Code {
        use anchorage_secrets_server::StoreFailure as E;
        match self {
            E::InvalidName { .. } => Code::BadInput,
            E::Contended { .. } => Code::Conflict,
            E::AuthFailed { .. } => Code::AuthFailed,
            E::Unsupported { .. } => Code::Usage,
            E::Backend {
                store: "openbao" | "kubernetes",
                ..
            } => Code::Unreachable,
            _ => Code::Store,
        }
    }
}

/// An operation the shared secrets executor refused (in-process).
impl Classify for anchorage_secrets_server::OperationError {
    fn code(&self) -> Code {
        use anchorage_secrets_server::OperationError as E;
        match self {
            E::InvalidArgument(_) => Code::BadInput,
            E::NotFound(_) => Code::NotFound,
            E::Unsupported(_) => Code::Usage,
            E::Store(e) => e.code(),
            _ => Code::Store,
        }
    }
}

/// An operation the running server refused, or a call that did not reach it (`--admin-seed`).
impl Classify for anchorage_secrets_server::AdminCallError {
    fn code(&self) -> Code {
        use anchorage_secrets::admin::AdminError;
        use anchorage_secrets_server::AdminCallError as E;
        match self {
            E::NoResponders { .. } | E::Timeout { .. } | E::Nats { .. } => Code::Unreachable,
            E::Refused(refused) => match refused {
                e if e.refuses_identity() => Code::AuthFailed,
                AdminError::NotFound(_) => Code::NotFound,
                AdminError::Conflict(_) => Code::Conflict,
                AdminError::InvalidArgument(_) => Code::BadInput,
                AdminError::Unsupported(_) => Code::Usage,
                AdminError::Store(_) => Code::Store,
                _ => Code::Failure,
            },
            E::Malformed(_) | E::Sign(_) => Code::Failure,
        }
    }
}

/// A remote store (`serve --store jetstream`) that did not answer: the stream has no leader
/// yet, or NATS is not reachable.
pub(crate) fn store_retryable(e: &anchorage_store::StoreError) -> bool {
    use anchorage_store::StoreError as E;
    matches!(e, E::Timeout { .. } | E::Backend { .. })
}

/// `serve --store jetstream`: why the bucket could not be opened or used.
pub(crate) fn jetstream_code(e: &anchorage_store::StoreError) -> Code {
    use anchorage_store::StoreError as E;
    match e {
        _ if store_retryable(e) => Code::Unreachable,
        // A replicated bucket on a server whose clustered compare-and-swap is not serializable.
        E::Config {
            what: "nats-server version",
            ..
        } => Code::Unsupported,
        E::Config { .. } => Code::Usage,
        _ => Code::Store,
    }
}

/// `anchorage serve`: why the control plane could not start.
impl Classify for anchorage_serve::ServeError {
    fn code(&self) -> Code {
        use anchorage_serve::ServeError as E;
        match self {
            // --tls-cert/--tls-key that cannot be read.
            E::Io { action: "read", .. } => Code::BadInput,
            // The data directory, ca.pem or admin.token cannot be created or written.
            E::Io { .. } => Code::Output,
            // --store jetstream: NATS or the stream's leader did not answer.
            E::Store(s) if store_retryable(s) => Code::Unreachable,
            // In use by another process (a second serve, a running `ca` command), or damaged.
            E::Store(_) => Code::Store,
            E::Ca(e) => e.code(),
            E::Bind { .. } => Code::Listen,
            // A --tls-cert/--tls-key pair that does not make a serving certificate, a bad
            // --tls-name, a role in --roles.
            E::Tls(_) | E::Role { .. } => Code::BadInput,
            E::Token(e) => e.code(),
            E::Nats { .. } => Code::Unreachable,
            // --secrets: a bad --prefix/--secrets-backend/--queue-group; the buckets.
            E::Secrets(_) => Code::Usage,
            E::SecretsStore(e) => e.code(),
            _ => Code::Failure,
        }
    }
}

/// `anchorage token create` on the store directly.
impl Classify for anchorage_serve::MintError {
    fn code(&self) -> Code {
        match self {
            anchorage_serve::MintError::Invalid(_) => Code::Usage,
            _ => Code::Store,
        }
    }
}

/// `anchorage agent`: why a pass failed.
impl Classify for anchorage_agent::AgentError {
    fn code(&self) -> Code {
        use anchorage_agent::AgentError as E;
        match self {
            E::Read { .. } | E::BadInput { .. } | E::Tls(_) => Code::BadInput,
            E::Config(_) => Code::Usage,
            E::Unreachable { .. } => Code::Unreachable,
            E::Server { status, .. } => match api_status_code(*status) {
                Code::BadInput => Code::Refused,
                other => other,
            },
            E::Output { .. } => Code::Output,
            E::Reload { .. } => Code::Failure,
            _ => Code::Failure,
        }
    }
}

/// A call to a running `anchorage serve` that got no answer (`token create --server`,
/// `consumers list`).
impl Classify for reqwest::Error {
    fn code(&self) -> Code {
        if self.is_connect() || self.is_timeout() || self.is_request() {
            Code::Unreachable
        } else {
            Code::Failure
        }
    }
}

/// The exit code of an HTTP error status from `anchorage serve`'s API: a token refused (401,
/// 403) is 15, something absent (404) 13, a request the server refused as invalid (400) 3, a
/// server that cannot serve now (5xx) 7.
pub(crate) fn api_status_code(status: u16) -> Code {
    match status {
        401 | 403 => Code::AuthFailed,
        404 => Code::NotFound,
        400 | 413 | 422 => Code::BadInput,
        409 => Code::Conflict,
        500..=599 => Code::Unreachable,
        _ => Code::Failure,
    }
}

/// The error's message followed by each cause's, `: `-separated; a cause whose text the message
/// already holds (an error that prints its `#[source]` itself) is not said again, so no message
/// reads "X: X".
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::{Code, all_codes_help, help, with_causes};

    /// The numbers of an `Exit codes:` table, in the order listed.
    fn listed(text: &str) -> Vec<u8> {
        let table = text.split_once("Exit codes:\n").expect("a table").1;
        table
            .lines()
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.trim_start().split_once("  "))
            .filter_map(|(n, _)| n.parse().ok())
            .collect()
    }

    #[test]
    fn all_is_every_code_in_order() {
        for (n, code) in Code::ALL.iter().enumerate() {
            assert_eq!(*code as usize, n);
            assert!(!code.meaning().is_empty());
        }
        // The last variant closes the list: a new code must be added to ALL.
        assert_eq!(Code::GateNotHolding as usize + 1, Code::ALL.len());
    }

    #[test]
    fn the_help_table_lists_every_code_exactly_once() {
        let text = all_codes_help();
        let all: Vec<u8> = Code::ALL.iter().map(|c| *c as u8).collect();
        assert_eq!(listed(&text), all, "{text}");
        for code in Code::ALL {
            assert!(
                text.contains(&format!("{:>3}  {}", code as u8, code.meaning())),
                "{code:?} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn a_command_table_is_numbered_from_the_enum() {
        let text = help(
            "Examples:\n  x\n\n",
            &[
                (Code::Ok, "printed"),
                (Code::CaExists, "exists\nsecond line"),
            ],
            "After.",
        );
        assert_eq!(
            text,
            "Examples:\n  x\n\nExit codes:\n  0  printed\n  9  exists\n     second line\n\nAfter."
        );
    }

    /// Negative control: a code listed twice (as `secrets` listed 15 before) is refused.
    #[test]
    #[should_panic(expected = "listed out of order or twice")]
    fn a_code_listed_twice_is_refused() {
        let _ = help(
            "",
            &[(Code::AuthFailed, "one"), (Code::AuthFailed, "two")],
            "",
        );
    }

    /// Negative control: out of order (as `ca` listed 8 before 7) is refused too.
    #[test]
    #[should_panic(expected = "listed out of order or twice")]
    fn a_table_out_of_order_is_refused() {
        let _ = help("", &[(Code::CaMissing, "8"), (Code::Unreachable, "7")], "");
    }

    /// An error about corp.pem caused by `0`, whose message holds its cause when `.1`.
    #[derive(Debug)]
    struct Read(std::io::Error, bool);

    impl std::fmt::Display for Read {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("cannot read corp.pem")?;
            if self.1 {
                write!(f, ": {}", self.0)?;
            }
            Ok(())
        }
    }

    impl std::error::Error for Read {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn denied() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied")
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        assert_eq!(
            with_causes(&Read(denied(), true)),
            "cannot read corp.pem: permission denied"
        );
        // Negative control: a cause the message leaves out is appended.
        assert_eq!(
            with_causes(&Read(denied(), false)),
            "cannot read corp.pem: permission denied"
        );
    }
}
