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

/// Java `cacerts` trust stores. Debian's JDK directories link to `/etc/ssl/certs/java/cacerts`,
/// RHEL's to `/etc/pki/java/cacerts`; Eclipse Temurin images keep their own.
pub const JAVA_PATHS: &[&str] = &[
    "/etc/ssl/certs/java/cacerts",
    "/etc/pki/java/cacerts",
    "/opt/java/openjdk/lib/security/cacerts",
    "/opt/java/openjdk/jre/lib/security/cacerts",
    "/usr/lib/jvm/default-java/lib/security/cacerts",
    "/usr/lib/jvm/jre/lib/security/cacerts",
    "/usr/lib/jvm/java/lib/security/cacerts",
    "/usr/lib/jvm/java-8-openjdk-amd64/jre/lib/security/cacerts",
    "/usr/lib/jvm/java-11-openjdk-amd64/lib/security/cacerts",
    "/usr/lib/jvm/java-17-openjdk-amd64/lib/security/cacerts",
    "/usr/lib/jvm/java-21-openjdk-amd64/lib/security/cacerts",
    "/usr/lib/jvm/java-11-openjdk-arm64/lib/security/cacerts",
    "/usr/lib/jvm/java-17-openjdk-arm64/lib/security/cacerts",
    "/usr/lib/jvm/java-21-openjdk-arm64/lib/security/cacerts",
    "/usr/lib/jvm/default-jvm/jre/lib/security/cacerts",
    "/usr/lib/jvm/default-jvm/lib/security/cacerts",
];
