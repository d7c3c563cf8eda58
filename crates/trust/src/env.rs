//! Environment variables that point each runtime at a trust bundle.
//!
//! Every runtime finds its trust store its own way, and most can be redirected by one environment
//! variable. This module owns the catalogue of those variables: which runtime reads each one, and
//! whether it **replaces** the runtime's default store or **adds** to it. That distinction decides
//! which file a variable must name:
//!
//! - a variable that *replaces* the default store (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`,
//!   `CURL_CA_BUNDLE`, Java's trust-store flags, …) must name the **combined** bundle (public roots
//!   plus private CAs), or the workload stops trusting public sites;
//! - a variable that *adds* to a compiled-in store (`NODE_EXTRA_CA_CERTS`, `DENO_CERT`) should name
//!   the **private CAs only**: the runtime already ships Mozilla's roots
//!   (`anchorage bundle build … --extra-pem FILE` writes exactly that file). Without that file it
//!   names the combined bundle instead: adding public roots the runtime already has is harmless,
//!   and leaving the variable out would leave Node and Deno trusting none of the private CAs.
//!
//! It does not own where the files are, nor render shell syntax: [`variables`] turns an
//! [`EnvRequest`] into [`Variable`]s, and the CLI prints them (`anchorage env`). Programs that
//! ignore every variable are listed in [`IGNORE_ALL`], so users are not surprised.
//!
//! ```
//! use anchorage_trust::env::{variables, EnvRequest, Points};
//!
//! let request = EnvRequest {
//!     bundle: "/etc/ssl/certs/ca-certificates.crt".into(),
//!     dir: Some("/etc/ssl/certs".into()),
//!     ..EnvRequest::default()
//! };
//! let vars = variables(&request);
//! let file = vars.iter().find(|v| v.name == "SSL_CERT_FILE").unwrap();
//! assert_eq!(file.value, "/etc/ssl/certs/ca-certificates.crt");
//! assert_eq!(file.points, Points::Bundle);
//! // Without an extra-CA file, the "adds" variables name the combined bundle: adding public
//! // roots the runtime already ships is harmless, and Node then trusts the private CAs too.
//! let node = vars.iter().find(|v| v.name == "NODE_EXTRA_CA_CERTS").unwrap();
//! assert_eq!(node.value, "/etc/ssl/certs/ca-certificates.crt");
//! assert_eq!(node.points, Points::Bundle);
//! ```

use std::path::PathBuf;

use serde::Serialize;

/// What a variable does to the runtime's default trust.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The runtime reads only this store: it must hold public roots too.
    Replaces,
    /// The runtime adds these certificates to its compiled-in roots.
    Adds,
}

/// Which file a variable names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Points {
    /// The combined PEM bundle (public roots plus private CAs).
    Bundle,
    /// The OpenSSL hashed directory (`<hash>.<n>` entries).
    Dir,
    /// The private CAs only: what Mozilla's roots lack.
    Extra,
    /// Java options naming the trust store.
    JavaTrustStore,
}

/// One entry of the catalogue: a variable and who reads it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Spec {
    /// The variable's name.
    pub name: &'static str,
    /// Replaces or adds to the default store.
    pub effect: Effect,
    /// Which file it names.
    pub points: Points,
    /// The runtimes and tools that read it.
    pub readers: &'static str,
    /// What to know before relying on it.
    pub note: &'static str,
}

