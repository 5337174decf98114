use super::*;
use serde_json::json;

fn patient(body: &str) -> String {
    format!(r#"<Patient xmlns="http://hl7.org/fhir">{body}</Patient>"#)
}

fn parse_err(xml: &str) -> FormatError {
    xml_to_json(xml).expect_err("document should be rejected")
}

#[test]
fn official_examples_round_trip() {
    let examples = crate::resource::official_examples();
    if examples.is_empty() {
        return;
    }
    let mut count = 0;
    for (name, original) in examples {
        for pretty in [false, true] {
            let xml = json_to_xml(&original, pretty).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let back = xml_to_json(&xml).unwrap_or_else(|e| panic!("{name}: {e:?}\n{xml}"));
            assert!(back == original, "{name} (pretty={pretty}) differs after the round trip");
        }
        count += 1;
    }
    println!("{count} official examples round-tripped");
    assert!(count >= 181);
}

const PATIENT_XML: &str = r##"<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<Patient xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
xsi:schemaLocation="http://hl7.org/fhir patient.xsd">
  <id value="p1"/>
  <text>
<status value="generated"/>
<div xmlns="http://www.w3.org/1999/xhtml"><p>Peter &amp; <b>James</b></p></div>
  </text>
  <contained>
<Organization>
  <id value="org"/>
  <name value="Acme"/>
</Organization>
  </contained>
  <extension url="http://example.org/rank">
<valueDecimal value="1.50"/>
  </extension>
  <active value="true"/>
  <name id="n1">
<family value="Chalmers"/>
<given value="Peter"/>
<?some-pi ignored?>
<given id="g2" value="James"/>
<given>
  <extension url="http://example.org/absent">
    <valueCode value="unknown"/>
  </extension>
</given>
  </name>
  <birthDate value="1974-12-25">
<extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">
  <valueDateTime value="1974-12-25T14:35:45-05:00"/>
</extension>
  </birthDate>
  <multipleBirthInteger value="2"/>
  <managingOrganization>
<reference value="#org"/>
<display value="Line 1&#xA;Line 2 &quot;quoted&quot;"/>
  </managingOrganization>
</Patient>"##;

fn patient_json() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "text": {
            "status": "generated",
            "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Peter &amp; <b>James</b></p></div>"
        },
        "contained": [{"resourceType": "Organization", "id": "org", "name": "Acme"}],
        "extension": [{"url": "http://example.org/rank", "valueDecimal": 1.5}],
        "active": true,
        "name": [{
            "id": "n1",
            "family": "Chalmers",
            "given": ["Peter", "James", null],
            "_given": [null, {"id": "g2"}, {"extension": [
                {"url": "http://example.org/absent", "valueCode": "unknown"}]}]
        }],
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
            "valueDateTime": "1974-12-25T14:35:45-05:00"
        }]},
        "multipleBirthInteger": 2,
        "managingOrganization": {"reference": "#org", "display": "Line 1\nLine 2 \"quoted\""}
    })
}

#[test]
fn hand_written_patient() {
    assert_eq!(xml_to_json(PATIENT_XML).unwrap(), patient_json());
    let again = json_to_xml(&patient_json(), true).unwrap();
    assert_eq!(xml_to_json(&again).unwrap(), patient_json());
}

#[test]
fn hand_written_bundle_and_quantity() {
    let xml = r#"<f:Bundle xmlns:f="http://hl7.org/fhir"><f:type value="collection"/>
        <f:entry><f:fullUrl value="urn:uuid:1"/><f:resource><f:Observation>
          <f:status value="final"/><f:code><f:text value="Weight"/></f:code>
          <f:valueQuantity><f:value value="72.0"/><f:unit value="kg"/></f:valueQuantity>
          <f:component><f:code><f:text value="c"/></f:code><f:valueBoolean value="false"/></f:component>
        </f:Observation></f:resource></f:entry></f:Bundle>"#;
    let expected = json!({"resourceType": "Bundle", "type": "collection", "entry": [{
        "fullUrl": "urn:uuid:1",
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "Weight"},
            "valueQuantity": {"value": 72.0, "unit": "kg"},
            "component": [{"code": {"text": "c"}, "valueBoolean": false}]}
    }]});
    assert_eq!(xml_to_json(xml).unwrap(), expected);
}

#[test]
fn json_to_xml_orders_and_escapes() {
    let patient = json!({
        "gender": "male",
        "name": [{"given": ["A<B", "C"], "_given": [{"id": "x"}, null], "family": "Tab\there"}],
        "resourceType": "Patient",
        "active": false,
        "multipleBirthBoolean": true,
        "contained": [{"resourceType": "Basic", "code": {"text": "b"}}]
    });
    let expected = concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Patient xmlns="http://hl7.org/fhir">"#,
        r#"<contained><Basic><code><text value="b"/></code></Basic></contained>"#,
        r#"<active value="false"/><name><family value="Tab&#x9;here"/><given id="x" value="A&lt;B"/>"#,
        r#"<given value="C"/></name><gender value="male"/><multipleBirthBoolean value="true"/></Patient>"#
    );
    assert_eq!(json_to_xml(&patient, false).unwrap(), expected);
    let pretty = json_to_xml(&patient, true).unwrap();
    assert!(pretty.contains("\n  <active value=\"false\"/>\n"), "{pretty}");
}

