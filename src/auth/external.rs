//! Trusting an external authorization server (Keycloak, Okta, an EHR's): `auth_issuer` with
//! its JWKS (`auth_jwks`, a file or an http URL, read at start and again when a token names an
//! unknown key). Its RS256/ES256 access
//! tokens are checked for issuer, audience and expiry and read into the same [`Grant`] as ours.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

use super::keys::TokenError;
use super::scope::Grant;
use crate::error::{Error, Result};

/// Clock difference tolerated with the issuer.
const LEEWAY_SECONDS: u64 = 30;

pub struct External {
    pub issuer: String,
    /// The audience tokens must name; `None`: the FHIR base URL of the request.
    pub audience: Option<String>,
    /// Where the JWKS comes from, to read again when a token names a key we do not know.
    source: String,
    keys: std::sync::RwLock<Arc<Keys>>,
    last_reload: std::sync::Mutex<Option<std::time::Instant>>,
}

type Keys = Vec<(Option<String>, DecodingKey)>;

/// Issuers rotate keys (Keycloak, Okta): a token with an unknown `kid` makes us read the JWKS
/// again, at most this often, so that junk tokens cannot make us hammer the issuer.
const RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// What an external token says, in our terms.
#[derive(Debug, Clone)]
pub struct Verified {
    pub client_id: String,
    pub subject: String,
    pub grant: Grant,
    pub exp: i64,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    exp: i64,
    /// A space-separated string (RFC 8693 §4.2) or, as some servers send it, an array.
    #[serde(default)]
    scope: Value,
    #[serde(default)]
    scp: Value,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    patient: Option<String>,
    #[serde(default, rename = "fhirUser")]
    fhir_user: Option<String>,
}

fn scope_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => Some(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")),
        _ => None,
    }
}

impl External {
    /// Reads the JWKS from `source`: an `http://`/`https://` URL or a file path.
    pub async fn load(issuer: &str, source: &str, audience: Option<&str>) -> Result<External> {
        Ok(External {
            issuer: issuer.trim_end_matches('/').to_string(),
            audience: audience.map(str::to_string),
            source: source.to_string(),
            keys: std::sync::RwLock::new(Arc::new(fetch(issuer, source).await?)),
            last_reload: std::sync::Mutex::new(None),
        })
    }

    /// [`External::verify`], after reading the JWKS again when the token names an unknown key.
    pub async fn verify_fresh(&self, token: &str, base: &str) -> Result<Verified, TokenError> {
        let kid = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid);
        let unknown =
            kid.as_ref().is_some_and(|k| !self.current().iter().any(|(id, _)| id.as_ref() == Some(k)));
        if unknown && self.may_reload() {
            match fetch(&self.issuer, &self.source).await {
                Ok(keys) => {
                    tracing::info!(issuer = %self.issuer, "re-read the external issuer's JWKS for an unknown kid");
                    *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        self.verify(token, base)
    }

    fn current(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn may_reload(&self) -> bool {
        let mut last = self.last_reload.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < RELOAD_INTERVAL) {
            return false;
        }
        *last = Some(std::time::Instant::now());
        true
    }

    /// Checks a token: RS256 or ES256, a key named by `kid` (or any key when it names none),
    /// issuer, audience (`base` unless configured), expiry.
    pub fn verify(&self, token: &str, base: &str) -> Result<Verified, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(TokenError::Invalid(format!("unexpected algorithm {:?}", header.alg)));
        }
        let mut v = Validation::new(header.alg);
        // Issuers differ on a trailing slash; both spellings name the same issuer.
        v.set_issuer(&[self.issuer.clone(), format!("{}/", self.issuer)]);
        v.set_audience(&[self.audience.as_deref().unwrap_or(base)]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = LEEWAY_SECONDS;
        let keys = self.current();
        let candidates = keys.iter().filter(|(kid, _)| header.kid.is_none() || *kid == header.kid);
        let mut last = TokenError::Invalid("signed by an unknown key".into());
        for (_, key) in candidates {
            match jsonwebtoken::decode::<Claims>(token, key, &v) {
                Ok(data) => return Self::read(data.claims),
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                    return Err(TokenError::Expired);
                }
                Err(e) => last = TokenError::Invalid(e.to_string()),
            }
        }
        Err(last)
    }

    fn read(c: Claims) -> Result<Verified, TokenError> {
        let scope = scope_text(&c.scope).or_else(|| scope_text(&c.scp)).unwrap_or_default();
        let mut grant = Grant::parse(&scope).map_err(|e| TokenError::Invalid(e.to_string()))?;
        grant.patient = c.patient;
        grant.fhir_user = c.fhir_user;
        let client_id = c.client_id.or(c.azp).unwrap_or_default();
        let subject = c.sub.unwrap_or_else(|| client_id.clone());
        Ok(Verified { client_id, subject, grant, exp: c.exp })
    }
}

async fn fetch(issuer: &str, source: &str) -> Result<Keys> {
    let bad = |e: &dyn std::fmt::Display| Error::Internal(format!("auth_jwks {source}: {e}"));
    let text = if source.starts_with("http://") || source.starts_with("https://") {
        let resp = reqwest::get(source).await.map_err(|e| bad(&e))?;
        resp.error_for_status().map_err(|e| bad(&e))?.text().await.map_err(|e| bad(&e))?
    } else {
        tokio::fs::read_to_string(source).await.map_err(|e| bad(&e))?
    };
    let doc: Value = serde_json::from_str(&text).map_err(|e| bad(&e))?;
    let keys: Keys = doc["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter_map(|jwk| DecodingKey::from_jwk(&jwk).ok().map(|d| (jwk.common.key_id.clone(), d)))
        .collect();
    if keys.is_empty() {
        return Err(Error::Internal(format!("the JWKS of {issuer} ({source}) has no usable key")));
    }
    Ok(keys)
}
