//! Search by parameter type: string, token, reference, date, quantity and uri, the modifiers, `_id`
//! and `_lastUpdated`. Every expected answer is worked out by hand from the data each test stores.

use serde_json::{Value, json};

use crate::both;
use crate::support::{Srv, json, outcome};

/// Stores `body` at `Type/id` (update-as-create), filling in `resourceType` and `id` from the path.
pub(crate) async fn put(srv: &Srv, path: &str, mut body: Value) {
    let (rtype, id) = path.split_once('/').expect("Type/id");
    body["resourceType"] = json!(rtype);
    body["id"] = json!(id);
    let resp = srv.put(path, &body).await;
    let status = resp.status();
    if !status.is_success() {
        panic!("PUT {path}: {status} {}", resp.text().await.unwrap_or_default());
    }
}

/// An Observation with the required `status` and `code` added when the test does not care.
pub(crate) fn obs(mut body: Value) -> Value {
    if body.get("status").is_none() {
        body["status"] = json!("final");
    }
    if body.get("code").is_none() {
        body["code"] = json!({"text": "Test"});
    }
    body
}

/// The ids of the matches, sorted; checks the bundle type and that `total` counts the matches.
async fn ids(srv: &Srv, query: &str) -> Vec<String> {
    let resp = srv.get(query).await;
    let status = resp.status();
    let bundle = json(resp).await;
    assert_eq!(status, 200, "{query}: {bundle}");
    assert_eq!(bundle["type"], "searchset", "{query}: {bundle}");
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| e["search"]["mode"] != "outcome")
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(bundle["total"], ids.len(), "{query}: total");
    ids.sort();
    ids
}

/// Asserts that `query` matches exactly `expected` (in any order).
pub(crate) async fn check(srv: &Srv, query: &str, expected: &[&str]) {
    let mut want = expected.to_vec();
    want.sort();
    assert_eq!(ids(srv, query).await, want, "{query}");
}

// ---- string ----------------------------------------------------------------------------------

both!(string_patient_names_and_addresses, |srv| {
    put(
        srv,
        "Patient/s1",
        json!({
            "name": [{"family": "Müller", "given": ["Jim", "Peter"]}],
            "address": [{
                "line": ["Bahnhofstrasse 1"], "city": "Zürich", "postalCode": "8001", "country": "CH"
            }]
        }),
    )
    .await;
    put(
        srv,
        "Patient/s2",
        json!({
            "name": [{"family": "Allen", "given": ["Petra"], "prefix": ["Dr."]}],
            "address": [{"city": "Boston", "state": "MA", "postalCode": "02115"}]
        }),
    )
    .await;
    put(
        srv,
        "Patient/s3",
        json!({
            "name": [{"text": "Pétur Jónsson"}],
            "address": [{"text": "Main Street 5, Reykjavík"}]
        }),
    )
    .await;
    put(srv, "Patient/s4", json!({})).await;

    // default: starts-with after case folding and accent removal
    check(srv, "Patient?family=muller", &["s1"]).await;
    check(srv, "Patient?family=MÜL", &["s1"]).await;
    check(srv, "Patient?family=ller", &[]).await;
    check(srv, "Patient?given=JIM", &["s1"]).await;
    check(srv, "Patient?given=pet", &["s1", "s2"]).await;
    // name: family, given, prefix, suffix or text
    check(srv, "Patient?name=pet", &["s1", "s2", "s3"]).await;
    check(srv, "Patient?name=dr", &["s2"]).await;
    check(srv, "Patient?name=allen", &["s2"]).await;
    // :exact is a whole, case- and accent-sensitive match
    check(srv, "Patient?family:exact=Müller", &["s1"]).await;
    check(srv, "Patient?family:exact=muller", &[]).await;
    check(srv, "Patient?family:exact=Mül", &[]).await;
    // :contains is a folded substring match
    check(srv, "Patient?family:contains=ll", &["s1", "s2"]).await;
    check(srv, "Patient?family:contains=LER", &["s1"]).await;
    check(srv, "Patient?name:contains=sson", &["s3"]).await;
    // addresses: any part, or one part
    check(srv, "Patient?address-city=zur", &["s1"]).await;
    check(srv, "Patient?address-city=bost", &["s2"]).await;
    check(srv, "Patient?address=8001", &["s1"]).await;
    check(srv, "Patient?address=bahnhof", &["s1"]).await;
    check(srv, "Patient?address=ch", &["s1"]).await;
    check(srv, "Patient?address=ma", &["s2", "s3"]).await;
    check(srv, "Patient?address-postalcode=021", &["s2"]).await;
    // `name` and `address` hold the parts their narrower parameters index (family, given,
    // city, state, postal code, country) only under those: every modifier still sees them.
    check(srv, "Patient?name:exact=Jim", &["s1"]).await;
    check(srv, "Patient?name:exact=jim", &[]).await;
    check(srv, "Patient?name:contains=ülle", &["s1"]).await;
    check(srv, "Patient?address=zur", &["s1"]).await;
    check(srv, "Patient?address:exact=MA", &["s2"]).await;
    check(srv, "Patient?address:contains=ostO", &["s2"]).await;
    check(srv, "Patient?name:missing=true", &["s4"]).await;
    check(srv, "Patient?name:missing=false", &["s1", "s2", "s3"]).await;
    check(srv, "Patient?address:missing=true", &["s4"]).await;
    check(srv, "?_type=Patient,Practitioner&name=allen", &["s2"]).await;
    put(srv, "Practitioner/s5", json!({"name": [{"family": "Allenby"}], "address": [{"city": "Zug"}]})).await;
    check(srv, "?_type=Patient,Practitioner&name=allen", &["s2", "s5"]).await;
    check(srv, "?_type=Patient,Practitioner&address=zu", &["s1", "s5"]).await;
    // different parameters are ANDed
    check(srv, "Patient?family=muller&given=jim", &["s1"]).await;
    check(srv, "Patient?family=muller&given=petra", &[]).await;
    check(srv, "Patient?given=pet&family=allen", &["s2"]).await;
});

