//! Bulk Data `$export` (hl7.org/fhir/uv/bulkdata/export.html), driven as a Bulk Data client
//! drives it: kick-off with `Prefer: respond-async`, poll the Content-Location, download the
//! manifest's files.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both;
use crate::support::{Backend, Db, Srv, json, outcome};

/// Patients p1–p3, a practitioner and an organization outside every compartment, observations
/// with codes A/B/C, an immunization, and a Group of p1 and p2 (p3 is an inactive member).
pub async fn seed(srv: &Srv) {
    let put = |r: Value| {
        let url = format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        json!({"resource": r, "request": {"method": "PUT", "url": url}})
    };
    let mut entries = Vec::new();
    for p in ["p1", "p2", "p3"] {
        entries.push(put(
            json!({"resourceType": "Patient", "id": p, "name": [{"family": format!("Family-{p}")}]}),
        ));
    }
    entries.push(put(json!({"resourceType": "Practitioner", "id": "pr1", "name": [{"family": "Doc"}]})));
    entries.push(put(json!({"resourceType": "Organization", "id": "org1", "name": "Clinic"})));
    for (id, p, code) in [("o1", "p1", "A"), ("o2", "p2", "B"), ("o3", "p3", "C")] {
        entries.push(put(json!({
            "resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://example.org/codes", "code": code}]},
            "subject": {"reference": format!("Patient/{p}")},
            "performer": [{"reference": "Practitioner/pr1"}]
        })));
    }
    entries.push(put(json!({
        "resourceType": "Immunization", "id": "i1", "status": "completed",
        "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]},
        "patient": {"reference": "Patient/p1"}, "occurrenceDateTime": "2024-10-01"
    })));
    entries.push(put(json!({
        "resourceType": "Group", "id": "g1", "type": "person", "actual": true,
        "member": [
            {"entity": {"reference": "Patient/p1"}},
            {"entity": {"reference": "Patient/p2"}},
            {"entity": {"reference": "Patient/p3"}, "inactive": true}
        ]
    })));
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let resp = srv.post("", &bundle).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
}

/// Kicks off an export and returns the status URL.
pub async fn kick_off(srv: &Srv, path: &str) -> String {
    let resp = srv
        .req(Method::GET, path)
        .header("accept", "application/fhir+json")
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "{path}: {}", resp.text().await.unwrap_or_default());
    let location = resp.headers()["content-location"].to_str().unwrap().to_string();
    assert!(location.starts_with("http://"), "absolute status URL: {location}");
    location
}

