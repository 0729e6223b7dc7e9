//! Tolerant reading of PEM files as `openssl` and operators produce them.
//!
//! The framing (which lines belong to which block) is done here, line by
//! line, so that a BEGIN without an END is reported as truncated instead of
//! being silently dropped, and so that everything outside blocks is ignored:
//! `openssl x509 -text` dumps, `Bag Attributes` / `subject=` / `issuer=`
//! lines from `openssl pkcs12 -nodes`, comments. Each block's text is then
//! decoded by the `pem` crate, which keeps RFC 1421 headers (`Proc-Type`,
//! `DEK-Info`) that rustls-pki-types' PEM reader chokes on.

use crate::error::CertError;

/// Largest accepted input file: 1 MiB. Real chains with keys are a few KiB.
pub const MAX_INPUT_LEN: usize = 1024 * 1024;

/// One decoded PEM block.
#[derive(Clone)]
pub(crate) struct Block {
    /// The label, such as `CERTIFICATE` or `RSA PRIVATE KEY`.
    pub(crate) label: String,
    /// RFC 1421 headers as (name, value), in file order.
    pub(crate) headers: Vec<(String, String)>,
    /// The base64-decoded body.
    pub(crate) contents: Vec<u8>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the contents: they may be a private key.
        f.debug_struct("Block")
            .field("label", &self.label)
            .field("headers", &self.headers)
            .field("len", &self.contents.len())
            .finish()
    }
}

impl Block {
    /// Value of a header, if present.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Checks size, emptiness and binary-ness of an input file, then splits it
/// into PEM blocks. `field` names the input in errors.
pub(crate) fn read_blocks(input: &[u8], field: &'static str) -> Result<Vec<Block>, CertError> {
    if input.len() > MAX_INPUT_LEN {
        return Err(CertError::TooLarge { field });
    }
    let trimmed = input.trim_ascii();
    if trimmed.is_empty() {
        return Err(CertError::Empty { field });
    }
    if !contains(input, b"-----BEGIN ") {
        // A DER SEQUENCE (certificate, key or PKCS#12) starts with 0x30 and
        // is not text; anything else without a BEGIN line is just not PEM.
        let binary =
            input.iter().any(|&b| b == 0 || (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b >= 0x80);
        if trimmed.first() == Some(&0x30) && binary {
            return Err(CertError::DerNotPem { field });
        }
        return Err(CertError::NotPem { field });
    }

    let mut blocks = Vec::new();
    // (label, body lines) of the block being read.
    let mut open: Option<(String, Vec<&[u8]>)> = None;
    for raw_line in input.split(|&b| b == b'\n') {
        let line = raw_line.trim_ascii();
        if let Some(label) = framing(line, b"-----BEGIN ") {
            if open.is_some() {
                // A new block starts before the previous one ended.
                return Err(CertError::Truncated { field });
            }
            open = Some((label, Vec::new()));
        } else if let Some(label) = framing(line, b"-----END ") {
            match open.take() {
                Some((begin, body)) if begin == label => {
                    blocks.push(decode_block(begin, &body, field)?);
                }
                Some(_) => return Err(CertError::Truncated { field }),
                // A stray END line outside any block: ignore it like other text.
                None => {}
            }
        } else if let Some((_, body)) = open.as_mut() {
            body.push(line);
        }
    }
    if open.is_some() {
        return Err(CertError::Truncated { field });
    }
    Ok(blocks)
}

/// If `line` is `-----BEGIN X-----` (for `prefix` = `-----BEGIN `), returns X.
fn framing(line: &[u8], prefix: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(prefix)?;
    let label = rest.strip_suffix(b"-----")?;
    let label = std::str::from_utf8(label).ok()?.trim();
    Some(label.to_owned())
}

/// Decodes one block's body lines (headers, blank line, base64).
fn decode_block(label: String, body: &[&[u8]], field: &'static str) -> Result<Block, CertError> {
    let mut headers = Vec::new();
    let mut base64 = String::new();
    let mut in_headers = true;
    for &line in body {
        let Ok(line) = std::str::from_utf8(line) else {
            return Err(CertError::InvalidPem { field });
        };
        if line.is_empty() {
            in_headers = false;
            continue;
        }
        if in_headers {
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
                continue;
            }
            in_headers = false;
        }
        base64.push_str(line);
        base64.push('\n');
    }
    // Reassemble a canonical block (LF, no headers) and let the `pem` crate
    // do the base64 decoding.
    let text = format!("-----BEGIN {label}-----\n{base64}-----END {label}-----\n");
    let parsed = ::pem::parse(text.as_bytes()).map_err(|_| CertError::InvalidPem { field })?;
    if parsed.contents().is_empty() {
        return Err(CertError::InvalidPem { field });
    }
    Ok(Block { label, headers, contents: parsed.into_contents() })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FIELD_CERTIFICATE as F;

    const BODY: &str = "MIIBszCCAVmgAwIBAgIUB2o=";

    #[test]
    fn tolerates_text_crlf_and_headers() {
        let input = format!(
            "Bag Attributes\r\n    localKeyID: 01 02\r\nsubject=CN = x\r\n\r\n-----BEGIN CERTIFICATE-----\r\n{BODY}\r\n-----END CERTIFICATE-----\r\nCertificate:\n  Data: ...\n-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00FF\n\n{BODY}\n-----END RSA PRIVATE KEY-----\n"
        );
        let blocks = read_blocks(input.as_bytes(), F).expect("parses");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert!(blocks[0].headers.is_empty());
        assert_eq!(blocks[1].label, "RSA PRIVATE KEY");
        assert_eq!(blocks[1].header("dek-info"), Some("AES-256-CBC,00FF"));
        assert_eq!(blocks[1].contents, blocks[0].contents);
    }

    #[test]
    fn classifies_bad_input() {
        let code = |input: &[u8]| read_blocks(input, F).expect_err("refused").code();
        assert_eq!(code(b""), "empty");
        assert_eq!(code(b" \r\n\t"), "empty");
        assert_eq!(code(&[0x30, 0x82, 0x01, 0x00, 0x00]), "der_not_pem");
        assert_eq!(code(b"hello world"), "not_pem");
        assert_eq!(code(&vec![b'A'; MAX_INPUT_LEN + 1]), "too_large");
        let truncated = format!("-----BEGIN CERTIFICATE-----\n{BODY}\n");
        assert_eq!(code(truncated.as_bytes()), "truncated");
        let nested = format!(
            "-----BEGIN CERTIFICATE-----\n{BODY}\n-----BEGIN PRIVATE KEY-----\n{BODY}\n-----END PRIVATE KEY-----\n"
        );
        assert_eq!(code(nested.as_bytes()), "truncated");
        let bad = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert_eq!(code(bad.as_bytes()), "invalid_pem");
    }
}
