//! Concurrent writers never lose an update.

use reqwest::Method;
use serde_json::json;

use crate::both;
use crate::support::json;

both!(no_lost_updates, |srv| {
    let mut p = json!({"resourceType": "Patient", "id": "counter", "name": [{"family": "Zero"}]});
    assert_eq!(srv.put("Patient/counter", &p).await.status(), 201);
    p["meta"] = json!({});
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let client = srv.client.clone();
            let url = srv.url("Patient/counter");
            tokio::spawn(async move {
                let mut retries = 0;
                for i in 0..50 {
                    loop {
                        let current: serde_json::Value =
                            client.get(&url).send().await.unwrap().json().await.unwrap();
                        let version = current["meta"]["versionId"].as_str().unwrap().to_string();
                        let mut next = current.clone();
                        next["name"][0]["family"] = json!(format!("task{t}-{i}"));
                        let resp = client
                            .request(Method::PUT, &url)
                            .header("content-type", "application/fhir+json")
                            .header("if-match", format!("W/\"{version}\""))
                            .body(next.to_string())
                            .send()
                            .await
                            .unwrap();
                        match resp.status().as_u16() {
                            200 => break,
                            412 => retries += 1,
                            s => panic!("unexpected status {s}: {}", resp.text().await.unwrap()),
                        }
                    }
                }
                retries
            })
        })
        .collect();
    let mut retries = 0;
    for t in tasks {
        retries += t.await.unwrap();
    }
    let last = json(srv.get("Patient/counter").await).await;
    assert_eq!(last["meta"]["versionId"], "401", "after {retries} If-Match retries");
    let h = json(srv.get("Patient/counter/_history?_count=1").await).await;
    assert_eq!(h["total"], 401);

    // blind concurrent updates without If-Match: every one becomes its own version
    let blind: Vec<_> = (0..8)
        .map(|_| {
            let client = srv.client.clone();
            let url = srv.url("Patient/counter");
            let body = json!({"resourceType": "Patient", "id": "counter"}).to_string();
            tokio::spawn(async move {
                for _ in 0..10 {
                    let r = client
                        .put(&url)
                        .header("content-type", "application/fhir+json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for t in blind {
        t.await.unwrap();
    }
    assert_eq!(json(srv.get("Patient/counter").await).await["meta"]["versionId"], "481");

    // concurrent conditional creates of one identifier make exactly one resource
    let creators: Vec<_> = (0..8)
        .map(|_| {
            let client = srv.client.clone();
            let url = srv.url("Patient");
            tokio::spawn(async move {
                let body =
                    json!({"resourceType": "Patient", "identifier": [{"system": "urn:race", "value": "1"}]});
                client
                    .post(&url)
                    .header("content-type", "application/fhir+json")
                    .header("if-none-exist", "identifier=urn:race|1")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in creators {
        statuses.push(c.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 200, 200, 201]);
    let found = json(srv.get("Patient?identifier=urn:race|1").await).await;
    assert_eq!(found["total"], 1);
});
