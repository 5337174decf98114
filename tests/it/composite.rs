//! Composite parameters (search.html#composite): both parts must hold on the same element.
//! Expected answers are worked out by hand from the observations stored here.

use serde_json::{Value, json};

use crate::both;
use crate::search::{check, obs, put};
use crate::support::{Srv, outcome};

const LOINC: &str = "http://loinc.org";

fn code(c: &str) -> Value {
    json!({"coding": [{"system": LOINC, "code": c}]})
}

fn mmhg(v: f64) -> Value {
    json!({"value": v, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"})
}

async fn observations(srv: &Srv) {
    put(srv, "Observation/o1", obs(json!({"code": code("8480-6"), "valueQuantity": mmhg(120.0)}))).await;
    put(srv, "Observation/o2", obs(json!({"code": code("8480-6"), "valueQuantity": mmhg(150.0)}))).await;
    put(srv, "Observation/o3", obs(json!({"code": code("8462-4"), "valueQuantity": mmhg(150.0)}))).await;
    put(
        srv,
        "Observation/o4",
        obs(json!({"code": code("85354-9"), "component": [
            {"code": code("8480-6"), "valueQuantity": mmhg(110.0)},
            {"code": code("8462-4"), "valueQuantity": mmhg(70.0)}
        ]})),
    )
    .await;
    put(
        srv,
        "Observation/o5",
        obs(json!({"code": code("72166-2"), "valueCodeableConcept":
            {"coding": [{"system": "http://snomed.info/sct", "code": "8517006"}]}})),
    )
    .await;
    put(srv, "Observation/o6", obs(json!({"code": code("8480-6"), "valueString": "High reading"}))).await;
    put(srv, "Observation/o7", obs(json!({"code": code("8310-5"), "valueDateTime": "2020-01-05"}))).await;
}

both!(composite_code_value_parameters, |srv| {
    observations(srv).await;
    check(srv, "Observation?code-value-quantity=http://loinc.org|8480-6$gt130", &["o2"]).await;
    check(srv, "Observation?code-value-quantity=8480-6$120", &["o1"]).await;
    check(
        srv,
        "Observation?code-value-quantity=8480-6$lt200|http://unitsofmeasure.org|mm[Hg]",
        &["o1", "o2"],
    )
    .await;
    check(srv, "Observation?code-value-quantity=8480-6$lt200||mg", &[]).await;
    // The parts must come from the same element: o4's panel code has no value of its own.
    check(srv, "Observation?code-value-quantity=85354-9$gt0", &[]).await;
    check(srv, "Observation?component-code-value-quantity=8480-6$lt115", &["o4"]).await;
    check(srv, "Observation?component-code-value-quantity=8462-4$gt100", &[]).await;
    check(srv, "Observation?combo-code-value-quantity=8480-6$ge110", &["o1", "o2", "o4"]).await;
    check(srv, "Observation?code-value-concept=72166-2$http://snomed.info/sct|8517006", &["o5"]).await;
    check(srv, "Observation?code-value-concept=72166-2$1111", &[]).await;
    check(srv, "Observation?code-value-string=8480-6$high", &["o6"]).await;
    check(srv, "Observation?code-value-date=8310-5$2020-01", &["o7"]).await;
    check(srv, "Observation?code-value-date=8310-5$gt2020-02", &[]).await;
    // Comma is OR between whole pairs; repeating the parameter is AND.
    check(srv, "Observation?code-value-quantity=8480-6$120,8462-4$150", &["o1", "o3"]).await;
    check(srv, "Observation?code-value-quantity=8480-6$gt100&code-value-quantity=8480-6$lt130", &["o1"])
        .await;
    check(srv, "Observation?code-value-quantity:missing=true", &["o4", "o5", "o6", "o7"]).await;
    outcome(srv.get("Observation?code-value-quantity=8480-6").await, 400).await;
    outcome(srv.get("Observation?code-value-quantity=8480-6$abc").await, 400).await;
});

both!(composite_index_follows_writes, |srv| {
    observations(srv).await;
    put(srv, "Observation/o2", obs(json!({"code": code("8480-6"), "valueQuantity": mmhg(100.0)}))).await;
    check(srv, "Observation?code-value-quantity=8480-6$gt130", &[]).await;
    check(srv, "Observation?code-value-quantity=8480-6$lt130", &["o1", "o2"]).await;
    assert!(srv.delete("Observation/o1").await.status().is_success());
    check(srv, "Observation?code-value-quantity=8480-6$lt130", &["o2"]).await;
});

// Token `:of-type` pairs an identifier's type with its value; reference `:identifier` searches
// the identifier of a Reference (both stored beside the composite and token rows).
both!(of_type_and_reference_identifier, |srv| {
    let v2 = "http://terminology.hl7.org/CodeSystem/v2-0203";
    put(
        srv,
        "Patient/mr1",
        json!({"identifier": [
            {"type": {"coding": [{"system": v2, "code": "MR"}]}, "system": "urn:mrn", "value": "446053"},
            {"type": {"coding": [{"system": v2, "code": "DL"}]}, "system": "urn:dl", "value": "X99"}
        ]}),
    )
    .await;
    put(
        srv,
        "Patient/mr2",
        json!({"identifier": [
            {"type": {"coding": [{"system": v2, "code": "DL"}]}, "system": "urn:dl", "value": "446053"}
        ]}),
    )
    .await;
    check(srv, &format!("Patient?identifier:of-type={v2}|MR|446053"), &["mr1"]).await;
    check(srv, &format!("Patient?identifier:of-type={v2}|DL|446053"), &["mr2"]).await;
    check(srv, &format!("Patient?identifier:of-type={v2}|DL|X99,{v2}|DL|446053"), &["mr1", "mr2"]).await;
    check(srv, &format!("Patient?identifier:of-type={v2}|MR|X99"), &[]).await;
    outcome(srv.get("Patient?identifier:of-type=446053").await, 400).await;

    put(
        srv,
        "Observation/ri1",
        obs(json!({"subject": {"identifier": {"system": "urn:mrn", "value": "446053"}}})),
    )
    .await;
    put(
        srv,
        "Observation/ri2",
        obs(json!({"subject": {"reference": "Patient/mr1",
        "identifier": {"system": "urn:mrn", "value": "777"}}})),
    )
    .await;
    check(srv, "Observation?subject:identifier=urn:mrn|446053", &["ri1"]).await;
    check(srv, "Observation?subject:identifier=777", &["ri2"]).await;
    check(srv, "Observation?subject=Patient/mr1", &["ri2"]).await;
});
