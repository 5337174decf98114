//! Access tokens: short-lived signed JWTs carrying the SMART grant (`scope`, `patient`,
//! `fhirUser`) for one audience (the FHIR base URL).

use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

use super::keys::{Keys, TokenError};
use super::scope::Grant;
use crate::error::Result;
use crate::resource::instant::now_ms;

/// Default lifetime of an access token.
pub const ACCESS_TOKEN_SECONDS: i64 = 3600;
/// Clock difference tolerated between nodes and issuers.
const LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The user (`fhirUser` or a user name), or the client for backend services.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub scope: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
}

/// What a new token is for.
pub struct Request<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub client_id: &'a str,
    pub subject: &'a str,
    pub scope: &'a str,
    pub patient: Option<&'a str>,
    pub fhir_user: Option<&'a str>,
    pub lifetime_seconds: i64,
}

impl AccessClaims {
    /// The grant the token carries. A token whose scopes do not parse grants nothing.
    pub fn grant(&self) -> Result<Grant, TokenError> {
        let mut grant = Grant::parse(&self.scope).map_err(|e| TokenError::Invalid(e.to_string()))?;
        grant.patient = self.patient.clone();
        grant.fhir_user = self.fhir_user.clone();
        Ok(grant)
    }
}

/// The issuer of this server's tokens for a FHIR base URL: `https://host/fhir` → `https://host/auth`.
pub fn issuer_for(base: &str) -> String {
    let base = base.trim_end_matches('/');
    format!("{}/auth", base.strip_suffix("/fhir").unwrap_or(base))
}

/// Mints a signed access token.
pub fn mint(keys: &Keys, r: &Request<'_>) -> Result<(String, AccessClaims)> {
    let now = now_ms() / 1000;
    let claims = AccessClaims {
        iss: r.issuer.into(),
        sub: r.subject.into(),
        aud: r.audience.into(),
        exp: now + r.lifetime_seconds,
        iat: now,
        jti: uuid::Uuid::new_v4().simple().to_string(),
        scope: r.scope.into(),
        client_id: r.client_id.into(),
        patient: r.patient.map(str::to_string),
        fhir_user: r.fhir_user.map(str::to_string),
    };
    Ok((keys.sign(&claims)?, claims))
}

/// Checks a bearer token: signature by one of `keys`, issuer, audience, expiry.
pub fn verify(keys: &Keys, token: &str, issuer: &str, audience: &str) -> Result<AccessClaims, TokenError> {
    let mut v = Validation::new(Algorithm::ES256);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = LEEWAY_SECONDS;
    keys.verify(token, &v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    async fn keys() -> (tempfile::TempDir, Store, Keys) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("k.db").display())).await.unwrap();
        let keys = Keys::load_or_create(&store).await.unwrap();
        (dir, store, keys)
    }

    fn request(lifetime_seconds: i64) -> Request<'static> {
        Request {
            issuer: "https://hearth.test/auth",
            audience: "https://hearth.test/fhir",
            client_id: "app",
            subject: "Practitioner/1",
            scope: "patient/Observation.rs launch/patient",
            patient: Some("p1"),
            fhir_user: Some("Practitioner/1"),
            lifetime_seconds,
        }
    }

    #[tokio::test]
    async fn a_minted_token_verifies_and_carries_its_grant() {
        let (_dir, store, keys) = keys().await;
        let (token, claims) = mint(&keys, &request(60)).unwrap();
        let got = verify(&keys, &token, "https://hearth.test/auth", "https://hearth.test/fhir").unwrap();
        assert_eq!(got, claims);
        let grant = got.grant().unwrap();
        assert_eq!(grant.patient.as_deref(), Some("p1"));
        assert!(grant.allows("Observation", super::super::Interaction::Search));
        // The same key set is loaded again, not regenerated.
        let again = Keys::load_or_create(&store).await.unwrap();
        assert_eq!(again.jwks(), keys.jwks());
        assert!(verify(&again, &token, "https://hearth.test/auth", "https://hearth.test/fhir").is_ok());
        // After a rotation the new key signs and the old one still verifies.
        let rotated = Keys::rotate(&store).await.unwrap();
        assert_eq!(rotated.jwks()["keys"].as_array().unwrap().len(), 2);
        assert!(verify(&rotated, &token, "https://hearth.test/auth", "https://hearth.test/fhir").is_ok());
    }

    #[tokio::test]
    async fn wrong_audience_issuer_expiry_or_signature_is_refused() {
        let (_dir, _store, keys) = keys().await;
        let (token, _) = mint(&keys, &request(60)).unwrap();
        let (iss, aud) = ("https://hearth.test/auth", "https://hearth.test/fhir");
        assert!(matches!(verify(&keys, &token, iss, "https://other/fhir"), Err(TokenError::Invalid(_))));
        assert!(matches!(verify(&keys, &token, "https://other/auth", aud), Err(TokenError::Invalid(_))));
        let (old, _) = mint(&keys, &request(-120)).unwrap();
        assert_eq!(verify(&keys, &old, iss, aud), Err(TokenError::Expired));
        // Flip one character of the payload: the signature no longer matches.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let flipped = if parts[1].ends_with('A') { 'B' } else { 'A' };
        parts[1].pop();
        parts[1].push(flipped);
        assert!(verify(&keys, &parts.join("."), iss, aud).is_err());
        assert!(verify(&keys, "not-a-token", iss, aud).is_err());
        // Another server's keys do not verify this server's tokens.
        let (_d2, _s2, other) = super::tests::keys().await;
        assert!(verify(&other, &token, iss, aud).is_err());
    }
}
