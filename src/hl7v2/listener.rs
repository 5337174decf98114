//! The MLLP listener: many connections, several messages each, one at a time per connection
//! (an ACK is sent before the next message is read, which is the back-pressure MLLP senders
//! expect). Idle connections are closed after a while; a broken frame closes only its own
//! connection.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Framed;

use super::mllp::{FrameError, Mllp};
use crate::engine::Engine;

/// MLLP settings.
#[derive(Clone)]
pub struct MllpSettings {
    pub max_frame_bytes: usize,
    /// A connection with no complete message for this long is closed.
    pub idle: Duration,
    /// MLLP over TLS when set (`--mllp-tls-cert`, `--mllp-tls-key`).
    pub tls: Option<TlsAcceptor>,
    /// Connections served at once; further senders wait to be accepted.
    pub max_connections: usize,
}

impl Default for MllpSettings {
    fn default() -> Self {
        MllpSettings {
            max_frame_bytes: 1024 * 1024,
            idle: Duration::from_secs(300),
            tls: None,
            max_connections: 256,
        }
    }
}

/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Longest a stopping listener waits for its connections to finish the message each is on.
const DRAIN: Duration = Duration::from_secs(10);

/// The TLS acceptor of a PEM certificate chain and private key.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> crate::error::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        crate::error::Error::Internal(format!("MLLP TLS {what} {}: {e}", path.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("certificate", cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", cert, &e))?;
    if certs.is_empty() {
        return Err(bad("certificate", cert, &"no certificate in the file"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, &e))?;
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, private))
            .map_err(|e| bad("certificate and key", cert, &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until `stop` turns true; connections being served finish their message,
/// and this returns once they have (or [`DRAIN`] has passed): then no connection holds the
/// engine, and the database can be closed and opened again by another process.
pub async fn serve(
    engine: Arc<dyn AsEngine>,
    listener: TcpListener,
    settings: MllpSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_connections.max(1)));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s,
            _ = stop.changed() => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        match accepted {
            Ok((socket, peer)) => {
                let engine = engine.clone();
                let settings = settings.clone();
                let stop = stop.clone();
                connections.spawn(async move {
                    let served = match &settings.tls {
                        None => connection(engine, socket, &settings, stop).await,
                        Some(tls) => match tokio::time::timeout(HANDSHAKE, tls.accept(socket)).await {
                            Ok(Ok(stream)) => connection(engine, stream, &settings, stop).await,
                            Ok(Err(e)) => Err(FrameError::Io(e)),
                            Err(_) => Err(FrameError::Io(std::io::ErrorKind::TimedOut.into())),
                        },
                    };
                    if let Err(e) = served {
                        tracing::info!(%peer, "MLLP connection closed: {e}");
                    }
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!("MLLP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, drained).await.is_err() {
        tracing::warn!("MLLP connections still busy {DRAIN:?} after stopping: closed");
        connections.shutdown().await;
    }
}

/// Whatever holds the engine (the server's state), so the listener needs no HTTP types.
pub trait AsEngine: Send + Sync + 'static {
    fn engine(&self) -> &Engine;
    fn ingest(&self) -> &super::Ingest;
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    holder: Arc<dyn AsEngine>,
    socket: S,
    settings: &MllpSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), FrameError> {
    let mut framed = Framed::new(socket, Mllp::new(settings.max_frame_bytes));
    let sender = holder.ingest().connection();
    loop {
        let next = tokio::select! {
            n = tokio::time::timeout(settings.idle, framed.next()) => n,
            _ = stop.changed() => return Ok(()),
        };
        let frame = match next {
            Err(_) => return Ok(()),   // idle
            Ok(None) => return Ok(()), // closed by the sender
            Ok(Some(frame)) => frame?,
        };
        let Some(answer) = super::process::process(holder.engine(), holder.ingest(), sender, &frame).await
        else {
            return Ok(()); // stopping: no ACK, the sender will try again
        };
        framed.send(answer.into_bytes()).await?;
    }
}
