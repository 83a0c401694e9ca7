//! Calico's unique IDs: `<prefix>:` + unpadded URL-safe base64 of SHA-224(`<prefix>:<content>`).

use sha2::{Digest, Sha224};

/// Builds the ID Calico's `hash.MakeUniqueID(prefix, content)` gives: `prefix:` + unpadded
/// URL-safe base64 of SHA-224(`prefix:content`). Used for selector IDs and for other names
/// derived from content, such as IP set names.
pub fn make_unique_id(prefix: &str, content: &str) -> String {
    let mut hasher = Sha224::new();
    hasher.update(prefix.as_bytes());
    hasher.update(b":");
    hasher.update(content.as_bytes());
    let digest = hasher.finalize();
    let mut out = String::with_capacity(prefix.len() + 1 + digest.len().div_ceil(3) * 4);
    out.push_str(prefix);
    out.push(':');
    base64url_nopad(&digest, &mut out);
    out
}

/// RFC 4648 section 5 alphabet, without `=` padding (Go's `base64.RawURLEncoding`).
fn base64url_nopad(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let sextet = |n: u32, shift: u32| char::from(ALPHABET[((n >> shift) & 0x3f) as usize]);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        // A chunk of k bytes carries k*8 bits, so it needs k+1 sextets.
        for i in 0..=chunk.len() {
            out.push(sextet(n, 18 - 6 * i as u32));
        }
    }
}

#[cfg(test)]
mod tests;
