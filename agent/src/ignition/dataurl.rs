//! RFC 2397 `data:` URLs, the only `source` scheme a guest without network
//! fetching can honour.

use anyhow::{anyhow, bail, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// Decodes `data:[<mediatype>][;base64],<data>` into bytes.
pub fn decode(url: &str) -> Result<Vec<u8>> {
    let rest = match url.split_once(':') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("data") => rest,
        Some((scheme, _)) => bail!(
            "unsupported source scheme {scheme:?}: this agent fetches nothing, only data: URLs are accepted"
        ),
        None => bail!("source {url:?} is not a URL"),
    };
    let (header, data) = rest
        .split_once(',')
        .ok_or_else(|| anyhow!("data URL without ','"))?;
    let is_base64 = header
        .rsplit(';')
        .next()
        .is_some_and(|p| p.eq_ignore_ascii_case("base64"));
    let raw = percent_decode(data)?;
    if is_base64 {
        let cleaned: Vec<u8> = raw
            .into_iter()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        STANDARD
            .decode(&cleaned)
            .map_err(|e| anyhow!("data URL: invalid base64: {e}"))
    } else {
        Ok(raw)
    }
}

fn percent_decode(s: &str) -> Result<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| anyhow!("data URL: invalid percent escape at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn encodings() {
        assert_eq!(decode("data:,hello%20world%0A").unwrap(), b"hello world\n");
        assert_eq!(decode("data:,").unwrap(), b"");
        assert_eq!(
            decode("data:text/plain;charset=utf-8;base64,aGVsbG8K").unwrap(),
            b"hello\n"
        );
        assert_eq!(decode("DATA:;base64,AP8=").unwrap(), [0u8, 255]);
        assert!(decode("data:,bad%zz").is_err());
        assert!(decode("data:;base64,!!!").is_err());
        let e = decode("https://example.com/x").unwrap_err().to_string();
        assert!(e.contains("\"https\""), "{e}");
    }
}
