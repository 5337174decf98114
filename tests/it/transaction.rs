//! Batch and transaction Bundles (http.html#transaction): urn:uuid graphs, conditional creates
//! and references, all-or-nothing, batch entries that fail on their own.

use serde_json::{Value, json};

use crate::both;
use crate::search::{check, put};
use crate::support::{json, outcome};

fn entry(method: &str, url: &str, full_url: Option<&str>, resource: Option<Value>) -> Value {
    let mut e = json!({"request": {"method": method, "url": url}});
    if let Some(f) = full_url {
        e["fullUrl"] = json!(f);
    }
    if let Some(r) = resource {
        e["resource"] = r;
    }
    e
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

fn statuses(resp: &Value) -> Vec<String> {
    resp["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap().to_string())
        .collect()
}

/// `Type/id` from an entry's `response.location` (`Type/id/_history/n`).
fn located(resp: &Value, i: usize) -> String {
    let loc = resp["entry"][i]["response"]["location"].as_str().unwrap();
    loc.split("/_history").next().unwrap().to_string()
}

both!(transaction_resolves_a_urn_uuid_graph, |srv| {
    let p = "urn:uuid:11111111-1111-1111-1111-111111111111";
    let e = "urn:uuid:22222222-2222-2222-2222-222222222222";
    let i = "urn:uuid:33333333-3333-3333-3333-333333333333";
    let tx = bundle(
        "transaction",
        vec![
            // Provenance first: order in the Bundle must not matter.
            entry(
                "POST",
                "Provenance",
                None,
                Some(json!({"resourceType": "Provenance", "recorded": "2024-01-01T00:00:00Z",
            "target": [{"reference": i}, {"reference": p}], "agent": [{"who": {"reference": p}}]})),
            ),
            entry(
                "POST",
                "Patient",
                Some(p),
                Some(json!({"resourceType": "Patient",
            "identifier": [{"system": "urn:tx", "value": "1"}]})),
            ),
            entry(
                "POST",
                "Encounter",
                Some(e),
                Some(json!({"resourceType": "Encounter", "status": "finished",
            "class": {"code": "AMB"}, "subject": {"reference": p}})),
            ),
            entry(
                "POST",
                "Immunization",
                Some(i),
                Some(json!({"resourceType": "Immunization", "status": "completed",
            "vaccineCode": {"text": "flu"}, "occurrenceDateTime": "2024-10-01", "patient": {"reference": p},
            "encounter": {"reference": e},
            "extension": [{"url": "http://x/ext", "valueReference": {"reference": p}}]})),
            ),
        ],
    );
    let resp = srv.post("", &tx).await;
    assert_eq!(resp.status(), 200);
    let r = json(resp).await;
    assert_eq!(r["type"], "transaction-response", "{r}");
    assert_eq!(statuses(&r), ["201 Created"; 4]);
    let (patient, encounter, imm) = (located(&r, 1), located(&r, 2), located(&r, 3));
    let stored = json(srv.get(&imm).await).await;
    assert_eq!(stored["patient"]["reference"], patient.as_str());
    assert_eq!(stored["encounter"]["reference"], encounter.as_str());
    assert_eq!(stored["extension"][0]["valueReference"]["reference"], patient.as_str());
    let prov = json(srv.get(&located(&r, 0)).await).await;
    assert_eq!(prov["target"][0]["reference"], imm.as_str());
    // The index saw the rewritten references.
    let pid = patient.trim_start_matches("Patient/");
    check(srv, &format!("Immunization?patient={pid}"), &[imm.trim_start_matches("Immunization/")]).await;
});

both!(transaction_is_all_or_nothing, |srv| {
    put(srv, "Patient/keep", json!({"gender": "female"})).await;
    let mut entries: Vec<Value> = (0..4)
        .map(|k| {
            entry(
                "POST",
                "Patient",
                None,
                Some(json!({"resourceType": "Patient",
            "identifier": [{"system": "urn:atomic", "value": format!("{k}")}]})),
            )
        })
        .collect();
    // The 5th entry fails inside the transaction: its If-Match is stale.
    let mut stale =
        entry("PUT", "Patient/keep", None, Some(json!({"resourceType": "Patient", "id": "keep"})));
    stale["request"]["ifMatch"] = json!("W/\"9\"");
    entries.push(stale);
    let oo = outcome(srv.post("", &bundle("transaction", entries)).await, 412).await;
    assert!(oo.to_string().contains("Bundle.entry[4]"), "{oo}");
    check(srv, "Patient?identifier=urn:atomic|", &[]).await;
    let keep = json(srv.get("Patient/keep").await).await;
    assert_eq!(keep["meta"]["versionId"], "1");
    // A reference to an fullUrl no entry has fails the whole transaction too.
    let dangling = bundle(
        "transaction",
        vec![entry(
            "POST",
            "Observation",
            None,
            Some(json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "urn:uuid:99999999-9999-9999-9999-999999999999"}})),
        )],
    );
    outcome(srv.post("", &dangling).await, 400).await;
    check(srv, "Observation", &[]).await;
});

