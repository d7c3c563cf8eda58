//! Helpers shared by the interop tests in `tests/`: keeping a client off the machine's trust
//! store, and judging what a client run printed.

use std::process::Command;

use anchorage_test_support::peer::ClientRun;

/// Environment variables that would point a client at the machine's trust store, a proxy, a user
/// configuration or JVM options instead of the files under test.
pub const AMBIENT_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CURL_CA_BUNDLE",
    "CURL_HOME",
    "OPENSSL_CONF",
    "REQUESTS_CA_BUNDLE",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "http_proxy",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

/// Removes [`AMBIENT_VARS`] from `command`'s environment.
pub fn without_ambient(command: &mut Command) -> &mut Command {
    for var in AMBIENT_VARS {
        command.env_remove(var);
    }
    command
}

/// Why a client run did not behave as expected, if it did not: it must exit 0 exactly when
/// `success`, print every one of `all`, at least one of `any` (when not empty) and none of `none`.
pub fn judge(
    run: &ClientRun,
    success: bool,
    all: &[&str],
    any: &[&str],
    none: &[&str],
) -> Option<String> {
    let output = run.output();
    if run.status.success() != success {
        return Some(format!(
            "expected {}",
            if success { "success" } else { "failure" }
        ));
    }
    let missing: Vec<_> = all.iter().filter(|m| !output.contains(**m)).collect();
    if !missing.is_empty() {
        return Some(format!("output lacks {missing:?}"));
    }
    if !any.is_empty() && !any.iter().any(|m| output.contains(m)) {
        return Some(format!("output has none of {any:?}"));
    }
    let unwanted: Vec<_> = none.iter().filter(|m| output.contains(**m)).collect();
    (!unwanted.is_empty()).then(|| format!("output has {unwanted:?}"))
}
