//! Exit codes: each one means one thing, and `--help` lists them.

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
    /// layer that is not a valid tar).
    Unsupported = 16,
    /// `secrets serve`: stopped by a signal, but the drain was cut short (requests abandoned at
    /// `--drain-timeout`, replies not flushed, or a second signal).
    DrainCutShort = 17,
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> Self {
        ExitCode::from(code as u8)
    }
}

/// The help text's exit-code table, shared by every command.
pub(crate) const EXIT_CODES_HELP: &str = "Exit codes:
  0  done (warnings, if any, were printed on stderr)
  1  unexpected failure
  2  invalid command line
  3  bad input: no usable certificate, or any problem with --strict
  4  a private key was found among the certificates (refused, never copied)
  5  an output or stdout could not be written (the previous output is untouched)";

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
        let code = match &e {
            E::PrivateKey { .. } => Code::PrivateKey,
            E::Strict { .. } | E::NoCertificates { .. } => Code::BadInput,
            E::Output { .. } => Code::Output,
            // The keystore options cannot be honoured (a password rule): nothing was written.
            E::Keystore { .. } => Code::BadInput,
            _ => Code::Failure,
        };
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
        use anchorage_trust::tls::TlsTrustError as E;
        let code = match &e {
            E::PrivateKey { .. } => Code::PrivateKey,
            E::Provider { .. } => Code::Failure,
            _ => Code::BadInput,
        };
        Self::new(code, with_causes(&e))
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
    use super::with_causes;

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
