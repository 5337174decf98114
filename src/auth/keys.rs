//! The server's token signing keys: ES256 (P-256), generated on first start, kept in the
//! database so that every node of a shared PostgreSQL signs and verifies with the same set,
//! and published as a JWKS. Rotation adds a newer key; older ones keep verifying until retired.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::rand_core::OsRng;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::resource::instant::now_ms;
use crate::store::{Store, StoredKey};

const ALG: &str = "ES256";

struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Value,
}

/// The active keys, newest (the signing one) first.
pub struct Keys {
    keys: Vec<Key>,
}

/// Why a token was not accepted. The message is safe to show the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid: {0}")]
    Invalid(String),
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Keys {
    /// The stored keys, after creating the first one if there is none.
    pub async fn load_or_create(store: &Store) -> Result<Keys> {
        let mut stored = store.active_keys().await?;
        if stored.is_empty() {
            store.add_key(&generate(now_ms())?).await?;
            // Another node may have added one at the same moment: both are valid.
            stored = store.active_keys().await?;
        }
        let keys = stored.iter().map(load).collect::<Result<Vec<_>>>()?;
        if keys.is_empty() {
            return Err(Error::Internal("no signing key could be stored".into()));
        }
        Ok(Keys { keys })
    }

    /// Adds a newer key, which signs from now on (on this node at once, on others after their
    /// next start).
    pub async fn rotate(store: &Store) -> Result<Keys> {
        // Strictly newer than every key there, even within the same millisecond.
        let newest = store.active_keys().await?.first().map_or(0, |k| k.created + 1);
        store.add_key(&generate(now_ms().max(newest))?).await?;
        Keys::load_or_create(store).await
    }

    /// `{"keys": [...]}` for `/auth/jwks`.
    pub fn jwks(&self) -> Value {
        json!({"keys": self.keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
    }

    /// A compact JWS of `claims`, signed by the newest key.
    pub fn sign(&self, claims: &impl Serialize) -> Result<String> {
        let key = &self.keys[0];
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| Error::Internal(format!("signing a token: {e}")))
    }

    /// The claims of a token signed by one of the keys, checked by `validation` (issuer,
    /// audience, expiry).
    pub fn verify<T: DeserializeOwned>(&self, token: &str, validation: &Validation) -> Result<T, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::ES256 {
            return Err(TokenError::Invalid(format!("unexpected algorithm {:?}", header.alg)));
        }
        let candidates: Vec<&Key> = match &header.kid {
            Some(kid) => self.keys.iter().filter(|k| &k.kid == kid).collect(),
            None => self.keys.iter().collect(),
        };
        let mut last = TokenError::Invalid("signed by an unknown key".into());
        for key in candidates {
            match jsonwebtoken::decode::<T>(token, &key.decoding, validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    last = match e.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                        _ => TokenError::Invalid(e.to_string()),
                    }
                }
            }
        }
        Err(last)
    }
}

fn generate(created: i64) -> Result<StoredKey> {
    let internal = |e: &dyn std::fmt::Display| Error::Internal(format!("generating a signing key: {e}"));
    let signing = SigningKey::random(&mut OsRng);
    let der = signing.to_pkcs8_der().map_err(|e| internal(&e))?;
    let point = signing.verifying_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(internal(&"the public key has no coordinates"));
    };
    let kid = uuid::Uuid::new_v4().simple().to_string();
    let jwk =
        json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y), "kid": kid, "alg": ALG, "use": "sig"});
    Ok(StoredKey {
        kid,
        alg: ALG.into(),
        private_der: der.as_bytes().to_vec(),
        public_jwk: jwk.to_string(),
        created,
    })
}

fn load(stored: &StoredKey) -> Result<Key> {
    let bad = |e: &dyn std::fmt::Display| Error::Internal(format!("stored signing key {}: {e}", stored.kid));
    if stored.alg != ALG {
        return Err(bad(&format!("unsupported algorithm {}", stored.alg)));
    }
    // Parsed once here so that a damaged key fails at start, not at the first token.
    SigningKey::from_pkcs8_der(&stored.private_der).map_err(|e| bad(&e))?;
    let jwk: Value = serde_json::from_str(&stored.public_jwk).map_err(|e| bad(&e))?;
    let (Some(x), Some(y)) = (jwk["x"].as_str(), jwk["y"].as_str()) else {
        return Err(bad(&"the public JWK has no coordinates"));
    };
    Ok(Key {
        kid: stored.kid.clone(),
        encoding: EncodingKey::from_ec_der(&stored.private_der),
        decoding: DecodingKey::from_ec_components(x, y).map_err(|e| bad(&e))?,
        jwk,
    })
}