/// Polls the status URL until the manifest is ready.
pub async fn wait(srv: &Srv, status_url: &str) -> Value {
    for _ in 0..600 {
        let resp = srv.req(Method::GET, status_url).send().await.unwrap();
        match resp.status().as_u16() {
            202 => {
                assert!(resp.headers().contains_key("retry-after"));
                assert!(resp.headers().contains_key("x-progress"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            200 => {
                assert!(resp.headers().contains_key("expires"));
                let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
                assert!(ct.starts_with("application/json"), "{ct}");
                return json(resp).await;
            }
            s => panic!("status {s}: {}", resp.text().await.unwrap_or_default()),
        }
    }
    panic!("export did not finish in 60 s");
}

/// Downloads every output file: resources by type, as (id, resource) in file order.
pub async fn download(srv: &Srv, manifest: &Value) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for file in manifest["output"].as_array().unwrap() {
        let resp = srv.get(file["url"].as_str().unwrap()).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/fhir+ndjson");
        let text = resp.text().await.unwrap();
        let lines: Vec<Value> =
            text.lines().map(|l| serde_json::from_str(l).expect("one resource per line")).collect();
        assert_eq!(lines.len() as u64, file["count"].as_u64().unwrap(), "count of {file}");
        let rtype = file["type"].as_str().unwrap();
        assert!(lines.iter().all(|r| r["resourceType"] == rtype));
        out.entry(rtype.to_string()).or_default().extend(lines);
    }
    out
}

fn ids(resources: &BTreeMap<String, Vec<Value>>) -> BTreeMap<String, Vec<String>> {
    resources
        .iter()
        .map(|(t, rs)| {
            let mut ids: Vec<String> = rs.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
            ids.sort();
            (t.clone(), ids)
        })
        .collect()
}

fn expect(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs.iter().map(|(t, ids)| (t.to_string(), ids.iter().map(|s| s.to_string()).collect())).collect()
}

both!(system_export_writes_every_resource_as_stored, |srv| {
    seed(srv).await;
    let status = kick_off(srv, "$export").await;
    assert!(status.contains("$export-poll-status?_jobId="));
    let manifest = wait(srv, &status).await;
    assert_eq!(manifest["request"], srv.url("$export"));
    assert_eq!(manifest["requiresAccessToken"], false);
    assert_eq!(manifest["error"], json!([]));
    assert!(manifest["transactionTime"].as_str().unwrap().ends_with('Z'));
    let files = download(srv, &manifest).await;
    assert_eq!(
        ids(&files),
        expect(&[
            ("Group", &["g1"]),
            ("Immunization", &["i1"]),
            ("Observation", &["o1", "o2", "o3"]),
            ("Organization", &["org1"]),
            ("Patient", &["p1", "p2", "p3"]),
            ("Practitioner", &["pr1"]),
        ])
    );
    // Each line is the resource exactly as a read returns it.
    for resources in files.values() {
        for r in resources {
            let path = format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
            assert_eq!(&json(srv.get(&path).await).await, r);
        }
    }
    // The files stay until the job is deleted; then they are gone.
    let url = manifest["output"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(srv.get(&url).await.status(), 200);
    assert_eq!(srv.req(Method::DELETE, &status).send().await.unwrap().status(), 202);
    outcome(srv.get(&url).await, 404).await;
    outcome(srv.get(&status).await, 404).await;
});

both!(patient_and_group_exports_stay_in_the_compartments, |srv| {
    seed(srv).await;
    let manifest = wait(srv, &kick_off(srv, "Patient/$export").await).await;
    assert_eq!(
        ids(&download(srv, &manifest).await),
        expect(&[
            ("Group", &["g1"]),
            ("Immunization", &["i1"]),
            ("Observation", &["o1", "o2", "o3"]),
            ("Patient", &["p1", "p2", "p3"]),
        ]),
        "no Practitioner or Organization: they are in no patient's compartment"
    );
    let status = kick_off(srv, "Group/g1/$export?_type=Patient,Observation,Immunization").await;
    let manifest = wait(srv, &status).await;
    assert_eq!(
        ids(&download(srv, &manifest).await),
        expect(&[("Immunization", &["i1"]), ("Observation", &["o1", "o2"]), ("Patient", &["p1", "p2"])]),
        "p3 is an inactive member"
    );
    outcome(
        srv.req(Method::GET, "Group/nope/$export").header("prefer", "respond-async").send().await.unwrap(),
        404,
    )
    .await;
});

both!(export_filters_by_type_type_filter_and_since, |srv| {
    seed(srv).await;
    let filter = "_type=Observation,Patient&_typeFilter=Observation%3Fcode%3DB,Observation%3Fcode%3DC%2CZ";
    let manifest = wait(srv, &kick_off(srv, &format!("$export?{filter}")).await).await;
    assert_eq!(
        ids(&download(srv, &manifest).await),
        expect(&[("Observation", &["o2", "o3"]), ("Patient", &["p1", "p2", "p3"])]),
        "filtered observations; patients, which have no filter, all"
    );
    // An incremental export from the first one's transactionTime sees only later changes.
    let since = manifest["transactionTime"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let changed = json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "Renamed"}]});
    assert_eq!(srv.put("Patient/p2", &changed).await.status(), 200);
    let path = format!("$export?_since={}", urlencode(&since));
    let manifest = wait(srv, &kick_off(srv, &path).await).await;
    let files = download(srv, &manifest).await;
    assert_eq!(ids(&files), expect(&[("Patient", &["p2"])]));
    assert_eq!(files["Patient"][0]["name"][0]["family"], "Renamed");
    // _elements keeps the named elements and marks the copy as a subset.
    let manifest = wait(srv, &kick_off(srv, "$export?_type=Observation&_elements=status").await).await;
    let files = download(srv, &manifest).await;
    let o = &files["Observation"][0];
    assert_eq!(o["status"], "final");
    assert!(o.get("code").is_none() && o.get("subject").is_none(), "{o}");
    assert_eq!(o["meta"]["tag"][0]["code"], "SUBSETTED");
});

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