both!(string_organization_name, |srv| {
    put(srv, "Organization/o1", json!({"name": "Hôpital Général"})).await;
    put(srv, "Organization/o2", json!({"name": "General Hospital"})).await;
    put(srv, "Organization/o3", json!({"active": true})).await;
    check(srv, "Organization?name=hopital", &["o1"]).await;
    check(srv, "Organization?name=HOP", &["o1"]).await;
    check(srv, "Organization?name=general", &["o2"]).await;
    check(srv, "Organization?name:contains=general", &["o1", "o2"]).await;
    check(srv, "Organization?name:exact=General%20Hospital", &["o2"]).await;
    check(srv, "Organization?name:exact=general%20hospital", &[]).await;
    check(srv, "Organization?name:missing=true", &["o3"]).await;
});

// ---- token -----------------------------------------------------------------------------------

both!(token_gender_and_identifier, |srv| {
    put(
        srv,
        "Patient/t1",
        json!({
            "gender": "male",
            "identifier": [
                {"system": "http://hearth.test/mrn", "value": "100"},
                {"system": "http://hearth.test/ssn", "value": "999"}
            ]
        }),
    )
    .await;
    put(
        srv,
        "Patient/t2",
        json!({
            "gender": "female",
            "identifier": [{"system": "http://hearth.test/mrn", "value": "200"}]
        }),
    )
    .await;
    put(srv, "Patient/t3", json!({"gender": "other", "identifier": [{"value": "100"}]})).await;
    put(srv, "Patient/t4", json!({})).await;

    check(srv, "Patient?gender=male", &["t1"]).await;
    check(srv, "Patient?gender=male,female", &["t1", "t2"]).await;
    check(srv, "Patient?gender=male&gender=female", &[]).await;
    // :not includes resources without any value
    check(srv, "Patient?gender:not=male", &["t2", "t3", "t4"]).await;
    check(srv, "Patient?gender:not=male&gender:not=female", &["t3", "t4"]).await;

    check(srv, "Patient?identifier=http://hearth.test/mrn|100", &["t1"]).await;
    check(srv, "Patient?identifier=100", &["t1", "t3"]).await;
    check(srv, "Patient?identifier=|100", &["t3"]).await;
    check(srv, "Patient?identifier=http://hearth.test/mrn|", &["t1", "t2"]).await;
    check(srv, "Patient?identifier=http://hearth.test/ssn|999", &["t1"]).await;
    check(srv, "Patient?identifier=http://hearth.test/mrn|999", &[]).await;
    check(srv, "Patient?identifier=http://hearth.test/mrn|100,http://hearth.test/mrn|200", &["t1", "t2"])
        .await;
    check(
        srv,
        "Patient?identifier=http://hearth.test/mrn|100&identifier=http://hearth.test/ssn|999",
        &["t1"],
    )
    .await;
    check(srv, "Patient?identifier=100&gender=other", &["t3"]).await;
});

