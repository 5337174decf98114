//! `_sort` and paging: orders worked out by hand, cursors followed through `next` and `previous`
//! links, and pages that stay consistent while resources are added between requests.

use serde_json::{Value, json};

use crate::both;
use crate::search::{obs, put};
use crate::support::{Srv, json, outcome};

/// The match ids of one page, in order, and its links by relation.
async fn page(srv: &Srv, query: &str) -> (Vec<String>, Value) {
    let resp = srv.get(query).await;
    let status = resp.status();
    let bundle = json(resp).await;
    assert_eq!(status, 200, "{query}: {bundle}");
    let ids = bundle["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut links = json!({});
    for l in bundle["link"].as_array().unwrap() {
        links[l["relation"].as_str().unwrap()] = l["url"].clone();
    }
    (ids, links)
}

async fn order(srv: &Srv, query: &str) -> Vec<String> {
    page(srv, query).await.0
}

async fn patients(srv: &Srv) {
    put(srv, "Patient/p1", json!({"name": [{"family": "Baker"}], "birthDate": "1980-05-01"})).await;
    put(srv, "Patient/p2", json!({"name": [{"family": "adams"}], "birthDate": "1975"})).await;
    put(
        srv,
        "Patient/p3",
        json!({"name": [{"family": "Clark"}, {"family": "Able"}], "birthDate": "1990-01-01"}),
    )
    .await;
    put(srv, "Patient/p4", json!({"birthDate": "1980-05-01"})).await;
    put(srv, "Patient/p5", json!({"name": [{"family": "Ádams"}]})).await;
}

both!(sort_by_one_and_several_keys, |srv| {
    patients(srv).await;
    // Lowest value ascending (p3: "able"), accents folded (p5 = "adams", after p2 by key),
    // no value last.
    assert_eq!(order(srv, "Patient?_sort=family").await, ["p3", "p2", "p5", "p1", "p4"]);
    // Highest value descending (p3: "clark"); still no value last.
    assert_eq!(order(srv, "Patient?_sort=-family").await, ["p3", "p1", "p2", "p5", "p4"]);
    assert_eq!(order(srv, "Patient?_sort=birthdate,family").await, ["p2", "p1", "p4", "p3", "p5"]);
    assert_eq!(order(srv, "Patient?_sort=birthdate,-_id").await, ["p2", "p4", "p1", "p3", "p5"]);
    assert_eq!(order(srv, "Patient?_sort=-birthdate").await, ["p3", "p1", "p4", "p2", "p5"]);
    assert_eq!(order(srv, "Patient?_sort=-_id").await, ["p5", "p4", "p3", "p2", "p1"]);
    assert_eq!(order(srv, "Patient?_sort=family&family=a").await, ["p3", "p2", "p5"]);
    // `name` sorts by its lowest part, the family names stored under `family` included.
    put(srv, "Patient/p6", json!({"name": [{"family": "Zulu", "given": ["Aaron"]}]})).await;
    assert_eq!(order(srv, "Patient?_sort=name&name:missing=false").await, ["p6", "p3", "p2", "p5", "p1"]);
    assert_eq!(order(srv, "Patient?_sort=-name&name:missing=false").await, ["p6", "p3", "p1", "p2", "p5"]);
});

both!(sort_by_number_token_reference, |srv| {
    put(srv, "Patient/a", json!({})).await;
    put(srv, "Patient/b", json!({})).await;
    let q = |v: f64| json!({"value": v, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"});
    put(
        srv,
        "Observation/o1",
        obs(json!({"valueQuantity": q(5.4), "subject": {"reference": "Patient/b"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]}})),
    )
    .await;
    put(
        srv,
        "Observation/o2",
        obs(json!({"valueQuantity": q(10.0), "subject": {"reference": "Patient/a"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "1111-1"}]}})),
    )
    .await;
    put(srv, "Observation/o3", obs(json!({"valueQuantity": q(-1.25)}))).await;
    put(srv, "Observation/o4", obs(json!({"subject": {"reference": "Patient/a"}}))).await;
    assert_eq!(order(srv, "Observation?_sort=value-quantity").await, ["o3", "o1", "o2", "o4"]);
    assert_eq!(order(srv, "Observation?_sort=-value-quantity").await, ["o2", "o1", "o3", "o4"]);
    assert_eq!(order(srv, "Observation?_sort=code").await, ["o2", "o1", "o3", "o4"]);
    assert_eq!(order(srv, "Observation?_sort=subject,-_id").await, ["o4", "o2", "o1", "o3"]);
});

