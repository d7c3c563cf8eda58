//! A PEM scanner that keeps line numbers.
//!
//! Written by hand because the crates we looked at (`pem`, `rustls-pki-types`) stop at the first
//! bad block or do not say on which line a block starts; a trust-store builder must report each bad
//! block by line and keep going. Text outside blocks (comments, `subject=` lines printed by
//! `openssl x509 -text`) is ignored, CRLF is tolerated.

use base64::Engine as _;

/// One `-----BEGIN label-----` ... `-----END label-----` block.
#[derive(Debug)]
pub(crate) struct Block {
    pub(crate) label: String,
    /// 1-based line of the BEGIN line.
    pub(crate) line: usize,
    /// The decoded body; empty for a private-key block, whose body is never decoded.
    pub(crate) body: Result<Vec<u8>, BlockError>,
}

/// Why a block's body is unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BlockError {
    /// No END line before the end of input or the next BEGIN.
    Truncated,
    /// Base64 that does not decode; `line` is the first content line at fault, when known.
    Base64 { line: usize, reason: String },
    /// A line holding `-----BEGIN` that is not a BEGIN line on its own; `private_key` when it
    /// also mentions a private key (then the source must be refused, not merely reported).
    MalformedBegin { private_key: bool },
}

/// True when the input looks like PEM text (has a BEGIN line).
pub(crate) fn looks_like_pem(input: &[u8]) -> bool {
    input.windows(11).any(|w| w == b"-----BEGIN ")
}

/// An RFC 7468 label: printable ASCII other than `-`, with single `-` or spaces between them, and
/// short. Anything else (a whole one-line PEM, base64 included) is not a label: it must never be
/// carried into a message as if it were one.
fn valid_label(label: &str) -> bool {
    const MAX_LABEL: usize = 64;
    let bytes = label.as_bytes();
    let labelchar = |b: u8| (0x21..=0x7e).contains(&b) && b != b'-';
    !bytes.is_empty()
        && bytes.len() <= MAX_LABEL
        && labelchar(bytes[0])
        && labelchar(bytes[bytes.len() - 1])
        && bytes
            .iter()
            .all(|&b| labelchar(b) || b == b'-' || b == b' ')
        && !bytes
            .windows(2)
            .any(|w| !labelchar(w[0]) && !labelchar(w[1]))
}

fn begin_label(line: &str) -> Option<&str> {
    let label = line.strip_prefix("-----BEGIN ")?.strip_suffix("-----")?;
    valid_label(label).then_some(label)
}

fn end_label(line: &str) -> Option<&str> {
    let label = line.strip_prefix("-----END ")?.strip_suffix("-----")?;
    valid_label(label).then_some(label)
}

/// Whether a block with this label holds key material: its body is never decoded.
pub(crate) fn is_private_key_label(label: &str) -> bool {
    label.contains("PRIVATE KEY")
}

/// Splits PEM text into blocks. Labels are kept exactly as written.
pub(crate) fn scan(input: &[u8]) -> Vec<Block> {
    struct Open<'a> {
        label: &'a str,
        line: usize,
        body_lines: Vec<(usize, &'a str)>,
    }

    let text = String::from_utf8_lossy(input);
    // Windows tools write a UTF-8 byte-order mark before the first BEGIN line.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut blocks = Vec::new();
    let mut open: Option<Open> = None;
    for (index, raw_line) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let line = raw_line.trim_end_matches('\r').trim();
        if let Some(label) = begin_label(line) {
            if let Some(o) = open.take() {
                blocks.push(Block {
                    label: o.label.to_owned(),
                    line: o.line,
                    body: Err(BlockError::Truncated),
                });
            }
            open = Some(Open {
                label,
                line: line_no,
                body_lines: Vec::with_capacity(32),
            });
            continue;
        }
        if line.contains("-----BEGIN") {
            // A BEGIN we could not read must not be skipped silently: its block would vanish.
            blocks.push(Block {
                label: String::new(),
                line: line_no,
                body: Err(BlockError::MalformedBegin {
                    private_key: line.contains("PRIVATE KEY"),
                }),
            });
            continue;
        }
        let Some(o) = open.as_mut() else { continue };
        if let Some(label) = end_label(line) {
            let o = open.take().expect("checked above");
            let body = if label == o.label && is_private_key_label(label) {
                Ok(Vec::new()) // refused by label; key material is never decoded
            } else if label == o.label {
                decode_body(&o.body_lines, o.line)
            } else {
                Err(BlockError::Truncated)
            };
            blocks.push(Block {
                label: o.label.to_owned(),
                line: o.line,
                body,
            });
            continue;
        }
        // RFC 1421 headers (`Proc-Type:`, `DEK-Info:`) appear only in legacy encrypted keys.
        if line.contains(':') {
            continue;
        }
        if !line.is_empty() {
            o.body_lines.push((line_no, line));
        }
    }
    if let Some(o) = open {
        blocks.push(Block {
            label: o.label.to_owned(),
            line: o.line,
            body: Err(BlockError::Truncated),
        });
    }
    blocks
}

