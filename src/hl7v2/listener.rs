//! The MLLP listener: many connections, several messages each, one at a time per connection
//! (an ACK is sent before the next message is read, which is the back-pressure MLLP senders
//! expect). Idle connections are closed after a while; a broken frame closes only its own
//! connection.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

use super::mllp::{FrameError, Mllp};
use crate::engine::Engine;

/// MLLP settings.
#[derive(Debug, Clone)]
pub struct MllpSettings {
    pub max_frame_bytes: usize,
    /// A connection with no complete message for this long is closed.
    pub idle: Duration,
}

impl Default for MllpSettings {
    fn default() -> Self {
        MllpSettings { max_frame_bytes: 1024 * 1024, idle: Duration::from_secs(300) }
    }
}

/// Accepts connections until `stop` turns true; connections being served finish their message.
pub async fn serve(
    engine: Arc<dyn AsEngine>,
    listener: TcpListener,
    settings: MllpSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((socket, peer)) => {
                let engine = engine.clone();
                let settings = settings.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(engine, socket, &settings, stop).await {
                        tracing::info!(%peer, "MLLP connection closed: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("MLLP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Whatever holds the engine (the server's state), so the listener needs no HTTP types.
pub trait AsEngine: Send + Sync + 'static {
    fn engine(&self) -> &Engine;
    fn ingest(&self) -> &super::Ingest;
}

async fn connection(
    holder: Arc<dyn AsEngine>,
    socket: tokio::net::TcpStream,
    settings: &MllpSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), FrameError> {
    let mut framed = Framed::new(socket, Mllp::new(settings.max_frame_bytes));
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
        let answer = super::process::process(holder.engine(), holder.ingest(), &frame).await;
        framed.send(answer.into_bytes()).await?;
    }
}
