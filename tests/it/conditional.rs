//! Conditional create, update and delete, and the minimal search they rest on.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both;
use crate::support::{Srv, json, outcome};

fn patient(mrn: &str) -> Value {
    json!({"resourceType": "Patient", "identifier": [{"system": "http://hearth.test/mrn", "value": mrn}], "active": true})
}

async fn ids(srv: &Srv, query: &str) -> Vec<String> {
    let bundle = json(srv.get(query).await).await;
    assert_eq!(bundle["type"], "searchset", "{bundle}");
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

both!(conditional_create, |srv| {
    let cond = "identifier=http://hearth.test/mrn|A-1";
    let first = srv
        .req(Method::POST, "Patient")
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", cond)
        .body(patient("A-1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let id = json(first).await["id"].as_str().unwrap().to_string();
    let again = srv
        .req(Method::POST, "Patient")
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", cond)
        .body(patient("A-1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200, "a match returns the existing resource");
    assert_eq!(json(again).await["id"], id.as_str());
    assert_eq!(ids(srv, "Patient?identifier=A-1").await, vec![id.clone()]);

    // two matches → 412, nothing written
    srv.create(&patient("A-1")).await;
    let many = srv
        .req(Method::POST, "Patient")
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", "identifier=A-1")
        .body(patient("A-1").to_string())
        .send()
        .await
        .unwrap();
    outcome(many, 412).await;
    assert_eq!(ids(srv, "Patient?identifier=A-1").await.len(), 2);
    // unknown parameters in a condition are an error, never "matches everything"
    let unknown = srv
        .req(Method::POST, "Patient")
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", "bogus=1")
        .body(patient("A-2").to_string())
        .send()
        .await
        .unwrap();
    outcome(unknown, 400).await;
});

both!(conditional_update, |srv| {
    // no match → create
    let resp = srv.put("Patient?identifier=http://hearth.test/mrn|U-1", &patient("U-1")).await;
    assert_eq!(resp.status(), 201);
    let id = json(resp).await["id"].as_str().unwrap().to_string();
    // one match → update that resource
    let mut p = patient("U-1");
    p["active"] = json!(false);
    let resp = srv.put("Patient?identifier=http://hearth.test/mrn|U-1", &p).await;
    assert_eq!(resp.status(), 200);
    let body = json(resp).await;
    assert_eq!(
        (body["id"].as_str().unwrap(), body["meta"]["versionId"].as_str().unwrap()),
        (id.as_str(), "2")
    );
    assert_eq!(body["active"], false);
    // an id in the body that names another resource is refused
    p["id"] = json!("someone-else");
    outcome(srv.put("Patient?identifier=U-1", &p).await, 400).await;
    // several matches → 412
    srv.create(&patient("U-1")).await;
    outcome(srv.put("Patient?identifier=U-1", &patient("U-1")).await, 412).await;
    outcome(srv.put("Patient", &patient("U-9")).await, 400).await;
});

both!(conditional_delete, |srv| {
    let a = srv.create(&patient("D-1")).await;
    srv.create(&patient("D-2")).await;
    srv.create(&patient("D-2")).await;
    let resp = srv.delete("Patient?identifier=D-1").await;
    assert_eq!(resp.status(), 200);
    outcome(srv.get(&format!("Patient/{}", a["id"].as_str().unwrap())).await, 410).await;
    outcome(srv.delete("Patient?identifier=D-2").await, 412).await;
    assert_eq!(ids(srv, "Patient?identifier=D-2").await.len(), 2);
    assert_eq!(srv.delete("Patient?identifier=nobody").await.status(), 200);
    // no criteria at all would delete everything: refused
    outcome(srv.delete("Patient").await, 400).await;
    outcome(srv.delete("Patient?_format=json").await, 400).await;
});

both!(minimal_search, |srv| {
    let a = srv.create(&patient("S-1")).await;
    let b = srv.create(&json!({"resourceType": "Patient", "identifier": [{"system": "urn:other", "value": "S-1"}], "gender": "female"})).await;
    let c = srv.create(&json!({"resourceType": "Patient", "identifier": [{"value": "S-1"}]})).await;
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();
    let mut all = vec![id(&a), id(&b), id(&c)];
    all.sort();
    assert_eq!(ids(srv, "Patient?identifier=S-1").await, all);
    assert_eq!(ids(srv, "Patient?identifier=http://hearth.test/mrn|S-1").await, vec![id(&a)]);
    assert_eq!(ids(srv, "Patient?identifier=|S-1").await, vec![id(&c)]);
    assert_eq!(ids(srv, "Patient?identifier=urn:other|").await, vec![id(&b)]);
    assert_eq!(ids(srv, "Patient?gender=female").await, vec![id(&b)]);
    assert_eq!(ids(srv, "Patient?active=true").await, vec![id(&a)]);
    let mut ab = vec![id(&a), id(&b)];
    ab.sort();
    assert_eq!(ids(srv, &format!("Patient?_id={},{}", id(&a), id(&b))).await, ab);
    assert_eq!(ids(srv, &format!("Patient?_id={}&identifier=urn:other|S-1", id(&b))).await, vec![id(&b)]);
    assert_eq!(ids(srv, "Patient?identifier=nothing").await, Vec::<String>::new());

    // total, paging with next links that visit every match once
    let page = json(srv.get("Patient?identifier=S-1&_count=2").await).await;
    assert_eq!(page["total"], 3);
    assert_eq!(page["entry"].as_array().unwrap().len(), 2);
    let next = page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let page2 = json(srv.get(&next).await).await;
    assert_eq!(page2["entry"].as_array().unwrap().len(), 1);
    assert!(page2["link"].as_array().unwrap().iter().all(|l| l["relation"] != "next"));
    let mut seen: Vec<String> = page["entry"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["entry"].as_array().unwrap())
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    seen.sort();
    assert_eq!(seen, all);

    // unknown parameters: ignored with a warning outcome (lenient) or refused (strict)
    let lenient = json(srv.get("Patient?identifier=S-1&bogus=1").await).await;
    let self_link = lenient["link"].as_array().unwrap().iter().find(|l| l["relation"] == "self").unwrap();
    assert_eq!(
        self_link["url"],
        format!("{}/Patient?identifier=S-1", srv.base),
        "ignored parameters are not in self"
    );
    let oo = lenient["entry"].as_array().unwrap().iter().find(|e| e["search"]["mode"] == "outcome").unwrap();
    assert_eq!(oo["resource"]["issue"][0]["severity"], "warning");
    let strict =
        srv.req(Method::GET, "Patient?bogus=1").header("prefer", "handling=strict").send().await.unwrap();
    outcome(strict, 400).await;
    // deleted resources are not found
    srv.delete(&format!("Patient/{}", id(&a))).await;
    assert_eq!(ids(srv, "Patient?identifier=http://hearth.test/mrn|S-1").await, Vec::<String>::new());
    // POST _search
    let resp = srv
        .req(Method::POST, "Patient/_search")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("gender=female")
        .send()
        .await
        .unwrap();
    let bundle = json(resp).await;
    assert_eq!(bundle["total"], 1);
    outcome(srv.get("Patient?_count=abc").await, 400).await;
});