fn decode_body(lines: &[(usize, &str)], begin_line: usize) -> Result<Vec<u8>, BlockError> {
    let engine = base64::engine::general_purpose::STANDARD;
    let joined: String = lines.iter().map(|(_, l)| *l).collect();
    match engine.decode(joined.as_bytes()) {
        Ok(bytes) if bytes.is_empty() => Err(BlockError::Base64 {
            line: begin_line,
            reason: "the block is empty".into(),
        }),
        Ok(bytes) => Ok(bytes),
        Err(err) => {
            // The decoder's offset is into the joined body: turn it into the line at fault.
            let line_of = |offset: usize| {
                let mut end = 0;
                lines
                    .iter()
                    .find(|(_, l)| {
                        end += l.len();
                        offset < end
                    })
                    .map_or(begin_line, |(n, _)| *n)
            };
            let last_line = lines.last().map_or(begin_line, |(n, _)| *n);
            let (line, reason) = match err {
                base64::DecodeError::InvalidByte(offset, byte) => (
                    line_of(offset),
                    format!("invalid character {}", describe_byte(byte)),
                ),
                base64::DecodeError::InvalidLastSymbol(offset, byte) => (
                    line_of(offset),
                    format!(
                        "the last character {} does not end a base64 text",
                        describe_byte(byte)
                    ),
                ),
                base64::DecodeError::InvalidLength(n) => (
                    begin_line,
                    format!(
                        "{n} base64 characters is not a whole number of bytes; a line may be missing or cut"
                    ),
                ),
                base64::DecodeError::InvalidPadding => (last_line, "invalid `=` padding".into()),
            };
            Err(BlockError::Base64 { line, reason })
        }
    }
}

fn describe_byte(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("`{}`", char::from(byte))
    } else {
        format!("0x{byte:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_blocks_comments_and_crlf() {
        let text = b"# corporate roots\r\n-----BEGIN CERTIFICATE-----\r\nAAEC\r\n-----END CERTIFICATE-----\r\nsubject=CN=x\n-----BEGIN CERTIFICATE-----\nAwQF\n-----END CERTIFICATE-----\n";
        let blocks = scan(text);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].line, 2);
        assert_eq!(blocks[0].body.as_ref().unwrap(), &[0, 1, 2]);
        assert_eq!(blocks[1].line, 6);
        assert_eq!(blocks[1].body.as_ref().unwrap(), &[3, 4, 5]);
    }

    #[test]
    fn truncated_and_bad_base64_are_located() {
        let text = b"-----BEGIN CERTIFICATE-----\nAAEC\nAA*C\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nAAEC\n";
        let blocks = scan(text);
        assert_eq!(blocks.len(), 2);
        match &blocks[0].body {
            Err(BlockError::Base64 { line, reason }) => {
                assert_eq!(*line, 3);
                assert_eq!(reason, "invalid character `*`");
            }
            other => panic!("expected base64 error, got {other:?}"),
        }
        assert_eq!(blocks[1].body, Err(BlockError::Truncated));
        assert_eq!(blocks[1].line, 5);
    }

    #[test]
    fn base64_errors_name_the_line_at_fault() {
        // `=` is in the alphabet, so only the decoder's offset can tell which line holds it.
        let text = b"-----BEGIN CERTIFICATE-----\nAAEC\nAA=C\nAAEC\n-----END CERTIFICATE-----\n";
        match &scan(text)[0].body {
            Err(BlockError::Base64 { line, reason }) => {
                assert_eq!(*line, 3);
                assert_eq!(reason, "invalid character `=`");
            }
            other => panic!("expected base64 error, got {other:?}"),
        }
        let text = b"-----BEGIN CERTIFICATE-----\nAAEC\nA\n-----END CERTIFICATE-----\n";
        match &scan(text)[0].body {
            Err(BlockError::Base64 { reason, .. }) => {
                assert!(reason.contains("a line may be missing"), "{reason}");
            }
            other => panic!("expected base64 error, got {other:?}"),
        }
    }

    #[test]
    fn begin_inside_block_truncates_the_first() {
        let text = b"-----BEGIN CERTIFICATE-----\nAAEC\n-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
        let blocks = scan(text);
        assert_eq!(blocks[0].body, Err(BlockError::Truncated));
        assert_eq!(blocks[1].body.as_ref().unwrap(), &[0, 1, 2]);
    }
}
