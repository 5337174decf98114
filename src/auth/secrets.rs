//! Small cryptographic pieces of the authorization server: random secrets, their stored
//! hashes, PKCE (RFC 7636) and TOTP (RFC 6238).

use hmac::{KeyInit, Mac};
use p256::elliptic_curve::rand_core::{OsRng, RngCore};
use sha2::Digest;

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh random secret of 256 bits, URL-safe (codes, refresh tokens, pending-request ids).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    b64url(&bytes)
}

/// How a secret is stored: the hex SHA-256. The secrets are 256-bit random, so no salt or slow
/// hash is needed; a read of the table yields nothing usable.
pub fn hash(secret: &str) -> String {
    sha2::Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `verifier` matches an S256 `challenge` (RFC 7636 §4.6). The verifier must be 43 to
/// 128 characters of the unreserved set (§4.1).
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    well_formed
        && constant_eq(b64url(&sha2::Sha256::digest(verifier.as_bytes())).as_bytes(), challenge.as_bytes())
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding (what authenticator apps expect in `otpauth://` URIs).
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for ch in text.chars().filter(|c| *c != '=' && !c.is_whitespace()) {
        let value = BASE32.iter().position(|&x| x as char == ch.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

/// A new TOTP secret (160 bits, as RFC 4226 recommends), base32.
pub fn new_totp_secret() -> String {
    let mut bytes = [0u8; 20];
    OsRng.fill_bytes(&mut bytes);
    base32_encode(&bytes)
}

/// The TOTP code (RFC 6238: HMAC-SHA-1, 30 s steps, 6 digits) of a base32 secret at `unix`
/// seconds.
pub fn totp(secret_b32: &str, unix: i64) -> Option<String> {
    let key = base32_decode(secret_b32)?;
    let counter = (unix / 30) as u64;
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&key).ok()?;
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let word =
        u32::from_be_bytes([digest[offset], digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    Some(format!("{:06}", (word & 0x7fff_ffff) % 1_000_000))
}

/// The time step (`unix / 30`) whose TOTP `code` is, among the step at `unix` and the ones
/// just before and after (clock drift, RFC 6238 §5.2).
pub fn totp_step(secret_b32: &str, code: &str, unix: i64) -> Option<i64> {
    [-30, 0, 30].iter().map(|d| unix + d).find_map(|t| {
        let matches = totp(secret_b32, t).is_some_and(|c| constant_eq(c.as_bytes(), code.trim().as_bytes()));
        matches.then_some(t / 30)
    })
}

pub fn totp_matches(secret_b32: &str, code: &str, unix: i64) -> bool {
    totp_step(secret_b32, code, unix).is_some()
}

/// The `otpauth://` URI an authenticator app scans.
pub fn otpauth_uri(issuer: &str, username: &str, secret_b32: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits=6&period=30",
        enc(issuer),
        enc(username),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_rfc_6238_vectors() {
        // RFC 6238 appendix B, SHA-1, secret "12345678901234567890", last 6 of the 8 digits.
        let secret = base32_encode(b"12345678901234567890");
        assert_eq!(totp(&secret, 59).unwrap(), "287082");
        assert_eq!(totp(&secret, 1111111109).unwrap(), "081804");
        assert_eq!(totp(&secret, 20000000000).unwrap(), "353130");
        assert!(totp_matches(&secret, "287082", 59 + 30));
        assert!(!totp_matches(&secret, "287082", 59 + 90));
        assert_eq!(base32_decode(&secret).unwrap(), b"12345678901234567890");
    }

    #[test]
    fn pkce_s256_from_rfc_7636() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!pkce_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"));
        assert!(!pkce_matches("short", "x"));
        assert_eq!(hash("a").len(), 64);
    }
}
