//! What every handler needs to know about the request besides its path and body.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::Response;

use super::AppState;
use super::auth::{self, Principal};
use super::format::{self, Output};
use super::respond;
use crate::auth::{Interaction, Reach};
use crate::engine::Engine;
use crate::error::{Error, IssueCode, Result};
use crate::search::Handling;

/// `Prefer: return=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

pub struct Ctx {
    pub method: Method,
    pub path: String,
    pub raw_query: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    /// The negotiated output; errors are written as JSON when negotiation itself failed.
    pub out: Output,
    negotiation: Option<Error>,
    pub base: String,
    pub prefer_return: Return,
    pub handling: Handling,
    /// The `Prefer` tokens, lower-cased, without spaces (`respond-async`, `handling=lenient`).
    prefer: Vec<String>,
    /// The verified caller, when authorization is on.
    pub principal: Option<Arc<Principal>>,
}

impl FromRequestParts<Arc<AppState>> for Ctx {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Infallible> {
        let raw_query = parts.uri.query().unwrap_or_default().to_string();
        let query: Vec<(String, String)> =
            url::form_urlencoded::parse(raw_query.as_bytes()).into_owned().collect();
        let (out, negotiation) = match format::negotiate(&parts.headers, &query) {
            Ok(out) => (out, None),
            Err(e) => (Output::default(), Some(e)),
        };
        let base = base_url(state, &parts.headers);
        let prefer = parts.headers.get("prefer").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let prefs: Vec<String> =
            prefer.split([',', ';']).map(|p| p.trim().replace(' ', "").to_ascii_lowercase()).collect();
        let prefer_return = if prefs.iter().any(|p| p == "return=minimal") {
            Return::Minimal
        } else if prefs.iter().any(|p| p == "return=operationoutcome") {
            Return::OperationOutcome
        } else {
            Return::Representation
        };
        let handling =
            if prefs.iter().any(|p| p == "handling=strict") { Handling::Strict } else { Handling::Lenient };
        Ok(Ctx {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            raw_query,
            query,
            headers: parts.headers.clone(),
            out,
            negotiation,
            base,
            prefer_return,
            handling,
            principal: parts.extensions.get::<Arc<Principal>>().cloned(),
            prefer: prefs,
        })
    }
}

impl Ctx {
    /// Runs a handler body, turning its error (or a failed negotiation) into an OperationOutcome.
    /// The future is not polled at all when the requested format cannot be produced.
    pub async fn run(&self, f: impl Future<Output = Result<Response>>) -> Response {
        if let Some(e) = &self.negotiation {
            let e = match e {
                Error::NotAcceptable(m) => Error::NotAcceptable(m.clone()),
                other => Error::Internal(other.to_string()),
            };
            return respond::error(self.out, e);
        }
        match f.await {
            Ok(resp) => resp,
            Err(e) => respond::error(self.out, e),
        }
    }

    /// See [`auth::allow`].
    pub fn allow(&self, rtype: &str, interaction: Interaction) -> Result<()> {
        auth::allow(self.principal.as_deref(), rtype, interaction)
    }

    pub fn allow_types(&self, types: Option<&[String]>, interaction: Interaction) -> Result<()> {
        auth::allow_types(self.principal.as_deref(), types, interaction)
    }

    pub fn allow_query(&self, query: &str) -> Result<()> {
        auth::allow_query(self.principal.as_deref(), query)
    }

    pub fn allow_system(&self, interactions: &[Interaction]) -> Result<()> {
        auth::allow_system(self.principal.as_deref(), interactions)
    }

    pub fn unconfined(&self, rtype: &str, interaction: Interaction, what: &str) -> Result<()> {
        auth::unconfined(self.principal.as_deref(), rtype, interaction, what)
    }

    pub fn unconfined_types(
        &self,
        types: Option<&[String]>,
        interaction: Interaction,
        what: &str,
    ) -> Result<()> {
        auth::unconfined_types(self.principal.as_deref(), types, interaction, what)
    }

    /// The caller's confinements for the engine's searches.
    pub fn see(&self) -> Option<Arc<crate::engine::See>> {
        auth::see(self.principal.as_ref())
    }

    /// That the stored `rtype/id` lies within the caller's reach for `interaction`; outside it
    /// reads as not found, the same answer as a resource that does not exist.
    pub async fn confirm(
        &self,
        engine: &Engine,
        rtype: &str,
        id: &str,
        interaction: Interaction,
    ) -> Result<()> {
        match auth::reach(self.principal.as_deref(), rtype, interaction) {
            Reach::All => Ok(()),
            Reach::Nothing => Err(Error::NotFound(format!("{rtype}/{id} is not known"))),
            Reach::Only(confines) => {
                if engine.visible_ids(rtype, &[id.to_string()], &confines).await?.is_empty() {
                    Err(Error::NotFound(format!("{rtype}/{id} is not known")))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// That a resource about to be written lies within the caller's reach for `interaction`.
    pub fn confirm_body(
        &self,
        engine: &Engine,
        rtype: &str,
        id: Option<&str>,
        body: &serde_json::Value,
        interaction: Interaction,
    ) -> Result<()> {
        match auth::reach(self.principal.as_deref(), rtype, interaction) {
            Reach::All => Ok(()),
            Reach::Only(confines) if engine.body_within(rtype, id, body, &confines)? => Ok(()),
            _ => Err(Error::Forbidden(format!(
                "the {rtype} lies outside the patient, care team or query the access token is confined to"
            ))),
        }
    }

    /// Whether `interaction` on `rtype` reaches the whole type.
    pub fn reaches_all(&self, rtype: &str, interaction: Interaction) -> bool {
        auth::reach(self.principal.as_deref(), rtype, interaction).is_all()
    }

    /// Whether `Prefer` holds `token` (lower case, no spaces).
    pub fn prefers(&self, token: &str) -> bool {
        self.prefer.iter().any(|p| p == token)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `If-Match: W/"3"` → 3. A malformed value is a client error, not "no precondition".
    pub fn if_match(&self) -> Result<Option<i64>> {
        self.header("if-match").map(parse_etag).transpose()
    }

    /// The query string without the response-format parameters, as a search condition.
    pub fn criteria_query(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.query.iter().filter(|(k, _)| k != "_format" && k != "_pretty"))
            .finish()
    }
}

pub use crate::resource::parse_etag;

/// The absolute FHIR base (`…/fhir`) links and token audiences use: configured, or from the
/// Host header.
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    match &state.base_url {
        Some(b) => b.trim_end_matches('/').to_string(),
        None => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            format!("http://{host}/fhir")
        }
    }
}

/// Reads the body up to the configured limit (413 beyond it).
pub async fn read_body(body: Body, limit: usize, headers: &HeaderMap) -> Result<Bytes> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Error::PayloadTooLarge(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            Error::PayloadTooLarge(limit)
        } else {
            Error::invalid(IssueCode::Structure, format!("cannot read the request body: {e}"))
        }
    })
}
