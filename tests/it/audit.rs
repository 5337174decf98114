//! The audit trail (`auth = "smart"`): every access to patient data leaves an AuditEvent —
//! writes in their own transaction, reads and failures through the queue (written on
//! shutdown too) — and only admins read them.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::authz::send;
use crate::support::{Backend, Db, Srv};

fn mint(srv: &Srv, client: &str, subject: &str, scopes: &str, patient: Option<&str>) -> String {
    let fhir_user = Some("Practitioner/pr1").filter(|_| subject != client);
    crate::support::mint(srv, client, subject, scopes, patient, fhir_user)
}

/// The AuditEvents matching `query`, waiting up to 5 s for `at_least` of them (reads are
/// written by the queue, a moment after their response).
async fn events(srv: &Srv, admin: &str, query: &str, at_least: usize) -> Vec<Value> {
    find(srv, admin, query, |found| found.len() >= at_least).await
}

/// The AuditEvents matching `query` once `done` holds for them (waiting up to 5 s).
async fn find(srv: &Srv, admin: &str, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..100 {
        let (status, text) =
            send(srv, Some(admin), Method::GET, &format!("AuditEvent?{query}&_count=500"), None).await;
        assert_eq!(status, 200, "{text}");
        let b: Value = serde_json::from_str(&text).unwrap();
        let found: Vec<Value> = b["entry"]
            .as_array()
            .map(|es| es.iter().map(|e| e["resource"].clone()).collect())
            .unwrap_or_default();
        if done(&found) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the AuditEvents for {query} never arrived");
}

fn entity_refs(ev: &Value) -> Vec<String> {
    ev["entity"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["what"]["reference"].as_str().map(str::to_string))
        .collect()
}

async fn trail(backend: Backend) {
    let db = Db::new(backend).await;
    let srv = Srv::start_on(&db, |c| c.auth = hearth::config::AuthMode::Smart).await;
    let store = &srv.state.engine.store;
    hearth::auth::accounts::add_user(
        store,
        "ada",
        "a long enough password",
        Some("Practitioner/pr1"),
        "admin",
    )
    .await
    .unwrap();
    hearth::auth::accounts::add_user(store, "bob", "a long enough password", None, "staff").await.unwrap();
    let admin = mint(&srv, "console", "ada", "user/*.cruds", None);
    let bob = mint(&srv, "app", "bob", "user/*.cruds", None);

    // A write: its AuditEvent is committed with it, so it is there at once.
    let p = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Audited"}]});
    assert_eq!(send(&srv, Some(&bob), Method::PUT, "Patient/p1", Some(p)).await.0, 201);
    let o = json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
                   "subject": {"reference": "Patient/p1"}});
    assert_eq!(send(&srv, Some(&bob), Method::PUT, "Observation/o1", Some(o)).await.0, 201);
    let writes = events(&srv, &admin, "subtype=update&patient=p1", 2).await;
    assert_eq!(writes.len(), 2, "{writes:?}");
    let obs_write =
        writes.iter().find(|e| entity_refs(e).contains(&"Observation/o1/_history/1".into())).unwrap();
    assert_eq!(obs_write["action"], "U");
    assert_eq!(obs_write["outcome"], "0");
    assert!(entity_refs(obs_write).contains(&"Patient/p1".to_string()), "{obs_write}");
    let agents = obs_write["agent"].as_array().unwrap();
    assert_eq!(agents[0]["who"]["identifier"]["value"], "app");
    assert_eq!(agents[0]["network"]["address"], "127.0.0.1");
    assert_eq!(agents[1]["who"]["identifier"]["value"], "bob");
    assert_eq!(agents[1]["requestor"], true);

    // A read, a search and a failed read go through the queue.
    assert_eq!(send(&srv, Some(&bob), Method::GET, "Observation/o1", None).await.0, 200);
    let read = &events(&srv, &admin, "subtype=read&patient=p1", 1).await[0];
    assert_eq!(read["action"], "R");
    assert!(entity_refs(read).contains(&"Observation/o1/_history/1".into()), "{read}");
    assert_eq!(send(&srv, Some(&bob), Method::GET, "Observation?subject=Patient/p1", None).await.0, 200);
    use base64::Engine as _;
    let query_of = |e: &Value| {
        let q = e["entity"].as_array().unwrap().iter().find_map(|x| x["query"].as_str())?;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(q).ok()?).ok()
    };
    let bobs = |e: &Value| query_of(e).as_deref() == Some("subject=Patient/p1");
    let searches = find(&srv, &admin, "subtype=search-type&patient=p1", |f| f.iter().any(bobs)).await;
    let search = searches.iter().find(|e| bobs(e)).unwrap();
    assert_eq!(search["agent"][1]["who"]["identifier"]["value"], "bob");
    assert_eq!(send(&srv, Some(&bob), Method::GET, "Observation/nope", None).await.0, 404);
    let failed = &events(&srv, &admin, "outcome=4", 1).await[0];
    assert!(entity_refs(failed).contains(&"Observation/nope".into()), "{failed}");
    // A refused write leaves no trace of itself but its failure.
    let bad = json!({"resourceType": "Observation", "status": "nonsense"});
    assert_eq!(send(&srv, Some(&bob), Method::POST, "Observation", Some(bad)).await.0, 400);
    let create_failures = events(&srv, &admin, "subtype=create&outcome=4", 1).await;
    assert_eq!(create_failures.len(), 1);
    // Practitioners are not patient data: not audited.
    let pr = json!({"resourceType": "Practitioner", "id": "pr1"});
    assert_eq!(send(&srv, Some(&bob), Method::PUT, "Practitioner/pr1", Some(pr)).await.0, 201);

    // Only admins read the audit log; nobody writes it.
    for path in ["AuditEvent", "AuditEvent?patient=p1", "?_type=AuditEvent", "_history"] {
        let (status, text) = send(&srv, Some(&bob), Method::GET, path, None).await;
        assert_eq!(status, 403, "{path}: {text}");
    }
    let (status, text) = send(&srv, Some(&bob), Method::GET, "", None).await;
    assert_eq!(status, 200);
    assert!(!text.contains("\"AuditEvent\""), "a system search leaked the audit log: {text}");
    let forged = json!({"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": "2020-01-01T00:00:00Z",
                        "agent": [{"requestor": true}], "source": {"observer": {"display": "x"}}});
    assert_eq!(send(&srv, Some(&admin), Method::POST, "AuditEvent", Some(forged)).await.0, 403);
    let svc = mint(&srv, "siem", "siem", "system/AuditEvent.rs", None);
    assert_eq!(send(&srv, Some(&svc), Method::GET, "AuditEvent?patient=p1", None).await.0, 200);

    // A batch that writes and reads leaves the writes' records and one for the batch.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "PUT", "url": "Observation/o2"},
         "resource": {"resourceType": "Observation", "id": "o2", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "Patient/p1"}}},
        {"request": {"method": "GET", "url": "Patient/p1"}}]});
    assert_eq!(send(&srv, Some(&bob), Method::POST, "", Some(batch)).await.0, 200);
    events(&srv, &admin, "subtype=batch", 1).await;
    events(&srv, &admin, "entity=Observation/o2", 1).await;
    // A Practitioner's compartment holds patient data: searching it is audited.
    assert_eq!(send(&srv, Some(&bob), Method::GET, "Practitioner/pr1/Observation", None).await.0, 200);
    let in_compartment = |e: &Value| {
        e["entity"].as_array().unwrap().iter().any(|x| x["what"]["reference"] == "Observation/o1/_history/1")
    };
    find(&srv, &admin, "subtype=search-type", |f| f.iter().any(in_compartment)).await;
    // $import cannot write the audit log.
    let svc_all = mint(&srv, "loader", "loader", "system/*.cruds", None);
    let line = json!({"resourceType": "AuditEvent", "id": "forged", "type": {"code": "rest"},
                      "recorded": "2020-01-01T00:00:00Z", "agent": [{"requestor": true}],
                      "source": {"observer": {"display": "x"}}});
    let resp = srv
        .req(Method::POST, "$import")
        .bearer_auth(&svc_all)
        .header("prefer", "respond-async")
        .header("content-type", "application/fhir+ndjson")
        .body(line.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let status_url = resp.headers()["content-location"].to_str().unwrap().to_string();
    let mut manifest = Value::Null;
    for _ in 0..100 {
        let r = srv.client.get(&status_url).bearer_auth(&svc_all).send().await.unwrap();
        if r.status() == 200 {
            manifest = r.json().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error_url = manifest["error"][0]["url"].as_str().unwrap_or_else(|| panic!("{manifest}")).to_string();
    let errors = srv.client.get(&error_url).bearer_auth(&svc_all).send().await.unwrap().text().await.unwrap();
    assert!(errors.contains("AuditEvent resources cannot be loaded"), "{errors}");
    assert_eq!(send(&srv, Some(&admin), Method::GET, "AuditEvent/forged", None).await.0, 404);

    // Reads queued just before a shutdown are written before the server stops.
    for _ in 0..50 {
        assert_eq!(send(&srv, Some(&bob), Method::GET, "Patient/p1", None).await.0, 200);
    }
    srv.stop().await;
    let srv = Srv::start_on(&db, |c| c.auth = hearth::config::AuthMode::Smart).await;
    let admin = mint(&srv, "console", "ada", "user/*.cruds", None);
    let reads = events(&srv, &admin, "subtype=read&entity=Patient/p1", 50).await;
    assert!(reads.len() >= 50, "{}", reads.len());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trail_sqlite() {
    trail(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_trail_postgres() {
    if crate::support::postgres_available() {
        trail(Backend::Postgres).await;
    }
}
