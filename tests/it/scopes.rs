//! Searches wider than one type: system level (`[base]?`, `_type`), a whole compartment
//! (`Patient/x/*`) and `Patient/x/$everything`. Expected answers are written out by hand.

use serde_json::json;

use crate::both;
use crate::search::{check, obs, put};
use crate::support::{Srv, json, outcome};

async fn data(srv: &Srv) {
    put(srv, "Patient/pa", json!({"name": [{"family": "Alpha"}]})).await;
    put(srv, "Patient/pb", json!({"name": [{"family": "Beta"}]})).await;
    put(srv, "Practitioner/dr", json!({"name": [{"family": "Doc"}]})).await;
    put(srv, "Organization/org", json!({"name": "Vaccine Maker"})).await;
    put(
        srv,
        "Observation/o1",
        obs(json!({"subject": {"reference": "Patient/pa"},
        "performer": [{"reference": "Practitioner/dr"}]})),
    )
    .await;
    put(srv, "Observation/o2", obs(json!({"subject": {"reference": "Patient/pb"}}))).await;
    put(
        srv,
        "Immunization/i1",
        json!({"status": "completed", "vaccineCode": {"text": "flu"}, "occurrenceDateTime": "2024-10-01",
            "patient": {"reference": "Patient/pa"}, "manufacturer": {"reference": "Organization/org"}}),
    )
    .await;
    put(
        srv,
        "Encounter/e1",
        json!({"status": "finished", "class": {"code": "AMB"},
        "subject": {"reference": "Patient/pa"}}),
    )
    .await;
    put(
        srv,
        "CarePlan/cp1",
        json!({"status": "active", "intent": "plan",
        "subject": {"reference": "Patient/pa"}}),
    )
    .await;
}

/// (mode, Type/id) of every entry, in order, following `next` links to the end.
async fn all_entries(srv: &Srv, query: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut url = Some(query.to_string());
    while let Some(u) = url {
        let resp = srv.get(&u).await;
        assert_eq!(resp.status(), 200, "{u}");
        let bundle = json(resp).await;
        for e in bundle["entry"].as_array().cloned().unwrap_or_default() {
            let r = &e["resource"];
            out.push((
                e["search"]["mode"].as_str().unwrap().to_string(),
                format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap_or("")),
            ));
        }
        url = bundle["link"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["relation"] == "next"))
            .map(|l| l["url"].as_str().unwrap().to_string());
    }
    out
}

fn of_mode(entries: &[(String, String)], mode: &str) -> Vec<String> {
    let mut v: Vec<String> = entries.iter().filter(|(m, _)| m == mode).map(|(_, r)| r.clone()).collect();
    v.sort();
    v
}

both!(system_level_search, |srv| {
    data(srv).await;
    check(srv, "?_id=o1,pa", &["o1", "pa"]).await;
    check(srv, "?_type=Patient,Practitioner", &["pa", "pb", "dr"]).await;
    check(srv, "?_type=Observation,Encounter&subject=Patient/pa", &["o1", "e1"]).await;
    // `name` exists on Patient and Organization: the other types are ruled out, not unfiltered.
    check(srv, "?_type=Patient,Organization,Observation&name=alp", &["pa"]).await;
    check(srv, "?_type=Patient,Organization&name=vac", &["org"]).await;
    // gender rules Organization out, though `name` alone would let it through.
    check(srv, "?_type=Patient,Organization&name=vac&gender:not=male", &[]).await;
    check(srv, "?_type=Patient,Organization&name=a&gender:not=male", &["pa"]).await;
    let sorted = all_entries(srv, "?_type=Patient,Observation&_sort=-_id&_count=3").await;
    let ids: Vec<&str> = sorted.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(ids, ["Patient/pb", "Patient/pa", "Observation/o2", "Observation/o1"]);
    outcome(srv.get("?_type=Bogus").await, 400).await;
});

both!(whole_compartment_search, |srv| {
    data(srv).await;
    check(srv, "Patient/pa/*", &["pa", "o1", "i1", "e1", "cp1"]).await;
    check(srv, "Patient/pa/*?_type=Observation,Encounter", &["o1", "e1"]).await;
    check(srv, "Patient/pb/*", &["pb", "o2"]).await;
    check(srv, "Practitioner/dr/*", &["dr", "o1"]).await;
});