both!(token_observation_code_and_text, |srv| {
    let loinc = "http://loinc.org";
    put(
        srv,
        "Observation/c1",
        obs(json!({
            "code": {"coding": [{"system": loinc, "code": "8867-4", "display": "Heart rate"}]}
        })),
    )
    .await;
    put(
        srv,
        "Observation/c2",
        obs(json!({
            "code": {
                "coding": [{"system": "http://snomed.info/sct", "code": "364075005",
                            "display": "Heart rate (observable entity)"}],
                "text": "Pulse"
            }
        })),
    )
    .await;
    put(
        srv,
        "Observation/c3",
        obs(json!({
            "status": "amended",
            "code": {
                "coding": [{"system": loinc, "code": "2339-0", "display": "Glucose [Mass/volume] in Blood"}],
                "text": "Blood glucose"
            }
        })),
    )
    .await;
    put(srv, "Observation/c4", obs(json!({"code": {"text": "HEART sounds"}}))).await;

    check(srv, "Observation?code=http://loinc.org|8867-4", &["c1"]).await;
    check(srv, "Observation?code=8867-4", &["c1"]).await;
    check(srv, "Observation?code=http://snomed.info/sct|8867-4", &[]).await;
    check(srv, "Observation?code=http://loinc.org|", &["c1", "c3"]).await;
    check(srv, "Observation?code=http://loinc.org|8867-4,http://loinc.org|2339-0", &["c1", "c3"]).await;
    check(srv, "Observation?code=http://loinc.org|&code=2339-0", &["c3"]).await;
    // :text: code.text or any coding.display, starts-with, folded
    check(srv, "Observation?code:text=heart", &["c1", "c2", "c4"]).await;
    check(srv, "Observation?code:text=PULSE", &["c2"]).await;
    check(srv, "Observation?code:text=glucose", &["c3"]).await;
    check(srv, "Observation?code:text=rate", &[]).await;
    check(srv, "Observation?status=final", &["c1", "c2", "c4"]).await;
    check(srv, "Observation?status:not=final", &["c3"]).await;
});

// ---- reference -------------------------------------------------------------------------------

both!(reference_subject_and_patient, |srv| {
    put(srv, "Patient/p1", json!({})).await;
    put(srv, "Patient/p2", json!({})).await;
    put(srv, "Observation/r1", obs(json!({"subject": {"reference": "Patient/p1"}}))).await;
    put(srv, "Observation/r2", obs(json!({"subject": {"reference": "Patient/p2"}}))).await;
    put(
        srv,
        "Observation/r3",
        obs(json!({"subject": {"reference": "http://other.example/fhir/Patient/p9"}})),
    )
    .await;
    put(srv, "Observation/r4", obs(json!({}))).await;
    put(srv, "Observation/r5", obs(json!({"subject": {"reference": "Group/g1"}}))).await;
    // An absolute URL that names no resource (its row has no target: found by URL alone).
    put(srv, "Observation/r6", obs(json!({"subject": {"reference": "http://other.example/people/42"}})))
        .await;

    check(srv, "Observation?subject=Patient/p1", &["r1"]).await;
    check(srv, "Observation?patient=Patient/p1", &["r1"]).await;
    check(srv, "Observation?patient=p1", &["r1"]).await;
    check(srv, "Observation?subject:Patient=p1", &["r1"]).await;
    check(srv, "Observation?subject=Group/g1", &["r5"]).await;
    check(srv, "Observation?subject:Group=g1", &["r5"]).await;
    check(srv, "Observation?subject:Patient=g1", &[]).await;
    check(srv, "Observation?patient=Patient/p1,Patient/p2", &["r1", "r2"]).await;
    check(srv, "Observation?patient=Patient/p1&patient=Patient/p2", &[]).await;
    check(srv, "Observation?subject=http://other.example/fhir/Patient/p9", &["r3"]).await;
    // The same target on another server is another reference.
    check(srv, "Observation?subject=http://elsewhere.example/fhir/Patient/p9", &[]).await;
    check(srv, "Observation?subject=http://other.example/people/42", &["r6"]).await;
    check(srv, "Observation?subject=http://other.example/people/43", &[]).await;
    check(srv, "Observation?patient=Patient/unknown", &[]).await;
    check(srv, "Observation?subject:missing=true", &["r4"]).await;
    check(srv, "Observation?subject:missing=false", &["r1", "r2", "r3", "r5", "r6"]).await;
});

// ---- date ------------------------------------------------------------------------------------

both!(date_birthdate_prefixes, |srv| {
    put(srv, "Patient/d1", json!({"birthDate": "1970-01-01"})).await;
    put(srv, "Patient/d2", json!({"birthDate": "1980-06-15"})).await;
    put(srv, "Patient/d3", json!({"birthDate": "1980-12-31"})).await;
    put(srv, "Patient/d4", json!({"birthDate": "1990-03-03"})).await;
    put(srv, "Patient/d5", json!({"gender": "unknown"})).await;

    check(srv, "Patient?birthdate=1980", &["d2", "d3"]).await;
    check(srv, "Patient?birthdate=eq1980", &["d2", "d3"]).await;
    check(srv, "Patient?birthdate=1980-06", &["d2"]).await;
    check(srv, "Patient?birthdate=1980-06-15", &["d2"]).await;
    check(srv, "Patient?birthdate=1980-06-14", &[]).await;
    check(srv, "Patient?birthdate=1970,1990", &["d1", "d4"]).await;
    check(srv, "Patient?birthdate=ge1980-12-31", &["d3", "d4"]).await;
    check(srv, "Patient?birthdate=ge1980", &["d2", "d3", "d4"]).await;
    check(srv, "Patient?birthdate=le1980", &["d1", "d2", "d3"]).await;
    check(srv, "Patient?birthdate=lt1980", &["d1"]).await;
    check(srv, "Patient?birthdate=gt1980", &["d4"]).await;
    check(srv, "Patient?birthdate=le1980-06-15", &["d1", "d2"]).await;
    check(srv, "Patient?birthdate=ne1980-06-15", &["d1", "d3", "d4"]).await;
    check(srv, "Patient?birthdate=sa1980", &["d4"]).await;
    check(srv, "Patient?birthdate=eb1980", &["d1"]).await;
    check(srv, "Patient?birthdate=ge1975&birthdate=lt1985", &["d2", "d3"]).await;
    check(srv, "Patient?birthdate:missing=true", &["d5"]).await;
    check(srv, "Patient?birthdate:missing=false", &["d1", "d2", "d3", "d4"]).await;
});