both!(export_kick_off_errors_are_operation_outcomes, |srv| {
    let async_get = |path: &str| srv.req(Method::GET, path).header("prefer", "respond-async");
    // Without Prefer: respond-async there is nothing to poll.
    outcome(srv.get("$export").await, 400).await;
    for bad in [
        "$export?_outputFormat=text/csv",
        "$export?_type=NotAType",
        "$export?_since=yesterday",
        "$export?_typeFilter=Observation%3Fnope%3D1",
        "$export?_typeFilter=code%3D1",
        "$export?includeAssociatedData=LatestProvenanceResources",
        "Patient/$export?_type=Practitioner",
    ] {
        let body = outcome(async_get(bad).send().await.unwrap(), 400).await;
        assert!(body.to_string().len() > 60, "{bad}: {body}");
    }
    // An unknown parameter is ignored when the client asks for lenient handling.
    let resp = srv
        .req(Method::GET, "$export?includeAssociatedData=LatestProvenanceResources")
        .header("prefer", "respond-async, handling=lenient")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    outcome(srv.get("Observation/$export").await, 404).await;
    outcome(srv.get("$export-poll-status?_jobId=0123").await, 404).await;
    outcome(srv.get("$export-poll-status").await, 400).await;
    outcome(srv.get("$bulk-output/0123/1.ndjson").await, 404).await;
    // POST kick-off with a Parameters body.
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Patient"},
        {"name": "_outputFormat", "valueString": "ndjson"}
    ]});
    let resp = srv
        .req(Method::POST, "$export")
        .header("prefer", "respond-async")
        .header("content-type", "application/fhir+json")
        .body(params.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let status = resp.headers()["content-location"].to_str().unwrap().to_string();
    let manifest = wait(srv, &status).await;
    assert_eq!(manifest["output"], json!([]), "no patients yet");
});

/// Large output is split into several files of one type, each within the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_splits_files_at_the_size_limit() {
    for backend in backends() {
        let srv = Srv::start_with(backend, |c| c.bulk_max_file_bytes = 1000).await;
        seed(&srv).await;
        let entries: Vec<Value> = (0..40)
            .map(|i| json!({"resource": {"resourceType": "Patient", "id": format!("bulk{i}"),
                "name": [{"family": "X".repeat(80)}]}, "request": {"method": "PUT", "url": format!("Patient/bulk{i}")}}))
            .collect();
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        assert_eq!(srv.post("", &bundle).await.status(), 200);
        let manifest = wait(&srv, &kick_off(&srv, "$export?_type=Patient").await).await;
        let files = manifest["output"].as_array().unwrap();
        assert!(files.len() > 5, "{backend:?}: {} files", files.len());
        let mut total = 0;
        for f in files {
            let text = srv.get(f["url"].as_str().unwrap()).await.text().await.unwrap();
            assert!(text.len() <= 1000 || f["count"] == 1, "{} bytes", text.len());
            total += f["count"].as_u64().unwrap();
        }
        assert_eq!(total, 43);
        srv.stop().await;
    }
}

/// A queued job survives a restart: the first server runs no jobs, the second one finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_jobs_survive_a_restart() {
    for backend in backends() {
        let db = Db::new(backend).await;
        let first = Srv::start_on(&db, |c| c.bulk_jobs = false).await;
        seed(&first).await;
        let status = kick_off(&first, "$export?_type=Patient").await;
        let resp = first.get(&status).await;
        assert_eq!(resp.status(), 202);
        assert_eq!(resp.headers()["x-progress"], "queued");
        let path = status.split("/fhir/").nth(1).unwrap().to_string();
        first.stop().await;
        let second = Srv::start_on(&db, |_| {}).await;
        let manifest = wait(&second, &second.url(&path)).await;
        assert_eq!(manifest["output"][0]["count"], 3, "{backend:?}");
        second.stop().await;
    }
}

pub fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Sqlite];
    if crate::support::postgres_available() {
        b.push(Backend::Postgres);
    }
    b
}

/// Posts NDJSON to `$import` and returns the status URL.
async fn upload(srv: &Srv, body: Vec<u8>, gzip: bool) -> String {
    let mut req = srv
        .req(Method::POST, "$import")
        .header("prefer", "respond-async")
        .header("content-type", "application/fhir+ndjson");
    if gzip {
        req = req.header("content-encoding", "gzip");
    }
    let resp = req.body(body).send().await.unwrap();
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap_or_default());
    resp.headers()["content-location"].to_str().unwrap().to_string()
}

/// The text of every file of a manifest list (`output` or `error`).
async fn texts(srv: &Srv, files: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for f in files.as_array().unwrap() {
        out.push(srv.get(f["url"].as_str().unwrap()).await.text().await.unwrap());
    }
    out
}

