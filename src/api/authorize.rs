//! `GET|POST /auth/authorize`: the SMART App Launch authorization endpoint (RFC 6749 §4.1 with
//! PKCE, RFC 7636). The request is checked, then kept in the database as a pending request
//! (several nodes may serve the pages of one sign-in) whose random id the forms carry through
//! login → patient picker (when a patient is needed and no launch gave one) → consent. Approval
//! redirects to the client with a single-use code.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{AppState, pages};
use crate::auth::{Context, Grant, flow, secrets};
use crate::error::Result;
use crate::resource::instant::now_ms;
use crate::store::AuthCode;

/// An authorization request between its pages.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Pending {
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    code_challenge: Option<String>,
    nonce: Option<String>,
    /// From an EHR launch.
    launch_patient: Option<String>,
    launch_encounter: Option<String>,
    /// Set by the login page.
    username: Option<String>,
    fhir_user: Option<String>,
    /// Set by the patient picker.
    picked_patient: Option<String>,
    /// The hash of the secret in the cookie of the browser that started the request: every
    /// later page must come from that browser, so that a sign-in link cannot be handed to a
    /// victim whose login would then complete the attacker's request.
    browser: String,
}

impl Pending {
    fn patient(&self) -> Option<&str> {
        self.launch_patient.as_deref().or(self.picked_patient.as_deref())
    }

    /// A patient is needed for `launch/patient` and for any `patient/` scope.
    fn needs_patient(&self) -> bool {
        let grant = Grant::parse(&self.scope).unwrap_or_default();
        self.patient().is_none()
            && (grant.has_other("launch/patient")
                || grant.rules.iter().any(|r| r.context == Context::Patient))
    }
}

type Form = Vec<(String, String)>;

fn param<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

pub async fn authorize_get(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let form: Form = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect();
    handle(&s, &headers, &form).await
}

/// POST carries either a new request (SMART lets clients POST the authorization request) or a
/// form of one of the pages.
pub async fn authorize_post(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let form: Form = url::form_urlencoded::parse(&body).into_owned().collect();
    handle(&s, &headers, &form).await
}

async fn handle(s: &AppState, headers: &HeaderMap, form: &Form) -> Response {
    if s.keys.is_none() || s.external.is_some() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let result = if param(form, "pending").is_some() {
        step(s, headers, form).await
    } else {
        start(s, headers, form).await
    };
    result.unwrap_or_else(|e| {
        tracing::error!("authorization endpoint: {e}");
        pages::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error; please try again")
    })
}

/// Back to the client with `params` (and `state`), RFC 6749 §4.1.2.
fn redirect(redirect_uri: &str, params: &[(&str, &str)], state: Option<&str>) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return pages::error(StatusCode::BAD_REQUEST, "the redirect URI is not a URL");
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(st) = state {
            q.append_pair("state", st);
        }
    }
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(url.as_str()) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn redirect_error(p: &Pending, error: &str, description: &str) -> Response {
    redirect(&p.redirect_uri, &[("error", error), ("error_description", description)], p.state.as_deref())
}