both!(date_observation_periods_and_instants, |srv| {
    put(srv, "Observation/e1", obs(json!({"effectivePeriod": {"start": "2024-01-01", "end": "2024-01-31"}})))
        .await;
    put(srv, "Observation/e2", obs(json!({"effectiveDateTime": "2024-03-01T10:00:00+02:00"}))).await;
    // no end: open towards the future
    put(srv, "Observation/e3", obs(json!({"effectivePeriod": {"start": "2024-06-01"}}))).await;
    put(srv, "Observation/e4", obs(json!({}))).await;

    // e1 is [2024-01-01, 2024-02-01), e2 [2024-03-01T08:00:00Z, +1s), e3 [2024-06-01, ∞)
    check(srv, "Observation?date=2024-01", &["e1"]).await;
    check(srv, "Observation?date=2024-01-15", &[]).await;
    check(srv, "Observation?date=gt2024-01-15", &["e1", "e2", "e3"]).await;
    check(srv, "Observation?date=lt2024-01-15", &["e1"]).await;
    check(srv, "Observation?date=sa2023-12-31", &["e1", "e2", "e3"]).await;
    check(srv, "Observation?date=eb2024-02-01", &["e1"]).await;
    check(srv, "Observation?date=ne2024-01", &["e2", "e3"]).await;
    check(srv, "Observation?date=2024", &["e1", "e2"]).await;
    check(srv, "Observation?date=2024-06", &[]).await;
    check(srv, "Observation?date=le2024-06-30", &["e1", "e2", "e3"]).await;
    check(srv, "Observation?date=gt2030", &["e3"]).await;
    check(srv, "Observation?date=ge2025", &["e3"]).await;
    check(srv, "Observation?date=2024-03-01", &["e2"]).await;
    check(srv, "Observation?date=2024-03-01T08:00:00Z", &["e2"]).await;
    check(srv, "Observation?date=2024-03-01T10:00:00%2B02:00", &["e2"]).await;
    check(srv, "Observation?date:missing=true", &["e4"]).await;
});

both!(immunization_patient_and_date, |srv| {
    let imm = |patient: &str, when: &str| {
        json!({
            "status": "completed",
            "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]},
            "patient": {"reference": patient},
            "occurrenceDateTime": when
        })
    };
    put(srv, "Immunization/i1", imm("Patient/p1", "2023-10-05")).await;
    put(srv, "Immunization/i2", imm("Patient/p2", "2024-02-10T09:30:00Z")).await;
    put(srv, "Immunization/i3", imm("Patient/p1", "2024-11")).await;

    check(srv, "Immunization?patient=Patient/p1", &["i1", "i3"]).await;
    check(srv, "Immunization?patient=p2", &["i2"]).await;
    check(srv, "Immunization?date=2023", &["i1"]).await;
    check(srv, "Immunization?date=2024", &["i2", "i3"]).await;
    check(srv, "Immunization?date=2024-02-10", &["i2"]).await;
    check(srv, "Immunization?date=ge2024-02", &["i2", "i3"]).await;
    check(srv, "Immunization?date=lt2024-11-15", &["i1", "i2", "i3"]).await;
    check(srv, "Immunization?date=2024-11-15", &[]).await;
    check(srv, "Immunization?patient=Patient/p1&date=2024", &["i3"]).await;
});

// ---- quantity --------------------------------------------------------------------------------

