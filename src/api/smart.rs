//! SMART discovery (`/.well-known/smart-configuration`), token introspection (RFC 7662) and
//! revocation (RFC 7009) of the embedded authorization server.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::oauth::{client_of, json_response, no_store, oauth_error, param};
use crate::auth::{secrets, token};
use crate::resource::instant::now_ms;
use crate::store::Client;

/// Resource scopes a client can be registered for, as examples (any v1/v2 resource scope
/// works); the other scopes understood come from the scope model.
const RESOURCE_SCOPES: &[&str] = &[
    "patient/*.rs",
    "patient/*.cruds",
    "user/*.rs",
    "user/*.cruds",
    "system/*.rs",
    "system/*.cruds",
    "patient/*.read",
    "user/*.read",
    "system/*.read",
];

const CAPABILITIES: &[&str] = &[
    "launch-standalone",
    "launch-ehr",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-standalone-patient",
    "context-ehr-patient",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
    "permission-offline",
    "sso-openid-connect",
];

/// `GET /.well-known/smart-configuration` (at the root and under `/fhir`). In external-issuer
/// mode there is nothing of ours to describe: 404.
pub async fn configuration(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if s.keys.is_none() || s.external.is_some() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let base = super::request::base_url(&s, &headers);
    let issuer = token::issuer_for(&base);
    let body = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": crate::auth::scope::KNOWN_OTHER.iter().chain(RESOURCE_SCOPES).collect::<Vec<_>>(),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    });
    json_response(StatusCode::OK, &body)
}

fn form(body: &Bytes) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// The authenticated client of an introspection or revocation request, or the error response.
async fn caller(
    s: &AppState,
    headers: &HeaderMap,
    form: &[(String, String)],
    public_ok: bool,
) -> Result<Client, Response> {
    let base = super::request::base_url(s, headers);
    let token_url = format!("{}/token", token::issuer_for(&base));
    match client_of(s, headers, form, &token_url, public_ok).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &e.0)),
        Err(e) => {
            tracing::error!("introspection/revocation: {e}");
            Err(oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error"))
        }
    }
}

/// `POST /auth/introspect` (RFC 7662). The caller authenticates as a confidential client
/// (secret or assertion), as resource servers do with Keycloak or HAPI; public clients may not
/// introspect. Any bad, expired or revoked token is just `{"active": false}`.
pub async fn introspect(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(keys) = &s.keys else { return StatusCode::NOT_FOUND.into_response() };
    if s.external.is_some() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let form = form(&body);
    if let Err(resp) = caller(&s, &headers, &form, false).await {
        return resp;
    }
    let token = param(&form, "token").unwrap_or_default();
    let base = super::request::base_url(&s, &headers);
    let answer = match describe(&s, keys, token, &base).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("introspection: {e}");
            return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error");
        }
    };
    let mut resp = json_response(StatusCode::OK, &answer);
    no_store(&mut resp);
    resp
}

async fn describe(
    s: &AppState,
    keys: &crate::auth::keys::Keys,
    token: &str,
    base: &str,
) -> crate::Result<Value> {
    let inactive = json!({"active": false});
    let issuer = token::issuer_for(base);
    if let Ok(c) = token::verify(keys, token, &issuer, base) {
        if s.engine.store.is_revoked(&c.jti).await? {
            return Ok(inactive);
        }
        let mut v = json!({
            "active": true, "scope": c.scope, "client_id": c.client_id, "sub": c.sub, "exp": c.exp,
            "iat": c.iat, "iss": c.iss, "aud": c.aud, "token_type": "Bearer", "jti": c.jti,
        });
        if let Some(p) = c.patient {
            v["patient"] = p.into();
        }
        if let Some(f) = c.fhir_user {
            v["fhirUser"] = f.into();
        }
        return Ok(v);
    }
    match s.engine.store.refresh_token(&secrets::hash(token)).await? {
        Some((r, false)) if r.expires > now_ms() => {
            let mut v = json!({
                "active": true, "scope": r.scope, "client_id": r.client_id, "sub": r.username,
                "exp": r.expires / 1000, "iss": issuer, "token_type": "refresh_token",
            });
            if let Some(p) = r.patient {
                v["patient"] = p.into();
            }
            Ok(v)
        }
        _ => Ok(inactive),
    }
}

/// `POST /auth/revoke` (RFC 7009): a refresh token (and the rest of its family), or an access
/// token by its `jti`, which every node then refuses (see `authn::watch_revocations`). A client
/// revokes only its own tokens; an unknown token is not an error (§2.2).
pub async fn revoke(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(keys) = &s.keys else { return StatusCode::NOT_FOUND.into_response() };
    if s.external.is_some() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let form = form(&body);
    let client = match caller(&s, &headers, &form, true).await {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let token = param(&form, "token").unwrap_or_default();
    let base = super::request::base_url(&s, &headers);
    if let Err(e) = revoke_token(&s, keys, &client, token, &base).await {
        tracing::error!("revocation: {e}");
        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error");
    }
    let mut resp = StatusCode::OK.into_response();
    no_store(&mut resp);
    resp
}

async fn revoke_token(
    s: &AppState,
    keys: &crate::auth::keys::Keys,
    client: &Client,
    token: &str,
    base: &str,
) -> crate::Result<()> {
    let store = &s.engine.store;
    if let Some((r, _)) = store.refresh_token(&secrets::hash(token)).await? {
        if r.client_id == client.client_id {
            store.revoke_family(&r.family, now_ms()).await?;
            tracing::info!(client = %client.client_id, "refresh token revoked");
        }
        return Ok(());
    }
    if let Ok(c) = token::verify(keys, token, &token::issuer_for(base), base)
        && c.client_id == client.client_id
    {
        store.revoke_jti(&c.jti, c.exp, now_ms()).await?;
        s.tokens.revoke(&c.jti);
        tracing::info!(client = %client.client_id, jti = %c.jti, "access token revoked");
    }
    Ok(())
}
