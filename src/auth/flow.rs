//! The authorization-code grant without HTTP: logging a user in (with lockout and TOTP), EHR
//! launch contexts, issuing and exchanging codes, rotating refresh tokens, and the token
//! response with its `id_token`.

use std::sync::OnceLock;

use serde::Serialize;
use serde_json::{Value, json};

use super::accounts::{check_secret, hash_secret};
use super::keys::Keys;
use super::scope::Grant;
use super::secrets::{self, hash, random_secret};
use super::token;
use crate::error::Result;
use crate::resource::instant::now_ms;
use crate::store::{AuthCode, Client, RefreshGrant, Store, Used, User};

/// An authorization code lives one minute (RFC 6749 §4.1.2 recommends at most ten).
pub const CODE_SECONDS: i64 = 60;
/// A pending authorization request (the user's pages) lives ten minutes.
pub const PENDING_SECONDS: i64 = 600;
/// An EHR launch id must be used within five minutes.
pub const LAUNCH_SECONDS: i64 = 300;
/// Refresh-token lifetimes. `offline_access` outlives the session, `online_access` should not;
/// with no session management here, a working day stands for it (HAPI FHIR's and Keycloak's
/// defaults are of the same order).
const OFFLINE_REFRESH_MS: i64 = 30 * 24 * 3600 * 1000;
const ONLINE_REFRESH_MS: i64 = 12 * 3600 * 1000;
/// Consecutive failed logins that lock an account, and for how long.
const LOGIN_ATTEMPTS: i64 = 5;
const LOCK_MS: i64 = 15 * 60 * 1000;

/// An OAuth error for the client (RFC 6749 §5.2): `error` code and a description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {description}")]
pub struct GrantError {
    pub error: &'static str,
    pub description: String,
}

fn refuse<T>(error: &'static str, description: impl Into<String>) -> Result<Result<T, GrantError>> {
    Ok(Err(GrantError { error, description: description.into() }))
}

/// The one answer to every failed login, so that it does not tell whether the user exists, the
/// account is locked, or which factor was wrong.
pub const LOGIN_FAILED: &str = "invalid username or password";

/// The user whose password (and TOTP code, when the account has a second factor) is right.
/// Five failures in a row lock the account for 15 minutes.
pub async fn login(
    store: &Store,
    username: &str,
    password: &str,
    totp: Option<&str>,
) -> Result<Option<User>> {
    let now = now_ms();
    let Some(user) = store.user(username).await? else {
        // Hash anyway: an unknown user answers as slowly as a wrong password.
        static DUMMY: OnceLock<String> = OnceLock::new();
        let dummy = DUMMY.get_or_init(|| hash_secret("not a password").unwrap_or_default());
        check_secret(password, dummy);
        return Ok(None);
    };
    let locked = store.login_state(username).await?.and_then(|(_, until)| until).is_some_and(|t| t > now);
    if locked {
        tracing::warn!(username, "login refused: the account is locked");
        return Ok(None);
    }
    let password_ok = check_secret(password, &user.password_hash);
    let step = match (&user.totp_secret, totp) {
        (Some(secret), Some(code)) => secrets::totp_step(secret, code, now / 1000),
        _ => None,
    };
    let totp_ok = match step {
        None => user.totp_secret.is_none(),
        // Each code once: a code seen over the user's shoulder or replayed is refused.
        Some(step) => password_ok && store.use_totp_step(username, step).await?,
    };
    if password_ok && totp_ok {
        store.login_succeeded(username).await?;
        Ok(Some(user))
    } else {
        store.login_failed(username, LOGIN_ATTEMPTS, now + LOCK_MS).await?;
        tracing::info!(username, "failed login");
        Ok(None)
    }
}

/// Registers an EHR launch for a patient (and encounter); the id is what the EHR hands the app.
pub async fn create_launch(store: &Store, patient: Option<&str>, encounter: Option<&str>) -> Result<String> {
    let id = random_secret();
    let now = now_ms();
    store.add_launch(&id, patient, encounter, now + LAUNCH_SECONDS * 1000, now).await?;
    Ok(id)
}

/// Stores a new code for an approved request; returns the code.
pub async fn issue_code(store: &Store, mut grant: AuthCode) -> Result<String> {
    let code = random_secret();
    let now = now_ms();
    grant.expires = now + CODE_SECONDS * 1000;
    store.add_code(&hash(&code), &grant, now).await?;
    Ok(code)
}

/// Who signs and for whom: the server's keys, its issuer URL and the FHIR base (audience).
pub struct Signer<'a> {
    pub keys: &'a Keys,
    pub issuer: &'a str,
    pub base: &'a str,
}

/// `grant_type=authorization_code` for an authenticated (or public) client.
pub async fn exchange_code(
    store: &Store,
    signer: &Signer<'_>,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> Result<Result<Value, GrantError>> {
    let family = hash(code);
    let c = match store.use_code(&family, now_ms()).await? {
        Used::Fresh(c) => c,
        Used::Unknown => return refuse("invalid_grant", "unknown authorization code"),
        Used::Again(_) => {
            let n = store.revoke_family(&family, now_ms()).await?;
            tracing::warn!(
                revoked = n,
                "an authorization code was used twice: its refresh tokens are revoked"
            );
            return refuse("invalid_grant", "the authorization code was used before");
        }
    };
    if c.client_id != client.client_id {
        return refuse("invalid_grant", "the authorization code was issued to another client");
    }
    if c.expires < now_ms() {
        return refuse("invalid_grant", "the authorization code has expired");
    }
    // RFC 6749 §4.1.3: the same redirect_uri as the authorization request (always sent back:
    // this server always records one).
    if redirect_uri != Some(c.redirect_uri.as_str()) {
        return refuse("invalid_grant", "redirect_uri must be the authorization request's");
    }
    match (&c.code_challenge, verifier) {
        (Some(challenge), Some(v)) if secrets::pkce_matches(v, challenge) => {}
        (Some(_), Some(_)) => {
            return refuse("invalid_grant", "code_verifier does not match the code_challenge");
        }
        (Some(_), None) => return refuse("invalid_grant", "code_verifier is required (PKCE)"),
        (None, Some(_)) => return refuse("invalid_grant", "code_verifier given but no code_challenge was"),
        (None, None) => {}
    }
    let grant = RefreshGrant {
        family,
        client_id: c.client_id,
        username: c.username,
        fhir_user: c.fhir_user,
        scope: c.scope.clone(),
        patient: c.patient,
        encounter: c.encounter,
        expires: 0,
    };
    Ok(Ok(respond(store, signer, &grant, &c.scope, c.nonce.as_deref()).await?))
}