both!(quantity_value_quantity, |srv| {
    let q = |value: f64, code: &str| {
        obs(json!({"valueQuantity":
            {"value": value, "unit": code, "system": "http://unitsofmeasure.org", "code": code}}))
    };
    put(srv, "Observation/q1", q(5.4, "mmol/L")).await;
    put(srv, "Observation/q2", q(7.0, "mmol/L")).await;
    put(srv, "Observation/q3", q(95.0, "mg/dL")).await;
    put(srv, "Observation/q4", obs(json!({"valueString": "not measured"}))).await;

    check(srv, "Observation?value-quantity=5.4|http://unitsofmeasure.org|mmol/L", &["q1"]).await;
    check(srv, "Observation?value-quantity=5.4|http://unitsofmeasure.org|mg/dL", &[]).await;
    // implicit precision: 5.4 is [5.35, 5.45), 5 is [4.5, 5.5), 5.44 is [5.435, 5.445)
    check(srv, "Observation?value-quantity=5.4", &["q1"]).await;
    check(srv, "Observation?value-quantity=5", &["q1"]).await;
    check(srv, "Observation?value-quantity=5.44", &[]).await;
    check(srv, "Observation?value-quantity=7|http://unitsofmeasure.org|mmol/L", &["q2"]).await;
    check(srv, "Observation?value-quantity=gt5", &["q1", "q2", "q3"]).await;
    check(srv, "Observation?value-quantity=le5.4", &["q1"]).await;
    check(srv, "Observation?value-quantity=ne5.4", &["q2", "q3"]).await;
    check(srv, "Observation?value-quantity=gt5||mmol/L", &["q1", "q2"]).await;
    check(srv, "Observation?value-quantity=lt100||mg/dL", &["q3"]).await;
    check(srv, "Observation?value-quantity=gt5|http://unitsofmeasure.org|mg/dL", &["q3"]).await;
    check(srv, "Observation?value-quantity=gt5&value-quantity=lt10", &["q1", "q2"]).await;
    check(srv, "Observation?value-quantity:missing=true", &["q4"]).await;
});

// ---- uri -------------------------------------------------------------------------------------

both!(uri_url_exact_below_above, |srv| {
    put(srv, "ValueSet/v1", json!({"status": "active", "url": "http://example.org/fhir/ValueSet/a"})).await;
    put(srv, "ValueSet/v2", json!({"status": "active", "url": "http://example.org/fhir/ValueSet/b"})).await;
    put(srv, "ValueSet/v3", json!({"status": "active", "url": "http://other.example/ValueSet/c"})).await;
    put(srv, "ValueSet/v4", json!({"status": "draft"})).await;
    put(
        srv,
        "CodeSystem/cs1",
        json!({
            "status": "active", "content": "not-present", "url": "http://example.org/fhir/CodeSystem/x"
        }),
    )
    .await;

    check(srv, "ValueSet?url=http://example.org/fhir/ValueSet/a", &["v1"]).await;
    check(srv, "ValueSet?url=http://example.org/fhir/ValueSet", &[]).await;
    check(srv, "ValueSet?url:below=http://example.org/fhir", &["v1", "v2"]).await;
    check(srv, "ValueSet?url:below=http://example.org/fhir/ValueSet/a", &["v1"]).await;
    check(srv, "ValueSet?url:above=http://example.org/fhir/ValueSet/a/extra", &["v1"]).await;
    check(srv, "ValueSet?url:above=http://example.org/fhir/ValueSet/a", &["v1"]).await;
    check(srv, "ValueSet?url:missing=true", &["v4"]).await;
    check(srv, "CodeSystem?url:below=http://example.org/fhir", &["cs1"]).await;
    check(srv, "CodeSystem?url=http://example.org/fhir/CodeSystem/x", &["cs1"]).await;
});

// ---- :missing, _id, _lastUpdated ---------------------------------------------------------------

both!(missing_modifier, |srv| {
    put(srv, "Patient/m1", json!({"birthDate": "1980-01-01", "gender": "male", "name": [{"family": "Ng"}]}))
        .await;
    put(srv, "Patient/m2", json!({"gender": "female", "name": [{"given": ["Ann"]}]})).await;
    put(srv, "Patient/m3", json!({})).await;

    check(srv, "Patient?birthdate:missing=true", &["m2", "m3"]).await;
    check(srv, "Patient?birthdate:missing=false", &["m1"]).await;
    check(srv, "Patient?gender:missing=true", &["m3"]).await;
    check(srv, "Patient?gender:missing=false", &["m1", "m2"]).await;
    check(srv, "Patient?family:missing=true", &["m2", "m3"]).await;
    check(srv, "Patient?family:missing=false", &["m1"]).await;
    check(srv, "Patient?name:missing=true", &["m3"]).await;
    check(srv, "Patient?birthdate:missing=true&gender:missing=false", &["m2"]).await;
});

both!(id_and_last_updated, |srv| {
    put(srv, "Patient/a", json!({"gender": "female"})).await;
    put(srv, "Patient/b", json!({"gender": "male"})).await;
    put(srv, "Patient/c", json!({"gender": "female"})).await;

    check(srv, "Patient?_id=a", &["a"]).await;
    check(srv, "Patient?_id=a,c", &["a", "c"]).await;
    check(srv, "Patient?_id=zzz", &[]).await;
    check(srv, "Patient?_id=a,b&gender=female", &["a"]).await;
    check(srv, "Patient?_lastUpdated=gt2000-01-01", &["a", "b", "c"]).await;
    check(srv, "Patient?_lastUpdated=lt2000-01-01", &[]).await;
    check(srv, "Patient?_lastUpdated=gt2000-01-01&gender=female", &["a", "c"]).await;

    // the day and the second of a's lastUpdated contain it; earlier than that day does not
    let stored = json(srv.get("Patient/a").await).await;
    let last = stored["meta"]["lastUpdated"].as_str().unwrap().to_string();
    let (day, second) = (&last[..10], format!("{}Z", &last[..19]));
    assert!(ids(srv, &format!("Patient?_lastUpdated={day}")).await.contains(&"a".to_string()));
    assert!(ids(srv, &format!("Patient?_lastUpdated={second}")).await.contains(&"a".to_string()));
    assert!(!ids(srv, &format!("Patient?_lastUpdated=lt{day}")).await.contains(&"a".to_string()));

    // total counts every match, not only the page
    let page = json(srv.get("Patient?_lastUpdated=gt2000-01-01&_count=1").await).await;
    assert_eq!(page["total"], 3, "{page}");
    assert_eq!(page["entry"].as_array().unwrap().len(), 1, "{page}");
});

