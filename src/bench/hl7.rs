//! `hearth bench --hl7`: VXU messages per second over 1 and 8 MLLP connections (each message a
//! new patient with two doses, ACKed after its commit), beside a baseline measured in the same
//! run: an MLLP echo server that answers every frame with a fixed ACK, over the same codec.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_util::codec::Framed;

use super::{Running, Series, drive};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hl7v2::mllp::Mllp;

pub struct Hl7Options {
    pub duration: Duration,
    pub databases: Vec<String>,
}

fn io(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("bench MLLP: {e}"))
}

/// A VXU for patient `n`: two doses, a manufacturer.
fn vxu(n: usize) -> String {
    format!(
        "MSH|^~\\&|BENCH|IIS|HEARTH|CLINIC|20250102||VXU^V04^VXU_V04|B{n}|P|2.5.1\r\
         PID|1||B{n}^^^BENCH&1.2.840.77&ISO^MR||Bench^Pat{n}||20200105|F|||1 Main St^^Springfield^IL^62701\r\
         ORC|RE||F{n}a^BENCH\r\
         RXA|0|1|20250102||08^HepB^CVX|0.5|mL^mL^UCUM||00^New^NIP001||||||L{n}|20261231|MSK^Merck^MVX|||CP|A\r\
         RXR|C28161^IM^NCIT|LA^Left arm^HL70163\r\
         ORC|RE||F{n}b^BENCH\r\
         RXA|0|1|20250102||20^DTaP^CVX|0.5|mL^mL^UCUM||00^New^NIP001||||||M{n}|20261231|PMC^Sanofi^MVX|||CP|A\r"
    )
}

/// The baseline: frames in, a fixed ACK out.
async fn echo_server() -> Result<std::net::SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut f = Framed::new(socket, Mllp::new(1 << 20));
                while let Some(Ok(_)) = f.next().await {
                    let ack =
                        b"MSH|^~\\&|HEARTH|CLINIC|BENCH|IIS|20250102||ACK^V04^ACK|1|P|2.5.1\rMSA|AA|1\r"
                            .to_vec();
                    if f.send(ack).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// `connections` senders, each sending messages one after another on its own connection.
async fn send(
    addr: std::net::SocketAddr,
    connections: usize,
    duration: Duration,
    counter: Arc<AtomicUsize>,
) -> Result<Series> {
    let mut conns = Vec::new();
    for _ in 0..connections {
        let s = TcpStream::connect(addr).await.map_err(io)?;
        conns.push(Mutex::new(Framed::new(s, Mllp::new(1 << 20))));
    }
    let conns = Arc::new(conns);
    drive(connections, duration, move |w, _| {
        let (conns, counter) = (conns.clone(), counter.clone());
        async move {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let mut c = conns[w].lock().await;
            c.send(vxu(n).into_bytes()).await.map_err(io)?;
            let ack = c.next().await.ok_or_else(|| io("connection closed"))?.map_err(io)?;
            if !ack.windows(7).any(|x| x == b"MSA|AA|") {
                return Err(io(format!("not accepted: {}", String::from_utf8_lossy(&ack))));
            }
            Ok(())
        }
    })
    .await
}

pub async fn run(opts: &Hl7Options) -> Result<()> {
    println!(
        "{:<10} {:<14} {:>10} {:>8} {:>8} {:>10} {:>12} {:>7}   baseline",
        "backend", "series", "msg/s", "p50 ms", "p99 ms", "cpu ms/msg", "echo msg/s", "ratio"
    );
    let echo = echo_server().await?;
    for db in &opts.databases {
        let name = if db.starts_with("sqlite") { "sqlite" } else { "postgres" };
        let config = Config {
            database: db.clone(),
            auth: crate::config::AuthMode::None,
            mllp: Some("127.0.0.1:0".into()),
            ..Config::default()
        };
        let state = crate::server::state(&config).await?;
        crate::resource::schema::warm_up();
        let addr = state.mllp_addr.ok_or_else(|| io("no MLLP address"))?;
        let server = Running::start(&state).await?;
        let counter = Arc::new(AtomicUsize::new(0));
        for connections in [1, 8] {
            let base = send(echo, connections, opts.duration, Arc::new(AtomicUsize::new(0))).await?;
            let s = send(addr, connections, opts.duration, counter.clone()).await?;
            println!(
                "{:<10} {:<14} {:>10.0} {:>8.2} {:>8.2} {:>10} {:>12.0} {:>6.0}%   MLLP echo (frame in, fixed ACK out)",
                name,
                format!("vxu x{connections}"),
                s.rate(),
                s.p50.as_secs_f64() * 1e3,
                s.p99.as_secs_f64() * 1e3,
                s.cpu_ms_per_op().map_or("-".into(), |c| format!("{c:.2}")),
                base.rate(),
                100.0 * s.rate() / base.rate()
            );
        }
        server.stop().await;
    }
    Ok(())
}
