//! The JSON OpenBao speaks: request bodies, response shapes, and reading secrets out of a
//! response without serde's scratch copies.
//!
//! This module owns the field names of the PKI and AppRole endpoints and nothing about HTTP.
//! Secret strings in responses (`private_key`, `client_token`) are taken as borrowed raw JSON
//! and unescaped straight into zeroizing memory: serde_json would otherwise unescape them (the
//! PEM holds `\n`) through a scratch buffer that is freed without being wiped.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

/// The body of `POST <mount>/issue/<role>` and `POST <mount>/sign/<role>`.
#[derive(Debug, Serialize)]
pub(crate) struct IssueBody<'a> {
    pub(crate) common_name: &'a str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) alt_names: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) ip_sans: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) uri_sans: String,
    /// `<seconds>s`.
    pub(crate) ttl: String,
    /// Always `pem`.
    pub(crate) format: &'static str,
    /// Always true: the SANs are listed explicitly (the identity among them when it is a DNS
    /// name), so OpenBao must not add the CN as a DNS or e-mail SAN on its own.
    pub(crate) exclude_cn_from_sans: bool,
    /// `pkcs8` on the issue path, so the key always comes as `PRIVATE KEY`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) private_key_format: Option<&'static str>,
    /// `ec`, `ed25519` or `rsa` on the issue path (used when the role's `key_type` is `any`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key_type: Option<&'static str>,
    /// Curve size or modulus size on the issue path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key_bits: Option<u32>,
    /// The CSR on the sign path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) csr: Option<String>,
}

/// The common envelope of an OpenBao answer.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<T> {
    pub(crate) data: Option<T>,
    #[serde(default)]
    pub(crate) warnings: Option<Vec<String>>,
}

/// `data` of an issue or sign answer.
#[derive(Debug, Deserialize)]
pub(crate) struct IssueData<'a> {
    pub(crate) certificate: String,
    pub(crate) issuing_ca: String,
    #[serde(default)]
    pub(crate) ca_chain: Option<Vec<String>>,
    /// Borrowed raw JSON; see [`secret_string`].
    #[serde(borrow, default)]
    pub(crate) private_key: Option<&'a RawValue>,
    #[serde(default)]
    pub(crate) serial_number: Option<String>,
}

/// `data` of `<mount>/issuer/<ref>/json` (a list) and `<mount>/cert/ca_chain` (one string of
/// concatenated PEM).
#[derive(Debug, Deserialize)]
pub(crate) struct ChainData {
    #[serde(default)]
    pub(crate) certificate: Option<String>,
    #[serde(default)]
    pub(crate) ca_chain: Option<ChainField>,
}

/// `ca_chain` comes as a list or as one string depending on the endpoint.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ChainField {
    List(Vec<String>),
    One(String),
}

/// The body of `POST auth/<mount>/login` for AppRole.
#[derive(Serialize)]
pub(crate) struct AppRoleLogin<'a> {
    pub(crate) role_id: &'a str,
    pub(crate) secret_id: &'a str,
}

/// The answer of a login.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginAnswer<'a> {
    #[serde(borrow)]
    pub(crate) auth: Option<LoginAuth<'a>>,
}

/// `auth` of a login answer.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginAuth<'a> {
    #[serde(borrow)]
    pub(crate) client_token: &'a RawValue,
    #[serde(default)]
    pub(crate) lease_duration: u64,
}

/// The `errors` of a failed request, joined with `; `, or a short excerpt of a body that is
/// not OpenBao's JSON (a proxy's error page). Control characters never pass: OpenBao's
/// multi-error text (`1 error occurred:\n\t* …`) has its line breaks and tabs folded into
/// single spaces, and anything else (an escape sequence from whatever answered) is dropped, so
/// the text is one line fit for a log or a terminal (found by the `vault_answer` fuzz target).
pub(crate) fn error_text(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => one_line(&e.errors.join("; ")),
        Ok(_) => "no error text".to_owned(),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
            if text.trim().is_empty() {
                "empty answer".to_owned()
            } else {
                format!("not OpenBao's JSON: {}", text.trim())
            }
        }
    }
}

