//! The `hearth` binary itself: `serve --demo`, configuration sources, graceful shutdown, and a
//! real FHIR client (Python fhirpy) doing create/read/update/delete against it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::support::{Backend, postgres_available, postgres_database};

pub(crate) struct Process {
    child: Child,
    pub base: String,
}

/// Starts the binary and waits for its "listening on" line.
pub(crate) fn spawn(args: &[&str], envs: &[(&str, &str)], dir: &std::path::Path) -> Process {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
    cmd.args(args).current_dir(dir).stdout(Stdio::piped()).stderr(Stdio::inherit()).env("HEARTH_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn hearth");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read stdout");
    let base = line
        .trim()
        .strip_prefix("hearth listening on ")
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .to_string();
    Process { child, base }
}

/// A test that fails midway must not leave its server running: it would hold the test's output
/// pipe open and hang whatever reads it.
impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// SIGKILL: no shutdown of any kind.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
        assert!(ok.success());
        self.child.wait().expect("wait")
    }
}

pub(crate) async fn get(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url).await.expect("GET");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn demo_round(database: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = spawn(
        &["serve", "--demo", "--auth", "none", "--listen", "127.0.0.1:0", "--database", database],
        &[],
        dir.path(),
    );
    let root = p.base.trim_end_matches("/fhir");
    assert_eq!(reqwest::get(format!("{root}/healthz")).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(format!("{root}/readyz")).await.unwrap().status(), 200);
    let (status, bundle) = get(&format!("{}/Patient?_count=0", p.base)).await;
    assert_eq!(status, 200);
    assert_eq!(bundle["total"], 8, "the demo set has 8 patients");
    let (_, found) =
        get(&format!("{}/Patient?identifier=http://hearth.example.org/mrn|100107", p.base)).await;
    assert_eq!(found["total"], 1);
    for t in ["Practitioner", "Immunization", "CarePlan", "Task"] {
        let (_, b) = get(&format!("{}/{t}?_count=0", p.base)).await;
        assert!(b["total"].as_i64().unwrap() > 0, "demo {t}");
    }
    run_fhirpy(&p.base);
    assert!(p.terminate().success(), "graceful shutdown exits 0");

    // A second start keeps the data and does not load the demo twice.
    let p = spawn(
        &["demo", "--auth", "none", "--listen", "127.0.0.1:0", "--database", database],
        &[],
        dir.path(),
    );
    let (_, bundle) = get(&format!("{}/Patient?_count=0", p.base)).await;
    assert_eq!(bundle["total"], 8);
    assert!(p.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    demo_round(&format!("sqlite://{}", dir.path().join("demo.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_demo_postgres() {
    if !postgres_available() {
        return;
    }
    let _ = Backend::Postgres;
    demo_round(&postgres_database().await).await;
}

/// The Python fhirpy client's CRUD script; required when HEARTH_REQUIRE_CLIENTS=1.
fn run_fhirpy(base: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/fhirpy_crud.py");
    let has_fhirpy =
        Command::new("python3").args(["-c", "import fhirpy"]).status().is_ok_and(|s| s.success());
    if !has_fhirpy {
        assert!(
            std::env::var("HEARTH_REQUIRE_CLIENTS").as_deref() != Ok("1"),
            "HEARTH_REQUIRE_CLIENTS=1 but python3 with fhirpy is not installed (pip install -r tests/clients/requirements.txt)"
        );
        eprintln!("fhirpy not installed: skipping the real-client test");
        return;
    }
    let out = Command::new("python3").arg(script).env("HEARTH_BASE_URL", base).output().expect("python3");
    assert!(
        out.status.success(),
        "fhirpy CRUD failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_sources() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("from-file.db");
    // hearth.toml in the working directory, overridden by env, overridden by flags
    std::fs::write(
        dir.path().join("hearth.toml"),
        format!(
            "database = \"sqlite://{}\"\nlisten = \"127.0.0.1:1\"\nbase_url = \"https://from-file/fhir\"\n",
            db.display()
        ),
    )
    .unwrap();
    let p = spawn(
        &["serve", "--auth", "none", "--listen", "127.0.0.1:0"],
        &[("HEARTH_BASE_URL", "https://from-env/fhir"), ("HEARTH_LISTEN", "127.0.0.1:2")],
        dir.path(),
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/Patient", p.base))
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType":"Patient"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert!(resp.headers()["location"].to_str().unwrap().starts_with("https://from-env/fhir/Patient/"));
    // a second process on the same SQLite file is refused, not left to serve stale reads
    let second = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["migrate", "--database", &format!("sqlite://{}", db.display())])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use by another Hearth process"));
    assert!(p.terminate().success());
    assert!(db.exists(), "the database named in hearth.toml was used");

    // migrate creates the schema and exits; a bad config file is a clear failure
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["migrate", "--database", &format!("sqlite://{}", dir.path().join("m.db").display())])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.path().join("bad.toml"), "lisen = 3").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["serve", "--config", "bad.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));
}

/// A request in flight when shutdown begins is completed and stored; then the server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("s.db").display());
    let db = database.clone();
    let srv = crate::support::Srv::start_with(Backend::Sqlite, move |c| c.database = db).await;
    let addr = srv.base.trim_start_matches("http://").trim_end_matches("/fhir").to_string();
    let body = r#"{"resourceType":"Patient","id":"in-flight","gender":"female"}"#;
    let (first, second) = body.split_at(20);
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /fhir/Patient/in-flight HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/fhir+json\r\n\
         Content-Length: {}\r\n\r\n{first}",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let stopping = tokio::spawn(srv.stop());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!stopping.is_finished(), "the server waits for the request in flight");
    conn.write_all(second.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 4096];
    let n = conn.read(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response[..n]).to_string();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    drop(conn);
    tokio::time::timeout(std::time::Duration::from_secs(10), stopping)
        .await
        .expect("server stopped")
        .unwrap();
    // the write is durable: a new server on the same file reads it
    let srv = crate::support::Srv::start_with(Backend::Sqlite, move |c| c.database = database).await;
    let stored = crate::support::json(srv.get("Patient/in-flight").await).await;
    assert_eq!(stored["gender"], "female");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    reindex_round(&format!("sqlite://{}", dir.path().join("r.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_postgres() {
    if !postgres_available() {
        return;
    }
    reindex_round(&postgres_database().await).await;
}

/// `hearth reindex` on a stopped database, and custom SearchParameters that survive a restart.
async fn reindex_round(database: &str) {
    let database = database.to_string();
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let put = |base: &str, path: &str, body: Value| {
        client
            .put(format!("{base}/{path}"))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
    };
    let p = spawn(
        &["serve", "--auth", "none", "--listen", "127.0.0.1:0", "--database", &database],
        &[],
        dir.path(),
    );
    let patient = serde_json::json!({"resourceType": "Patient", "id": "n1",
        "name": [{"use": "nickname", "given": ["Bobby"]}]});
    assert_eq!(put(&p.base, "Patient/n1", patient).await.unwrap().status(), 201);
    let sp = serde_json::json!({"resourceType": "SearchParameter", "id": "nick", "url": "http://x/nick",
        "name": "nick", "status": "active", "description": "nickname", "code": "nick", "base": ["Patient"],
        "type": "string", "expression": "Patient.name.where(use = 'nickname').given"});
    assert_eq!(put(&p.base, "SearchParameter/nick", sp).await.unwrap().status(), 201);
    let (_, before) = get(&format!("{}/Patient?nick=bob", p.base)).await;
    assert_eq!(before["total"], 0, "stored before the parameter existed");
    assert!(p.terminate().success());

    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["reindex", "--database", &database])
        .current_dir(dir.path())
        .env("HEARTH_LOG", "warn")
        .output()
        .expect("run hearth reindex");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "re-indexed 2 resources");

    let p = spawn(
        &["serve", "--auth", "none", "--listen", "127.0.0.1:0", "--database", &database],
        &[],
        dir.path(),
    );
    let (_, after) = get(&format!("{}/Patient?nick=bob", p.base)).await;
    assert_eq!(after["total"], 1, "{after}");
    assert!(p.terminate().success());
}

/// `hearth import`: NDJSON and a gzipped Bundle from a directory, bad lines rejected into the
/// error file with their reason, and a second run that updates instead of duplicating.
async fn import_round(database: &str) {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let ndjson = [
        r#"{"resourceType":"Patient","id":"i1","gender":"female"}"#,
        r#"{"resourceType":"Patient","id":"i2"}"#,
        r#"{"resourceType":"Patient","id":"i3"}"#,
        r#"{"resourceType":"Patient","id":"#,
        r#"{"resourceType":"Patient","id":"i4","birthDate":"not a date"}"#,
        r#"{"resourceType":"Observation","status":"final","code":{"text":"no id"}}"#,
    ];
    std::fs::write(data.join("a.ndjson"), ndjson.join("\n")).unwrap();
    let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Practitioner", "id": "pr1"}},
        {"resource": {"resourceType": "Immunization", "id": "im1", "status": "completed",
            "vaccineCode": {"text": "flu"}, "occurrenceDateTime": "2024-01-01",
            "patient": {"reference": "Patient/i1"}}},
        // Entries that refer to each other by fullUrl, the newcomer without an id.
        {"fullUrl": "urn:uuid:55555555-5555-5555-5555-555555555555",
            "resource": {"resourceType": "Patient", "gender": "other"}},
        {"resource": {"resourceType": "Immunization", "id": "im2", "status": "completed",
            "vaccineCode": {"text": "flu"}, "occurrenceDateTime": "2024-01-01",
            "patient": {"reference": "urn:uuid:55555555-5555-5555-5555-555555555555"}}}
    ]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bundle.to_string().as_bytes()).unwrap();
    std::fs::write(data.join("b.json.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(data.join("README.txt"), "not data").unwrap();
    let errors = dir.path().join("rejected.ndjson");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["import", "--database", database, "--errors"])
            .arg(&errors)
            .arg(&data)
            .current_dir(dir.path())
            .env("HEARTH_LOG", "warn")
            .output()
            .expect("run hearth import")
    };
    for unchanged in [0, 8] {
        let out = run();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let expected = format!("imported 8 resources ({unchanged} unchanged) from 2 files; rejected 2");
        assert!(stdout.contains(&expected), "{stdout}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("skipped"), "the .txt file is named");
        let rejected: Vec<Value> = std::fs::read_to_string(&errors)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rejected.len(), 2);
        assert_eq!((rejected[0]["line"].as_u64(), rejected[1]["line"].as_u64()), (Some(4), Some(5)));
        assert!(rejected[1]["error"].as_str().unwrap().contains("birthDate"), "{}", rejected[1]);
    }
    let p = spawn(
        &["serve", "--auth", "none", "--listen", "127.0.0.1:0", "--database", database],
        &[],
        dir.path(),
    );
    for (query, n) in
        [("Patient", 4), ("Observation", 1), ("Practitioner", 1), ("Immunization?patient=i1", 1)]
    {
        let (_, b) = get(&format!("{}/{query}", p.base)).await;
        assert_eq!(b["total"], n, "{query}: {b}");
    }
    let (_, im2) = get(&format!("{}/Immunization/im2", p.base)).await;
    let to = im2["patient"]["reference"].as_str().unwrap().to_string();
    let (status, newcomer) = get(&format!("{}/{to}", p.base)).await;
    assert_eq!((status, newcomer["gender"].as_str()), (200, Some("other")), "{to}");
    let (_, i1) = get(&format!("{}/Patient/i1", p.base)).await;
    assert_eq!(i1["meta"]["versionId"], "1", "the second run neither duplicated nor rewrote it");
    assert!(p.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    import_round(&format!("sqlite://{}", dir.path().join("i.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_postgres() {
    if !postgres_available() {
        return;
    }
    import_round(&postgres_database().await).await;
}
