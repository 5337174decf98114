//! `hearth bench`: create, read and update throughput of the real server with N concurrent HTTP
//! clients, each beside a baseline measured in the same run on the same machine:
//! - read: a bare axum handler returning the same bytes from memory;
//! - create/update: a raw sqlx INSERT/UPDATE of the same bytes into the same database.
//!
//! Ratios, not absolute numbers, are what to compare across machines.

pub mod bulk;
pub mod hl7;
pub mod search;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, SqlSafeStr};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::Backend;

#[derive(Debug, Clone)]
pub struct Options {
    pub clients: usize,
    pub duration: Duration,
    /// Databases to measure, e.g. `sqlite:///tmp/x.db`, `postgres://…`.
    pub databases: Vec<String>,
}

/// One measured series.
#[derive(Debug, Clone)]
pub struct Series {
    pub ops: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// CPU time the whole process (server and load generator) spent during the series, when
    /// the platform tells (Linux).
    pub cpu: Option<Duration>,
}

impl Series {
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Process CPU milliseconds per operation: with the rate, tells a series bound by CPU
    /// (cores × 1000 / rate) from one bound by waiting.
    pub fn cpu_ms_per_op(&self) -> Option<f64> {
        self.cpu.filter(|_| self.ops > 0).map(|c| c.as_secs_f64() * 1e3 / self.ops as f64)
    }
}

/// User plus system CPU time of this process so far (Linux: /proc/self/stat, in clock ticks of
/// 1/100 s).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn sample_patient(i: usize) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "http://hearth.example.org/mrn", "value": format!("BENCH-{i}")}],
        "active": true,
        "name": [{"use": "official", "family": "Bench", "given": ["Pat", format!("N{i}")]}],
        "telecom": [{"system": "phone", "value": "555-0100", "use": "home"}],
        "gender": if i.is_multiple_of(2) { "female" } else { "male" },
        "birthDate": "1980-04-12",
        "address": [{"line": ["1 Main St"], "city": "Springfield", "postalCode": "01101", "country": "US"}]
    })
}

/// Runs `clients` workers for `duration`, each calling `op(worker, n)`; records every latency.
pub(crate) async fn drive<F, Fut>(clients: usize, duration: Duration, op: F) -> Result<Series>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let cpu_start = process_cpu();
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for w in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                op(w, n).await?;
                lat.push(t.elapsed());
                n += 1;
            }
            Ok::<_, Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| Error::Internal(e.to_string()))??);
    }
    let elapsed = start.elapsed();
    let cpu = process_cpu().zip(cpu_start).map(|(end, start)| end.saturating_sub(start));
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(Series { ops: all.len(), elapsed, p50: pct(0.5), p99: pct(0.99), cpu })
}

fn check(status: reqwest::StatusCode, expected: u16, what: &str) -> Result<()> {
    if status.as_u16() == expected {
        Ok(())
    } else {
        Err(Error::Internal(format!("{what}: unexpected status {status}")))
    }
}

fn http_err(e: reqwest::Error) -> Error {
    Error::Internal(format!("bench HTTP client: {e}"))
}

/// The read baseline: the same bytes served from memory by a bare axum handler.
async fn bare_server(body: Vec<u8>) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| Error::Internal(e.to_string()))?;
    let addr = listener.local_addr().map_err(|e| Error::Internal(e.to_string()))?;
    let body = bytes::Bytes::from(body);
    let app = Router::new().route(
        "/fhir/Patient/{id}",
        get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/fhir+json")], body) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/fhir"))
}

