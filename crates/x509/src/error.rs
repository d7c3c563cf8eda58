//! Why bytes could not be turned into certificates.

/// What went wrong decoding one item (a PEM block, a DER file, a PKCS#7 bundle).
///
/// The [`Position`](crate::Position) that travels beside it says where; callers add the file.
/// Messages never contain key material or base64 payloads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input held nothing but whitespace.
    #[error(
        "empty input: expected PEM, DER or PKCS#7 certificates; put the certificates in it or remove it"
    )]
    Empty,
    /// Text with no `-----BEGIN` line, and not DER either.
    #[error(
        "no PEM block and not DER: expected `-----BEGIN CERTIFICATE-----` blocks or a binary DER/PKCS#7 file"
    )]
    NotRecognized,
    /// A `-----BEGIN label-----` with no matching `-----END label-----`.
    #[error(
        "truncated PEM: `-----BEGIN {label}-----` has no matching `-----END {label}-----`; the file may have been cut short: copy or export it again"
    )]
    TruncatedPem {
        /// The block's label.
        label: String,
    },
    /// The base64 inside a PEM block is not valid.
    #[error(
        "bad base64 in PEM block `{label}` (line {line}): {reason}; the block is damaged: copy or export it again"
    )]
    Base64 {
        /// The block's label.
        label: String,
        /// The 1-based line of the first offending content line, or of the BEGIN line.
        line: usize,
        /// What the base64 decoder said.
        reason: String,
    },
    /// A private key where certificates were expected. Never carries the key itself.
    #[error(
        "private key found ({kind}) where certificates are expected: refusing to use this source; keep keys out of trust stores"
    )]
    PrivateKey {
        /// The PEM label or the DER structure recognised (for example `PRIVATE KEY`, `PKCS#8`).
        kind: String,
    },
    /// A line that holds `-----BEGIN` but is not a well-formed BEGIN line on its own (a one-line
    /// PEM, a BEGIN in the middle of a line, a malformed label). Never carries the line itself.
    #[error(
        "malformed PEM: this line holds `-----BEGIN` but is not a `-----BEGIN LABEL-----` line on its own (a PEM folded onto one line?); put the BEGIN line, the base64 lines and the END line on separate lines"
    )]
    MalformedPem,
    /// A PEM block of a type that is not a certificate (a CRL, a CSR, a public key, ...).
    #[error(
        "PEM block `{label}` is not a certificate ({hint}); remove it or point at the certificate file"
    )]
    UnexpectedBlock {
        /// The block's label.
        label: String,
        /// What that label usually is.
        hint: &'static str,
    },
    /// The DER could not be parsed as an X.509 certificate.
    #[error(
        "invalid certificate DER ({reason}); the data is damaged or not an X.509 certificate: export it again as PEM or DER"
    )]
    Der {
        /// What the parser said.
        reason: String,
    },
    /// A certificate's DER is followed by bytes that belong to nothing.
    #[error(
        "{count} unexpected bytes after the certificate's DER encoding; the file may be corrupt or concatenated DER (use PEM for several certificates)"
    )]
    TrailingBytes {
        /// How many bytes follow the certificate.
        count: usize,
    },
    /// A PKCS#7 / CMS structure that is not a certs-only SignedData we can read.
    #[error("invalid PKCS#7 bundle: {reason}")]
    Pkcs7 {
        /// What was wrong.
        reason: String,
    },
    /// The subject name cannot be canonicalised the way OpenSSL does (for example invalid UTF-8 in a
    /// UTF8String); OpenSSL itself cannot hash it either.
    #[error("subject name cannot be hashed like OpenSSL: {reason}")]
    SubjectHash {
        /// What was wrong.
        reason: String,
    },
    /// One input held more items (certificates and problems together) than
    /// [`MAX_ITEMS_PER_INPUT`](crate::MAX_ITEMS_PER_INPUT): the input is refused whole, nothing
    /// past the limit was read.
    #[error(
        "more than {limit} certificates and problems in one input (the limit MAX_ITEMS_PER_INPUT, docs/limits.md): the input is refused whole; split it into several files"
    )]
    TooManyItems {
        /// The limit that was reached.
        limit: usize,
    },
}

impl DecodeError {
    /// True when this error means key material was found: callers must refuse the source.
    pub fn is_private_key(&self) -> bool {
        matches!(self, Self::PrivateKey { .. })
    }
}
