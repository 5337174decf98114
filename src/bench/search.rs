//! `hearth bench --search`: a generated care-coordination data set (patients with
//! immunizations, care plans and tasks; ten resources per patient) and nine query families,
//! each over HTTP beside the same lookup as a hand-written SQL query on the same database in
//! the same run. Both sides produce the same answer: a page of 20 and the total.
//!
//! Also reported: load throughput (bulk import through the engine vs raw INSERTs of the same
//! bytes), index rows and bytes per resource, and FHIRPath extraction time per resource.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::AssertSqlSafe;

use super::{Series, drive, http_err};
use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::resource::instant;
use crate::store::{Backend, Bind};

#[derive(Debug, Clone)]
pub struct SearchOptions {
    pub patients: usize,
    pub clients: usize,
    pub duration: Duration,
    pub databases: Vec<String>,
}

const SYLLABLES: &[&str] = &[
    "an", "ber", "cal", "dor", "el", "fin", "gar", "hol", "is", "jon", "kel", "lin", "mor", "nor", "ol",
    "per", "quin", "ros", "sten", "tor", "ul", "van", "wes", "yor", "zan", "bra", "cor", "dal", "fen", "har",
];
const GIVEN: &[&str] = &["Anna", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas"];
const CVX: &[&str] = &["03", "08", "10", "20", "21", "33", "62", "88", "115", "207"];
const CITIES: &[&str] = &["Springfield", "Riverside", "Fairview", "Madison"];
const TASK_STATUS: &[&str] = &["ready", "in-progress", "completed", "cancelled"];
const PRACTITIONERS: usize = 100;
const LOTS: usize = 1000;
const DAY_MS: i64 = 86_400_000;
/// 2019-01-01T00:00:00Z
const EPOCH_2019: i64 = 1_546_300_800_000;

/// A small deterministic generator: every run loads the same data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

fn surname(k: usize) -> String {
    let a = SYLLABLES[k % SYLLABLES.len()];
    let b = SYLLABLES[(k / SYLLABLES.len()) % SYLLABLES.len()];
    let mut s = format!("{a}{b}");
    s[..1].make_ascii_uppercase();
    s
}

fn day(ms: i64) -> String {
    instant::format_ms(ms)[..10].to_string()
}

/// Patient `i` and the nine resources that belong to it.
pub(super) fn patient_resources(i: usize) -> Vec<Value> {
    let mut r = Lcg(i as u64 * 7919 + 17);
    let pid = format!("p{i}");
    let mut out = vec![json!({
        "resourceType": "Patient", "id": pid,
        "identifier": [{"system": "urn:bench:mrn", "value": format!("MRN{i}")}],
        "name": [{"family": surname(r.next(SYLLABLES.len() * SYLLABLES.len())), "given": [GIVEN[r.next(GIVEN.len())]]}],
        "gender": if r.next(2) == 0 { "female" } else { "male" },
        "birthDate": day(-1_230_768_000_000 + r.next(33_000) as i64 * DAY_MS),
        "address": [{"city": CITIES[r.next(CITIES.len())]}],
    })];
    let subject = json!({"reference": format!("Patient/{pid}")});
    for k in 0..4 {
        out.push(json!({
            "resourceType": "Immunization", "id": format!("im{i}-{k}"), "status": "completed",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": CVX[r.next(CVX.len())]}]},
            "patient": subject, "occurrenceDateTime": day(EPOCH_2019 + r.next(6 * 365) as i64 * DAY_MS),
            "primarySource": true, "lotNumber": format!("LOT{}", r.next(LOTS)),
        }));
    }
    for k in 0..2 {
        let status = match r.next(1000) {
            0..=9 => "on-hold",
            10..=399 => "completed",
            _ => "active",
        };
        out.push(json!({
            "resourceType": "CarePlan", "id": format!("cp{i}-{k}"), "status": status, "intent": "plan",
            "subject": subject, "period": {"start": day(EPOCH_2019 + r.next(6 * 365) as i64 * DAY_MS)},
        }));
    }
    for k in 0..3 {
        let authored = EPOCH_2019 + 5 * 365 * DAY_MS + r.next(365 * 24 * 60) as i64 * 60_000;
        out.push(json!({
            "resourceType": "Task", "id": format!("t{i}-{k}"),
            "status": TASK_STATUS[r.next(TASK_STATUS.len())], "intent": "order",
            "for": subject, "owner": {"reference": format!("Practitioner/dr{}", r.next(PRACTITIONERS))},
            "authoredOn": instant::format_ms(authored), "priority": "routine",
        }));
    }
    out
}

pub(super) fn practitioners() -> Vec<Value> {
    (0..PRACTITIONERS)
        .map(|k| json!({"resourceType": "Practitioner", "id": format!("dr{k}"), "name": [{"family": surname(k)}]}))
        .collect()
}

/// SQL statements with their bound values.
type Statements = Vec<(String, Vec<Bind>)>;

/// One measured query family: how to ask Hearth, and the same lookup in hand-written SQL.
struct Family {
    name: &'static str,
    /// HTTP requests (paths below the base) for sample `n`; more than one when paging.
    http: Box<dyn Fn(usize) -> Vec<String> + Send + Sync>,
    /// SQL statements for sample `n` (page and total, or both pages).
    sql: Box<dyn Fn(usize) -> Statements + Send + Sync>,
}

pub async fn run(opts: &SearchOptions) -> Result<()> {
    for db in &opts.databases {
        let name = if db.starts_with("sqlite") { "sqlite" } else { "postgres" };
        run_one(opts, name, db).await?;
    }
    Ok(())
}

async fn run_one(opts: &SearchOptions, name: &str, database: &str) -> Result<()> {
    let config =
        Config { database: database.into(), auth: crate::config::AuthMode::None, ..Config::default() };
    let state = crate::server::state(&config).await?;
    crate::resource::schema::warm_up();
    let engine = &state.engine;
    println!("== {name}: {} patients ({} resources)", opts.patients, opts.patients * 10 + PRACTITIONERS);
    load(engine, opts.patients).await?;
    report_storage(engine, name).await?;

    let server = super::Running::start(&state).await?;
    let base = server.base.clone();
    let client = reqwest::Client::builder().pool_max_idle_per_host(opts.clients).build().map_err(http_err)?;
    println!(
        "{:<14} {:>9} {:>8} {:>8}   {:>9} {:>8} {:>8}   {:>6}",
        "family", "req/s", "p50 ms", "p99 ms", "sql q/s", "p50 ms", "p99 ms", "p50 ×"
    );
    for family in families(engine, opts.patients)? {
        let family = Arc::new(family);
        let (f, c, b) = (family.clone(), client.clone(), base.clone());
        let http = drive(opts.clients, opts.duration, move |w, n| {
            let (f, c, b) = (f.clone(), c.clone(), b.clone());
            async move {
                let mut next: Option<String> = None;
                let steps = (f.http)(w * 7919 + n * 31);
                let last = steps.len() - 1;
                for (step, path) in steps.into_iter().enumerate() {
                    let url = if step > 0 { next.take().unwrap_or_default() } else { format!("{b}/{path}") };
                    if url.is_empty() {
                        break;
                    }
                    let resp = c.get(&url).send().await.map_err(http_err)?;
                    if !resp.status().is_success() {
                        return Err(Error::Internal(format!("{}: {url}: {}", f.name, resp.status())));
                    }
                    // Like the SQL side, read the answer without parsing it unless a link is needed.
                    if step == last {
                        resp.bytes().await.map_err(http_err)?;
                        break;
                    }
                    let bundle: Value = resp.json().await.map_err(http_err)?;
                    next = bundle["link"]
                        .as_array()
                        .and_then(|l| l.iter().find(|l| l["relation"] == "next"))
                        .and_then(|l| l["url"].as_str())
                        .map(str::to_string);
                }
                Ok(())
            }
        })
        .await?;
        let sql = baseline(&engine.store.backend, &family, opts).await?;
        print_row(family.name, &http, &sql);
    }
    server.stop().await;
    Ok(())
}

fn print_row(name: &str, http: &Series, sql: &Series) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{:<14} {:>9.0} {:>8.2} {:>8.2}   {:>9.0} {:>8.2} {:>8.2}   {:>6.1}",
        name,
        http.rate(),
        ms(http.p50),
        ms(http.p99),
        sql.rate(),
        ms(sql.p50),
        ms(sql.p99),
        http.p50.as_secs_f64() / sql.p50.as_secs_f64().max(1e-9)
    );
}

