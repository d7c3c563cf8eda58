//! Where images keep their trust stores: the paths [`crate::lookup_for`] asks about.
//!
//! Owns the catalogue only; what is done with a hit is [`crate::plan`]'s job.

/// PEM bundles, most common first. On RHEL/Fedora the first two are links to the third, and on
/// some images `/etc/ssl/certs` is itself a link to `/etc/pki/tls/certs`: links are followed
/// inside the image and each real file is written once.
pub const BUNDLE_PATHS: &[&str] = &[
    // Debian, Ubuntu, Alpine, distroless, Wolfi.
    "/etc/ssl/certs/ca-certificates.crt",
    // RHEL, Fedora, CentOS, UBI, Amazon Linux (usually a link to the next one).
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    // openSUSE / SLES.
    "/etc/ssl/ca-bundle.pem",
];

/// The bundle created for an image that has none (scratch, distroless without certificates).
pub const DEFAULT_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The OpenSSL hashed directory (`<hash>.<n>` entries), written to only when the image already
/// keeps such entries there.
pub const HASH_DIR: &str = "/etc/ssl/certs";

/// How many `<hash>.<n>` numbers are probed per subject hash (OpenSSL stops at the first gap,
/// and more than a few certificates sharing a subject hash is unheard of).
pub const HASH_SLOTS: usize = 8;

/// Java `cacerts` trust stores at fixed places. Debian's JDK directories link to
/// `/etc/ssl/certs/java/cacerts`, RHEL's to `/etc/pki/java/cacerts`; Eclipse Temurin images keep
/// their own under `/opt/java/openjdk`. JDKs elsewhere are found through [`JAVA_GLOBS`] and the
/// image's `JAVA_HOME` ([`JAVA_HOME_STORES`]).
pub const JAVA_PATHS: &[&str] = &[
    "/etc/ssl/certs/java/cacerts",
    "/etc/pki/java/cacerts",
    "/opt/java/openjdk/lib/security/cacerts",
    "/opt/java/openjdk/jre/lib/security/cacerts",
];

/// Every JDK or JRE installed by a distribution package: each entry of `/usr/lib/jvm` (links
/// such as `default-java` included; the store they share is written once).
pub const JAVA_GLOBS: &[&str] = &[
    "/usr/lib/jvm/*/lib/security/cacerts",
    "/usr/lib/jvm/*/jre/lib/security/cacerts",
];

/// Where a JDK (Java 9 and later) or a Java 8 JDK keeps `cacerts`, relative to `JAVA_HOME`
/// (a Java 8 `JAVA_HOME` naming the `jre` directory itself is covered by the first).
pub const JAVA_HOME_STORES: &[&str] = &["lib/security/cacerts", "jre/lib/security/cacerts"];

/// Whether a path asked about is a Java trust store: one of [`JAVA_PATHS`], or a `cacerts`
/// under `lib/security` (what [`JAVA_GLOBS`] and [`JAVA_HOME_STORES`] give).
pub fn is_java_store(path: &str) -> bool {
    JAVA_PATHS.contains(&path) || path.ends_with("/lib/security/cacerts")
}