// A transaction with many writes has its versions stamped on another thread while earlier
// ones are written: the graph still resolves, entries keep their order, and a version that
// cannot be made late in the Bundle (an unusable SearchParameter, refused when stamped) still
// rolls back everything.
both!(transaction_of_many_writes_is_whole, |srv| {
    let observation = |k: usize| {
        entry(
            "POST",
            "Observation",
            None,
            Some(json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "urn:many", "code": format!("c{k}")}]},
                "subject": {"reference": "urn:uuid:11111111-2222-3333-4444-555555555555"}})),
        )
    };
    let patient = entry(
        "POST",
        "Patient",
        Some("urn:uuid:11111111-2222-3333-4444-555555555555"),
        Some(json!({"resourceType": "Patient", "identifier": [{"system": "urn:many", "value": "p"}]})),
    );
    let mut entries: Vec<Value> = (0..30).map(observation).collect();
    entries.insert(15, patient.clone());
    let resp = json(srv.post("", &bundle("transaction", entries)).await).await;
    assert_eq!(statuses(&resp), vec!["201 Created".to_string(); 31]);
    let pid = located(&resp, 15);
    assert!(pid.starts_with("Patient/"), "{pid}");
    assert!(located(&resp, 16).starts_with("Observation/"));
    let page = json(srv.get(&format!("Observation?subject={pid}&_count=100")).await).await;
    assert_eq!(page["total"], 30, "{page}");
    let first = json(srv.get(&located(&resp, 0)).await).await;
    assert_eq!(first["code"]["coding"][0]["code"], "c0");
    assert_eq!(first["subject"]["reference"], pid.as_str());

    // The last write is a SearchParameter whose code cannot be used: nothing is stored.
    let mut entries: Vec<Value> = (100..130).map(observation).collect();
    entries.insert(0, patient);
    entries.push(entry(
        "POST",
        "SearchParameter",
        None,
        Some(json!({"resourceType": "SearchParameter", "url": "http://example.org/sp/bad",
            "name": "bad", "status": "active", "description": "x", "code": "no good",
            "base": ["Patient"], "type": "token", "expression": "Patient.gender"})),
    ));
    let oo = outcome(srv.post("", &bundle("transaction", entries)).await, 400).await;
    assert!(oo.to_string().contains("Bundle.entry[31]"), "{oo}");
    let page = json(srv.get("Observation?code=urn:many|c100").await).await;
    assert_eq!(page["total"], 0, "{page}");
    let page = json(srv.get("Patient?identifier=urn:many|p").await).await;
    assert_eq!(page["total"], 1, "{page}");
});