/// Loads the data set through the engine's bulk import unless it is there already, and
/// reports the rate beside raw INSERTs of the same bytes.
async fn load(engine: &Engine, patients: usize) -> Result<()> {
    let have = engine
        .store
        .count(&crate::store::Filter { sql: "r.rtype = 'Patient'".into(), binds: vec![] })
        .await?;
    if have as usize >= patients {
        println!("load: {have} patients already stored, not loading");
        return Ok(());
    }
    engine.import(&practitioners()).await?;
    let start = Instant::now();
    let mut n = 0usize;
    const BATCH: usize = 100;
    for first in (0..patients).step_by(BATCH) {
        let batch: Vec<Value> = (first..(first + BATCH).min(patients)).flat_map(patient_resources).collect();
        n += engine.import(&batch).await?;
        if (first / BATCH) % 100 == 99 {
            println!("  loaded {n} resources, {:.0}/s", n as f64 / start.elapsed().as_secs_f64());
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let sample: Vec<Vec<u8>> = (0..2000.min(patients))
        .flat_map(patient_resources)
        .map(|v| serde_json::to_vec(&v).unwrap_or_default())
        .collect();
    let raw = raw_import(&engine.store.backend, &sample).await?;
    let extract = extraction_time(&engine.registry);
    println!(
        "load: {n} resources in {:.0} s = {rate:.0}/s (validation, FHIRPath extraction, index rows, history); \
         raw INSERT of the same bytes {raw:.0}/s; ratio {:.0} %; extraction {extract:.1} µs/resource",
        start.elapsed().as_secs_f64(),
        100.0 * rate / raw
    );
    Ok(())
}

/// INSERTs of the same bodies, 1000 per transaction, into a scratch table.
async fn raw_import(backend: &Backend, bodies: &[Vec<u8>]) -> Result<f64> {
    let ddl = "CREATE TABLE IF NOT EXISTS bench_raw_import (id TEXT PRIMARY KEY, body BYTEA NOT NULL)";
    let sql = "INSERT INTO bench_raw_import (id, body) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING";
    macro_rules! measure {
        ($pool:expr) => {{
            sqlx::query(ddl).execute($pool).await?;
            let start = Instant::now();
            for (c, chunk) in bodies.chunks(1000).enumerate() {
                let mut tx = $pool.begin().await?;
                for (i, b) in chunk.iter().enumerate() {
                    sqlx::query(sql)
                        .bind(format!("{}-{c}-{i}", instant::now_ms()))
                        .bind(b.as_slice())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            bodies.len() as f64 / start.elapsed().as_secs_f64()
        }};
    }
    Ok(match backend {
        Backend::Sqlite { writer, .. } => measure!(writer),
        Backend::Postgres(pool) => measure!(pool),
    })
}

fn extraction_time(registry: &crate::search::Registry) -> f64 {
    let sample: Vec<Value> = (0..500).flat_map(patient_resources).collect();
    let start = Instant::now();
    for v in &sample {
        let rtype = v["resourceType"].as_str().unwrap_or_default();
        std::hint::black_box(crate::search::index::extract(registry, rtype, v));
    }
    start.elapsed().as_secs_f64() * 1e6 / sample.len() as f64
}

const INDEX_TABLES: &[&str] =
    &["idx_token", "idx_string", "idx_reference", "idx_date", "idx_number", "idx_uri", "idx_composite"];

/// Index rows and bytes per resource.
async fn report_storage(engine: &Engine, name: &str) -> Result<()> {
    let resources =
        engine.store.count(&crate::store::Filter { sql: "1 = 1".into(), binds: vec![] }).await?.max(1) as f64;
    let mut rows = 0i64;
    let mut line = Vec::new();
    for t in INDEX_TABLES {
        let sql = format!("SELECT COUNT(*) FROM {t}");
        let n: (i64,) = match &engine.store.backend {
            Backend::Sqlite { reader, .. } => sqlx::query_as(AssertSqlSafe(sql)).fetch_one(reader).await?,
            Backend::Postgres(pool) => sqlx::query_as(AssertSqlSafe(sql)).fetch_one(pool).await?,
        };
        rows += n.0;
        line.push(format!("{} {:.1}", t.trim_start_matches("idx_"), n.0 as f64 / resources));
    }
    println!("index rows per resource: {:.1} ({})", rows as f64 / resources, line.join(", "));
    let sizes = table_bytes(&engine.store.backend).await;
    match sizes {
        Some((index, resource, history)) => println!(
            "{name} bytes per resource: search index {:.0}, current table {:.0}, history {:.0}",
            index / resources,
            resource / resources,
            history / resources
        ),
        None => println!("{name} bytes per resource: not available (no dbstat)"),
    }
    Ok(())
}

/// (index tables, resource, resource_history) sizes in bytes, indexes included.
async fn table_bytes(backend: &Backend) -> Option<(f64, f64, f64)> {
    let like = |t: &str| format!("(name = '{t}' OR tbl_name = '{t}')");
    let (sql_idx, sql_res, sql_hist) = match backend {
        Backend::Sqlite { .. } => {
            let sum = |cond: String| {
                format!(
                    "SELECT CAST(SUM(pgsize) AS REAL) FROM dbstat WHERE name IN (SELECT name FROM sqlite_master WHERE {cond})"
                )
            };
            let idx: Vec<String> = INDEX_TABLES.iter().map(|t| like(t)).collect();
            (sum(idx.join(" OR ")), sum(like("resource")), sum(like("resource_history")))
        }
        Backend::Postgres(_) => {
            let list: Vec<String> =
                INDEX_TABLES.iter().map(|t| format!("pg_total_relation_size('{t}')")).collect();
            (
                format!("SELECT CAST({} AS DOUBLE PRECISION)", list.join(" + ")),
                "SELECT CAST(pg_total_relation_size('resource') AS DOUBLE PRECISION)".into(),
                "SELECT CAST(pg_total_relation_size('resource_history') AS DOUBLE PRECISION)".into(),
            )
        }
    };
    let mut out = Vec::new();
    for sql in [sql_idx, sql_res, sql_hist] {
        let v: Option<(Option<f64>,)> = match backend {
            Backend::Sqlite { reader, .. } => sqlx::query_as(AssertSqlSafe(sql)).fetch_one(reader).await.ok(),
            Backend::Postgres(pool) => sqlx::query_as(AssertSqlSafe(sql)).fetch_one(pool).await.ok(),
        };
        out.push(v.and_then(|v| v.0)?);
    }
    Some((out[0], out[1], out[2]))
}

/// Runs a family's SQL for the same samples and duration, on the read pool.
async fn baseline(backend: &Backend, family: &Arc<Family>, opts: &SearchOptions) -> Result<Series> {
    macro_rules! measure {
        ($pool:expr) => {{
            let pool = $pool.clone();
            let f = family.clone();
            drive(opts.clients, opts.duration, move |w, n| {
                let (pool, f) = (pool.clone(), f.clone());
                async move {
                    for (sql, binds) in (f.sql)(w * 7919 + n * 31) {
                        let mut q = sqlx::query(AssertSqlSafe(sql));
                        for b in binds {
                            q = match b {
                                Bind::Text(s) => q.bind(s),
                                Bind::Int(i) => q.bind(i),
                                Bind::Real(x) => q.bind(x),
                                Bind::OptText(s) => q.bind(s),
                                Bind::OptInt(i) => q.bind(i),
                                Bind::OptReal(x) => q.bind(x),
                                Bind::Bytes(b) => q.bind(b),
                            };
                        }
                        q.fetch_all(&pool).await?;
                    }
                    Ok(())
                }
            })
            .await
        }};
    }
    match backend {
        Backend::Sqlite { reader, .. } => measure!(reader),
        Backend::Postgres(pool) => measure!(pool),
    }
}

fn pid(engine: &Engine, rtype: &str, code: &str) -> Result<i64> {
    engine
        .store
        .param_id(rtype, code)
        .map(i64::from)
        .ok_or_else(|| Error::Internal(format!("no parameter id for {rtype}.{code}")))
}

/// Page of 20 (+1 to know about a next page) and the total, the way Hearth answers.
fn page_and_count(from_where: &str, binds: Vec<Bind>) -> Statements {
    vec![
        (format!("SELECT r.rkey, r.body {from_where} ORDER BY r.rkey LIMIT 21"), binds.clone()),
        (format!("SELECT COUNT(*) {from_where}"), binds),
    ]
}

fn families(engine: &Engine, patients: usize) -> Result<Vec<Family>> {
    let t = |s: String| Bind::Text(s);
    let i = Bind::Int;
    let (family, identifier) = (pid(engine, "Patient", "family")?, pid(engine, "Patient", "identifier")?);
    let (imm_patient, imm_date) =
        (pid(engine, "Immunization", "patient")?, pid(engine, "Immunization", "date")?);
    let (imm_lot, imm_code) =
        (pid(engine, "Immunization", "lot-number")?, pid(engine, "Immunization", "vaccine-code")?);
    let (task_owner, task_authored) = (pid(engine, "Task", "owner")?, pid(engine, "Task", "authored-on")?);
    let names = SYLLABLES.len() * SYLLABLES.len();
    let mut out = Vec::new();

    out.push(Family {
        name: "string",
        http: Box::new(move |n| vec![format!("Patient?family={}", surname(n % names).to_lowercase())]),
        sql: Box::new(move |n| {
            let s = surname(n % names).to_lowercase();
            page_and_count(
                "FROM resource r WHERE r.rkey IN (SELECT x.rkey FROM idx_string x WHERE x.pid = $1 \
                 AND x.norm >= $2 AND x.norm < $3) AND NOT r.deleted",
                vec![i(family), t(s.clone()), t(format!("{s}\u{10FFFF}"))],
            )
        }),
    });
    out.push(Family {
        name: "token",
        http: Box::new(move |n| vec![format!("Patient?identifier=urn:bench:mrn|MRN{}", n % patients)]),
        sql: Box::new(move |n| {
            page_and_count(
                "FROM resource r JOIN idx_token x ON x.rkey = r.rkey WHERE x.pid = $1 AND x.code = $2 \
                 AND x.system = $3 AND NOT r.deleted",
                vec![i(identifier), t(format!("MRN{}", n % patients)), t("urn:bench:mrn".into())],
            )
        }),
    });
    let one_day = move |n: usize| EPOCH_2019 + (n % (6 * 365)) as i64 * DAY_MS;
    out.push(Family {
        name: "date range",
        http: Box::new(move |n| vec![format!("Immunization?date={}", day(one_day(n)))]),
        sql: Box::new(move |n| {
            let lo = one_day(n);
            page_and_count(
                "FROM resource r WHERE r.rkey IN (SELECT x.rkey FROM idx_date x WHERE x.pid = $1 \
                 AND x.lo >= $2 AND x.lo < $3 AND x.hi <= $3) AND NOT r.deleted",
                vec![i(imm_date), i(lo), i(lo + DAY_MS)],
            )
        }),
    });
    out.push(Family {
        name: "reference",
        http: Box::new(move |n| vec![format!("Immunization?patient=Patient/p{}", n % patients)]),
        sql: Box::new(move |n| {
            page_and_count(
                "FROM resource r JOIN idx_reference x ON x.rkey = r.rkey WHERE x.pid = $1 \
                 AND x.target_id = $2 AND x.target_type = 'Patient' AND NOT r.deleted",
                vec![i(imm_patient), t(format!("p{}", n % patients))],
            )
        }),
    });
    out.push(Family {
        name: "chain",
        http: Box::new(move |n| {
            vec![format!("Immunization?patient.identifier=urn:bench:mrn|MRN{}", n % patients)]
        }),
        sql: Box::new(move |n| {
            page_and_count(
                "FROM resource r JOIN idx_reference x ON x.rkey = r.rkey WHERE x.pid = $1 \
                 AND x.target_type = 'Patient' AND x.target_id IN (SELECT p.id FROM idx_token y \
                 JOIN resource p ON p.rkey = y.rkey WHERE y.pid = $2 AND y.code = $3 \
                 AND y.system = 'urn:bench:mrn' AND NOT p.deleted) AND NOT r.deleted",
                vec![i(imm_patient), i(identifier), t(format!("MRN{}", n % patients))],
            )
        }),
    });
    out.push(Family {
        name: "_has",
        http: Box::new(move |n| {
            vec![format!("Patient?_has:Immunization:patient:lot-number:exact=LOT{}", n % LOTS)]
        }),
        sql: Box::new(move |n| {
            page_and_count(
                "FROM resource r WHERE r.rtype = 'Patient' AND NOT r.deleted AND r.id IN \
                 (SELECT x.target_id FROM idx_string y JOIN idx_reference x ON x.rkey = y.rkey AND +x.pid = $4 \
                 WHERE y.pid = $1 AND y.norm = $2 AND y.exact = $3)",
                vec![i(imm_lot), t(format!("lot{}", n % LOTS)), t(format!("LOT{}", n % LOTS)), i(imm_patient)],
            )
        }),
    });
    out.push(Family {
        name: "_include",
        http: Box::new(move |n| {
            vec![format!("Immunization?patient=Patient/p{}&_include=Immunization:patient", n % patients)]
        }),
        sql: Box::new(move |n| {
            let mut q = page_and_count(
                "FROM resource r JOIN idx_reference x ON x.rkey = r.rkey WHERE x.pid = $1 \
                 AND x.target_id = $2 AND x.target_type = 'Patient' AND NOT r.deleted",
                vec![i(imm_patient), t(format!("p{}", n % patients))],
            );
            q.push((
                "SELECT body FROM resource WHERE rtype = 'Patient' AND id = $1".into(),
                vec![t(format!("p{}", n % patients))],
            ));
            q
        }),
    });
    out.push(Family {
        name: "_sort+page 2",
        http: Box::new(move |n| {
            let q = format!("Task?owner=Practitioner/dr{}&_sort=-authored-on", n % PRACTITIONERS);
            vec![q, String::new()]
        }),
        sql: Box::new(move |n| {
            let from = "FROM resource r JOIN idx_reference o ON o.rkey = r.rkey \
                        WHERE o.pid = $1 AND o.target_id = $2 AND o.target_type = 'Practitioner' AND NOT r.deleted";
            let key = "(SELECT MAX(d.hi) FROM idx_date d WHERE d.rkey = r.rkey AND +d.pid = $3)";
            let binds = vec![i(task_owner), t(format!("dr{}", n % PRACTITIONERS)), i(task_authored)];
            vec![
                (format!("SELECT r.rkey, r.body, {key} AS k {from} ORDER BY k DESC, r.rkey LIMIT 21"), binds.clone()),
                (format!("SELECT COUNT(*) {from}"), binds[..2].to_vec()),
                (
                    format!(
                        "SELECT * FROM (SELECT r.rkey, r.body, {key} AS k {from}) t \
                         WHERE t.k < $4 OR (t.k = $4 AND t.rkey > 0) ORDER BY t.k DESC, t.rkey LIMIT 21"
                    ),
                    [binds.clone(), vec![i(EPOCH_2019 + 5 * 365 * DAY_MS + 180 * DAY_MS)]].concat(),
                ),
                (format!("SELECT COUNT(*) {from}"), binds[..2].to_vec()),
            ]
        }),
    });
    out.push(Family {
        name: "_summary=count",
        http: Box::new(move |n| {
            vec![format!("Immunization?vaccine-code={}&_summary=count", CVX[n % CVX.len()])]
        }),
        sql: Box::new(move |n| {
            // Deleted resources have no index rows: the index alone answers.
            vec![(
                "SELECT COUNT(DISTINCT x.rkey) FROM idx_token x WHERE x.pid = $1 AND x.code = $2".into(),
                vec![i(imm_code), t(CVX[n % CVX.len()].into())],
            )]
        }),
    });
    Ok(out)
}
