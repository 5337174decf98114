//! How a client proves itself at the token endpoint: a secret (`client_secret_basic`,
//! RFC 6749 §2.3.1) or a signed assertion (`private_key_jwt`, RFC 7523, as SMART Backend
//! Services requires: RS384 or ES384, checked against the client's registered JWKS, each `jti`
//! accepted once).

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::accounts::check_secret;
use crate::error::Result;
use crate::resource::instant::now_ms;
use crate::store::{Client, Store};

/// The longest lifetime an assertion may claim (SMART: no more than five minutes).
const MAX_ASSERTION_SECONDS: i64 = 300;

/// Why a client was not accepted (`invalid_client`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(pub String);

#[derive(Deserialize)]
struct Assertion {
    iss: String,
    sub: String,
    exp: i64,
    jti: String,
}

/// The client that a secret authenticates.
pub async fn by_secret(store: &Store, client_id: &str, secret: &str) -> Result<Result<Client, ClientError>> {
    let Some(client) = store.client(client_id).await? else {
        return Ok(Err(ClientError("unknown client or wrong secret".into())));
    };
    let ok =
        client.kind == "secret" && client.secret_hash.as_deref().is_some_and(|h| check_secret(secret, h));
    Ok(if ok { Ok(client) } else { Err(ClientError("unknown client or wrong secret".into())) })
}

/// The client that a signed assertion for `audience` (the token endpoint URL) authenticates.
pub async fn by_assertion(
    store: &Store,
    assertion: &str,
    audience: &str,
) -> Result<Result<Client, ClientError>> {
    let fail = |m: &str| Ok(Err(ClientError(m.to_string())));
    let Ok(header) = jsonwebtoken::decode_header(assertion) else {
        return fail("the client assertion is not a JWT");
    };
    if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
        return fail("client assertions are signed with RS384 or ES384");
    }
    // Who claims to be signing, before the signature can be checked: iss/sub name the client.
    let Some(claimed) = unverified_subject(assertion) else { return fail("the client assertion has no sub") };
    let Some(client) = store.client(&claimed).await? else { return fail("unknown client") };
    let Some(jwks) = client.jwks.as_deref().filter(|_| client.kind == "jwks") else {
        return fail("the client has no registered keys");
    };
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(jwks) else {
        return fail("the client's JWKS is damaged");
    };
    let keys: Vec<Jwk> = doc["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| serde_json::from_value(k.clone()).ok())
        .collect();
    let candidates: Vec<&Jwk> =
        keys.iter().filter(|k| header.kid.is_none() || k.common.key_id == header.kid).collect();
    let mut v = Validation::new(header.alg);
    v.set_audience(&[audience]);
    v.set_issuer(&[client.client_id.as_str()]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v.leeway = 30;
    for jwk in candidates {
        let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
        let Ok(data) = jsonwebtoken::decode::<Assertion>(assertion, &key, &v) else { continue };
        let a = data.claims;
        let now = now_ms() / 1000;
        if a.sub != client.client_id || a.iss != client.client_id {
            return fail("iss and sub of the client assertion must be the client id");
        }
        if a.exp > now + MAX_ASSERTION_SECONDS {
            return fail("the client assertion expires more than five minutes from now");
        }
        if a.jti.is_empty() || !store.use_jti(&client.client_id, &a.jti, a.exp, now).await? {
            return fail("the client assertion's jti was used before");
        }
        return Ok(Ok(client));
    }
    fail("the client assertion is not signed by a registered key, or is expired or for another audience")
}

/// `sub` of a JWT whose signature is not checked yet (only to find whose keys to check it with).
pub fn unverified_subject(jwt: &str) -> Option<String> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["sub"].as_str().map(str::to_string)
}