#[test]
fn json_to_xml_rejects_bad_input() {
    let err = json_to_xml(&json!({"resourceType": "Patient", "name": [{"foo": 1}]}), false).unwrap_err();
    assert_eq!(err.path.as_deref(), Some("Patient.name[0]"));
    assert!(err.message.contains("'foo'"), "{}", err.message);
    let err = json_to_xml(&json!({"resourceType": "Patient", "active": "yes"}), false).unwrap_err();
    assert_eq!(err.path.as_deref(), Some("Patient.active"));
    assert!(json_to_xml(&json!({"resourceType": "Nope"}), false).is_err());
    let two = json!({"resourceType": "Patient", "deceasedBoolean": true, "deceasedDateTime": "2020"});
    assert!(json_to_xml(&two, false).unwrap_err().message.contains("deceased[x]"));
    assert!(json_to_xml(&json!({"resourceType": "Patient", "gender": "a\u{1}"}), false).is_err());
    let bad_div =
        json!({"resourceType": "Patient", "text": {"status": "generated", "div": "<div><p></div>"}});
    assert_eq!(json_to_xml(&bad_div, false).unwrap_err().path.as_deref(), Some("Patient.text.div"));
}

#[test]
fn rejects_unknown_elements_and_attributes() {
    let err = parse_err(&patient(r#"<name><given value="a"/><nickname value="b"/></name>"#));
    assert_eq!(err.path.as_deref(), Some("Patient.name[0].nickname"));
    assert!(err.message.contains("unknown element 'nickname'"), "{}", err.message);
    let err = parse_err(&patient(r#"<active value="true" colour="red"/>"#));
    assert_eq!(err.path.as_deref(), Some("Patient.active"));
    assert!(parse_err(r#"<Foo xmlns="http://hl7.org/fhir"/>"#).message.contains("unknown resource type"));
    assert!(
        parse_err(&patient(r#"<gender value="male"/><gender value="female"/>"#))
            .message
            .contains("at most once")
    );
    assert!(parse_err(&patient(r#"<active>true</active>"#)).message.contains("text content"));
    let two = patient(r#"<deceasedBoolean value="true"/><deceasedDateTime value="2020"/>"#);
    assert_eq!(parse_err(&two).path.as_deref(), Some("Patient.deceasedDateTime"));
}

#[test]
fn rejects_bad_namespaces() {
    assert!(parse_err(r#"<Patient><id value="x"/></Patient>"#).message.contains("FHIR namespace"));
    assert!(parse_err(r#"<Patient xmlns="http://hl7.org/fhir/"/>"#).message.contains("FHIR namespace"));
    let err = parse_err(&patient(r#"<id xmlns="urn:x" value="x"/>"#));
    assert_eq!(err.path.as_deref(), Some("Patient.id"));
    let div_in_fhir_ns = &patient(r#"<text><status value="generated"/><div/></text>"#);
    assert!(parse_err(div_in_fhir_ns).message.contains("XHTML"));
}

#[test]
fn rejects_doctype_and_malformed_xml() {
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY x SYSTEM "file:///etc/passwd">]>
        <Patient xmlns="http://hl7.org/fhir"><id value="&x;"/></Patient>"#;
    assert!(parse_err(xxe).message.contains("DOCTYPE"));
    assert!(parse_err(&patient(r#"<id value="x">"#)).message.contains("malformed"));
    assert!(parse_err("").message.contains("root"));
    assert!(
        parse_err(r#"<Patient xmlns="http://hl7.org/fhir"/><Patient xmlns="http://hl7.org/fhir"/>"#)
            .message
            .contains("after the root")
    );
}

#[test]
fn rejects_bad_primitive_values() {
    let err = parse_err(&patient(r#"<active value="yes"/>"#));
    assert_eq!(err.path.as_deref(), Some("Patient.active"));
    assert!(err.message.contains("boolean"), "{}", err.message);
    let err = parse_err(&patient(r#"<multipleBirthInteger value="01"/>"#));
    assert_eq!(err.path.as_deref(), Some("Patient.multipleBirthInteger"));
    let obs = |v: &str| {
        format!(
            r#"<Observation xmlns="http://hl7.org/fhir"><valueQuantity><value value="{v}"/></valueQuantity></Observation>"#
        )
    };
    assert_eq!(parse_err(&obs("1,5")).path.as_deref(), Some("Observation.valueQuantity.value"));
    assert!(parse_err(&obs(" 1")).message.contains("decimal"));
    assert_eq!(xml_to_json(&obs("-1.5e3")).unwrap()["valueQuantity"]["value"], json!(-1500.0));
    assert!(parse_err(&patient(r#"<gender/>"#)).message.contains("value"));
}

#[test]
fn rejects_deep_nesting() {
    let depth = MAX_DEPTH + 5;
    let mut xml = String::from(r#"<Patient xmlns="http://hl7.org/fhir">"#);
    xml.push_str(&r#"<extension url="u">"#.repeat(depth));
    xml.push_str(&"</extension>".repeat(depth));
    xml.push_str("</Patient>");
    assert!(parse_err(&xml).message.contains("nesting"));
    let mut ext = json!({"url": "u", "valueString": "x"});
    for _ in 0..depth {
        ext = json!({"url": "u", "extension": [ext]});
    }
    let err = json_to_xml(&json!({"resourceType": "Patient", "extension": [ext]}), false).unwrap_err();
    assert!(err.message.contains("nesting"), "{}", err.message);
}