both!(import_loads_ndjson_and_reports_each_refused_line, |srv| {
    let ndjson = [
        json!({"resourceType": "Patient", "id": "a", "gender": "female"}).to_string(),
        "{not json".to_string(),
        json!({"resourceType": "Patient", "id": "b"}).to_string(),
        String::new(),
        json!({"resourceType": "Patient", "id": "c", "gender": "sometimes"}).to_string(),
        json!({"resourceType": "Observation", "id": "x", "status": "final", "code": {"text": "t"},
            "subject": {"reference": "Patient/a"}})
        .to_string(),
    ]
    .join("\n");
    for gzip in [false, true] {
        let body = if gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut enc, ndjson.as_bytes()).unwrap();
            enc.finish().unwrap()
        } else {
            ndjson.clone().into_bytes()
        };
        let status = upload(srv, body, gzip).await;
        assert!(status.contains("$import-poll-status?_jobId="));
        let manifest = wait(srv, &status).await;
        let output = texts(srv, &manifest["output"]).await.concat();
        assert!(output.contains("2 Patient resources loaded"), "{output}");
        assert!(output.contains("1 Observation resources loaded"), "{output}");
        assert_eq!(manifest["error"][0]["count"], 2);
        let errors = texts(srv, &manifest["error"]).await.concat();
        let lines: Vec<Value> = errors.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(
            lines[0]["issue"][0]["diagnostics"].as_str().unwrap().starts_with("line 2: not JSON"),
            "{errors}"
        );
        assert!(lines[1]["issue"][0]["diagnostics"].as_str().unwrap().starts_with("line 5:"), "{errors}");
        let found = json(srv.get("Patient?_summary=count").await).await;
        assert_eq!(found["total"], 2, "loading twice updates, it does not duplicate");
    }
    assert_eq!(json(srv.get("Observation?subject=Patient/a").await).await["total"], 1);
    // The second load found everything stored with the same content: no new versions. A changed
    // resource gets one.
    assert_eq!(json(srv.get("Patient/a").await).await["meta"]["versionId"], "1");
    let changed = json!({"resourceType": "Patient", "id": "a", "gender": "male"}).to_string();
    let manifest = wait(srv, &upload(srv, changed.into_bytes(), false).await).await;
    assert_eq!(manifest["error"], json!([]));
    let a = json(srv.get("Patient/a").await).await;
    assert_eq!((a["meta"]["versionId"].as_str(), a["gender"].as_str()), (Some("2"), Some("male")));
    assert_eq!(json(srv.get("Patient?gender=male").await).await["total"], 1, "re-indexed");
    // The export status endpoint knows no import jobs and vice versa.
    let status = upload(srv, b"{\"resourceType\":\"Patient\"}".to_vec(), false).await;
    outcome(srv.get(&status.replace("$import-poll", "$export-poll")).await, 404).await;
});

both!(import_refuses_what_it_cannot_take, |srv| {
    let send = |ct: &str, prefer: bool| {
        let mut r = srv.req(Method::POST, "$import").header("content-type", ct.to_string());
        if prefer {
            r = r.header("prefer", "respond-async");
        }
        r.body("{\"resourceType\":\"Patient\"}")
    };
    outcome(send("application/fhir+ndjson", false).send().await.unwrap(), 400).await;
    outcome(send("application/fhir+json", true).send().await.unwrap(), 415).await;
    let resp = send("application/fhir+ndjson", true).header("content-encoding", "gzip").send().await.unwrap();
    outcome(resp, 400).await;
    assert_eq!(json(srv.get("Patient?_summary=count").await).await["total"], 0);
});

/// Export everything, load it into an empty database, export again: the same resources. Runs
/// SQLite → PostgreSQL and PostgreSQL → SQLite (SQLite → SQLite without PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_round_trips() {
    let pairs = match backends().as_slice() {
        [_, _] => vec![(Backend::Sqlite, Backend::Postgres), (Backend::Postgres, Backend::Sqlite)],
        _ => vec![(Backend::Sqlite, Backend::Sqlite)],
    };
    for (from, to) in pairs {
        let srv = Srv::start(from).await;
        seed(&srv).await;
        let manifest = wait(&srv, &kick_off(&srv, "$export").await).await;
        let ndjson = texts(&srv, &manifest["output"]).await.concat();
        let original = download(&srv, &manifest).await;
        srv.stop().await;

        let empty = Srv::start(to).await;
        let result = wait(&empty, &upload(&empty, ndjson.into_bytes(), false).await).await;
        assert_eq!(result["error"], json!([]), "{from:?} → {to:?}");
        let copy = download(&empty, &wait(&empty, &kick_off(&empty, "$export").await).await).await;
        assert_eq!(without_meta(&copy), without_meta(&original), "{from:?} → {to:?}");
        // The search index was built too.
        let found = json(empty.get("Observation?subject:Patient.name=Family-p2").await).await;
        assert_eq!(found["total"], 1);
        empty.stop().await;
    }
}

/// Resources by type, sorted by id, without `meta` (a load writes new versions).
fn without_meta(m: &BTreeMap<String, Vec<Value>>) -> BTreeMap<String, Vec<Value>> {
    m.iter()
        .map(|(t, rs)| {
            let mut rs: Vec<Value> = rs
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.as_object_mut().unwrap().remove("meta");
                    r
                })
                .collect();
            rs.sort_by_key(|r| r["id"].as_str().unwrap().to_string());
            (t.clone(), rs)
        })
        .collect()
}