both!(index_follows_updates_and_deletes, |srv| {
    put(srv, "Patient/u1", json!({"name": [{"family": "Oldname"}], "gender": "male", "birthDate": "1950"}))
        .await;
    check(srv, "Patient?family=oldname", &["u1"]).await;
    check(srv, "Patient?birthdate=1950", &["u1"]).await;

    put(srv, "Patient/u1", json!({"name": [{"family": "Newname"}], "gender": "female"})).await;
    check(srv, "Patient?family=oldname", &[]).await;
    check(srv, "Patient?family=newname", &["u1"]).await;
    check(srv, "Patient?gender=male", &[]).await;
    check(srv, "Patient?gender=female", &["u1"]).await;
    check(srv, "Patient?birthdate=1950", &[]).await;
    check(srv, "Patient?birthdate:missing=true", &["u1"]).await;

    put(srv, "Patient/u2", json!({"name": [{"family": "Newman"}]})).await;
    check(srv, "Patient?family=new", &["u1", "u2"]).await;
    assert!(srv.delete("Patient/u1").await.status().is_success());
    check(srv, "Patient?family=new", &["u2"]).await;
    check(srv, "Patient?_id=u1", &[]).await;
    check(srv, "Patient?gender:missing=true", &["u2"]).await;
});

// ---- malformed values ------------------------------------------------------------------------

both!(malformed_values_are_refused, |srv| {
    put(srv, "Patient/x", json!({"birthDate": "1980-01-01"})).await;
    for query in [
        "Patient?birthdate=1980-13",
        "Patient?birthdate=xx1980",
        "Patient?_lastUpdated=yesterday",
        "Observation?value-quantity=abc",
        "Observation?date=2024-01-01T25:00:00Z",
    ] {
        let resp = srv.get(query).await;
        assert_eq!(resp.status(), 400, "{query}");
        outcome(resp, 400).await;
    }
});

