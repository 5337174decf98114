//! The embedded authorization server's HTTP endpoints (`auth = "smart"`), being built:
//! `POST /auth/token` with `client_credentials` (SMART Backend Services: `private_key_jwt`, or
//! a client secret by HTTP Basic), and `GET /auth/jwks`. The authorization-code flow comes next;
//! other grant types answer `unsupported_grant_type`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::auth::client_auth::{self, ClientError};
use crate::auth::{Context, Grant, token};
use crate::store::Client;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An OAuth error response (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp = json_response(status, &json!({"error": error, "error_description": description}));
    no_store(&mut resp);
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"hearth\""));
    }
    resp
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn no_store(resp: &mut Response) {
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The client a request says it is, before it is checked: what the rate limit counts by, so
/// that guessing one client's secret is slowed whoever guesses.
fn claimed_client(headers: &HeaderMap, form: &[(String, String)]) -> String {
    if let Some(a) = param(form, "client_assertion") {
        return format!("jwt:{}", client_auth::unverified_subject(a).unwrap_or_default());
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .and_then(|(_, b64)| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    match basic.as_deref().and_then(|b| b.split_once(':')) {
        Some((id, _)) => format!("basic:{id}"),
        None => "anonymous".into(),
    }
}

/// A fixed-window limit on token requests per claimed client (per node).
#[derive(Default)]
pub struct TokenLimiter {
    windows: std::sync::Mutex<std::collections::HashMap<String, (i64, u32)>>,
}

/// Token requests allowed per client per window.
const TOKEN_REQUESTS: u32 = 30;
const WINDOW_SECONDS: i64 = 10;

impl TokenLimiter {
    /// `None` to go ahead, or the seconds to wait.
    fn check(&self, key: &str) -> Option<i64> {
        let now = crate::resource::instant::now_ms() / 1000;
        let window = now - now % WINDOW_SECONDS;
        let mut map = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (w, _)| *w == window);
        }
        let entry = map.entry(key.to_string()).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        entry.1 += 1;
        (entry.1 > TOKEN_REQUESTS).then_some(window + WINDOW_SECONDS - now)
    }
}

fn param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `GET /auth/jwks`: the public keys that verify this server's tokens.
pub async fn jwks(State(s): State<Arc<AppState>>) -> Response {
    match &s.keys {
        Some(keys) => json_response(StatusCode::OK, &keys.jwks()),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `POST /auth/token`.
pub async fn token(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(keys) = &s.keys else { return StatusCode::NOT_FOUND.into_response() };
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let param = |name: &str| param(&form, name);
    match param("grant_type") {
        Some("client_credentials") => {}
        Some("authorization_code" | "refresh_token") => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "this grant type is not available yet",
            );
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be client_credentials",
            );
        }
    }
    let claimed = claimed_client(&headers, &form);
    if let Some(wait) = s.token_limiter.check(&claimed) {
        let mut resp = oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            "too many token requests for this client; try again later",
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    let base = super::request::base_url(&s, &headers);
    let issuer = token::issuer_for(&base);
    let client = match authenticate(&s, &headers, &form, &format!("{issuer}/token")).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &e.0),
        Err(e) => {
            tracing::error!("token endpoint: {e}");
            return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error");
        }
    };
    let Some(scope) = param("scope").filter(|s| !s.trim().is_empty()) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "scope is required");
    };
    let requested = match Grant::parse(scope) {
        Ok(g) => g,
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &e.0),
    };
    if requested.rules.is_empty() || requested.rules.iter().any(|r| r.context != Context::System) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "client_credentials grants system/ scopes only",
        );
    }
    let allowed = Grant::parse(&client.scopes).unwrap_or_default();
    if let Err(e) = allowed.covers(&requested) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &e);
    }
    let request = token::Request {
        issuer: &issuer,
        audience: &base,
        client_id: &client.client_id,
        subject: &client.client_id,
        scope,
        patient: None,
        fhir_user: None,
        lifetime_seconds: token::ACCESS_TOKEN_SECONDS,
    };
    match token::mint(keys, &request) {
        Ok((access_token, claims)) => {
            let body: Value = json!({
                "access_token": access_token,
                "token_type": "bearer",
                "expires_in": claims.exp - claims.iat,
                "scope": claims.scope,
            });
            let mut resp = json_response(StatusCode::OK, &body);
            no_store(&mut resp);
            resp
        }
        Err(e) => {
            tracing::error!("token endpoint: {e}");
            oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error")
        }
    }
}

/// The client, by HTTP Basic (`client_secret_basic`) or by a signed assertion.
async fn authenticate(
    s: &AppState,
    headers: &HeaderMap,
    form: &[(String, String)],
    token_url: &str,
) -> crate::error::Result<Result<Client, ClientError>> {
    if let Some(assertion) = param(form, "client_assertion") {
        if param(form, "client_assertion_type") != Some(ASSERTION_TYPE) {
            return Ok(Err(ClientError(format!("client_assertion_type must be {ASSERTION_TYPE}"))));
        }
        return client_auth::by_assertion(&s.engine.store, assertion, token_url).await;
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b64)| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some(pair) = basic else {
        return Ok(Err(ClientError("authenticate with HTTP Basic or a client assertion".into())));
    };
    let Some((id, secret)) = pair.split_once(':') else {
        return Ok(Err(ClientError("malformed HTTP Basic credentials".into())));
    };
    // RFC 6749 §2.3.1: both parts are form-urlencoded.
    let decode = |x: &str| {
        url::form_urlencoded::parse(format!("x={x}").as_bytes()).next().map(|(_, v)| v.into_owned())
    };
    let (Some(id), Some(secret)) = (decode(id), decode(secret)) else {
        return Ok(Err(ClientError("malformed HTTP Basic credentials".into())));
    };
    client_auth::by_secret(&s.engine.store, &id, &secret).await
}