/// `text` with every run of whitespace (line breaks and tabs included) folded into one space
/// and other control characters dropped.
fn one_line(text: &str) -> String {
    text.split(char::is_whitespace)
        .map(|word| word.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Unescapes a JSON string literal (as borrowed raw JSON) into zeroizing memory; `null` is
/// `None`. Errors never echo the content.
pub(crate) fn secret_string(raw: &RawValue) -> Result<Option<Zeroizing<String>>, &'static str> {
    let text = raw.get().trim();
    if text == "null" {
        return Ok(None);
    }
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or("not a JSON string")?;
    // Unescaping only shortens, so this capacity is never exceeded: no reallocation leaves a
    // copy behind.
    let mut out = Zeroizing::new(String::with_capacity(inner.len()));
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let unescaped = match chars.next().ok_or("truncated escape")? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let mut code = 0u32;
                for _ in 0..4 {
                    let digit = chars
                        .next()
                        .and_then(|d| d.to_digit(16))
                        .ok_or("bad \\u escape")?;
                    code = code * 16 + digit;
                }
                // PEM and tokens are ASCII; surrogate pairs never occur in them.
                char::from_u32(code).ok_or("unsupported \\u escape")?
            }
            _ => return Err("unknown escape"),
        };
        out.push(unescaped);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_strings_unescape_without_serde() {
        let json = r#"{"k":"-----BEGIN PRIVATE KEY-----\nMIGH\u002b\/x==\n-----END PRIVATE KEY-----\n","n":null}"#;
        #[derive(Deserialize)]
        struct T<'a> {
            #[serde(borrow)]
            k: &'a RawValue,
            #[serde(borrow)]
            n: Option<&'a RawValue>,
        }
        let t: T<'_> = serde_json::from_str(json).unwrap();
        let k = secret_string(t.k).unwrap().unwrap();
        assert_eq!(
            k.as_str(),
            "-----BEGIN PRIVATE KEY-----\nMIGH+/x==\n-----END PRIVATE KEY-----\n"
        );
        assert!(t.n.is_none());
        let num = RawValue::from_string("12".to_owned()).unwrap();
        assert_eq!(secret_string(&num).unwrap_err(), "not a JSON string");
        let accent = RawValue::from_string(r#""caf\u00e9\t""#.to_owned()).unwrap();
        assert_eq!(
            secret_string(&accent).unwrap().unwrap().as_str(),
            "caf\u{e9}\t"
        );
    }

    #[test]
    fn error_text_reads_openbao_errors_and_survives_html() {
        assert_eq!(
            error_text(br#"{"errors":["common name evil.test not allowed by this role"]}"#),
            "common name evil.test not allowed by this role"
        );
        assert_eq!(error_text(br#"{"errors":["a","b"]}"#), "a; b");
        // OpenBao's multi-error text on one line; an escape sequence never passes.
        assert_eq!(
            error_text(b"{\"errors\":[\"1 error occurred:\\n\\t* role not found\\n\\n\"]}"),
            "1 error occurred: * role not found"
        );
        assert_eq!(
            error_text(b"{\"errors\":[\"bad\\u001b[2J\\u0007 role\"]}"),
            "bad[2J role"
        );
        assert_eq!(error_text(b""), "empty answer");
        let html = error_text(b"<html>\n<body>502 Bad Gateway</body></html>");
        assert!(
            html.starts_with("not OpenBao's JSON: <html>") && html.contains("502"),
            "{html}"
        );
    }

    #[test]
    fn issue_body_leaves_out_what_is_unset() {
        let body = IssueBody {
            common_name: "a.example.test",
            alt_names: "a.example.test".to_owned(),
            ip_sans: String::new(),
            uri_sans: String::new(),
            ttl: "3600s".to_owned(),
            format: "pem",
            exclude_cn_from_sans: true,
            private_key_format: Some("pkcs8"),
            key_type: Some("ec"),
            key_bits: Some(256),
            csr: None,
        };
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "common_name": "a.example.test",
                "alt_names": "a.example.test",
                "ttl": "3600s",
                "format": "pem",
                "exclude_cn_from_sans": true,
                "private_key_format": "pkcs8",
                "key_type": "ec",
                "key_bits": 256,
            })
        );
    }
}
