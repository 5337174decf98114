//! `hearth bench --bulk`: bulk import and export of a generated data set (patients with
//! immunizations, care plans, tasks and an observation; eleven resources per patient), each
//! beside a baseline measured in the same run on the same database:
//!
//! - import (`hearth import`'s path: parse, validate, index, history, batches of 1000) beside
//!   parsing the same NDJSON lines and INSERTing their bytes into a bare table;
//! - `$export` (the background job, NDJSON files stored in chunks) beside reading every stored
//!   body in key order.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::search::{patient_resources, practitioners};
use crate::config::Config;
use crate::engine::{Engine, ExportLevel, ExportParams, JobState};
use crate::error::{Error, Result};
use crate::store::Backend;

#[derive(Debug, Clone)]
pub struct BulkOptions {
    pub patients: usize,
    pub databases: Vec<String>,
    /// Where the generated NDJSON file is written.
    pub dir: std::path::PathBuf,
}

/// Patient `i`'s resources plus one Observation.
fn resources(i: usize) -> Vec<Value> {
    let mut out = patient_resources(i);
    out.push(json!({
        "resourceType": "Observation", "id": format!("ob{i}"), "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/p{i}")},
        "effectiveDateTime": "2024-05-01T10:00:00Z",
        "valueQuantity": {"value": 60 + (i % 40), "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    }));
    out
}

pub async fn run(opts: &BulkOptions) -> Result<()> {
    let file = opts.dir.join("bulk.ndjson");
    let n = generate(&file, opts.patients)?;
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    println!("bulk data set: {n} resources, {:.0} MB of NDJSON", bytes as f64 / 1e6);
    for db in &opts.databases {
        let name = if db.starts_with("sqlite") { "sqlite" } else { "postgres" };
        run_one(name, db, &file, opts.patients).await?;
    }
    Ok(())
}

fn generate(path: &Path, patients: usize) -> Result<usize> {
    let io = |e: std::io::Error| Error::Internal(format!("bench data: {e}"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    let mut n = 0;
    for r in practitioners().into_iter().chain((0..patients).flat_map(resources)) {
        serde_json::to_writer(&mut out, &r).map_err(|e| Error::Internal(e.to_string()))?;
        out.write_all(b"\n").map_err(io)?;
        n += 1;
    }
    out.flush().map_err(io)?;
    Ok(n)
}

async fn run_one(name: &str, database: &str, file: &Path, patients: usize) -> Result<()> {
    let config = Config {
        database: database.into(),
        bulk_jobs: false,
        auth: crate::config::AuthMode::None,
        ..Config::default()
    };
    let state = crate::server::state(&config).await?;
    crate::resource::schema::warm_up();
    let engine = &state.engine;
    println!("== {name}");

    let start = Instant::now();
    let raw = raw_load(&engine.store.backend, file).await?;
    let raw_rate = raw as f64 / start.elapsed().as_secs_f64();
    println!("baseline: parse + raw INSERT of {raw} lines: {raw_rate:.0}/s");

    let start = Instant::now();
    let summary = crate::import::Importer::new(engine, Box::new(std::io::sink()), false)
        .run(&[file.into()], None)
        .await?;
    let secs = start.elapsed().as_secs_f64();
    let rate = summary.imported as f64 / secs;
    println!(
        "import:   {} resources in {secs:.1} s = {rate:.0}/s ({:.0} % of the baseline); {} rejected",
        summary.imported,
        100.0 * rate / raw_rate,
        summary.rejected
    );

    let start = Instant::now();
    let (bodies, body_bytes) = raw_read(&engine.store.backend).await?;
    let read_rate = bodies as f64 / start.elapsed().as_secs_f64();
    println!(
        "baseline: read {bodies} stored bodies ({:.0} MB) in key order: {read_rate:.0}/s",
        body_bytes as f64 / 1e6
    );

    // Interactive searches alone, then while an export runs on the same node.
    let server = super::Running::start(&state).await?;
    let idle = searches(&server.base, patients).await?;
    let (exported, secs, busy) = {
        let export = export(engine);
        let busy = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            searches(&server.base, patients).await
        };
        let ((exported, secs), busy) = tokio::try_join!(export, busy)?;
        (exported, secs, busy)
    };
    server.stop().await;
    let rate = exported as f64 / secs;
    println!(
        "export:   {exported} resources in {secs:.1} s = {rate:.0}/s ({:.0} % of the baseline)",
        100.0 * rate / read_rate
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "search by identifier, 4 clients: idle p50 {:.1} ms p99 {:.1} ms; during the export p50 {:.1} ms p99 {:.1} ms",
        ms(idle.p50),
        ms(idle.p99),
        ms(busy.p50),
        ms(busy.p99)
    );
    Ok(())
}

/// Two seconds of `Patient?identifier=…` searches from 4 clients.
async fn searches(base: &str, patients: usize) -> Result<super::Series> {
    let client = reqwest::Client::new();
    let base = base.to_string();
    super::drive(4, Duration::from_secs(2), move |w, n| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let i = (w * 7919 + n * 104_729) % patients.max(1);
            let url = format!("{base}/Patient?identifier=urn:bench:mrn|MRN{i}");
            let resp = client.get(&url).send().await.map_err(super::http_err)?;
            super::check(resp.status(), 200, "search")?;
            resp.bytes().await.map_err(super::http_err)?;
            Ok(())
        }
    })
    .await
}

/// Parses every line and INSERTs its bytes, 1000 per transaction, into a scratch table.
async fn raw_load(backend: &Backend, file: &Path) -> Result<usize> {
    use std::io::BufRead;
    let io = |e: std::io::Error| Error::Internal(format!("bench data: {e}"));
    let ddl = "CREATE TABLE IF NOT EXISTS bench_raw_bulk (id TEXT PRIMARY KEY, rtype TEXT NOT NULL, body BYTEA NOT NULL)";
    let sql = "INSERT INTO bench_raw_bulk (id, rtype, body) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING";
    let reader = std::io::BufReader::new(std::fs::File::open(file).map_err(io)?);
    let mut lines = reader.split(b'\n');
    let mut n = 0;
    macro_rules! load {
        ($pool:expr) => {{
            sqlx::query(ddl).execute($pool).await?;
            loop {
                let mut tx = $pool.begin().await?;
                let mut in_tx = 0;
                for line in lines.by_ref().take(1000) {
                    let line = line.map_err(io)?;
                    let v: Value =
                        serde_json::from_slice(&line).map_err(|e| Error::Internal(e.to_string()))?;
                    let rtype = v["resourceType"].as_str().unwrap_or_default();
                    let id = format!("{rtype}/{}", v["id"].as_str().unwrap_or_default());
                    sqlx::query(sql).bind(id).bind(rtype).bind(line.as_slice()).execute(&mut *tx).await?;
                    in_tx += 1;
                }
                tx.commit().await?;
                n += in_tx;
                if in_tx == 0 {
                    break;
                }
            }
        }};
    }
    match backend {
        Backend::Sqlite { writer, .. } => load!(writer),
        Backend::Postgres(pool) => load!(pool),
    }
    Ok(n)
}

/// Reads every current body in key order, 1000 at a time, as an export's floor.
async fn raw_read(backend: &Backend) -> Result<(usize, usize)> {
    let sql = "SELECT rkey, body FROM resource WHERE rkey > $1 AND NOT deleted ORDER BY rkey LIMIT 1000";
    let (mut n, mut bytes, mut after) = (0, 0, 0i64);
    loop {
        let rows: Vec<(i64, Vec<u8>)> = match backend {
            Backend::Sqlite { reader, .. } => sqlx::query_as(sql).bind(after).fetch_all(reader).await?,
            Backend::Postgres(pool) => sqlx::query_as(sql).bind(after).fetch_all(pool).await?,
        };
        let Some(last) = rows.last() else { break };
        after = last.0;
        n += rows.len();
        bytes += rows.iter().map(|r| r.1.len()).sum::<usize>();
    }
    Ok((n, bytes))
}

/// A system-level `$export` run by a worker, timed from kick-off to the finished manifest.
async fn export(engine: &Engine) -> Result<(i64, f64)> {
    let params = ExportParams::check(engine, ExportLevel::System, &[], false).await?;
    let start = Instant::now();
    let id = engine.export_kickoff(&params, "bench").await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = engine.run_jobs(stopped);
    let wait = async {
        let done = loop {
            match engine.job_state("export", &id).await {
                Ok(JobState::Complete { files, .. }) => break Ok(files.iter().map(|f| f.count).sum::<i64>()),
                Ok(JobState::Failed(e)) | Err(e) => break Err(e),
                Ok(JobState::InProgress(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let _ = stop.send(true);
        done
    };
    let (_, exported) = tokio::join!(worker, wait);
    let secs = start.elapsed().as_secs_f64();
    engine.delete_job("export", &id).await?;
    Ok((exported?, secs))
}
