//! Custom SearchParameter resources: checked when stored, indexed from then on, `$reindex` for
//! what was stored before, and gone again when deleted.

use serde_json::{Value, json};

use crate::both;
use crate::search::{check, put};
use crate::support::{Srv, json, outcome};

fn nickname(status: &str) -> Value {
    json!({
        "resourceType": "SearchParameter", "url": "http://example.org/sp/nickname", "name": "nickname",
        "status": status, "description": "A patient's nickname", "code": "nickname", "base": ["Patient"],
        "type": "string", "expression": "Patient.name.where(use = 'nickname').given"
    })
}

async fn patient(srv: &Srv, id: &str, nick: &str) {
    put(
        srv,
        &format!("Patient/{id}"),
        json!({"name": [
            {"family": "Official", "given": ["Robert"]}, {"use": "nickname", "given": [nick]}
        ]}),
    )
    .await;
}

both!(custom_search_parameter_lifecycle, |srv| {
    patient(srv, "n1", "Bobby").await;
    // Unknown before it exists: refused under strict handling.
    let strict = srv.req(reqwest::Method::GET, "Patient?nickname=bob").header("prefer", "handling=strict");
    assert_eq!(strict.send().await.unwrap().status(), 400);
    put(srv, "SearchParameter/nickname", nickname("active")).await;
    patient(srv, "n2", "Bobcat").await;
    // Indexed from its creation on: n1 was stored before.
    check(srv, "Patient?nickname=bob", &["n2"]).await;
    check(srv, "Patient?nickname:exact=Bobcat", &["n2"]).await;
    check(srv, "Patient?_sort=-nickname&_id=n1,n2", &["n1", "n2"]).await;
    let r = json(srv.post("$reindex", &json!({"resourceType": "Parameters"})).await).await;
    assert_eq!(r["resourceType"], "Parameters", "{r}");
    assert!(r["parameter"][0]["valueInteger"].as_i64().unwrap() >= 3, "{r}");
    check(srv, "Patient?nickname=bob", &["n1", "n2"]).await;
    check(srv, "Patient?nickname=robert", &[]).await;
    // Type-level reindex too.
    let r = json(srv.post("Patient/$reindex", &json!({"resourceType": "Parameters"})).await).await;
    assert_eq!(r["parameter"][0]["valueInteger"], 2, "{r}");
    // Listed in the CapabilityStatement.
    let cs = json(srv.get("metadata").await).await;
    let pat = cs["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == "Patient").unwrap();
    assert!(pat["searchParam"].as_array().unwrap().iter().any(|p| p["name"] == "nickname"), "{pat}");
    // Retired: no longer a parameter.
    let mut retired = nickname("retired");
    retired["id"] = json!("nickname");
    assert_eq!(srv.put("SearchParameter/nickname", &retired).await.status(), 200);
    let strict = srv.req(reqwest::Method::GET, "Patient?nickname=bob").header("prefer", "handling=strict");
    assert_eq!(strict.send().await.unwrap().status(), 400);
    // Active again, then deleted.
    let mut active = nickname("active");
    active["id"] = json!("nickname");
    assert_eq!(srv.put("SearchParameter/nickname", &active).await.status(), 200);
    check(srv, "Patient?nickname=bobc", &["n2"]).await;
    assert!(srv.delete("SearchParameter/nickname").await.status().is_success());
    let strict = srv.req(reqwest::Method::GET, "Patient?nickname=bob").header("prefer", "handling=strict");
    assert_eq!(strict.send().await.unwrap().status(), 400);
});

both!(bad_search_parameters_are_refused, |srv| {
    let mut sp = nickname("active");
    sp["expression"] = json!("Patient.name.where(");
    outcome(srv.post("SearchParameter", &sp).await, 400).await;
    let mut sp = nickname("active");
    sp["code"] = json!("name");
    outcome(srv.post("SearchParameter", &sp).await, 400).await;
    let mut sp = nickname("active");
    sp["type"] = json!("composite");
    outcome(srv.post("SearchParameter", &sp).await, 400).await;
    let mut sp = nickname("active");
    sp["base"] = json!(["NotAType"]);
    outcome(srv.post("SearchParameter", &sp).await, 400).await;
    // Nothing was stored.
    check(srv, "SearchParameter", &[]).await;
    // A draft is stored but not active.
    assert_eq!(srv.post("SearchParameter", &nickname("draft")).await.status(), 201);
    let strict = srv.req(reqwest::Method::GET, "Patient?nickname=bob").header("prefer", "handling=strict");
    assert_eq!(strict.send().await.unwrap().status(), 400);
});