both!(transaction_conditional_create_and_references, |srv| {
    put(srv, "Patient/known", json!({"identifier": [{"system": "urn:mrn", "value": "42"}]})).await;
    let mut create = entry(
        "POST",
        "Patient",
        Some("urn:uuid:44444444-4444-4444-4444-444444444444"),
        Some(json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "42"}]})),
    );
    create["request"]["ifNoneExist"] = json!("identifier=urn:mrn|42");
    let tx = bundle(
        "transaction",
        vec![
            create,
            entry(
                "POST",
                "Observation",
                None,
                Some(json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "a"}, "subject": {"reference": "urn:uuid:44444444-4444-4444-4444-444444444444"}})),
            ),
            entry(
                "POST",
                "Observation",
                None,
                Some(json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "b"}, "subject": {"reference": "Patient?identifier=urn:mrn|42"}})),
            ),
            entry("GET", "Observation?subject=Patient/known", None, None),
        ],
    );
    let r = json(srv.post("", &tx).await).await;
    assert_eq!(statuses(&r), ["200 OK", "201 Created", "201 Created", "200 OK"], "{r}");
    assert_eq!(located(&r, 0), "Patient/known");
    // Both observations point at the existing patient; the GET ran after the writes.
    assert_eq!(r["entry"][3]["resource"]["total"], 2, "{r}");
    check(srv, "Patient?identifier=urn:mrn|42", &["known"]).await;
    // A conditional reference must match exactly one resource.
    let none = bundle(
        "transaction",
        vec![entry(
            "POST",
            "Observation",
            None,
            Some(json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "c"},
        "subject": {"reference": "Patient?identifier=urn:mrn|nobody"}})),
        )],
    );
    outcome(srv.post("", &none).await, 404).await;
    // A GET that fails after the commit is its entry's answer; the writes stand.
    let tx = bundle(
        "transaction",
        vec![
            entry("POST", "Patient", None, Some(json!({"resourceType": "Patient", "gender": "male"}))),
            entry("GET", "Patient/nobody", None, None),
        ],
    );
    let r = json(srv.post("", &tx).await).await;
    assert_eq!(statuses(&r), ["201 Created", "404 Not Found"], "{r}");
    check(srv, "Patient?gender=male", &[located(&r, 0).trim_start_matches("Patient/")]).await;
    // Malformed: a PUT whose body names another id, a fullUrl used twice, a GET of no shape.
    let wrong_id = bundle(
        "transaction",
        vec![entry("PUT", "Patient/one", None, Some(json!({"resourceType": "Patient", "id": "two"})))],
    );
    outcome(srv.post("", &wrong_id).await, 400).await;
    let u = "urn:uuid:66666666-6666-6666-6666-666666666666";
    let twice = bundle(
        "transaction",
        vec![
            entry("POST", "Patient", Some(u), Some(json!({"resourceType": "Patient"}))),
            entry("POST", "Patient", Some(u), Some(json!({"resourceType": "Patient"}))),
        ],
    );
    outcome(srv.post("", &twice).await, 400).await;
    let shapeless = bundle("transaction", vec![entry("GET", "Patient/a/b", None, None)]);
    outcome(srv.post("", &shapeless).await, 400).await;
    check(srv, "Patient?gender=male", &[located(&r, 0).trim_start_matches("Patient/")]).await;
});

both!(batch_entries_succeed_and_fail_alone, |srv| {
    put(srv, "Patient/b1", json!({"gender": "male"})).await;
    put(srv, "Patient/b2", json!({})).await;
    let b = bundle(
        "batch",
        vec![
            entry(
                "POST",
                "Patient",
                None,
                Some(json!({"resourceType": "Patient", "birthDate": "2000-01-01"})),
            ),
            entry(
                "PUT",
                "Patient/bad",
                None,
                Some(json!({"resourceType": "Patient", "id": "bad", "birthDate": "nope"})),
            ),
            entry("GET", "Patient/b1", None, None),
            entry("DELETE", "Patient/b2", None, None),
            entry("GET", "Patient/missing", None, None),
            entry("PATCH", "Patient/b1", None, None),
        ],
    );
    let r = json(srv.post("", &b).await).await;
    assert_eq!(r["type"], "batch-response");
    assert_eq!(
        statuses(&r),
        [
            "201 Created",
            "400 Bad Request",
            "200 OK",
            "204 No Content",
            "404 Not Found",
            "501 Not Implemented"
        ]
    );
    assert_eq!(r["entry"][1]["response"]["outcome"]["resourceType"], "OperationOutcome");
    assert_eq!(r["entry"][2]["resource"]["gender"], "male");
    outcome(srv.get("Patient/b2").await, 410).await;
    outcome(srv.post("", &json!({"resourceType": "Bundle", "type": "collection"})).await, 400).await;
    outcome(srv.post("", &json!({"resourceType": "Patient"})).await, 400).await;
});
