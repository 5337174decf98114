//! kill -9 in the middle of writes: after a restart the database holds only whole transactions
//! (a transaction Bundle, an import batch), and the search index agrees with the stored
//! resources.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::cli::{get, spawn};
use crate::support::{postgres_available, postgres_database};

/// `Patient?…&_summary=count` on a running server.
async fn count(base: &str, query: &str) -> i64 {
    let (status, b) = get(&format!("{base}/Patient?{query}_summary=count")).await;
    assert_eq!(status, 200, "{b}");
    b["total"].as_i64().unwrap()
}

async fn crash_round(database: &str) {
    let dir = tempfile::tempdir().unwrap();
    let serve = ["serve", "--auth", "none", "--listen", "127.0.0.1:0", "--database", database];
    let p = spawn(&serve, &[], dir.path());
    let bundle = |family: &str, n: usize| {
        let entries: Vec<_> = (0..n)
            .map(|i| json!({"resource": {"resourceType": "Patient", "name": [{"family": family, "given": [format!("g{i}")]}]},
                "request": {"method": "POST", "url": "Patient"}}))
            .collect();
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    };
    let client = reqwest::Client::new();
    let resp = client.post(&p.base).json(&bundle("Committed", 10)).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // A 5000-entry transaction, killed while it runs.
    let big = bundle("Crash", 5000);
    let url = p.base.clone();
    let sent = tokio::spawn(async move { reqwest::Client::new().post(&url).json(&big).send().await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    p.kill9();
    let answered = sent.await.unwrap().map(|r| r.status().as_u16());
    eprintln!("the killed transaction was answered: {answered:?}");

    let p = spawn(&serve, &[], dir.path());
    assert_eq!(count(&p.base, "family=Committed&").await, 10, "committed work survives");
    let crashed = count(&p.base, "family=Crash&").await;
    assert!(crashed == 0 || crashed == 5000, "{crashed} of the 5000 entries: not all-or-nothing");
    assert_eq!(count(&p.base, "").await, 10 + crashed, "every stored Patient is in the name index");
    p.kill9();

    // An import of 20 000 Patients in 1000-resource batches, killed part way.
    let file = dir.path().join("patients.ndjson");
    let lines: Vec<String> = (0..20_000)
        .map(|i| {
            json!({"resourceType": "Patient", "id": format!("imp{i}"), "name": [{"family": "Imported"}]})
                .to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let import = || {
        Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["import", "--database", database])
            .arg(&file)
            .current_dir(dir.path())
            .env("HEARTH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("hearth import")
    };
    let mut child = import();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    child.kill().unwrap();
    let killed = child.wait().unwrap();
    let p = spawn(&serve, &[], dir.path());
    let imported = count(&p.base, "family=Imported&").await;
    eprintln!("import killed ({killed}) after {imported} resources");
    assert_eq!(imported % 1000, 0, "only whole batches: {imported}");
    assert_eq!(count(&p.base, "").await, 10 + crashed + imported, "index agrees with the rows");
    p.kill9();

    // Running the import again finishes it without duplicates.
    assert!(import().wait().unwrap().success());
    let p = spawn(&serve, &[], dir.path());
    assert_eq!(count(&p.base, "family=Imported&").await, 20_000);
    assert_eq!(count(&p.base, "").await, 10 + crashed + 20_000);
    assert!(p.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    crash_round(&format!("sqlite://{}", dir.path().join("crash.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_postgres() {
    if !postgres_available() {
        return;
    }
    crash_round(&postgres_database().await).await;
}
