//! Bad input: every refusal is an OperationOutcome with the right status, and nothing stored
//! changes.

use reqwest::Method;
use serde_json::json;

use crate::both;
use crate::support::{Srv, json, outcome};

async fn raw(srv: &Srv, method: Method, path: &str, ct: &str, body: &str) -> reqwest::Response {
    srv.req(method, path).header("content-type", ct).body(body.to_string()).send().await.unwrap()
}

both!(invalid_resources_are_refused, |srv| {
    let ct = "application/fhir+json";
    let oo =
        outcome(raw(srv, Method::POST, "Patient", ct, "{\"resourceType\": \"Patient\",").await, 400).await;
    assert!(oo["issue"][0]["diagnostics"].as_str().unwrap().contains("malformed JSON"), "{oo}");
    let oo = outcome(
        srv.post("Patient", &json!({"resourceType": "Patient", "birthDate": "not-a-date"})).await,
        400,
    )
    .await;
    assert_eq!(oo["issue"][0]["expression"][0], "Patient.birthDate");
    let oo =
        outcome(srv.post("Patient", &json!({"resourceType": "Patient", "banana": true})).await, 400).await;
    assert!(oo["issue"][0]["diagnostics"].as_str().unwrap().contains("banana"), "{oo}");
    let oo = outcome(srv.post("Patient", &json!({"resourceType": "Patient", "gender": "banana"})).await, 400)
        .await;
    assert_eq!(oo["issue"][0]["expression"][0], "Patient.gender");
    let oo =
        outcome(srv.post("Patient", &json!({"resourceType": "Observation", "status": "final"})).await, 400)
            .await;
    assert!(oo["issue"][0]["diagnostics"].as_str().unwrap().contains("does not match"), "{oo}");
    // required elements from the StructureDefinitions, all reported at once
    let oo = outcome(srv.post("Observation", &json!({"resourceType": "Observation"})).await, 400).await;
    let paths: Vec<&str> =
        oo["issue"].as_array().unwrap().iter().filter_map(|i| i["expression"][0].as_str()).collect();
    assert!(paths.contains(&"Observation.status") && paths.contains(&"Observation.code"), "{oo}");
    outcome(srv.post("Patient", &json!([1, 2])).await, 400).await;
    outcome(srv.post("Patient", &json!({"gender": "male"})).await, 400).await;
    outcome(raw(srv, Method::POST, "Patient", ct, "").await, 400).await;
    // deep nesting is refused by the parser, not by a stack overflow
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    outcome(raw(srv, Method::POST, "Patient", ct, &deep).await, 400).await;
    // a primitive given only through its extension satisfies "required"
    let task = json!({
        "resourceType": "Task", "intent": "order",
        "_status": {"extension": [{"url": "http://example.org/x", "valueString": "unknown"}]}
    });
    assert_eq!(srv.post("Task", &task).await.status(), 201);
});

both!(update_id_rules, |srv| {
    let p = json!({"resourceType": "Patient", "id": "a1"});
    outcome(srv.put("Patient/b2", &p).await, 400).await;
    outcome(srv.put("Patient/a1", &json!({"resourceType": "Patient"})).await, 400).await;
    let long = "x".repeat(65);
    outcome(srv.put(&format!("Patient/{long}"), &json!({"resourceType": "Patient", "id": long})).await, 400)
        .await;
    outcome(srv.get("Patient/bad$id").await, 400).await;
    assert_eq!(srv.get("Patient/a1").await.status(), 404);
});

both!(nothing_changes_on_refusal, |srv| {
    let p = json!({"resourceType": "Patient", "id": "keep", "gender": "female"});
    srv.put("Patient/keep", &p).await;
    outcome(
        srv.put("Patient/keep", &json!({"resourceType": "Patient", "id": "keep", "gender": 7})).await,
        400,
    )
    .await;
    outcome(raw(srv, Method::PUT, "Patient/keep", "application/fhir+json", "{oops").await, 400).await;
    let now = json(srv.get("Patient/keep").await).await;
    assert_eq!(now["gender"], "female");
    assert_eq!(now["meta"]["versionId"], "1");
    let history = json(srv.get("Patient/keep/_history").await).await;
    assert_eq!(history["total"], 1);
});

both!(http_level_errors, |srv| {
    let p = json!({"resourceType": "Patient"}).to_string();
    outcome(srv.get("Banana/1").await, 404).await;
    outcome(srv.post("Banana", &json!({"resourceType": "Banana"})).await, 404).await;
    outcome(srv.get("Patient/1/_nonsense").await, 404).await;
    outcome(raw(srv, Method::POST, "Patient", "text/plain", &p).await, 415).await;
    outcome(raw(srv, Method::PATCH, "Patient/x", "text/plain", "[]").await, 415).await;
    let resp = srv.req(Method::GET, "Patient/1").header("accept", "image/png").send().await.unwrap();
    outcome(resp, 406).await;
    outcome(srv.get("Patient/1?_format=pdf").await, 406).await;
    let resp = srv
        .req(Method::POST, "Patient/1")
        .header("content-type", "application/fhir+json")
        .body(p.clone())
        .send()
        .await
        .unwrap();
    outcome(resp, 405).await;
    // An empty batch is answered; PATCH inside a Bundle is not implemented, and says so.
    let empty = json(srv.post("", &json!({"resourceType": "Bundle", "type": "batch"})).await).await;
    assert_eq!(empty["type"], "batch-response");
    let patch = json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [{"request": {"method": "PATCH", "url": "Patient/x"}}]});
    outcome(srv.post("", &patch).await, 501).await;
    // the server keeps serving
    assert_eq!(srv.post("Patient", &json!({"resourceType": "Patient"})).await.status(), 201);
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit() {
    let srv = Srv::start_with(crate::support::Backend::Sqlite, |c| c.max_body_bytes = 4096).await;
    let big = json!({"resourceType": "Patient", "name": [{"text": "x".repeat(10_000)}]});
    let oo = outcome(srv.post("Patient", &big).await, 413).await;
    assert_eq!(oo["issue"][0]["code"], "too-large");
    // a chunked body without Content-Length is cut off at the same limit
    let body = big.to_string();
    let addr = srv.base.trim_start_matches("http://").trim_end_matches("/fhir").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/fhir+json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("too-large"), "{response}");
    assert_eq!(srv.post("Patient", &json!({"resourceType": "Patient"})).await.status(), 201);
    srv.stop().await;
}
