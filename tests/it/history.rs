//! Instance, type and system history with `_count`, `_since`, `_at` and paging.

use serde_json::{Value, json};

use crate::both;
use crate::support::{json, outcome};

fn entries(bundle: &Value) -> Vec<(String, String, String)> {
    bundle["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| {
                    (
                        e["request"]["method"].as_str().unwrap().to_string(),
                        e["request"]["url"].as_str().unwrap().to_string(),
                        e["response"]["etag"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn link(bundle: &Value, rel: &str) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == rel)
        .map(|l| l["url"].as_str().unwrap().to_string())
}

both!(instance_history, |srv| {
    let created = srv.create(&json!({"resourceType": "Practitioner", "active": true})).await;
    let id = created["id"].as_str().unwrap().to_string();
    let mut p = created.clone();
    p["active"] = json!(false);
    srv.put(&format!("Practitioner/{id}"), &p).await;
    // The current version's body is stored once (in the current row) and the one before it
    // moved into its history row: both read back, as versions and in the history.
    let v2 = json(srv.get(&format!("Practitioner/{id}/_history/2")).await).await;
    assert_eq!((&v2["active"], &v2["meta"]["versionId"]), (&json!(false), &json!("2")));
    let v1 = json(srv.get(&format!("Practitioner/{id}/_history/1")).await).await;
    assert_eq!((&v1["active"], &v1["meta"]["versionId"]), (&json!(true), &json!("1")));
    let h = json(srv.get(&format!("Practitioner/{id}/_history")).await).await;
    let bodies: Vec<&Value> =
        h["entry"].as_array().unwrap().iter().map(|e| &e["resource"]["active"]).collect();
    assert_eq!(bodies, [&json!(false), &json!(true)]);
    srv.delete(&format!("Practitioner/{id}")).await;
    let v2 = json(srv.get(&format!("Practitioner/{id}/_history/2")).await).await;
    assert_eq!(v2["active"], false, "{v2}");
    let h = json(srv.get(&format!("Practitioner/{id}/_history")).await).await;
    assert_eq!(h["type"], "history");
    assert_eq!(h["total"], 3);
    let url = format!("Practitioner/{id}");
    assert_eq!(
        entries(&h),
        vec![
            ("DELETE".into(), url.clone(), "W/\"3\"".into()),
            ("PUT".into(), url.clone(), "W/\"2\"".into()),
            ("POST".into(), "Practitioner".into(), "W/\"1\"".into()),
        ]
    );
    let e = h["entry"].as_array().unwrap();
    assert!(e[0].get("resource").is_none(), "a deletion has no resource");
    assert_eq!(e[1]["resource"]["active"], false);
    assert_eq!(e[2]["resource"]["active"], true);
    assert_eq!(e[2]["fullUrl"], format!("{}/Practitioner/{id}", srv.base));
    outcome(srv.get("Practitioner/nobody/_history").await, 404).await;
});

both!(paging_since_and_at, |srv| {
    let mut ids = Vec::new();
    for i in 0..5 {
        let c = srv.create(&json!({"resourceType": "Organization", "name": format!("Org {i}")})).await;
        ids.push(c["id"].as_str().unwrap().to_string());
    }
    srv.create(&json!({"resourceType": "Patient"})).await;

    // type history in pages of 2: 2 + 2 + 1, newest first, no duplicates
    let mut seen = Vec::new();
    let mut page = json(srv.get("Organization/_history?_count=2").await).await;
    loop {
        for e in page["entry"].as_array().unwrap() {
            seen.push(e["resource"]["id"].as_str().unwrap().to_string());
        }
        match link(&page, "next") {
            Some(next) => page = json(srv.get(&next).await).await,
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    // system history sees both types
    let sys = json(srv.get("_history").await).await;
    assert_eq!(sys["entry"].as_array().unwrap().len(), 6);
    assert_eq!(sys["entry"][0]["resource"]["resourceType"], "Patient");

    // _since: only what was written at or after the instant
    let third = json(srv.get(&format!("Organization/{}", ids[2])).await).await;
    let since = third["meta"]["lastUpdated"].as_str().unwrap().to_string();
    let h = json(srv.get(&format!("Organization/_history?_since={}", since.replace('+', "%2B"))).await).await;
    let got: Vec<&str> =
        h["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
    assert!(got.contains(&ids[2].as_str()) && got.contains(&ids[4].as_str()), "{got:?}");
    assert!(!got.is_empty() && got.len() <= 3);
    let h = json(srv.get("Organization/_history?_since=2999-01-01").await).await;
    assert!(h.get("entry").is_none());

    // _at: the version current at an instant
    let id = &ids[0];
    let v1 = json(srv.get(&format!("Organization/{id}")).await).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let mut v2 = v1.clone();
    v2["name"] = json!("Renamed");
    srv.put(&format!("Organization/{id}"), &v2).await;
    let at = v1["meta"]["lastUpdated"].as_str().unwrap();
    let h = json(srv.get(&format!("Organization/{id}/_history?_at={at}")).await).await;
    assert_eq!(entries(&h).len(), 1, "{h}");
    assert_eq!(h["entry"][0]["resource"]["name"], "Org 0");
    outcome(srv.get("Organization/_history?_since=last-tuesday").await, 400).await;
    outcome(srv.get("Organization/_history?_count=-1").await, 400).await;
});