both!(patient_compartment, |srv| {
    put(srv, "Patient/c1", json!({})).await;
    put(srv, "Patient/c2", json!({})).await;
    let imm = |patient: &str| {
        json!({
            "status": "completed", "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]},
            "patient": {"reference": format!("Patient/{patient}")}, "occurrenceDateTime": "2024-10-01"
        })
    };
    put(srv, "Immunization/i1", imm("c1")).await;
    put(srv, "Immunization/i2", imm("c1")).await;
    put(srv, "Immunization/i3", imm("c2")).await;
    put(srv, "Observation/o1", obs(json!({"subject": {"reference": "Patient/c1"}, "status": "final"}))).await;
    put(srv, "Observation/o2", obs(json!({"performer": [{"reference": "Patient/c1"}], "status": "amended"})))
        .await;
    put(srv, "Observation/o3", obs(json!({"subject": {"reference": "Patient/c2"}}))).await;
    check(srv, "Patient/c1/Immunization", &["i1", "i2"]).await;
    check(srv, "Patient/c2/Immunization", &["i3"]).await;
    // subject or performer puts an Observation in the compartment; criteria still apply
    check(srv, "Patient/c1/Observation", &["o1", "o2"]).await;
    check(srv, "Patient/c1/Observation?status=amended", &["o2"]).await;
    check(srv, "Patient/c1/Patient", &["c1"]).await;
    check(srv, "Patient/nobody/Immunization", &[]).await;
    // R4's Patient compartment has no Task parameters; unknown types are unknown
    outcome(srv.get("Patient/c1/Task").await, 400).await;
    outcome(srv.get("Patient/c1/Banana").await, 404).await;
    let bundle = json(srv.get("Patient/c1/Immunization?_count=1").await).await;
    let next = bundle["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap();
    assert!(next["url"].as_str().unwrap().contains("/Patient/c1/Immunization?"), "{bundle}");
});

/// (mode, Type/id) of every entry, in order.
async fn entries(srv: &Srv, query: &str) -> Vec<(String, String)> {
    let bundle = json(srv.get(query).await).await;
    assert_eq!(bundle["type"], "searchset", "{query}: {bundle}");
    bundle["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| {
                    let r = &e["resource"];
                    (
                        e["search"]["mode"].as_str().unwrap().to_string(),
                        format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap_or("")),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

both!(include_and_revinclude, |srv| {
    put(srv, "Organization/org1", json!({"name": "Clinic"})).await;
    put(srv, "Practitioner/dr1", json!({})).await;
    put(srv, "Patient/a", json!({"managingOrganization": {"reference": "Organization/org1"}, "generalPractitioner": [{"reference": "Practitioner/dr1"}]})).await;
    put(srv, "Patient/b", json!({"managingOrganization": {"reference": "Organization/org1"}})).await;
    let imm = |patient: &str| {
        json!({
            "status": "completed", "vaccineCode": {"text": "flu"},
            "patient": {"reference": format!("Patient/{patient}")}, "occurrenceDateTime": "2024-10-01"
        })
    };
    put(srv, "Immunization/ia", imm("a")).await;
    put(srv, "Immunization/ib", imm("b")).await;
    let m = |s: &str| ("match".to_string(), s.to_string());
    let i = |s: &str| ("include".to_string(), s.to_string());

    // forward: each referenced patient once, after the matches
    assert_eq!(
        entries(srv, "Immunization?_include=Immunization:patient").await,
        vec![m("Immunization/ia"), m("Immunization/ib"), i("Patient/a"), i("Patient/b")]
    );
    // the total counts matches only
    let bundle = json(srv.get("Immunization?_include=Immunization:patient").await).await;
    assert_eq!(bundle["total"], 2);
    // target type restriction and wildcard
    assert_eq!(
        entries(srv, "Patient?_id=a&_include=Patient:general-practitioner:Practitioner").await,
        vec![m("Patient/a"), i("Practitioner/dr1")]
    );
    assert_eq!(
        entries(srv, "Patient?_id=a&_include=Patient:general-practitioner:Organization").await,
        vec![m("Patient/a")]
    );
    assert_eq!(
        entries(srv, "Patient?_id=a&_include=Patient:*").await,
        vec![m("Patient/a"), i("Organization/org1"), i("Practitioner/dr1")]
    );
    // reverse: the immunizations that point at the matched patients
    assert_eq!(
        entries(srv, "Patient?_id=a&_revinclude=Immunization:patient").await,
        vec![m("Patient/a"), i("Immunization/ia")]
    );
    // :iterate follows what the previous round added
    assert_eq!(
        entries(
            srv,
            "Immunization?_id=ia&_include=Immunization:patient&_include:iterate=Patient:organization"
        )
        .await,
        vec![m("Immunization/ia"), i("Patient/a"), i("Organization/org1")]
    );
    assert_eq!(
        entries(srv, "Immunization?_id=ia&_include=Immunization:patient&_include=Patient:organization").await,
        vec![m("Immunization/ia"), i("Patient/a")],
        "without :iterate the second include applies to the matches only"
    );
    outcome(srv.get("Immunization?_include=Immunization:status").await, 400).await;
    outcome(srv.get("Immunization?_include=nonsense").await, 400).await;
});

both!(summary_and_elements, |srv| {
    let narrative =
        json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"});
    put(
        srv,
        "Patient/s1",
        json!({"text": narrative, "gender": "male", "birthDate": "1980-01-01", "active": true}),
    )
    .await;
    put(srv, "Patient/s2", json!({"gender": "male"})).await;
    let count = json(srv.get("Patient?gender=male&_summary=count").await).await;
    assert_eq!(count["total"], 2);
    assert!(count.get("entry").is_none(), "{count}");
    let subset = json(srv.get("Patient?_id=s1&_elements=gender,birthDate").await).await;
    let r = &subset["entry"][0]["resource"];
    assert_eq!((r["gender"].as_str(), r["birthDate"].as_str()), (Some("male"), Some("1980-01-01")));
    assert!(r.get("active").is_none() && r.get("text").is_none(), "{r}");
    assert_eq!(r["id"], "s1");
    assert_eq!(r["meta"]["tag"][0]["code"], "SUBSETTED");
    let data = json(srv.get("Patient?_id=s1&_summary=data").await).await;
    let r = &data["entry"][0]["resource"];
    assert!(r.get("text").is_none() && r["active"] == true, "{r}");
    assert_eq!(r["meta"]["tag"][0]["code"], "SUBSETTED");
    // true: summary elements only (Patient.photo and text are not; gender, birthDate are)
    put(srv, "Patient/s3", json!({"text": narrative, "gender": "female", "photo": [{"title": "me"}]})).await;
    let sum = json(srv.get("Patient?_id=s3&_summary=true").await).await;
    let r = &sum["entry"][0]["resource"];
    assert!(r.get("text").is_none() && r.get("photo").is_none() && r["gender"] == "female", "{r}");
    assert_eq!(r["meta"]["tag"][0]["code"], "SUBSETTED");
    // text: narrative, id, meta and mandatory top-level elements (Patient has none)
    let text = json(srv.get("Patient?_id=s3&_summary=text").await).await;
    let r = &text["entry"][0]["resource"];
    assert!(r.get("text").is_some() && r.get("gender").is_none() && r.get("photo").is_none(), "{r}");
    // on a read too
    let read = json(srv.get("Patient/s3?_summary=true").await).await;
    assert!(read.get("photo").is_none() && read["gender"] == "female", "{read}");
    let read = json(srv.get("Patient/s3?_elements=photo").await).await;
    assert!(read.get("photo").is_some() && read.get("gender").is_none(), "{read}");
    // the stored resource is untouched
    let stored = json(srv.get("Patient/s1").await).await;
    assert!(stored.get("text").is_some() && stored["meta"].get("tag").is_none());
    outcome(srv.get("Patient?_summary=banana").await, 400).await;
});

both!(chained_parameters, |srv| {
    put(srv, "Organization/sys", json!({"name": "Health System"})).await;
    put(
        srv,
        "Organization/org1",
        json!({"name": "Riverside Clinic", "partOf": {"reference": "Organization/sys"}}),
    )
    .await;
    put(srv, "Organization/org2", json!({"name": "Hilltop"})).await;
    put(srv, "Practitioner/dr1", json!({"name": [{"family": "House"}]})).await;
    put(srv, "Patient/a", json!({"name": [{"family": "Alvarez"}], "managingOrganization": {"reference": "Organization/org1"}, "generalPractitioner": [{"reference": "Practitioner/dr1"}]})).await;
    put(
        srv,
        "Patient/b",
        json!({"name": [{"family": "Baker"}], "managingOrganization": {"reference": "Organization/org2"}}),
    )
    .await;
    let imm = |patient: &str| {
        json!({
            "status": "completed", "vaccineCode": {"text": "flu"},
            "patient": {"reference": format!("Patient/{patient}")}, "occurrenceDateTime": "2024-10-01"
        })
    };
    put(srv, "Immunization/ia", imm("a")).await;
    put(srv, "Immunization/ib", imm("b")).await;
    put(srv, "Observation/oa", obs(json!({"subject": {"reference": "Patient/a"}}))).await;
    put(srv, "Observation/og", obs(json!({"subject": {"reference": "Group/g1"}}))).await;

    check(srv, "Immunization?patient.family=alv", &["ia"]).await;
    check(srv, "Immunization?patient.name=BAK", &["ib"]).await;
    check(srv, "Immunization?patient.organization.name=river", &["ia"]).await;
    check(srv, "Immunization?patient.organization.name:exact=Hilltop", &["ib"]).await;
    check(srv, "Immunization?patient.organization.partof.name=health", &["ia"]).await;
    check(srv, "Immunization?patient.general-practitioner:Practitioner.family=house", &["ia"]).await;
    check(srv, "Immunization?patient._id=b", &["ib"]).await;
    check(srv, "Observation?subject:Patient.family=alv", &["oa"]).await;
    check(srv, "Observation?subject.family=alv", &["oa"]).await;
    check(srv, "Observation?subject:Patient.family=baker", &[]).await;
    // a chain combines with other criteria (AND) and with commas (OR)
    check(srv, "Immunization?patient.family=alv,bak&status=completed", &["ia", "ib"]).await;
    outcome(srv.get("Immunization?patient.banana=1").await, 400).await;
    outcome(srv.get("Immunization?status.name=x").await, 400).await;
    outcome(srv.get("Immunization?patient:Organization.name=x").await, 400).await;
});

both!(reverse_chaining_has, |srv| {
    for p in ["a", "b", "c"] {
        put(srv, &format!("Patient/{p}"), json!({})).await;
    }
    let o = |patient: &str, code: &str| {
        obs(json!({
            "subject": {"reference": format!("Patient/{patient}")},
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}
        }))
    };
    put(srv, "Observation/o1", o("a", "4548-4")).await;
    put(srv, "Observation/o2", o("b", "8867-4")).await;
    put(srv, "Observation/o3", o("b", "4548-4")).await;
    put(
        srv,
        "Encounter/e1",
        json!({"status": "finished", "class": {"code": "AMB"}, "subject": {"reference": "Patient/c"}}),
    )
    .await;
    put(
        srv,
        "Observation/o4",
        obs(json!({"encounter": {"reference": "Encounter/e1"}, "code": {"coding": [{"code": "X"}]}})),
    )
    .await;

    check(srv, "Patient?_has:Observation:subject:code=4548-4", &["a", "b"]).await;
    check(srv, "Patient?_has:Observation:patient:code=http://loinc.org|8867-4", &["b"]).await;
    check(srv, "Patient?_has:Observation:subject:code=nothing", &[]).await;
    // nested: patients with an encounter that has an observation coded X
    check(srv, "Patient?_has:Encounter:subject:_has:Observation:encounter:code=X", &["c"]).await;
    // combined with other criteria
    check(srv, "Patient?_has:Observation:subject:code=4548-4&_id=b", &["b"]).await;
    outcome(srv.get("Patient?_has:Observation:code:status=final").await, 400).await;
    outcome(srv.get("Patient?_has:Banana:subject:code=1").await, 400).await;
    outcome(srv.get("Patient?_has:Observation=1").await, 400).await;
});