both!(patient_everything, |srv| {
    data(srv).await;
    let all = all_entries(srv, "Patient/pa/$everything").await;
    assert_eq!(
        of_mode(&all, "match"),
        ["CarePlan/cp1", "Encounter/e1", "Immunization/i1", "Observation/o1", "Patient/pa"]
    );
    // What the compartment's resources reference comes along.
    assert_eq!(of_mode(&all, "include"), ["Organization/org", "Practitioner/dr"]);
    // Paged: every match exactly once across the pages.
    let paged = all_entries(srv, "Patient/pa/$everything?_count=2").await;
    assert_eq!(of_mode(&paged, "match"), of_mode(&all, "match"));
    let obs_only = all_entries(srv, "Patient/pa/$everything?_type=Observation").await;
    assert_eq!(of_mode(&obs_only, "match"), ["Observation/o1"]);
    // The patient comes along as what the observation references.
    assert_eq!(of_mode(&obs_only, "include"), ["Patient/pa", "Practitioner/dr"]);
    let later = all_entries(srv, "Patient/pa/$everything?_since=2999-01-01").await;
    assert!(later.is_empty(), "{later:?}");
    outcome(srv.get("Patient/nobody/$everything").await, 404).await;
    outcome(srv.get("Patient/pa/$everything?start=2020").await, 400).await;
});

both!(list_parameter, |srv| {
    data(srv).await;
    put(
        srv,
        "List/l1",
        json!({"status": "current", "mode": "working", "entry": [
            {"item": {"reference": "Patient/pb"}}, {"item": {"reference": "Observation/o1"}},
            {"item": {"reference": "Patient/gone"}}
        ]}),
    )
    .await;
    put(
        srv,
        "List/l2",
        json!({"status": "current", "mode": "working",
        "entry": [{"item": {"reference": "Patient/pa"}}]}),
    )
    .await;
    check(srv, "Patient?_list=l1", &["pb"]).await;
    check(srv, "Patient?_list=l1,l2", &["pa", "pb"]).await;
    check(srv, "Observation?_list=l1", &["o1"]).await;
    check(srv, "?_list=l1", &["pb", "o1"]).await;
    check(srv, "Patient?_list=l1&name=alp", &[]).await;
    check(srv, "Patient?_list=nolist", &[]).await;
    outcome(srv.get("Patient?_list=$current-allergies").await, 400).await;
});

// Totals must agree with the matches when a chain (one branch per target type) meets other
// criteria: the count runs over index rows alone and must group its set operations right.
both!(totals_with_chains_and_other_criteria, |srv| {
    put(srv, "Patient/smith", json!({"name": [{"family": "Smith"}]})).await;
    put(srv, "Location/loc", json!({"name": "Smith Wing"})).await;
    put(
        srv,
        "Observation/a",
        obs(json!({"code": {"coding": [{"code": "X"}]},
        "subject": {"reference": "Patient/smith"}})),
    )
    .await;
    put(
        srv,
        "Observation/b",
        obs(json!({"code": {"coding": [{"code": "Y"}]},
        "subject": {"reference": "Location/loc"}})),
    )
    .await;
    put(
        srv,
        "Observation/c",
        obs(json!({"code": {"coding": [{"code": "X"}]},
        "subject": {"reference": "Location/loc"}})),
    )
    .await;
    // `check` also asserts that `total` equals the number of matches.
    check(srv, "Observation?code=X&subject.name=smith", &["a", "c"]).await;
    check(srv, "Observation?code=Y&subject.name=smith", &["b"]).await;
    check(srv, "Observation?code=X&subject:Patient.name=smith", &["a"]).await;
    check(srv, "Observation?code=Z&subject.name=smith", &[]).await;
    // A reference given only by identifier is present, not missing.
    put(srv, "Observation/d", obs(json!({"subject": {"identifier": {"value": "123"}}}))).await;
    check(srv, "Observation?subject:missing=true", &[]).await;
    check(srv, "Observation?subject:missing=false", &["a", "b", "c", "d"]).await;
    outcome(srv.get("Patient?gender:of-type=a|b|c").await, 400).await;
});
