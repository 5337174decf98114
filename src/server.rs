//! Running the HTTP server: state, listener, graceful shutdown.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::engine::{Engine, Limits};
use crate::error::Result;

/// Opens the database (migrating it) and prepares everything the handlers share.
pub async fn state(config: &Config) -> Result<Arc<AppState>> {
    let limits = Limits { default_count: config.default_count, max_count: config.max_count };
    let mut engine = Engine::open(&config.database, limits).await?;
    engine.bulk.max_file_bytes = config.bulk_max_file_bytes.max(1);
    engine.bulk.run_jobs = config.bulk_jobs;
    // Compiling schema validators takes a moment: do it in the background, not in the first
    // client's request.
    tokio::task::spawn_blocking(crate::resource::schema::warm_up);
    let keys = match config.auth {
        crate::config::AuthMode::None => {
            tracing::warn!("authorization is off (auth = none): every request is allowed");
            None
        }
        crate::config::AuthMode::Smart => Some(crate::auth::keys::Keys::load_or_create(&engine.store).await?),
    };
    if keys.is_some() && !config.audit {
        tracing::warn!("the audit trail is off (audit = false): accesses to patient data are not recorded");
    }
    let audit = (keys.is_some() && config.audit).then(crate::engine::audit::AuditQueue::new);
    let (audit, audit_rx) = match audit {
        Some((q, rx)) => (Some(q), Some(rx)),
        None => (None, None),
    };
    let external = match (&config.auth_issuer, &config.auth_jwks) {
        (Some(_), Some(_)) if config.auth_audience.is_none() && config.base_url.is_none() => {
            // Else the audience would follow each request's Host header, and a token minted for
            // another server could be replayed here under that server's name.
            return Err(crate::Error::Internal(
                "auth_issuer needs auth_audience or base_url: the audience external tokens must name".into(),
            ));
        }
        (Some(issuer), Some(jwks)) if config.auth == crate::config::AuthMode::Smart => {
            let ext =
                crate::auth::external::External::load(issuer, jwks, config.auth_audience.as_deref()).await?;
            tracing::info!("accepting access tokens of the external issuer {issuer}");
            Some(Arc::new(ext))
        }
        (Some(_), None) => {
            return Err(crate::Error::Internal("auth_issuer needs auth_jwks (a JWKS file or URL)".into()));
        }
        _ => None,
    };
    let (mllp, mllp_addr) = match &config.mllp {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| crate::Error::Internal(format!("cannot listen for MLLP on {addr}: {e}")))?;
            let local = l.local_addr().ok();
            let tls = match (&config.mllp_tls_cert, &config.mllp_tls_key) {
                (Some(cert), Some(key)) => {
                    Some(crate::hl7v2::listener::tls_acceptor(cert.as_ref(), key.as_ref())?)
                }
                (None, None) => None,
                _ => {
                    return Err(crate::Error::Internal(
                        "MLLP over TLS needs both mllp_tls_cert and mllp_tls_key".into(),
                    ));
                }
            };
            let settings = crate::hl7v2::MllpSettings {
                max_frame_bytes: config.mllp_max_frame_bytes.max(1),
                max_connections: config.mllp_max_connections.max(1),
                tls,
                ..Default::default()
            };
            (Some((l, settings)), local)
        }
        None => (None, None),
    };
    let (hl7, hl7_inbox) =
        crate::hl7v2::Ingest::new(config.hl7_authorities.clone(), config.mllp_max_frame_bytes.max(1));
    Ok(Arc::new(AppState {
        hl7,
        hl7_inbox: std::sync::Mutex::new(Some(hl7_inbox)),
        mllp: std::sync::Mutex::new(mllp),
        mllp_addr,
        engine,
        base_url: config.base_url.clone(),
        max_body_bytes: config.max_body_bytes,
        requires_access_token: config.auth != crate::config::AuthMode::None,
        max_upload_bytes: config.bulk_max_upload_bytes,
        keys,
        tokens: Default::default(),
        token_limiter: Default::default(),
        care_team_only: config.access.care_team_only,
        audit,
        audit_rx: std::sync::Mutex::new(audit_rx),
        external,
    }))
}

/// Starts the HL7 writer task (once per state), which commits until `stop` turns true.
pub fn start_hl7_writer(
    state: &Arc<AppState>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let inbox = state.hl7_inbox.lock().unwrap_or_else(|e| e.into_inner()).take()?;
    let holder: Arc<dyn crate::hl7v2::AsEngine> = state.clone();
    Some(tokio::spawn(crate::hl7v2::ingest::run(holder, inbox, stop)))
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish and closes the
/// database, so nothing is left half-written.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = api::router(state.clone());
    // The bulk job worker stops with the server; a job it was running goes back to the queue.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop = Arc::new(stop);
    let stop_on_signal = stop.clone();
    let audit_rx = state.audit_rx.lock().unwrap_or_else(|e| e.into_inner()).take();
    // The audit writer stops after the last request: what they queued is written first.
    let (stop_audit, audit_stopped) = tokio::sync::watch::channel(false);
    let hl7_stopped = audit_stopped.clone();
    let audit_writer = audit_rx.map(|rx| {
        let state = state.clone();
        tokio::spawn(async move { state.engine.run_audit_writer(rx, audit_stopped).await })
    });
    // Every node drops access tokens revoked on any node from its cache.
    if state.keys.is_some() && state.external.is_none() {
        tokio::spawn(api::authn::watch_revocations(state.clone(), stopped.clone()));
    }
    // The HL7 writer, like the audit writer, stops after the last request and message.
    let hl7_writer = start_hl7_writer(&state, hl7_stopped);
    let mllp = state.mllp.lock().unwrap_or_else(|e| e.into_inner()).take();
    let mllp_task = mllp.map(|(listener, settings)| {
        let holder: Arc<dyn crate::hl7v2::AsEngine> = state.clone();
        tokio::spawn(crate::hl7v2::listener::serve(holder, listener, settings, stopped.clone()))
    });
    let worker = state.engine.bulk.run_jobs.then(|| {
        let state = state.clone();
        tokio::spawn(async move { state.engine.run_jobs(stopped).await })
    });
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_on_signal.send(true);
        })
        .await
        .map_err(|e| crate::Error::Internal(format!("server error: {e}")));
    let _ = stop.send(true);
    if let Some(worker) = worker
        && let Err(e) = worker.await
    {
        tracing::warn!("bulk job worker ended abnormally: {e}");
    }
    if let Some(t) = mllp_task {
        let _ = t.await;
    }
    let _ = stop_audit.send(true);
    if let Some(writer) = hl7_writer
        && let Err(e) = writer.await
    {
        tracing::error!("the HL7 writer ended abnormally: {e}");
    }
    if let Some(writer) = audit_writer
        && let Err(e) = writer.await
    {
        tracing::error!("the audit writer ended abnormally: {e}");
    }
    served?;
    state.engine.store.close().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