/// The real server on a random local port, for the duration of a benchmark.
pub(crate) struct Running {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Running {
    pub(crate) async fn start(state: &Arc<crate::api::AppState>) -> Result<Running> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| Error::Internal(e.to_string()))?;
        let base =
            format!("http://{}/fhir", listener.local_addr().map_err(|e| Error::Internal(e.to_string()))?);
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(crate::server::serve(state.clone(), listener, async {
            let _ = stop_rx.await;
        }));
        Ok(Running { base, stop, task })
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

pub struct Report {
    pub rows: Vec<(String, &'static str, Series, Series)>,
}

impl Report {
    pub fn print(&self) {
        println!(
            "{:<10} {:<16} {:>10} {:>8} {:>8} {:>14} {:>8}   baseline",
            "backend", "op", "req/s", "p50 ms", "p99 ms", "baseline/s", "ratio"
        );
        for (backend, op, s, b) in &self.rows {
            let baseline = match *op {
                "read" => "bare axum handler, same bytes from memory",
                "create" => "raw sqlx INSERT of the same bytes",
                "tx1000" => "1000 raw INSERTs in one transaction (1 client; req = one Bundle)",
                "read+token" | "read+token+audit" => "the read series above, without authorization",
                _ => "raw sqlx UPDATE of the same bytes",
            };
            println!(
                "{:<10} {:<16} {:>10.0} {:>8.2} {:>8.2} {:>14.0} {:>7.0}%   {baseline}",
                backend,
                op,
                s.rate(),
                s.p50.as_secs_f64() * 1e3,
                s.p99.as_secs_f64() * 1e3,
                b.rate(),
                100.0 * s.rate() / b.rate()
            );
        }
    }
}

pub async fn run(opts: &Options) -> Result<Report> {
    let mut rows = Vec::new();
    for db in &opts.databases {
        let name = if db.starts_with("sqlite") { "sqlite" } else { "postgres" };
        rows.extend(run_one(opts, name, db).await?);
    }
    // The cost of authorization: the same reads with a bearer token to verify, beside the
    // SQLite reads above (the baseline column of this row is that series).
    let plain = rows.iter().find(|r| r.0 == "sqlite" && r.1 == "read").map(|r| r.2.clone());
    if let Some(plain) = plain {
        rows.push(("sqlite".into(), "read+token", token_reads(opts, false).await?, plain.clone()));
        rows.push(("sqlite".into(), "read+token+audit", token_reads(opts, true).await?, plain));
    }
    Ok(Report { rows })
}

/// Reads with `auth = "smart"` on a fresh SQLite database of 200 patients, each request
/// carrying a `user/*.rs` token.
async fn token_reads(opts: &Options, audit: bool) -> Result<Series> {
    let dir = std::env::temp_dir().join(format!("hearth-bench-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::Internal(e.to_string()))?;
    let database = format!("sqlite://{}", dir.join("auth.db").display());
    let config = Config { database, auth: crate::config::AuthMode::Smart, audit, ..Config::default() };
    let state = crate::server::state(&config).await?;
    let mut ids = Vec::new();
    for i in 0..200 {
        ids.push(state.engine.create("Patient", sample_patient(i), None).await?.version.id);
    }
    let server = Running::start(&state).await?;
    let keys = state.keys.as_ref().ok_or_else(|| Error::Internal("auth is on".into()))?;
    let issuer = crate::auth::token::issuer_for(&server.base);
    let request = crate::auth::token::Request {
        issuer: &issuer,
        audience: &server.base,
        client_id: "bench",
        subject: "bench",
        scope: "user/*.rs",
        patient: None,
        fhir_user: None,
        lifetime_seconds: 3600,
    };
    let token = Arc::new(crate::auth::token::mint(keys, &request)?.0);
    let client = reqwest::Client::builder().pool_max_idle_per_host(opts.clients).build().map_err(http_err)?;
    let (b, ids) = (server.base.clone(), Arc::new(ids));
    let series = drive(opts.clients, opts.duration, move |w, n| {
        let (c, b, i, t) = (client.clone(), b.clone(), ids.clone(), token.clone());
        async move {
            let id = &i[(w * 31 + n) % i.len()];
            let r =
                c.get(format!("{b}/Patient/{id}")).bearer_auth(t.as_str()).send().await.map_err(http_err)?;
            check(r.status(), 200, "read with a token")?;
            r.bytes().await.map_err(http_err)?;
            Ok(())
        }
    })
    .await?;
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(series)
}

async fn run_one(
    opts: &Options,
    name: &str,
    database: &str,
) -> Result<Vec<(String, &'static str, Series, Series)>> {
    // Without authorization: the baseline the token series is compared with.
    let config =
        Config { database: database.into(), auth: crate::config::AuthMode::None, ..Config::default() };
    let state = crate::server::state(&config).await?;
    crate::resource::schema::warm_up();
    let server = Running::start(&state).await?;
    let base = server.base.clone();
    let client = reqwest::Client::builder().pool_max_idle_per_host(opts.clients).build().map_err(http_err)?;
    let (clients, duration) = (opts.clients, opts.duration);

    // create: HTTP POST vs raw INSERT
    let counter = Arc::new(AtomicUsize::new(0));
    let (c, b, n) = (client.clone(), base.clone(), counter.clone());
    let create = drive(clients, duration, move |_, _| {
        let (c, b, n) = (c.clone(), b.clone(), n.clone());
        async move {
            let body = sample_patient(n.fetch_add(1, Ordering::Relaxed)).to_string();
            let r = c
                .post(format!("{b}/Patient"))
                .header("content-type", "application/fhir+json")
                .body(body)
                .send()
                .await
                .map_err(http_err)?;
            check(r.status(), 201, "create")
        }
    })
    .await?;
    let body_bytes = serde_json::to_vec(&sample_patient(0)).map_err(|e| Error::Internal(e.to_string()))?;
    let raw_create = raw_writes(&state.engine.store.backend, clients, duration, &body_bytes, false).await?;

    // read: HTTP GET of existing patients vs a bare handler
    let ids = patient_ids(&client, &base, 200).await?;
    let ids = Arc::new(ids);
    let (c, b, i) = (client.clone(), base.clone(), ids.clone());
    let read = drive(clients, duration, move |w, n| {
        let (c, b, i) = (c.clone(), b.clone(), i.clone());
        async move {
            let id = &i[(w * 31 + n) % i.len()];
            let r = c.get(format!("{b}/Patient/{id}")).send().await.map_err(http_err)?;
            check(r.status(), 200, "read")?;
            r.bytes().await.map_err(http_err)?;
            Ok(())
        }
    })
    .await?;
    let bare = bare_server(body_bytes.clone()).await?;
    let c = client.clone();
    let bare_read = drive(clients, duration, move |_, _| {
        let (c, bare) = (c.clone(), bare.clone());
        async move {
            let r = c.get(format!("{bare}/Patient/x")).send().await.map_err(http_err)?;
            r.bytes().await.map_err(http_err)?;
            Ok(())
        }
    })
    .await?;

    // update: PUT, each client on its own patient (no contention), vs raw UPDATE
    let (c, b, i) = (client.clone(), base.clone(), ids.clone());
    let update = drive(clients, duration, move |w, n| {
        let (c, b, i) = (c.clone(), b.clone(), i.clone());
        async move {
            let id = &i[w % i.len()];
            let mut p = sample_patient(n);
            p["id"] = json!(id);
            let r = c
                .put(format!("{b}/Patient/{id}"))
                .header("content-type", "application/fhir+json")
                .body(p.to_string())
                .send()
                .await
                .map_err(http_err)?;
            check(r.status(), 200, "update")
        }
    })
    .await?;
    let raw_update = raw_writes(&state.engine.store.backend, clients, duration, &body_bytes, true).await?;

    // tx1000: one client posting 1000-entry transaction Bundles vs one raw transaction of the
    // same 1000 INSERTs.
    let (c, b) = (client.clone(), base.clone());
    let transaction = drive(1, duration, move |_, n| {
        let (c, b) = (c.clone(), b.clone());
        async move {
            let entry: Vec<Value> = (0..TX_ENTRIES)
                .map(|i| json!({"resource": sample_patient(n * TX_ENTRIES + i), "request": {"method": "POST", "url": "Patient"}}))
                .collect();
            let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entry});
            let r = c
                .post(&b)
                .header("content-type", "application/fhir+json")
                .body(bundle.to_string())
                .send()
                .await
                .map_err(http_err)?;
            check(r.status(), 200, "transaction")
        }
    })
    .await?;
    let raw_transaction = raw_transactions(&state.engine.store.backend, duration, &body_bytes).await?;

    server.stop().await;
    Ok(vec![
        (name.to_string(), "read", read, bare_read),
        (name.to_string(), "create", create, raw_create),
        (name.to_string(), "update", update, raw_update),
        (name.to_string(), "tx1000", transaction, raw_transaction),
    ])
}

/// Entries in one benchmark transaction.
const TX_ENTRIES: usize = 1000;

/// One transaction of `TX_ENTRIES` raw INSERTs of the same bytes per operation.
async fn raw_transactions(backend: &Backend, duration: Duration, body: &[u8]) -> Result<Series> {
    let ddl = "CREATE TABLE IF NOT EXISTS bench_raw_tx (id TEXT PRIMARY KEY, body BYTEA NOT NULL)";
    let sql = "INSERT INTO bench_raw_tx (id, body) VALUES ($1, $2)";
    let body = Arc::new(body.to_vec());
    macro_rules! measure {
        ($pool:expr) => {{
            let pool = $pool.clone();
            sqlx::query(ddl).execute(&pool).await?;
            drive(1, duration, move |_, n| {
                let (pool, body) = (pool.clone(), body.clone());
                async move {
                    let mut tx = pool.begin().await?;
                    for i in 0..TX_ENTRIES {
                        sqlx::query(sql)
                            .bind(format!("{n}-{i}"))
                            .bind(body.as_slice())
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }
            })
            .await
        }};
    }
    match backend {
        Backend::Sqlite { writer, .. } => measure!(writer),
        Backend::Postgres(pool) => measure!(pool),
    }
}

async fn patient_ids(client: &reqwest::Client, base: &str, n: usize) -> Result<Vec<String>> {
    let page: Value = client
        .get(format!("{base}/Patient?_count={n}"))
        .send()
        .await
        .map_err(http_err)?
        .json()
        .await
        .map_err(http_err)?;
    let ids: Vec<String> = page["entry"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["resource"]["id"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if ids.is_empty() {
        return Err(Error::Internal("bench: no patients were created".into()));
    }
    Ok(ids)
}

/// Raw INSERTs (or UPDATEs of one row per client) of the same bytes, through the same pools.
async fn raw_writes(
    backend: &Backend,
    clients: usize,
    duration: Duration,
    body: &[u8],
    update: bool,
) -> Result<Series> {
    let ddl = "CREATE TABLE IF NOT EXISTS bench_raw (id TEXT PRIMARY KEY, body BYTEA NOT NULL)";
    let insert = "INSERT INTO bench_raw (id, body) VALUES ($1, $2)";
    let upsert = "INSERT INTO bench_raw (id, body) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET body = excluded.body";
    let sql = if update { upsert } else { insert };
    let body = Arc::new(body.to_vec());
    let seq = Arc::new(AtomicUsize::new(0));
    let tag = if update { "u" } else { "c" };
    macro_rules! measure {
        ($pool:expr) => {{
            let pool = $pool.clone();
            sqlx::query(AssertSqlSafe(ddl.to_string()).into_sql_str()).execute(&pool).await?;
            drive(clients, duration, move |w, _| {
                let (pool, body, seq) = (pool.clone(), body.clone(), seq.clone());
                async move {
                    let id = if update {
                        format!("{tag}{w}")
                    } else {
                        format!("{tag}{}", seq.fetch_add(1, Ordering::Relaxed))
                    };
                    sqlx::query(sql).bind(id).bind(body.as_slice()).execute(&pool).await?;
                    Ok(())
                }
            })
            .await
        }};
    }
    match backend {
        Backend::Sqlite { writer, .. } => measure!(writer),
        Backend::Postgres(pool) => measure!(pool),
    }
}
