//! Authentication at the HTTP door (`auth = "smart"`): the bearer token of every FHIR request
//! is verified and turned into a [`Principal`] before any handler runs. What the principal may
//! do is `auth.rs`'s business.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use super::{AppState, respond};
use crate::auth::Grant;
use crate::error::Error;

/// Who is asking, from a verified access token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub client_id: String,
    pub subject: String,
    pub grant: Grant,
    /// Whose patients this user's `user/` scopes (and any launch patient) are confined to.
    pub panel_rule: Option<PanelRule>,
    /// Those patients, looked up afresh for each request.
    pub panel: Option<Vec<String>>,
    /// The user's role (`admin`, `coordinator`, …) when the subject is a known user.
    pub role: Option<String>,
}

/// How a user's panel of patients is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PanelRule {
    /// The care-team policy: the patients of this Practitioner (id; empty when the user has none).
    CareTeam(String),
    /// A patient (role `patient`): their own record only (id; empty when the user has none).
    Own(String),
}

impl Principal {
    /// The principal of a verified token: the subject's role, and how its panel is found when
    /// the policy confines the subject.
    pub async fn new(
        s: &AppState,
        client_id: String,
        subject: String,
        grant: Grant,
    ) -> crate::error::Result<Self> {
        let user = if subject == client_id { None } else { s.engine.store.user(&subject).await? };
        let panel_rule = user.as_ref().and_then(|u| panel_rule(s, &u.role, u.fhir_user.as_deref()));
        let role = user.map(|u| u.role);
        Ok(Principal { client_id, subject, grant, panel_rule, panel: None, role })
    }

    pub fn is_admin(&self) -> bool {
        self.role.as_deref() == Some("admin")
    }
}

/// Roles whose `user/` scopes the care-team policy confines.
const CONFINED_ROLES: &[&str] = &["coordinator", "provider"];

/// How the patients a user may reach are found, when they are limited at all: a patient
/// reaches their own record; coordinators and providers their care-team panel (when
/// `access.care_team_only`); other roles (`admin`, `staff`) what their scopes say.
pub fn panel_rule(s: &AppState, role: &str, fhir_user: Option<&str>) -> Option<PanelRule> {
    let id = |prefix: &str| fhir_user.and_then(|f| f.strip_prefix(prefix)).unwrap_or_default().to_string();
    if role == "patient" {
        return Some(PanelRule::Own(id("Patient/")));
    }
    (s.care_team_only && CONFINED_ROLES.contains(&role)).then(|| PanelRule::CareTeam(id("Practitioner/")))
}

/// The patients of a panel rule, now.
pub async fn panel_of(s: &AppState, rule: &PanelRule) -> crate::error::Result<Vec<String>> {
    Ok(match rule {
        PanelRule::CareTeam(p) if crate::resource::valid_id(p) => s.engine.care_team_panel(p).await?,
        PanelRule::Own(p) if crate::resource::valid_id(p) => vec![p.clone()],
        _ => Vec::new(),
    })
}

/// The principal with its panel for this request, when one applies: looked up per request so
/// that a new CareTeam counts at once.
async fn with_panel(s: &AppState, p: Arc<Principal>) -> crate::error::Result<Arc<Principal>> {
    let Some(rule) = &p.panel_rule else { return Ok(p) };
    let panel = panel_of(s, rule).await?;
    Ok(Arc::new(Principal { panel: Some(panel), ..(*p).clone() }))
}

/// `WWW-Authenticate` for a 401 (RFC 6750 §3).
pub fn challenge(why: &str) -> HeaderValue {
    let value = if why.is_empty() {
        "Bearer realm=\"hearth\"".to_string()
    } else {
        let clean: String = why.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect();
        format!("Bearer realm=\"hearth\", error=\"invalid_token\", error_description=\"{clean}\"")
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("Bearer realm=\"hearth\""))
}

/// Paths anyone may read: what a client needs to find out how to authorize.
/// (Inside the `/fhir` router the prefix is already gone.)
fn is_open(path: &str) -> bool {
    matches!(path, "/metadata" | "/.well-known/smart-configuration")
}