/// Every variable [`variables`] can set, in output order.
pub const CATALOGUE: &[Spec] = &[
    Spec {
        name: "SSL_CERT_FILE",
        effect: Effect::Replaces,
        points: Points::Bundle,
        readers: "OpenSSL-based programs (openssl, Python ssl, Ruby, PHP, .NET on Linux), Go crypto/x509, Rust rustls-native-certs, uv",
        note: "read through OpenSSL's default verify paths; programs that set their own CA file ignore it",
    },
    Spec {
        name: "SSL_CERT_DIR",
        effect: Effect::Replaces,
        points: Points::Dir,
        readers: "OpenSSL-based programs, Go crypto/x509 (colon-separated list), Rust rustls-native-certs",
        note: "needs the hashed <hash>.<n> entries, not just a bundle",
    },
    Spec {
        name: "REQUESTS_CA_BUNDLE",
        effect: Effect::Replaces,
        points: Points::Bundle,
        readers: "Python requests (and pip, conda, httpx through it), which otherwise use certifi and ignore SSL_CERT_FILE",
        note: "replaces certifi entirely",
    },
    Spec {
        name: "CURL_CA_BUNDLE",
        effect: Effect::Replaces,
        points: Points::Bundle,
        readers: "curl command line, Python requests (fallback)",
        note: "libcurl itself does not read it; programs linking libcurl set CURLOPT_CAINFO",
    },
    Spec {
        name: "GIT_SSL_CAINFO",
        effect: Effect::Replaces,
        points: Points::Bundle,
        readers: "git over HTTPS",
        note: "same as git config http.sslCAInfo",
    },
    Spec {
        name: "PIP_CERT",
        effect: Effect::Replaces,
        points: Points::Bundle,
        readers: "pip",
        note: "same as pip --cert",
    },
    Spec {
        name: "AWS_CA_BUNDLE",
        effect: Effect::Replaces,
        points: Points::Bundle,
        readers: "AWS CLI and SDKs (botocore, Go, Java, JavaScript)",
        note: "same as ca_bundle in ~/.aws/config",
    },
    Spec {
        name: "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
        effect: Effect::Replaces,
        points: Points::Bundle,
        readers: "gRPC C core (grpcio for Python, gRPC for Ruby, C++, PHP)",
        note: "grpc-go and grpc-java use their language's store instead",
    },
    Spec {
        name: "HTTPLIB2_CA_CERTS",
        effect: Effect::Replaces,
        points: Points::Bundle,
        readers: "Python httplib2 (google-api-python-client)",
        note: "",
    },
    Spec {
        name: "CARGO_HTTP_CAINFO",
        effect: Effect::Replaces,
        points: Points::Bundle,
        readers: "cargo",
        note: "same as http.cainfo in .cargo/config.toml",
    },
    Spec {
        name: "NPM_CONFIG_CAFILE",
        effect: Effect::Replaces,
        points: Points::Bundle,
        readers: "npm",
        note: "npm's cafile replaces its default CA list",
    },
    Spec {
        name: "COMPOSER_CAFILE",
        effect: Effect::Replaces,
        points: Points::Bundle,
        readers: "PHP Composer",
        note: "",
    },
    Spec {
        name: "HEX_CACERTS_PATH",
        effect: Effect::Replaces,
        points: Points::Bundle,
        readers: "Elixir Hex and Mix",
        note: "",
    },
    Spec {
        name: "NODE_EXTRA_CA_CERTS",
        effect: Effect::Adds,
        points: Points::Extra,
        readers: "Node.js, Bun",
        note: "read once at process start; Node ignores SSL_CERT_FILE unless run with --use-openssl-ca",
    },
    Spec {
        name: "DENO_CERT",
        effect: Effect::Adds,
        points: Points::Extra,
        readers: "Deno",
        note: "",
    },
    Spec {
        name: "JAVA_TOOL_OPTIONS",
        effect: Effect::Replaces,
        points: Points::JavaTrustStore,
        readers: "every JVM (Java, Kotlin, Scala, Gradle, Maven): javax.net.ssl.trustStore replaces cacerts",
        note: "appends to JAVA_TOOL_OPTIONS if the workload already sets it; the JVM prints 'Picked up JAVA_TOOL_OPTIONS' on stderr",
    },
];

