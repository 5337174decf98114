//! JSON and XML both ways, `_format`, `_pretty`, and the CapabilityStatement.

use reqwest::Method;
use serde_json::json;

use crate::both;
use crate::support::{json, outcome};

const PATIENT_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <!-- a comment -->
  <text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>Peter <b>Chalmers</b></p></div></text>
  <identifier><system value="http://hearth.test/mrn"/><value value="X-1"/></identifier>
  <active value="true"/>
  <name><family value="Chalmers"/><given value="Peter"/><given id="g2" value="James"/></name>
  <gender value="male"/>
  <birthDate value="1974-12-25">
    <extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime"><valueDateTime value="1974-12-25T14:35:45-05:00"/></extension>
  </birthDate>
</Patient>"#;

both!(xml_in_json_out_and_back, |srv| {
    let resp = srv
        .req(Method::POST, "Patient")
        .header("content-type", "application/fhir+xml")
        .header("accept", "application/fhir+json")
        .body(PATIENT_XML)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let p = json(resp).await;
    assert_eq!(p["active"], true);
    assert_eq!(p["name"][0]["given"], json!(["Peter", "James"]));
    assert_eq!(p["name"][0]["_given"], json!([null, {"id": "g2"}]));
    assert_eq!(p["_birthDate"]["extension"][0]["valueDateTime"], "1974-12-25T14:35:45-05:00");
    assert!(p["text"]["div"].as_str().unwrap().contains("<b>Chalmers</b>"));
    let id = p["id"].as_str().unwrap();

    // XML out, by Accept and by _format; and XML → JSON gives the same resource
    let resp = srv
        .req(Method::GET, &format!("Patient/{id}"))
        .header("accept", "application/fhir+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/fhir+xml"));
    let xml = resp.text().await.unwrap();
    assert!(xml.contains("<Patient xmlns=\"http://hl7.org/fhir\">"), "{xml}");
    assert!(xml.contains("<given id=\"g2\" value=\"James\"/>"), "{xml}");
    let by_format = srv.get(&format!("Patient/{id}?_format=xml")).await.text().await.unwrap();
    assert_eq!(by_format, xml);
    let resp = srv
        .req(Method::PUT, &format!("Patient/{id}"))
        .header("content-type", "application/fhir+xml")
        .body(xml)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut again = json(resp).await;
    let mut before = p.clone();
    again.as_object_mut().unwrap().remove("meta");
    before.as_object_mut().unwrap().remove("meta");
    assert_eq!(again, before);

    // _pretty
    let pretty = srv.get(&format!("Patient/{id}?_pretty=true")).await.text().await.unwrap();
    assert!(pretty.contains("\n  \"resourceType\": \"Patient\""), "{pretty}");
    let pretty_xml = srv
        .get(&format!("Patient/{id}?_format=application/fhir%2Bxml&_pretty=true"))
        .await
        .text()
        .await
        .unwrap();
    assert!(pretty_xml.contains("\n  <"), "{pretty_xml}");

    // errors follow the requested format
    let resp =
        srv.req(Method::GET, "Patient/nope").header("accept", "application/fhir+xml").send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(resp.text().await.unwrap().contains("<OperationOutcome xmlns=\"http://hl7.org/fhir\">"));
    // a search bundle in XML
    let resp = srv.get("Patient?identifier=X-1&_format=xml").await;
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("<?xml") && text.contains("<Bundle") && text.contains("<Patient"), "{text}");
    // application/json and a browser's Accept header get JSON
    let resp = srv
        .req(Method::GET, &format!("Patient/{id}"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/fhir+json"));
    let resp = srv
        .req(Method::POST, "Patient")
        .header("content-type", "application/json")
        .body(r#"{"resourceType":"Patient"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
});

both!(bad_xml, |srv| {
    let post = |body: &'static str| {
        srv.req(Method::POST, "Patient").header("content-type", "application/fhir+xml").body(body).send()
    };
    outcome(
        post("<Patient xmlns=\"http://hl7.org/fhir\"><active value=\"maybe\"/></Patient>").await.unwrap(),
        400,
    )
    .await;
    outcome(
        post("<Patient xmlns=\"http://hl7.org/fhir\"><banana value=\"1\"/></Patient>").await.unwrap(),
        400,
    )
    .await;
    outcome(post("<Patient><active value=\"true\"/></Patient>").await.unwrap(), 400).await;
    outcome(post("<Patient xmlns=\"http://hl7.org/fhir\"><active value=\"true\">").await.unwrap(), 400).await;
    let xxe = "<?xml version=\"1.0\"?><!DOCTYPE p [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><Patient xmlns=\"http://hl7.org/fhir\"><gender value=\"&x;\"/></Patient>";
    outcome(post(xxe).await.unwrap(), 400).await;
    outcome(
        post("<Patient xmlns=\"http://hl7.org/fhir\"><birthDate value=\"not-a-date\"/></Patient>")
            .await
            .unwrap(),
        400,
    )
    .await;
});

both!(capability_statement, |srv| {
    let cs = json(srv.get("metadata").await).await;
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(cs["kind"], "instance");
    let formats = cs["format"].as_array().unwrap();
    assert!(
        formats.contains(&json!("application/fhir+json")) && formats.contains(&json!("application/fhir+xml"))
    );
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    assert_eq!(resources.len(), 146);
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let codes: Vec<&str> =
        patient["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    for i in [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ] {
        assert!(codes.contains(&i), "{i}");
    }
    let params: Vec<&str> =
        patient["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(
        params.contains(&"identifier") && params.contains(&"_id") && params.contains(&"gender"),
        "{params:?}"
    );
    // only what is implemented is claimed: no phonetic matching, no three-part composites
    assert!(params.contains(&"name") && params.contains(&"birthdate"), "{params:?}");
    assert!(!params.contains(&"phonetic"), "{params:?}");
    let observation = resources.iter().find(|r| r["type"] == "Observation").unwrap();
    let obs: Vec<&str> =
        observation["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(obs.contains(&"value-quantity") && obs.contains(&"code-value-quantity"), "{obs:?}");
    let seq = resources.iter().find(|r| r["type"] == "MolecularSequence").unwrap();
    let seq: Vec<&str> =
        seq["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(seq.contains(&"chromosome") && !seq.contains(&"chromosome-window-coordinate"), "{seq:?}");
    let id = patient["searchParam"].as_array().unwrap().iter().find(|p| p["name"] == "identifier").unwrap();
    assert_eq!(id["type"], "token");
    assert_eq!(id["definition"], "http://hl7.org/fhir/SearchParameter/Patient-identifier");
    // the statement is a valid resource by the server's own validator
    let mut cs2 = cs.clone();
    cs2["id"] = json!("self");
    assert_eq!(srv.put("CapabilityStatement/self", &cs2).await.status(), 201);
    let xml = srv.get("metadata?_format=xml").await.text().await.unwrap();
    assert!(xml.contains("<CapabilityStatement"));
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_base_url() {
    let srv = crate::support::Srv::start_with(crate::support::Backend::Sqlite, |c| {
        c.base_url = Some("https://fhir.example.org/r4".into())
    })
    .await;
    let root = srv.base.trim_end_matches("/fhir").to_string();
    assert_eq!(srv.client.get(format!("{root}/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(srv.client.get(format!("{root}/readyz")).send().await.unwrap().status(), 200);
    let resp = srv.post("Patient", &json!({"resourceType": "Patient"})).await;
    assert!(resp.headers()["location"].to_str().unwrap().starts_with("https://fhir.example.org/r4/Patient/"));
    srv.stop().await;
}
