//! Strict PEM: kubeadm's and the kubelet's files are plain blocks and nothing else.

use std::fmt;

use base64::Engine;

use super::PkiError;

/// One PEM block: its tag ("CERTIFICATE", "RSA PRIVATE KEY", ...) and DER contents.
#[derive(Clone)]
pub struct PemBlock {
    pub tag: String,
    pub der: Vec<u8>,
}

impl fmt::Debug for PemBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key blocks must never reach a log through a stray `{:?}`.
        write!(f, "PemBlock({}, {} bytes)", self.tag, self.der.len())
    }
}

/// Splits a PEM file into blocks, strictly: anything but white space between blocks, a
/// BEGIN without its END, or bad base64 is an error. Go's and OpenSSL's readers skip
/// junk silently; we refuse it because a file with junk in it was not written by kubeadm
/// or the kubelet and renewing it would hide the damage.
pub fn parse_pem(text: &[u8]) -> Result<Vec<PemBlock>, PkiError> {
    let text = std::str::from_utf8(text).map_err(|_| PkiError::PemNotUtf8)?;
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(tag) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            return Err(PkiError::PemOutsideBlock { line: n + 1 });
        };
        let end = format!("-----END {tag}-----");
        let mut body = String::new();
        let mut closed = false;
        for (_, line) in lines.by_ref() {
            let line = line.trim();
            if line == end {
                closed = true;
                break;
            }
            if line.contains(':') {
                // RFC 1421 headers (Proc-Type, DEK-Info) mean an encrypted legacy key.
                return Err(PkiError::PemHeaders { tag: tag.into() });
            }
            body.push_str(line);
        }
        if !closed {
            return Err(PkiError::PemTruncated {
                tag: tag.into(),
                line: n + 1,
            });
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|source| PkiError::PemBase64 {
                tag: tag.into(),
                source,
            })?;
        blocks.push(PemBlock {
            tag: tag.to_string(),
            der,
        });
    }
    if blocks.is_empty() {
        return Err(PkiError::NoPemBlock);
    }
    Ok(blocks)
}

/// Encodes one PEM block with 64-column lines, as Go's encoding/pem does.
pub fn encode_pem(tag: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {tag}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every 64-byte chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {tag}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_rejects_garbage_between_blocks_and_truncation() {
        let a = encode_pem("CERTIFICATE", b"abc");
        assert!(parse_pem(a.as_bytes()).is_ok());
        let junk = format!("{a}hello\n{a}");
        assert!(parse_pem(junk.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("outside a PEM block"));
        let cut = &a[..a.len() - 10];
        assert!(parse_pem(cut.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        assert_eq!(parse_pem(b"").unwrap_err(), PkiError::NoPemBlock);
    }

    #[test]
    fn pem_refuses_headers_bad_base64_and_binary() {
        let hdr = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(matches!(
            parse_pem(hdr.as_bytes()),
            Err(PkiError::PemHeaders { tag }) if tag == "RSA PRIVATE KEY"
        ));
        let bad = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let e = parse_pem(bad.as_bytes()).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("PEM block CERTIFICATE is not valid base64"));
        assert_eq!(parse_pem(&[0xff, 0xfe]).unwrap_err(), PkiError::PemNotUtf8);
    }
}