/// Checks the bearer token of every FHIR request (when authorization is on).
pub async fn require_token(State(s): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let Some(keys) = &s.keys else { return next.run(req).await };
    if is_open(req.uri().path()) {
        return next.run(req).await;
    }
    let base = super::request::base_url(&s, req.headers());
    let issuer = crate::auth::token::issuer_for(&base);
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
    let out = super::format::Output::default();
    let Some(token) = token else {
        return respond::error(out, Error::Unauthorized(String::new()));
    };
    let principal = match s.tokens.get(&base, &token) {
        Some(p) => p,
        None => match verify(&s, keys, &token, &base, &issuer).await {
            Ok((p, exp, jti)) => {
                let p = Arc::new(p);
                s.tokens.put(&base, token, p.clone(), exp, jti);
                p
            }
            Err(e) => return respond::error(out, e),
        },
    };
    let principal = match with_panel(&s, principal).await {
        Ok(p) => p,
        Err(e) => return respond::error(out, e),
    };
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// A token not in the cache: our own (signature, issuer, audience, expiry, not revoked) or,
/// in external-issuer mode, the external issuer's. Returns the principal, `exp` and `jti`.
async fn verify(
    s: &AppState,
    keys: &crate::auth::keys::Keys,
    token: &str,
    base: &str,
    issuer: &str,
) -> Result<(Principal, i64, Option<String>), Error> {
    if let Some(ext) = &s.external {
        let v = ext.verify_fresh(token, base).await.map_err(|e| Error::Unauthorized(e.to_string()))?;
        return Ok((Principal::new(s, v.client_id, v.subject, v.grant).await?, v.exp, None));
    }
    let claims = crate::auth::token::verify(keys, token, issuer, base)
        .map_err(|e| Error::Unauthorized(e.to_string()))?;
    let grant = claims.grant().map_err(|e| Error::Unauthorized(e.to_string()))?;
    // Only on a miss: a token revoked on another node is also caught here before its row
    // reaches this node's poll.
    if s.engine.store.is_revoked(&claims.jti).await? {
        return Err(Error::Unauthorized("the access token has been revoked".into()));
    }
    let principal = Principal::new(s, claims.client_id, claims.sub, grant).await?;
    Ok((principal, claims.exp, Some(claims.jti)))
}

/// How often each node looks for access tokens revoked on any node.
const REVOCATION_POLL: std::time::Duration = std::time::Duration::from_secs(2);
/// Rows are re-read this far back, so that one committed late (PostgreSQL transactions need
/// not commit in timestamp order) or stamped by a node with a slightly different clock is not
/// missed.
const REVOCATION_OVERLAP_MS: i64 = 10_000;

/// Drops revoked tokens from this node's cache until `stop` turns true.
pub async fn watch_revocations(s: Arc<AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut since = crate::resource::instant::now_ms();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(REVOCATION_POLL) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let now = crate::resource::instant::now_ms();
        match s.engine.store.revoked_since(since - REVOCATION_OVERLAP_MS).await {
            Ok(jtis) => {
                for jti in jtis {
                    s.tokens.revoke(&jti);
                }
                since = now;
            }
            Err(e) => tracing::warn!("polling revoked tokens: {e}"),
        }
    }
}

/// Tokens verified recently, so that a client's every request does not pay for an ECDSA
/// verification (measured: reads with a token fell to 13 % of their rate without one). Keyed by
/// the base URL the token was checked against as well, since the audience depends on it; an
/// entry is used only until the token's `exp`.
#[derive(Default)]
pub struct TokenCache {
    inner: std::sync::Mutex<std::collections::HashMap<CacheKey, Entry>>,
}

/// (base URL, token).
type CacheKey = (String, String);
/// (principal, exp, jti).
type Entry = (Arc<Principal>, i64, Option<String>);

/// Entries kept before the cache starts over.
const TOKEN_CACHE_SIZE: usize = 10_000;

impl TokenCache {
    fn get(&self, base: &str, token: &str) -> Option<Arc<Principal>> {
        let now = crate::resource::instant::now_ms() / 1000;
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(base.to_string(), token.to_string()))
            .filter(|(_, exp, _)| *exp > now)
            .map(|(p, _, _)| p.clone())
    }

    fn put(&self, base: &str, token: String, principal: Arc<Principal>, exp: i64, jti: Option<String>) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= TOKEN_CACHE_SIZE {
            map.clear();
        }
        map.insert((base.to_string(), token), (principal, exp, jti));
    }

    /// Forgets a revoked token (a scan: revocations are rare, lookups are not).
    pub fn revoke(&self, jti: &str) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (_, _, j)| j.as_deref() != Some(jti));
    }
}