/// Programs that ignore every variable above, so pointing them at a bundle needs another way.
pub const IGNORE_ALL: &[(&str, &str)] = &[
    (
        "programs with compiled-in roots",
        "statically linked binaries built with webpki-roots (Rust) or an embedded certifi/CA bundle read no file at all: rebuild them, or use their own CA option",
    ),
    (
        "Java without JAVA_TOOL_OPTIONS",
        "the JVM reads only its cacerts keystore; it never reads PEM files or SSL_CERT_FILE",
    ),
    (
        "Node.js default store",
        "Node reads its bundled Mozilla list plus NODE_EXTRA_CA_CERTS; SSL_CERT_FILE and SSL_CERT_DIR count only with --use-openssl-ca",
    ),
    (
        "Chromium, Chrome and Electron apps on Linux",
        "use the NSS database (~/.pki/nssdb): import with certutil",
    ),
    (
        "Firefox",
        "uses its own NSS store; enterprise policy ImportEnterpriseRoots or certutil",
    ),
];

/// Where the trust files are, as the workload will see them.
#[derive(Clone, Debug, Default)]
pub struct EnvRequest {
    /// The combined PEM bundle (public roots plus private CAs).
    pub bundle: PathBuf,
    /// The OpenSSL hashed directory, if there is one.
    pub dir: Option<PathBuf>,
    /// The private CAs only (`--extra-pem`); without it `NODE_EXTRA_CA_CERTS` and `DENO_CERT`
    /// name [`EnvRequest::bundle`].
    pub extra: Option<PathBuf>,
    /// A Java trust store holding the combined bundle; without it `JAVA_TOOL_OPTIONS` is not set.
    pub java: Option<JavaTrustStore>,
}

/// A trust directory mounted into a container (a ConfigMap or Secret volume, or a
/// ClusterTrustBundle projection), described by which of its files exist: what
/// `anchorage k8s patch` and the pod-injection webhook both turn into an [`EnvRequest`], so the
/// two set the same variables.
#[derive(Clone, Copy, Debug)]
pub struct MountedTrust<'a> {
    /// Where the volume is mounted, e.g. `/etc/ssl/certs`.
    pub mount: &'a std::path::Path,
    /// The bundle's file name in the volume, e.g. `ca-certificates.crt`.
    pub bundle_file: &'a str,
    /// The volume holds `<hash>.<n>` entries too, so `SSL_CERT_DIR` names it.
    pub hashed: bool,
    /// The private-CAs-only file, e.g. `extra-ca.pem` (for `NODE_EXTRA_CA_CERTS`, `DENO_CERT`).
    pub extra_file: Option<&'a str>,
    /// A password-less PKCS#12 trust store, e.g. `truststore.p12` (for `JAVA_TOOL_OPTIONS`).
    pub pkcs12_file: Option<&'a str>,
}

impl EnvRequest {
    /// The request for a mounted trust directory: paths as the container sees them.
    pub fn mounted(trust: &MountedTrust<'_>) -> Self {
        let mount = trust.mount;
        Self {
            bundle: mount.join(trust.bundle_file),
            dir: trust.hashed.then(|| mount.to_path_buf()),
            extra: trust.extra_file.map(|f| mount.join(f)),
            java: trust.pkcs12_file.map(|f| JavaTrustStore {
                path: mount.join(f),
                store_type: JavaStoreType::Pkcs12,
                // Password-less (no MAC): the JVM loads it without one.
                password: None,
            }),
        }
    }
}

/// A Java trust store for `JAVA_TOOL_OPTIONS`.
#[derive(Clone, Debug)]
pub struct JavaTrustStore {
    /// The keystore file.
    pub path: PathBuf,
    /// `PKCS12` or `JKS`.
    pub store_type: JavaStoreType,
    /// Whether to pass `-Djavax.net.ssl.trustStorePassword`. The password then shows in the
    /// process environment: fine for a trust store (it guards integrity, not secrecy), and
    /// unnecessary for a password-less PKCS#12.
    pub password: Option<String>,
}

/// The keystore type Java is told to expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JavaStoreType {
    /// PKCS#12 (Java 9+ default).
    Pkcs12,
    /// Legacy JKS.
    Jks,
}

/// A variable to set, with the catalogue facts that explain it.
#[derive(Clone, Debug, Serialize)]
pub struct Variable {
    /// The name.
    pub name: &'static str,
    /// The value (a path, or Java options).
    pub value: String,
    /// Replaces or adds to the default store.
    pub effect: Effect,
    /// Which file it names: [`Points::Bundle`] for an "adds" variable that fell back to the
    /// combined bundle because no extra-CA file was given.
    pub points: Points,
    /// Who reads it.
    pub readers: &'static str,
}

