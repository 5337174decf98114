//! Clients and users of the embedded authorization server, as `hearth client add`,
//! `hearth user add` and `hearth token` manage them. Secrets and passwords are stored as
//! Argon2id hashes only.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use p256::elliptic_curve::rand_core::OsRng;
use serde_json::Value;

use super::keys::Keys;
use super::scope::{Context, Grant};
use super::token::{self, AccessClaims};
use crate::error::{Error, IssueCode, Result};
use crate::resource::instant::now_ms;
use crate::store::{Client, Store, User};

/// How a client proves who it is at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A public client (a browser or mobile app): PKCE, no secret.
    Public,
    /// `client_secret_basic`.
    Secret(String),
    /// `private_key_jwt`: the client's public keys (a JWKS document).
    Jwks(String),
}

/// The roles a user may have (care-team policy applies to the first two).
pub const ROLES: &[&str] = &["coordinator", "provider", "admin", "patient", "staff"];

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid(IssueCode::Invalid, message)
}

pub fn hash_secret(secret: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("hashing a secret: {e}")))
}

/// Checks a secret against its stored hash (constant time inside argon2).
pub fn check_secret(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(secret.as_bytes(), &h).is_ok())
}

/// Registers a client after checking what it asks for.
pub async fn add_client(
    store: &Store,
    client_id: &str,
    credential: Credential,
    redirect_uris: &[String],
    scopes: &str,
) -> Result<Client> {
    if client_id.is_empty()
        || client_id.len() > 255
        || client_id.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid("a client id is 1 to 255 characters without spaces"));
    }
    for uri in redirect_uris {
        let parsed = url::Url::parse(uri).map_err(|e| invalid(format!("redirect URI '{uri}': {e}")))?;
        if parsed.fragment().is_some() {
            return Err(invalid(format!("redirect URI '{uri}' must not have a fragment (RFC 6749 §3.1.2)")));
        }
    }
    Grant::parse(scopes).map_err(|e| invalid(e.to_string()))?;
    let (kind, secret_hash, jwks) = match credential {
        Credential::Public => ("public", None, None),
        Credential::Secret(s) if s.len() >= 16 => ("secret", Some(hash_secret(&s)?), None),
        Credential::Secret(_) => return Err(invalid("a client secret has at least 16 characters")),
        Credential::Jwks(text) => {
            let doc: Value =
                serde_json::from_str(&text).map_err(|e| invalid(format!("the JWKS is not JSON: {e}")))?;
            let keys = doc["keys"].as_array().ok_or_else(|| invalid("the JWKS has no 'keys' array"))?;
            if keys.is_empty() || keys.iter().any(|k| k["kty"].as_str().is_none()) {
                return Err(invalid("the JWKS needs at least one key, each with a 'kty'"));
            }
            ("jwks", None, Some(doc.to_string()))
        }
    };
    if kind == "public" && redirect_uris.is_empty() {
        return Err(invalid("a public client needs at least one redirect URI"));
    }
    let client = Client {
        client_id: client_id.into(),
        kind: kind.into(),
        secret_hash,
        jwks,
        redirect_uris: redirect_uris.to_vec(),
        scopes: scopes.split_ascii_whitespace().collect::<Vec<_>>().join(" "),
        created: now_ms(),
    };
    if !store.add_client(&client).await? {
        return Err(Error::Conflict(format!("a client '{client_id}' exists already")));
    }
    Ok(client)
}

/// Adds a user with a hashed password.
pub async fn add_user(
    store: &Store,
    username: &str,
    password: &str,
    fhir_user: Option<&str>,
    role: &str,
) -> Result<User> {
    if username.is_empty()
        || username.len() > 255
        || username.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid("a user name is 1 to 255 characters without spaces"));
    }
    if password.chars().count() < 12 {
        return Err(invalid("a password has at least 12 characters"));
    }
    if !ROLES.contains(&role) {
        return Err(invalid(format!("role '{role}' is not one of {}", ROLES.join(", "))));
    }
    if let Some(fu) = fhir_user {
        let ok = fu
            .split_once('/')
            .is_some_and(|(t, id)| crate::resource::is_resource_type(t) && crate::resource::valid_id(id));
        if !ok {
            return Err(invalid(format!("fhirUser '{fu}' is not a Type/id reference")));
        }
    }
    let user = User {
        username: username.into(),
        password_hash: hash_secret(password)?,
        totp_secret: None,
        fhir_user: fhir_user.map(str::to_string),
        role: role.into(),
        created: now_ms(),
    };
    if !store.add_user(&user).await? {
        return Err(Error::Conflict(format!("a user '{username}' exists already")));
    }
    Ok(user)
}

/// Mints a token for a registered client straight from the database (`hearth token`): the
/// scopes must be within the client's, and `patient/` scopes need a patient.
pub async fn token_for_client(
    store: &Store,
    keys: &Keys,
    issuer: &str,
    audience: &str,
    client_id: &str,
    scopes: &str,
    patient: Option<&str>,
) -> Result<(String, AccessClaims)> {
    let client =
        store.client(client_id).await?.ok_or_else(|| Error::NotFound(format!("no client '{client_id}'")))?;
    let requested = Grant::parse(scopes).map_err(|e| invalid(e.to_string()))?;
    let allowed = Grant::parse(&client.scopes).map_err(|e| Error::Internal(e.to_string()))?;
    allowed.covers(&requested).map_err(invalid)?;
    let patient_scoped = requested.rules.iter().any(|r| r.context == Context::Patient);
    if patient_scoped && patient.is_none() {
        return Err(invalid("patient/ scopes need a patient (--patient ID)"));
    }
    if let Some(p) = patient
        && !crate::resource::valid_id(p)
    {
        return Err(invalid(format!("'{p}' is not a valid patient id")));
    }
    token::mint(
        keys,
        &token::Request {
            issuer,
            audience,
            client_id,
            subject: client_id,
            scope: scopes,
            patient,
            fhir_user: None,
            lifetime_seconds: token::ACCESS_TOKEN_SECONDS,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_hashed_and_checked() {
        let h = hash_secret("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(check_secret("correct horse battery", &h));
        assert!(!check_secret("correct horse batterY", &h));
        assert!(!check_secret("anything", "not a hash"));
    }
}