/// `grant_type=refresh_token`: the token is used up and a new one issued (rotation); `scope`
/// may narrow the new access token's scopes, never widen them (RFC 6749 §6).
pub async fn refresh(
    store: &Store,
    signer: &Signer<'_>,
    client: &Client,
    token: &str,
    scope: Option<&str>,
) -> Result<Result<Value, GrantError>> {
    let token_hash = hash(token);
    // Client and scope are checked before the token is used up, so that neither another
    // client nor a bad request burns it.
    let Some((known, _)) = store.refresh_token(&token_hash).await? else {
        return refuse("invalid_grant", "unknown refresh token");
    };
    if known.client_id != client.client_id {
        return refuse("invalid_grant", "the refresh token was issued to another client");
    }
    let access_scope = match scope.filter(|s| !s.trim().is_empty()) {
        None => known.scope.clone(),
        Some(s) => {
            let Ok(wanted) = Grant::parse(s) else {
                return refuse("invalid_scope", "the scope does not parse");
            };
            let had = Grant::parse(&known.scope).unwrap_or_default();
            if let Err(e) = had.covers(&wanted) {
                return refuse(
                    "invalid_scope",
                    format!("a refresh may narrow the scopes, not widen them: {e}"),
                );
            }
            s.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
        }
    };
    let r = match store.use_refresh(&token_hash, now_ms()).await? {
        Used::Fresh(r) => r,
        Used::Unknown => return refuse("invalid_grant", "unknown refresh token"),
        Used::Again(r) => {
            // A rotated token presented again means two parties hold it (OAuth 2.0 Security
            // BCP §4.14.2): the whole family goes.
            store.revoke_family(&r.family, now_ms()).await?;
            tracing::warn!(client = %r.client_id, "a used refresh token was replayed: its family is revoked");
            return refuse("invalid_grant", "the refresh token is no longer valid");
        }
    };
    if r.expires < now_ms() {
        return refuse("invalid_grant", "the refresh token has expired");
    }
    Ok(Ok(respond(store, signer, &r, &access_scope, None).await?))
}

#[derive(Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    #[serde(rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    fhir_user: Option<String>,
}

/// The token response: an access token for `scope`, a new refresh token when the grant has
/// offline or online access, an id_token when `openid` with `fhirUser` or `profile` is granted.
async fn respond(
    store: &Store,
    signer: &Signer<'_>,
    grant: &RefreshGrant,
    scope: &str,
    nonce: Option<&str>,
) -> Result<Value> {
    let request = token::Request {
        issuer: signer.issuer,
        audience: signer.base,
        client_id: &grant.client_id,
        subject: &grant.username,
        scope,
        patient: grant.patient.as_deref(),
        fhir_user: grant.fhir_user.as_deref(),
        lifetime_seconds: token::ACCESS_TOKEN_SECONDS,
    };
    let (access_token, claims) = token::mint(signer.keys, &request)?;
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": claims.exp - claims.iat,
        "scope": scope,
    });
    if let Some(p) = &grant.patient {
        body["patient"] = p.clone().into();
    }
    if let Some(e) = &grant.encounter {
        body["encounter"] = e.clone().into();
    }
    let granted = Grant::parse(&grant.scope).unwrap_or_default();
    let lifetime = if granted.has_other("offline_access") {
        Some(OFFLINE_REFRESH_MS)
    } else if granted.has_other("online_access") {
        Some(ONLINE_REFRESH_MS)
    } else {
        None
    };
    if let Some(ms) = lifetime {
        let refresh = random_secret();
        let now = now_ms();
        let row = RefreshGrant { expires: now + ms, ..grant.clone() };
        store.add_refresh(&hash(&refresh), &row, now).await?;
        body["refresh_token"] = refresh.into();
    }
    if let Some(id_token) = id_token(signer, grant, scope, nonce, claims.iat, claims.exp)? {
        body["id_token"] = id_token.into();
    }
    Ok(body)
}

/// The OpenID Connect id_token, when `openid` with `fhirUser` or `profile` is granted.
fn id_token(
    signer: &Signer<'_>,
    grant: &RefreshGrant,
    scope: &str,
    nonce: Option<&str>,
    iat: i64,
    exp: i64,
) -> Result<Option<String>> {
    let asked = Grant::parse(scope).unwrap_or_default();
    if !asked.has_other("openid") || !(asked.has_other("fhirUser") || asked.has_other("profile")) {
        return Ok(None);
    }
    let claims = IdClaims {
        iss: signer.issuer,
        sub: &grant.username,
        aud: &grant.client_id,
        exp,
        iat,
        nonce,
        // SMART: the fhirUser claim is the resource's absolute URL.
        fhir_user: grant.fhir_user.as_ref().map(|f| format!("{}/{f}", signer.base)),
    };
    signer.keys.sign(&claims).map(Some)
}