/// The variables for `request`, in catalogue order. Variables whose file was not given are left
/// out (see [`omitted`]), except the "adds" ones, which then name the combined bundle.
pub fn variables(request: &EnvRequest) -> Vec<Variable> {
    CATALOGUE
        .iter()
        .filter_map(|spec| {
            let (value, points) = match spec.points {
                Points::Bundle => (request.bundle.display().to_string(), Points::Bundle),
                Points::Dir => (request.dir.as_ref()?.display().to_string(), Points::Dir),
                Points::Extra => match &request.extra {
                    Some(extra) => (extra.display().to_string(), Points::Extra),
                    None => (request.bundle.display().to_string(), Points::Bundle),
                },
                Points::JavaTrustStore => {
                    (java_options(request.java.as_ref()?), Points::JavaTrustStore)
                }
            };
            Some(Variable {
                name: spec.name,
                value,
                effect: spec.effect,
                points,
                readers: spec.readers,
            })
        })
        .collect()
}

/// The catalogue entries [`variables`] left out for `request`, with the option that would add
/// each.
pub fn omitted(request: &EnvRequest) -> Vec<(&'static Spec, &'static str)> {
    CATALOGUE
        .iter()
        .filter_map(|spec| {
            let missing = match spec.points {
                Points::Bundle => None,
                Points::Dir => request.dir.is_none().then_some("--dir"),
                // Falls back to the combined bundle: never left out.
                Points::Extra => None,
                Points::JavaTrustStore => request.java.is_none().then_some("--java-truststore"),
            };
            missing.map(|m| (spec, m))
        })
        .collect()
}