both!(paging_follows_next_and_previous, |srv| {
    patients(srv).await;
    let (p1, l1) = page(srv, "Patient?_sort=family&_count=2").await;
    assert_eq!(p1, ["p3", "p2"]);
    assert!(l1.get("previous").is_none(), "{l1}");
    let (p2, l2) = page(srv, l1["next"].as_str().unwrap()).await;
    assert_eq!(p2, ["p5", "p1"]);
    let (p3, l3) = page(srv, l2["next"].as_str().unwrap()).await;
    assert_eq!(p3, ["p4"]);
    assert!(l3.get("next").is_none(), "{l3}");
    // Back again through `previous`.
    let (b2, lb2) = page(srv, l3["previous"].as_str().unwrap()).await;
    assert_eq!(b2, ["p5", "p1"]);
    let (b1, lb1) = page(srv, lb2["previous"].as_str().unwrap()).await;
    assert_eq!(b1, ["p3", "p2"]);
    assert!(lb1.get("previous").is_none(), "{lb1}");
    assert_eq!(page(srv, lb1["next"].as_str().unwrap()).await.0, ["p5", "p1"]);
    // The first link starts over; the self link repeats the page.
    assert_eq!(page(srv, l3["first"].as_str().unwrap()).await.0, ["p3", "p2"]);
    assert_eq!(page(srv, l2["self"].as_str().unwrap()).await.0, ["p5", "p1"]);
    // Unsorted searches page in a stable order too.
    let (u1, ul1) = page(srv, "Patient?_count=3").await;
    let (u2, _) = page(srv, ul1["next"].as_str().unwrap()).await;
    assert_eq!([u1, u2].concat(), ["p1", "p2", "p3", "p4", "p5"]);
});

both!(paging_is_stable_while_data_changes, |srv| {
    patients(srv).await;
    let (p1, l1) = page(srv, "Patient?_sort=family&_count=2").await;
    assert_eq!(p1, ["p3", "p2"]);
    // Sorts before the first page: must not shift later pages.
    put(srv, "Patient/p0", json!({"name": [{"family": "Aaron"}]})).await;
    // Sorts after everything read so far: must show up on a later page.
    put(srv, "Patient/p6", json!({"name": [{"family": "Young"}]})).await;
    let (p2, l2) = page(srv, l1["next"].as_str().unwrap()).await;
    assert_eq!(p2, ["p5", "p1"]);
    // p1 is deleted after being read: the rest is neither skipped nor repeated.
    assert!(srv.delete("Patient/p1").await.status().is_success());
    let (p3, l3) = page(srv, l2["next"].as_str().unwrap()).await;
    assert_eq!(p3, ["p6", "p4"]);
    assert!(l3.get("next").is_none(), "{l3}");
});

both!(sort_and_cursor_errors, |srv| {
    patients(srv).await;
    outcome(srv.get("Patient?_sort=nonsense").await, 400).await;
    outcome(srv.get("Patient?_sort=phonetic").await, 400).await;
    outcome(srv.get("Patient?_cursor=garbage").await, 400).await;
    // A cursor taken under one _sort does not fit another.
    let (_, l1) = page(srv, "Patient?_sort=family&_count=2").await;
    let next = l1["next"].as_str().unwrap().replace("_sort=family", "_sort=family%2Cbirthdate");
    outcome(srv.get(&next).await, 400).await;
});
