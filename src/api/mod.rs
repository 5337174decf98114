//! The HTTP front door: axum routes for the FHIR REST interactions under `/fhir`.
//! Handlers parse HTTP into engine calls and engine results into FHIR responses; all FHIR rules
//! live in the engine and below.

mod audit;
pub mod auth;
pub mod authn;
mod authorize;
mod bulk;
mod bundle;
mod capability;
pub mod format;
mod hl7;
pub mod oauth;
mod pages;
mod request;
mod respond;
mod rest;
mod search;
mod smart;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::engine::Engine;
use crate::error::Error;

pub use request::Ctx;

/// What the handlers share.
pub struct AppState {
    pub engine: Engine,
    /// Absolute base of links (`…/fhir`); derived from the Host header when not configured.
    pub base_url: Option<String>,
    pub max_body_bytes: usize,
    /// Whether bulk output downloads need the same access token as the kick-off (the manifest
    /// says so).
    pub requires_access_token: bool,
    /// Largest `$import` upload (after decompression).
    pub max_upload_bytes: u64,
    /// The token signing keys when authorization is on (`auth = "smart"`); `None` allows all.
    pub keys: Option<crate::auth::keys::Keys>,
    /// Tokens verified recently.
    pub tokens: authn::TokenCache,
    /// Token endpoint requests per client.
    pub token_limiter: oauth::TokenLimiter,
    /// `access.care_team_only`: coordinators' and providers' `user/` scopes reach their panel.
    pub care_team_only: bool,
    /// Where AuditEvents of reads and failures go (when authorization is on).
    pub audit: Option<crate::engine::audit::AuditQueue>,
    /// The bound MLLP listener (taken by `server::serve`) and its address.
    pub mllp: std::sync::Mutex<Option<(tokio::net::TcpListener, crate::hl7v2::MllpSettings)>>,
    pub mllp_addr: Option<std::net::SocketAddr>,
    /// The HL7 v2 writer's inbox (MLLP and `POST /hl7v2`).
    pub hl7: crate::hl7v2::Ingest,
    pub hl7_inbox: std::sync::Mutex<Option<crate::hl7v2::ingest::Inbox>>,
    /// The queue's other end, taken by `server::serve` for its writer task.
    pub audit_rx: std::sync::Mutex<Option<crate::engine::audit::AuditReceiver>>,
    /// An external issuer whose tokens are accepted instead of ours (`auth_issuer`).
    pub external: Option<Arc<crate::auth::external::External>>,
}

pub fn router(state: Arc<AppState>) -> Router {
    let fhir = Router::new()
        .route("/", get(search::search_system).post(rest::system_post))
        .route("/metadata", get(capability::metadata))
        .route("/_history", get(rest::history_system))
        .route("/$reindex", post(search::reindex))
        .route("/$export", get(bulk::export_system).post(bulk::export_system))
        .route("/$export-poll-status", get(bulk::export_status).delete(bulk::export_cancel))
        .route("/$bulk-output/{job}/{file}", get(bulk::output_file))
        .route("/$import", post(bulk::import))
        .route("/$import-poll-status", get(bulk::import_status).delete(bulk::import_cancel))
        .route("/.well-known/smart-configuration", get(smart::configuration))
        .route("/{rtype}/$export", get(bulk::export_type).post(bulk::export_type))
        .route("/{rtype}/$reindex", post(search::reindex_type))
        .route(
            "/{rtype}",
            get(search::search_get)
                .post(rest::create)
                .put(rest::conditional_update)
                .delete(rest::conditional_delete),
        )
        .route("/{rtype}/_search", post(search::search_post))
        .route("/{rtype}/_history", get(rest::history_type))
        .route("/{rtype}/{id}", get(rest::read).put(rest::update).patch(rest::patch).delete(rest::delete))
        .route("/{rtype}/{id}/_history", get(rest::history_instance))
        .route("/{rtype}/{id}/_history/{vid}", get(rest::vread))
        .route("/{ctype}/{cid}/{rtype}", get(search::search_compartment).post(search::compartment_post))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), audit::record))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authn::require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/auth/token", post(oauth::token))
        .route("/auth/jwks", get(oauth::jwks))
        .route("/auth/authorize", get(authorize::authorize_get).post(authorize::authorize_post))
        .route("/auth/introspect", post(smart::introspect))
        .route("/auth/revoke", post(smart::revoke))
        .route("/.well-known/smart-configuration", get(smart::configuration))
        .route(
            "/hl7v2",
            post(hl7::post).layer(axum::middleware::from_fn_with_state(state.clone(), authn::require_token)),
        )
        .route(
            "/fhir/",
            get(search::search_system)
                .post(rest::system_post)
                .layer(axum::middleware::from_fn_with_state(state.clone(), audit::record))
                .layer(axum::middleware::from_fn_with_state(state.clone(), authn::require_token)),
        )
        .nest("/fhir", fhir)
        .fallback(not_found)
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.engine.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!("readiness check failed: {e}");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

async fn method_not_allowed(ctx: Ctx) -> Response {
    respond::error(ctx.out, Error::MethodNotAllowed(format!("{} is not allowed on {}", ctx.method, ctx.path)))
}

async fn not_found(ctx: Ctx) -> Response {
    respond::error(ctx.out, Error::NotFound(format!("no FHIR endpoint at {}", ctx.path)))
}

impl crate::hl7v2::AsEngine for AppState {
    fn engine(&self) -> &crate::engine::Engine {
        &self.engine
    }
    fn ingest(&self) -> &crate::hl7v2::Ingest {
        &self.hl7
    }
}