fn java_options(store: &JavaTrustStore) -> String {
    let kind = match store.store_type {
        JavaStoreType::Pkcs12 => "PKCS12",
        JavaStoreType::Jks => "JKS",
    };
    // The JVM splits JAVA_TOOL_OPTIONS on white space but honours double quotes (JDK 9+).
    let path = store.path.display().to_string();
    let path = if path.contains(char::is_whitespace) {
        format!("\"{path}\"")
    } else {
        path
    };
    let mut options =
        format!("-Djavax.net.ssl.trustStore={path} -Djavax.net.ssl.trustStoreType={kind}");
    if let Some(password) = &store.password {
        options.push_str(&format!(" -Djavax.net.ssl.trustStorePassword={password}"));
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mounted_directory_names_its_files_as_the_container_sees_them() {
        let mount = std::path::Path::new("/etc/ssl/certs");
        let names = |trust: &MountedTrust<'_>| -> Vec<(&'static str, String)> {
            variables(&EnvRequest::mounted(trust))
                .into_iter()
                .map(|v| (v.name, v.value))
                .collect()
        };
        let plain = MountedTrust {
            mount,
            bundle_file: "ca-certificates.crt",
            hashed: false,
            extra_file: None,
            pkcs12_file: None,
        };
        let vars = names(&plain);
        let get = |vars: &[(&str, String)], name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get(&vars, "SSL_CERT_FILE").as_deref(),
            Some("/etc/ssl/certs/ca-certificates.crt")
        );
        assert_eq!(get(&vars, "SSL_CERT_DIR"), None, "not hashed");
        assert_eq!(get(&vars, "JAVA_TOOL_OPTIONS"), None);
        let full = MountedTrust {
            hashed: true,
            extra_file: Some("extra-ca.pem"),
            pkcs12_file: Some("truststore.p12"),
            ..plain
        };
        let vars = names(&full);
        assert_eq!(
            get(&vars, "SSL_CERT_DIR").as_deref(),
            Some("/etc/ssl/certs")
        );
        assert_eq!(
            get(&vars, "NODE_EXTRA_CA_CERTS").as_deref(),
            Some("/etc/ssl/certs/extra-ca.pem")
        );
        let java = get(&vars, "JAVA_TOOL_OPTIONS").unwrap_or_default();
        assert!(
            java.contains("-Djavax.net.ssl.trustStore=/etc/ssl/certs/truststore.p12")
                && java.contains("trustStoreType=PKCS12")
                && !java.contains("trustStorePassword"),
            "{java}"
        );
    }

    fn full() -> EnvRequest {
        EnvRequest {
            bundle: "/b/ca.pem".into(),
            dir: Some("/b/certs".into()),
            extra: Some("/b/extra.pem".into()),
            java: Some(JavaTrustStore {
                path: "/b/trust.p12".into(),
                store_type: JavaStoreType::Pkcs12,
                password: None,
            }),
        }
    }

    #[test]
    fn replacing_variables_name_the_combined_bundle_and_adding_ones_the_extra_file() {
        for v in variables(&full()) {
            match (v.effect, v.points) {
                (Effect::Replaces, Points::Bundle) => {
                    assert_eq!(v.value, "/b/ca.pem", "{}", v.name);
                }
                (Effect::Replaces, Points::Dir) => assert_eq!(v.value, "/b/certs"),
                (Effect::Adds, Points::Extra) => assert_eq!(v.value, "/b/extra.pem", "{}", v.name),
                (Effect::Replaces, Points::JavaTrustStore) => assert_eq!(
                    v.value,
                    "-Djavax.net.ssl.trustStore=/b/trust.p12 -Djavax.net.ssl.trustStoreType=PKCS12"
                ),
                other => panic!("{}: unexpected {other:?}", v.name),
            }
        }
        assert_eq!(variables(&full()).len(), CATALOGUE.len());
        assert!(omitted(&full()).is_empty());
    }

    #[test]
    fn the_issue_s_variables_are_all_there() {
        let names: Vec<_> = CATALOGUE.iter().map(|s| s.name).collect();
        for want in [
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "REQUESTS_CA_BUNDLE",
            "CURL_CA_BUNDLE",
            "NODE_EXTRA_CA_CERTS",
            "GIT_SSL_CAINFO",
            "PIP_CERT",
            "AWS_CA_BUNDLE",
            "JAVA_TOOL_OPTIONS",
            "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
            "DENO_CERT",
        ] {
            assert!(names.contains(&want), "{want} missing");
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "a variable is listed twice");
    }

    #[test]
    fn missing_files_leave_their_variables_out_and_say_which_option_adds_them() {
        let request = EnvRequest {
            bundle: "/b/ca.pem".into(),
            ..EnvRequest::default()
        };
        let names: Vec<_> = variables(&request).iter().map(|v| v.name).collect();
        assert!(names.contains(&"SSL_CERT_FILE"));
        for absent in ["SSL_CERT_DIR", "JAVA_TOOL_OPTIONS"] {
            assert!(!names.contains(&absent), "{absent} set without its file");
        }
        let omitted: Vec<_> = omitted(&request)
            .iter()
            .map(|(s, opt)| (s.name, *opt))
            .collect();
        assert!(omitted.contains(&("SSL_CERT_DIR", "--dir")));
        assert!(omitted.contains(&("JAVA_TOOL_OPTIONS", "--java-truststore")));
        // The "adds" variables fall back to the combined bundle instead of being left out.
        for name in ["NODE_EXTRA_CA_CERTS", "DENO_CERT"] {
            let v = variables(&request).into_iter().find(|v| v.name == name);
            let v = v.unwrap_or_else(|| panic!("{name} left out"));
            assert_eq!((v.value.as_str(), v.points), ("/b/ca.pem", Points::Bundle));
            assert!(omitted.iter().all(|(n, _)| *n != name), "{name} omitted");
        }
    }

    #[test]
    fn java_password_is_passed_only_when_given() {
        let mut store = JavaTrustStore {
            path: "/t.jks".into(),
            store_type: JavaStoreType::Jks,
            password: Some("changeit".into()),
        };
        assert!(java_options(&store).ends_with("-Djavax.net.ssl.trustStorePassword=changeit"));
        store.password = None;
        assert!(!java_options(&store).contains("Password"));
    }
}