/// Checks a new request. Until the client and its redirect URI are known good, errors are
/// shown to the user; after, they go back to the client (RFC 6749 §4.1.2.1).
async fn start(s: &AppState, headers: &HeaderMap, form: &Form) -> Result<Response> {
    let store = &s.engine.store;
    let Some(client_id) = param(form, "client_id") else {
        return Ok(pages::error(StatusCode::BAD_REQUEST, "client_id is missing"));
    };
    let Some(client) = store.client(client_id).await? else {
        return Ok(pages::error(StatusCode::BAD_REQUEST, "unknown client_id"));
    };
    // Without redirect_uri, a client with exactly one registered URI means that one (§3.1.2.3).
    let redirect_uri = match (param(form, "redirect_uri"), client.redirect_uris.as_slice()) {
        (Some(r), registered) if registered.iter().any(|x| x == r) => r.to_string(),
        (None, [only]) => only.clone(),
        _ => {
            return Ok(pages::error(
                StatusCode::BAD_REQUEST,
                "redirect_uri is not registered for this client",
            ));
        }
    };
    let mut p = Pending {
        client_id: client.client_id.clone(),
        redirect_uri,
        scope: param(form, "scope")
            .unwrap_or_default()
            .split_ascii_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        state: param(form, "state").map(str::to_string),
        code_challenge: param(form, "code_challenge").map(str::to_string),
        nonce: param(form, "nonce").map(str::to_string),
        ..Pending::default()
    };
    if param(form, "response_type") != Some("code") {
        return Ok(redirect_error(&p, "unsupported_response_type", "response_type must be code"));
    }
    let base = super::request::base_url(s, headers);
    if param(form, "aud").map(|a| a.trim_end_matches('/')) != Some(base.as_str()) {
        return Ok(redirect_error(
            &p,
            "invalid_request",
            &format!("aud must be this server's FHIR base URL, {base}"),
        ));
    }
    if let Err(why) = check_scope(&p.scope, &client.scopes) {
        return Ok(redirect_error(&p, "invalid_scope", &why));
    }
    if let Err(why) = check_pkce(&p, form, client.kind == "public") {
        return Ok(redirect_error(&p, "invalid_request", why));
    }
    if let Some(launch) = param(form, "launch") {
        let Some((patient, encounter)) = store.launch(launch, now_ms()).await? else {
            return Ok(redirect_error(&p, "invalid_request", "unknown or expired launch"));
        };
        (p.launch_patient, p.launch_encounter) = (patient, encounter);
    }
    let id = secrets::random_secret();
    let browser = secrets::random_secret();
    p.browser = secrets::hash(&browser);
    save(s, &id, &p).await?;
    let mut resp = pages::login(StatusCode::OK, &id, &p.client_id, None);
    let secure = if base.starts_with("https:") { "; Secure" } else { "" };
    let cookie = format!(
        "{}={browser}; Path=/auth; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        cookie_name(&id),
        flow::PENDING_SECONDS
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// The sign-in cookie's name, one per request so that two sign-ins in one browser coexist.
fn cookie_name(pending: &str) -> String {
    format!(
        "hearth_signin_{}",
        pending.chars().filter(char::is_ascii_alphanumeric).take(16).collect::<String>()
    )
}

/// Whether the request comes from the browser that started the sign-in `id`.
fn same_browser(headers: &HeaderMap, id: &str, p: &Pending) -> bool {
    let name = cookie_name(id);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .any(|(k, v)| k == name && !p.browser.is_empty() && secrets::hash(v) == p.browser)
}

fn check_scope(scope: &str, registered: &str) -> std::result::Result<(), String> {
    if scope.is_empty() {
        return Err("scope is required".into());
    }
    let requested = Grant::parse(scope).map_err(|e| e.0)?;
    Grant::parse(registered).unwrap_or_default().covers(&requested)
}

/// PKCE: S256 only (`plain` would let a stolen code be used); required of public clients.
fn check_pkce(p: &Pending, form: &Form, public: bool) -> std::result::Result<(), &'static str> {
    match (&p.code_challenge, param(form, "code_challenge_method")) {
        (Some(c), Some("S256")) if (43..=128).contains(&c.len()) => Ok(()),
        (Some(_), Some("S256")) => Err("code_challenge must be 43 to 128 characters"),
        (Some(_), _) => Err("code_challenge_method must be S256"),
        (None, Some(_)) => Err("code_challenge_method without code_challenge"),
        (None, None) if public => Err("public clients must use PKCE (code_challenge with S256)"),
        (None, None) => Ok(()),
    }
}

async fn save(s: &AppState, id: &str, p: &Pending) -> Result<()> {
    let text =
        serde_json::to_string(p).map_err(|e| crate::Error::Internal(format!("pending request: {e}")))?;
    let now = now_ms();
    s.engine.store.put_pending(id, &text, now + flow::PENDING_SECONDS * 1000, now).await
}

/// A form posted from one of the pages.
async fn step(s: &AppState, headers: &HeaderMap, form: &Form) -> Result<Response> {
    let id = param(form, "pending").unwrap_or_default();
    let stored = s.engine.store.pending(id, now_ms()).await?;
    let Some(p) = stored.and_then(|t| serde_json::from_str::<Pending>(&t).ok()) else {
        return Ok(pages::error(
            StatusCode::BAD_REQUEST,
            "this sign-in is unknown or has expired; start again from the application",
        ));
    };
    if !same_browser(headers, id, &p) {
        return Ok(pages::error(
            StatusCode::BAD_REQUEST,
            "this sign-in was started in another browser; start again from the application",
        ));
    }
    match (param(form, "step"), &p.username) {
        (Some("login"), _) => login(s, id, p, form).await,
        // Only while a patient is still needed: a launch's patient is not replaced.
        (Some("patient"), Some(_)) if p.needs_patient() => pick(s, id, p, form).await,
        (Some("consent"), Some(_)) if !p.needs_patient() => consent(s, id, p, form).await,
        _ => next_page(s, id, &p, "").await,
    }
}

/// The page the request is at: login, picker or consent.
async fn next_page(s: &AppState, id: &str, p: &Pending, name: &str) -> Result<Response> {
    if p.username.is_none() {
        return Ok(pages::login(StatusCode::OK, id, &p.client_id, None));
    }
    if p.needs_patient() {
        let panel = user_panel(s, p).await?;
        let patients = find_patients(s, name, panel.as_deref()).await?;
        return Ok(pages::picker(id, name, &patients));
    }
    Ok(pages::consent(id, &p.client_id, &p.scope, p.patient()))
}

async fn login(s: &AppState, id: &str, mut p: Pending, form: &Form) -> Result<Response> {
    let username = param(form, "username").unwrap_or_default();
    let password = param(form, "password").unwrap_or_default();
    let user = flow::login(&s.engine.store, username, password, param(form, "totp")).await?;
    let Some(user) = user else {
        return Ok(pages::login(StatusCode::UNAUTHORIZED, id, &p.client_id, Some(flow::LOGIN_FAILED)));
    };
    p.username = Some(user.username);
    p.fhir_user = user.fhir_user;
    save(s, id, &p).await?;
    next_page(s, id, &p, "").await
}

async fn pick(s: &AppState, id: &str, mut p: Pending, form: &Form) -> Result<Response> {
    let Some(patient) = param(form, "patient") else {
        return next_page(s, id, &p, param(form, "name").unwrap_or_default()).await;
    };
    let outside = user_panel(s, &p).await?.is_some_and(|panel| !panel.iter().any(|x| x == patient));
    if outside || !crate::resource::valid_id(patient) || s.engine.read("Patient", patient).await.is_err() {
        return next_page(s, id, &p, "").await;
    }
    p.picked_patient = Some(patient.to_string());
    save(s, id, &p).await?;
    next_page(s, id, &p, "").await
}

async fn consent(s: &AppState, id: &str, p: Pending, form: &Form) -> Result<Response> {
    s.engine.store.delete_pending(id).await?;
    if param(form, "decision") != Some("approve") {
        return Ok(redirect_error(&p, "access_denied", "the user denied the request"));
    }
    let code = flow::issue_code(
        &s.engine.store,
        AuthCode {
            client_id: p.client_id.clone(),
            redirect_uri: p.redirect_uri.clone(),
            scope: p.scope.clone(),
            username: p.username.clone().unwrap_or_default(),
            fhir_user: p.fhir_user.clone(),
            patient: p.patient().map(str::to_string),
            encounter: p.launch_encounter.clone(),
            code_challenge: p.code_challenge.clone(),
            nonce: p.nonce.clone(),
            expires: 0,
        },
    )
    .await?;
    Ok(redirect(&p.redirect_uri, &[("code", &code)], p.state.as_deref()))
}

/// The patients the signed-in user may choose from, when they are limited (a patient: their own
/// record; a coordinator or provider under the care-team policy: their panel).
async fn user_panel(s: &AppState, p: &Pending) -> Result<Option<Vec<String>>> {
    let Some(username) = &p.username else { return Ok(Some(Vec::new())) };
    let Some(user) = s.engine.store.user(username).await? else { return Ok(Some(Vec::new())) };
    match super::authn::panel_rule(s, &user.role, user.fhir_user.as_deref()) {
        Some(rule) => Ok(Some(super::authn::panel_of(s, &rule).await?)),
        None => Ok(None),
    }
}

/// Up to 50 patients whose name matches (and, with a panel, in it), through the engine's search.
async fn find_patients(s: &AppState, name: &str, panel: Option<&[String]>) -> Result<Vec<pages::PatientRow>> {
    let query = {
        // (The serializer is not Send: finished before the await.)
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if !name.trim().is_empty() {
            q.append_pair("name", name.trim());
        }
        match panel {
            // A small panel is searched by `_id` (one OR list); a "-" matches no id at all.
            Some(panel) if panel.len() <= 50 => {
                let ids = if panel.is_empty() { "-".to_string() } else { panel.join(",") };
                q.append_pair("_id", &ids);
                q.append_pair("_count", "50");
            }
            // A large one is filtered below from a wider search.
            Some(_) => {
                q.append_pair("_count", "1000");
            }
            None => {
                q.append_pair("_count", "50");
            }
        }
        q.finish()
    };
    let mut result = s.engine.search("Patient", &query, crate::search::Handling::Lenient).await?;
    if let Some(panel) = panel {
        result.hits.retain(|v| panel.contains(&v.id));
        result.hits.truncate(50);
    }
    Ok(result
        .hits
        .iter()
        .filter_map(|v| serde_json::from_slice::<serde_json::Value>(&v.body).ok())
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_string(),
                display_name(&r),
                r["birthDate"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

fn display_name(patient: &serde_json::Value) -> String {
    let name = &patient["name"][0];
    if let Some(text) = name["text"].as_str() {
        return text.to_string();
    }
    let given: Vec<&str> =
        name["given"].as_array().into_iter().flatten().filter_map(|g| g.as_str()).collect();
    let family = name["family"].as_str().unwrap_or_default();
    format!("{} {family}", given.join(" ")).trim().to_string()
}
