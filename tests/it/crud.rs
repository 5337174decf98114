//! create, read, vread, update, patch, delete and the version headers.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both;
use crate::support::{json, outcome};

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "http://hearth.test/mrn", "value": "MRN-1"}],
        "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
        "gender": "male",
        "birthDate": "1974-12-25"
    })
}

both!(create_read_vread, |srv| {
    let resp = srv.post("Patient", &patient()).await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(resp.headers()["etag"], "W/\"1\"");
    assert!(resp.headers().contains_key("last-modified"));
    let created = json(resp).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("{}/Patient/{id}/_history/1", srv.base));
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(created["meta"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
    assert_eq!(created["name"][0]["given"][1], "James");

    // read returns exactly the bytes that were stored
    let read = srv.get(&format!("Patient/{id}")).await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["etag"], "W/\"1\"");
    assert!(read.headers()["content-type"].to_str().unwrap().starts_with("application/fhir+json"));
    assert_eq!(json(read).await, created);

    let v1 = srv.get(&format!("Patient/{id}/_history/1")).await;
    assert_eq!(v1.status(), 200);
    assert_eq!(json(v1).await, created);
    outcome(srv.get(&format!("Patient/{id}/_history/2")).await, 404).await;
    outcome(srv.get(&format!("Patient/{id}/_history/x")).await, 404).await;
    outcome(srv.get("Patient/does-not-exist").await, 404).await;
});

both!(create_ignores_client_id, |srv| {
    let mut p = patient();
    p["id"] = json!("client-chosen");
    let created = srv.create(&p).await;
    assert_ne!(created["id"], "client-chosen");
    assert_eq!(srv.get("Patient/client-chosen").await.status(), 404);
});

both!(update_versions_and_update_as_create, |srv| {
    let mut p = patient();
    p["id"] = json!("pat-1");
    let resp = srv.put("Patient/pat-1", &p).await;
    assert_eq!(resp.status(), 201, "update-as-create");
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        format!("{}/Patient/pat-1/_history/1", srv.base)
    );

    p["gender"] = json!("other");
    let resp = srv.put("Patient/pat-1", &p).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["etag"], "W/\"2\"");
    let body = json(resp).await;
    assert_eq!(body["meta"]["versionId"], "2");
    assert_eq!(body["gender"], "other");

    // the old version is still there, unchanged
    let v1 = json(srv.get("Patient/pat-1/_history/1").await).await;
    assert_eq!(v1["gender"], "male");
    assert_eq!(v1["meta"]["versionId"], "1");
});

both!(if_match_on_update_patch_delete, |srv| {
    let mut p = patient();
    p["id"] = json!("pm");
    srv.put("Patient/pm", &p).await;
    let stale = srv
        .req(Method::PUT, "Patient/pm")
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"7\"")
        .body(p.to_string())
        .send()
        .await
        .unwrap();
    outcome(stale, 412).await;
    let ok = srv
        .req(Method::PUT, "Patient/pm")
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(p.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let bad_etag = srv
        .req(Method::PUT, "Patient/pm")
        .header("content-type", "application/fhir+json")
        .header("if-match", "yesterday")
        .body(p.to_string())
        .send()
        .await
        .unwrap();
    outcome(bad_etag, 400).await;

    let patch = json!([{"op": "replace", "path": "/gender", "value": "female"}]);
    let stale = srv
        .req(Method::PATCH, "Patient/pm")
        .header("content-type", "application/json-patch+json")
        .header("if-match", "W/\"1\"")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    outcome(stale, 412).await;
    let stale = srv.req(Method::DELETE, "Patient/pm").header("if-match", "W/\"1\"").send().await.unwrap();
    outcome(stale, 412).await;
    let ok = srv.req(Method::DELETE, "Patient/pm").header("if-match", "W/\"2\"").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    // nothing the refused requests carried was stored
    let v2 = json(srv.get("Patient/pm/_history/2").await).await;
    assert_eq!(v2["gender"], "male");
});

