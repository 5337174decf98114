//! The embedded authorization server's token endpoint (`auth = "smart"`): `POST /auth/token`
//! with `authorization_code` and `refresh_token` (SMART App Launch; the grant logic is in
//! `auth::flow`) and `client_credentials` (SMART Backend Services: `private_key_jwt`, or a
//! client secret by HTTP Basic); and `GET /auth/jwks`. Other grant types answer
//! `unsupported_grant_type`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use crate::auth::client_auth::{self, ClientError};
use crate::auth::flow::{self, GrantError};
use crate::auth::{Context, Grant, token};
use crate::store::Client;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An OAuth error response (RFC 6749 §5.2).
pub(super) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp = json_response(status, &json!({"error": error, "error_description": description}));
    no_store(&mut resp);
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"hearth\""));
    }
    resp
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub(super) fn no_store(resp: &mut Response) {
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
        // Decoded as the client is looked up (RFC 6749 §2.3.1), so `a%2Db` counts as `a-b`.
        Some((id, _)) => {
            let decoded =
                url::form_urlencoded::parse(format!("x={id}").as_bytes()).next().map(|(_, v)| v.into_owned());
            format!("basic:{}", decoded.unwrap_or_default())
        }
        None => match param(form, "client_id") {
            Some(id) => format!("public:{id}"),
            None => "anonymous".into(),
        },
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

pub(super) fn param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
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
    if s.external.is_some() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let grant_type = param(&form, "grant_type").unwrap_or_default().to_string();
    if !matches!(grant_type.as_str(), "client_credentials" | "authorization_code" | "refresh_token") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code, refresh_token or client_credentials",
        );
    }
    if let Some(resp) = rate_limited(&s, &headers, &form) {
        return resp;
    }
    let base = super::request::base_url(&s, &headers);
    let issuer = token::issuer_for(&base);
    let public_ok = grant_type != "client_credentials";
    let client = match client_of(&s, &headers, &form, &format!("{issuer}/token"), public_ok).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &e.0),
        Err(e) => return server_error(e),
    };
    let signer = flow::Signer { keys, issuer: &issuer, base: &base };
    let result = match grant_type.as_str() {
        "authorization_code" => {
            let Some(code) = param(&form, "code") else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "code is required");
            };
            let (redirect, verifier) = (param(&form, "redirect_uri"), param(&form, "code_verifier"));
            flow::exchange_code(&s.engine.store, &signer, &client, code, redirect, verifier).await
        }
        "refresh_token" => {
            let Some(refresh) = param(&form, "refresh_token") else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "refresh_token is required");
            };
            flow::refresh(&s.engine.store, &signer, &client, refresh, param(&form, "scope")).await
        }
        _ => Ok(client_credentials(&signer, &client, param(&form, "scope"))),
    };
    match result {
        Ok(Ok(body)) => {
            let mut resp = json_response(StatusCode::OK, &body);
            no_store(&mut resp);
            resp
        }
        Ok(Err(e)) => oauth_error(StatusCode::BAD_REQUEST, e.error, &e.description),
        Err(e) => server_error(e),
    }
}

/// 429 when the claimed client has asked too often. The limit slows the guessing of a client's
/// secret; a public client has none (what it presents, a code or refresh token, is 256 bits of
/// randomness) and all users of one app share its id, so its requests are not counted.
fn rate_limited(s: &AppState, headers: &HeaderMap, form: &[(String, String)]) -> Option<Response> {
    let claimed = claimed_client(headers, form);
    if claimed.starts_with("public:") {
        return None;
    }
    let wait = s.token_limiter.check(&claimed)?;
    let mut resp = oauth_error(
        StatusCode::TOO_MANY_REQUESTS,
        "temporarily_unavailable",
        "too many token requests for this client; try again later",
    );
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Some(resp)
}

fn server_error(e: crate::error::Error) -> Response {
    tracing::error!("token endpoint: {e}");
    oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error")
}

/// SMART Backend Services: `system/` scopes for the client itself.
fn client_credentials(
    signer: &flow::Signer<'_>,
    client: &Client,
    scope: Option<&str>,
) -> Result<Value, GrantError> {
    let refuse = |d: &str| Err(GrantError { error: "invalid_scope", description: d.to_string() });
    let Some(scope) = scope.filter(|s| !s.trim().is_empty()) else { return refuse("scope is required") };
    let requested = match Grant::parse(scope) {
        Ok(g) => g,
        Err(e) => return refuse(&e.0),
    };
    if requested.rules.is_empty() || requested.rules.iter().any(|r| r.context != Context::System) {
        return refuse("client_credentials grants system/ scopes only");
    }
    let allowed = Grant::parse(&client.scopes).unwrap_or_default();
    if let Err(e) = allowed.covers(&requested) {
        return refuse(&e);
    }
    let request = token::Request {
        issuer: signer.issuer,
        audience: signer.base,
        client_id: &client.client_id,
        subject: &client.client_id,
        scope,
        patient: None,
        fhir_user: None,
        lifetime_seconds: token::ACCESS_TOKEN_SECONDS,
    };
    match token::mint(signer.keys, &request) {
        Ok((access_token, claims)) => Ok(json!({
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": claims.exp - claims.iat,
            "scope": claims.scope,
        })),
        Err(e) => {
            tracing::error!("token endpoint: {e}");
            Err(GrantError { error: "server_error", description: "internal error".into() })
        }
    }
}

/// The client making a request: authenticated by secret or assertion, or — where a public
/// client may ask (`public_ok`) — named by `client_id` alone and registered as public.
pub(super) async fn client_of(
    s: &AppState,
    headers: &HeaderMap,
    form: &[(String, String)],
    token_url: &str,
    public_ok: bool,
) -> crate::error::Result<Result<Client, ClientError>> {
    let credentials =
        headers.contains_key(header::AUTHORIZATION) || param(form, "client_assertion").is_some();
    match param(form, "client_id") {
        Some(id) if public_ok && !credentials => match s.engine.store.client(id).await? {
            Some(c) if c.kind == "public" => Ok(Ok(c)),
            _ => Ok(Err(ClientError("unknown public client, or this client must authenticate".into()))),
        },
        _ => authenticate(s, headers, form, token_url).await,
    }
}

/// The client, by HTTP Basic (`client_secret_basic`) or by a signed assertion.
pub(super) async fn authenticate(
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