both!(json_patch, |srv| {
    let created = srv.create(&patient()).await;
    let id = created["id"].as_str().unwrap();
    let patch = json!([
        {"op": "replace", "path": "/gender", "value": "female"},
        {"op": "add", "path": "/name/0/given/-", "value": "Jim"},
        {"op": "test", "path": "/birthDate", "value": "1974-12-25"}
    ]);
    let resp = srv
        .req(Method::PATCH, &format!("Patient/{id}"))
        .header("content-type", "application/json-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = json(resp).await;
    assert_eq!(body["gender"], "female");
    assert_eq!(body["name"][0]["given"], json!(["Peter", "James", "Jim"]));
    assert_eq!(body["meta"]["versionId"], "2");

    // a patch whose result is invalid is refused, and nothing changes
    let bad = json!([{"op": "replace", "path": "/birthDate", "value": "not-a-date"}]);
    let resp = srv
        .req(Method::PATCH, &format!("Patient/{id}"))
        .header("content-type", "application/json-patch+json")
        .body(bad.to_string())
        .send()
        .await
        .unwrap();
    let oo = outcome(resp, 400).await;
    assert_eq!(oo["issue"][0]["expression"][0], "Patient.birthDate");
    // a failing test op
    let failing = json!([{"op": "test", "path": "/gender", "value": "male"}]);
    let resp = srv
        .req(Method::PATCH, &format!("Patient/{id}"))
        .header("content-type", "application/json-patch+json")
        .body(failing.to_string())
        .send()
        .await
        .unwrap();
    outcome(resp, 400).await;
    // changing the id through a patch is refused
    let id_change = json!([{"op": "replace", "path": "/id", "value": "other"}]);
    let resp = srv
        .req(Method::PATCH, &format!("Patient/{id}"))
        .header("content-type", "application/json-patch+json")
        .body(id_change.to_string())
        .send()
        .await
        .unwrap();
    outcome(resp, 400).await;
    let now = json(srv.get(&format!("Patient/{id}")).await).await;
    assert_eq!(now["meta"]["versionId"], "2");
    // FHIRPath Patch is not implemented, and says so
    let resp = srv
        .req(Method::PATCH, &format!("Patient/{id}"))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Parameters"}).to_string())
        .send()
        .await
        .unwrap();
    outcome(resp, 501).await;
    let resp = srv
        .req(Method::PATCH, "Patient/nobody")
        .header("content-type", "application/json-patch+json")
        .body("[]")
        .send()
        .await
        .unwrap();
    outcome(resp, 404).await;
});

both!(delete_is_logical, |srv| {
    let created = srv.create(&patient()).await;
    let id = created["id"].as_str().unwrap();
    let resp = srv.delete(&format!("Patient/{id}")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["etag"], "W/\"2\"");
    assert_eq!(json(resp).await["resourceType"], "OperationOutcome");
    outcome(srv.get(&format!("Patient/{id}")).await, 410).await;
    // old versions stay readable; the deletion version itself is gone
    assert_eq!(srv.get(&format!("Patient/{id}/_history/1")).await.status(), 200);
    outcome(srv.get(&format!("Patient/{id}/_history/2")).await, 410).await;
    // deleting again, or deleting something unknown, is not an error and writes nothing
    assert_eq!(srv.delete(&format!("Patient/{id}")).await.status(), 200);
    assert_eq!(srv.delete("Patient/never-was").await.status(), 200);
    let minimal = srv
        .req(Method::DELETE, &format!("Patient/{id}"))
        .header("prefer", "return=minimal")
        .send()
        .await
        .unwrap();
    assert_eq!(minimal.status(), 204);
    // an update brings it back as version 3
    let mut p = patient();
    p["id"] = json!(id);
    let resp = srv.put(&format!("Patient/{id}"), &p).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(json(resp).await["meta"]["versionId"], "3");
});

both!(conditional_reads, |srv| {
    let created = srv.create(&patient()).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("Patient/{id}");
    let resp = srv.req(Method::GET, &path).header("if-none-match", "W/\"1\"").send().await.unwrap();
    assert_eq!(resp.status(), 304);
    assert_eq!(resp.headers()["etag"], "W/\"1\"");
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = srv.req(Method::GET, &path).header("if-none-match", "W/\"0\"").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let lm = srv.get(&path).await.headers()["last-modified"].to_str().unwrap().to_string();
    let resp = srv.req(Method::GET, &path).header("if-modified-since", &lm).send().await.unwrap();
    assert_eq!(resp.status(), 304);
    let resp = srv
        .req(Method::GET, &path)
        .header("if-modified-since", "Tue, 01 Jan 2002 00:00:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
});

both!(prefer_return, |srv| {
    let minimal = srv
        .req(Method::POST, "Patient")
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(patient().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(minimal.status(), 201);
    assert!(minimal.headers().contains_key("location"));
    assert_eq!(minimal.headers()["etag"], "W/\"1\"");
    assert!(minimal.bytes().await.unwrap().is_empty());

    let oo = srv
        .req(Method::POST, "Patient")
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=OperationOutcome")
        .body(patient().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(oo.status(), 201);
    let body = json(oo).await;
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["severity"], "information");

    let rep = srv
        .req(Method::POST, "Patient")
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=representation")
        .body(patient().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(json(rep).await["resourceType"], "Patient");
});

both!(every_type_and_official_examples, |srv| {
    // Each official example of the core types is accepted (update-as-create with its own id)
    // and read back with identical content apart from meta.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fhir-r4/examples");
    let Ok(entries) = std::fs::read_dir(dir) else {
        eprintln!("{dir} missing: skipping");
        return;
    };
    let mut n = 0;
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let mut example: Value = serde_json::from_str(&text).unwrap();
        let rtype = example["resourceType"].as_str().unwrap().to_string();
        let id = example["id"].as_str().unwrap().to_string();
        let resp = srv.put(&format!("{rtype}/{id}"), &example).await;
        let status = resp.status();
        let body = json(resp).await;
        assert!(status == 201 || status == 200, "{}: {status} {body}", entry.path().display());
        let mut stored = json(srv.get(&format!("{rtype}/{id}")).await).await;
        stored.as_object_mut().unwrap().remove("meta");
        let meta = example.as_object_mut().unwrap().remove("meta");
        if let Some(Value::Object(mut m)) = meta {
            m.remove("versionId");
            m.remove("lastUpdated");
            let back = json(srv.get(&format!("{rtype}/{id}")).await).await;
            for (k, v) in m {
                assert_eq!(back["meta"][&k], v, "{rtype}/{id} meta.{k}");
            }
        }
        assert_eq!(stored, example, "{rtype}/{id}");
        n += 1;
    }
    assert!(n >= 180, "only {n} examples");
});
