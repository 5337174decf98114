//! ADT → Patient (v2-to-FHIR IG, PID → Patient): identifiers, names, birth date, sex,
//! addresses, phones, language, marital status, death. The Patient is written by a conditional
//! update on its first PID-3 identifier, so a re-sent or updated ADT updates the same Patient.

use serde_json::{Map, Value, json};

use super::ack::Problem;
use super::datatypes::{Writes, address, concept, date, datetime, each, identifier, name, telecom};
use super::message::V2;

/// US Core race and ethnicity (PID-10, PID-22, CDC Race & Ethnicity codes): the five OMB
/// categories (and the two ethnicities) as `ombCategory`, other codes as `detailed`.
fn race_or_ethnicity(m: &V2<'_>, n: usize, url: &str, omb: &[&str]) -> Option<Value> {
    let f = m.field("PID", n)?;
    let mut parts = Vec::new();
    let mut text = Vec::new();
    for rep in 0..m.repeats(f) {
        let code = m.component(f, rep, 1);
        let display = m.component(f, rep, 2);
        let system = m.component(f, rep, 3);
        if code.is_empty() || !matches!(system.as_str(), "CDCREC" | "HL70005" | "HL70189" | "") {
            continue;
        }
        let kind = if omb.contains(&code.as_str()) { "ombCategory" } else { "detailed" };
        let mut coding = json!({"system": "urn:oid:2.16.840.1.113883.6.238", "code": code});
        if !display.is_empty() {
            coding["display"] = json!(display);
        }
        parts.push(json!({"url": kind, "valueCoding": coding}));
        text.push(if display.is_empty() { code } else { display });
    }
    if parts.is_empty() {
        return None;
    }
    parts.push(json!({"url": "text", "valueString": text.join(", ")}));
    Some(json!({"url": url, "extension": parts}))
}

/// NK1 segments → Patient.contact (name, relationship NK1-3 and contact role NK1-7, address,
/// phones); a contact with none of name, phone or address is left out (FHIR's pat-1).
fn contacts(m: &V2<'_>) -> Vec<Value> {
    let mut out = Vec::new();
    for seg in m.message.segments.iter().filter(|s| s.name == "NK1") {
        let mut c = Map::new();
        if let Some(n) = seg.field(2).and_then(|f| name(m, f, 0)) {
            c.insert("name".into(), n);
        }
        let telecom: Vec<Value> = [(5, "home"), (6, "work")]
            .iter()
            .flat_map(|(n, u)| each(m, seg.field(*n), |f, rep| telecom(m, f, rep, u)))
            .collect();
        if !telecom.is_empty() {
            c.insert("telecom".into(), Value::from(telecom));
        }
        if let Some(a) = seg.field(4).and_then(|f| address(m, f, 0)) {
            c.insert("address".into(), a);
        }
        if c.is_empty() {
            continue;
        }
        let relationship: Vec<Value> = [3, 7].iter().filter_map(|n| concept(m, seg, *n)).collect();
        if !relationship.is_empty() {
            c.insert("relationship".into(), Value::from(relationship));
        }
        out.push(Value::Object(c));
    }
    out
}

fn identifiers(m: &V2<'_>) -> Result<Vec<Value>, Problem> {
    let Some(f) = m.field("PID", 3) else {
        return Err(Problem::new("PID-3", 101, "PID-3 (patient identifier list) is required"));
    };
    let out = each(m, Some(f), |f, rep| identifier(m, f, rep, 4, 5));
    if out.is_empty() {
        return Err(Problem::new("PID-3", 101, "PID-3 holds no identifier"));
    }
    Ok(out)
}

/// The Patient of a message's PID segment (with PD1-4 and NK1); practitioners it names are
/// added to `w`.
pub fn patient(m: &V2<'_>, w: &mut Writes) -> Result<Value, Problem> {
    if m.message.segment("PID").is_none() {
        return Err(Problem::new("PID", 100, "the message has no PID segment"));
    }
    let mut p = json!({"resourceType": "Patient", "identifier": identifiers(m)?});
    let mut extensions = Vec::new();
    extensions.extend(race_or_ethnicity(m, 10, RACE, &["1002-5", "2028-9", "2054-5", "2076-8", "2106-3"]));
    extensions.extend(race_or_ethnicity(m, 22, ETHNICITY, &["2135-2", "2186-5"]));
    if !extensions.is_empty() {
        p["extension"] = Value::from(extensions);
    }
    let names = each(m, m.field("PID", 5), |f, rep| name(m, f, rep));
    if !names.is_empty() {
        p["name"] = Value::from(names);
    }
    let birth = m.get("PID", 7, 1);
    if !birth.is_empty() {
        match date(&birth) {
            Some(d) => p["birthDate"] = Value::from(d),
            None => w.problems.push(Problem::new("PID-7", 102, format!("'{birth}' is not a date"))),
        }
    }
    let gender = match m.get("PID", 8, 1).as_str() {
        "" => None,
        "M" => Some("male"),
        "F" => Some("female"),
        "O" | "A" => Some("other"),
        "U" | "N" => Some("unknown"),
        other => {
            w.problems.push(Problem::new(
                "PID-8",
                103,
                format!("administrative sex '{other}' is not in table 0001"),
            ));
            None
        }
    };
    if let Some(g) = gender {
        p["gender"] = Value::from(g);
    }
    let addresses = each(m, m.field("PID", 11), |f, rep| address(m, f, rep));
    let telecoms: Vec<Value> = [(13, "home"), (14, "work")]
        .iter()
        .flat_map(|(n, u)| each(m, m.field("PID", *n), |f, rep| telecom(m, f, rep, u)))
        .collect();
    for (key, values) in [("address", addresses), ("telecom", telecoms), ("contact", contacts(m))] {
        if !values.is_empty() {
            p[key] = Value::from(values);
        }
    }
    if let Some(pid) = m.message.segment("PID") {
        if let Some(language) = concept(m, pid, 15) {
            p["communication"] = json!([{"language": language}]);
        }
        if let Some(marital) = concept(m, pid, 16) {
            p["maritalStatus"] = marital;
        }
    }
    if let Some(d) = datetime(&m.get("PID", 29, 0), m.zone().as_deref()) {
        p["deceasedDateTime"] = Value::from(d);
    } else if m.get("PID", 30, 1) == "Y" {
        p["deceasedBoolean"] = Value::from(true);
    }
    let doctors: Vec<Value> = m
        .field("PD1", 4)
        .map(|f| (0..m.repeats(f)).filter_map(|rep| w.practitioner(m, Some(f), rep)).collect())
        .unwrap_or_default();
    if !doctors.is_empty() {
        p["generalPractitioner"] = Value::from(doctors);
    }
    Ok(p)
}

const RACE: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race";
const ETHNICITY: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity";

/// Stores the Patient by a conditional update on its first identifier; its fullUrl.
pub fn write_patient(w: &mut Writes, patient: Value) -> String {
    let id = patient["identifier"][0].clone();
    w.upsert("Patient", &id, patient)
}

/// A stored Patient (the one a merge retires, or the one an ADT updates): id, version, body.
pub struct Retired {
    pub id: String,
    pub version: i64,
    pub body: Value,
}

/// PID-3's first identifier, as a search token.
pub fn patient_token(m: &V2<'_>) -> Option<String> {
    first_token(m, "PID", 3)
}

/// The first CX of a field, as a search token.
fn first_token(m: &V2<'_>, segment: &str, n: usize) -> Option<String> {
    m.field(segment, n).and_then(|f| identifier(m, f, 0, 4, 5)).map(|id| super::datatypes::token(&id))
}

/// What an ADT update keeps of the stored Patient: a merge's `link`s and `active = false`
/// are not the sending system's to undo by re-sending demographics.
pub fn keep_merge(patient: &mut Value, stored: Option<&Value>) {
    let Some(stored) = stored else { return };
    for key in ["link", "active"] {
        if let Some(v) = stored.get(key)
            && patient.get(key).is_none()
        {
            patient[key] = v.clone();
        }
    }
}

/// Stores the Patient only if none has its first identifier (VXU, ORU: their PID is about
/// whose data this is, not an update of the demographics, which ADT feeds own).
pub fn ensure_patient(w: &mut Writes, patient: Value) -> String {
    let id = patient["identifier"][0].clone();
    w.ensure("Patient", &id, patient)
}

/// MRG-1's first identifier, as a search token.
pub fn merged_token(m: &V2<'_>) -> Option<String> {
    first_token(m, "MRG", 1)
}

/// ADT^A40: the surviving Patient (PID) gets a `replaces` link, the retired one (MRG-1, as
/// stored) `active = false` and a `replaced-by` link; nothing else is rewritten, so references
/// to the retired Patient stay as they were and can be followed through its link.
pub fn merge(m: &V2<'_>, retired: Option<&Retired>, w: &mut Writes) -> Result<Vec<String>, Problem> {
    if m.message.segment("MRG").is_none() {
        return Err(Problem::new("MRG", 100, "an A40 needs an MRG segment"));
    }
    let Some(old) = retired else {
        let which = merged_token(m).unwrap_or_default();
        return Err(Problem::new("MRG-1", 204, format!("no Patient has the identifier '{which}' to merge")));
    };
    let mut survivor = patient(m, w)?;
    if merged_token(m).as_deref() == Some(super::datatypes::token(&survivor["identifier"][0]).as_str()) {
        return Err(Problem::new("MRG-1", 102, "a Patient cannot be merged into itself"));
    }
    survivor["link"] = json!([{"other": {"reference": format!("Patient/{}", old.id)}, "type": "replaces"}]);
    let survivor_ref = write_patient(w, survivor);
    let mut body = old.body.clone();
    body["active"] = Value::from(false);
    let mut links: Vec<Value> = body["link"].as_array().cloned().unwrap_or_default();
    links.retain(|l| l["type"] != "replaced-by");
    links.push(json!({"other": {"reference": survivor_ref}, "type": "replaced-by"}));
    body["link"] = Value::from(links);
    let retired_ref = w.push(crate::engine::Method::Put, format!("Patient/{}", old.id), body);
    if let Some(r) = w.requests.last_mut() {
        // The retired Patient as it was read: a change in between fails the merge (AE).
        r.if_match = Some(old.version);
    }
    Ok(vec![survivor_ref, retired_ref])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_maps_to_a_patient() {
        let text = "MSH|^~\\&|APP|FAC|HEARTH|HOSP|20240101||ADT^A01|42|P|2.5.1\rPID|1||123^^^MRN&1.2.3&ISO^MR~X9^^^Clinic||Ward^Ada^B^Jr^Dr^^L||19800102|F|||1 Main St^Apt 2^Springfield^IL^62701^USA^H||^PRN^PH^^^555^1234567~^NET^Internet^ada@example.org|||M||||||||||||||Y";
        let m = V2::parse(text).unwrap();
        let mut w = Writes::default();
        let p = patient(&m, &mut w).unwrap();
        assert_eq!(
            p["identifier"][0],
            json!({"value": "123", "system": "urn:oid:1.2.3", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}})
        );
        assert_eq!(p["identifier"][1]["system"], "urn:hearth:hl7v2:Clinic");
        assert_eq!(
            p["name"][0],
            json!({"family": "Ward", "given": ["Ada", "B"], "prefix": ["Dr"], "suffix": ["Jr"], "use": "official"})
        );
        assert_eq!(p["birthDate"], "1980-01-02");
        assert_eq!(p["gender"], "female");
        assert_eq!(p["address"][0]["line"], json!(["1 Main St", "Apt 2"]));
        assert_eq!(p["telecom"][0], json!({"system": "phone", "value": "5551234567", "use": "home"}));
        assert_eq!(p["telecom"][1]["system"], "email");
        assert_eq!(p["deceasedBoolean"], true);
        write_patient(&mut w, p);
        assert_eq!(w.requests[0].url, "Patient?identifier=urn%3Aoid%3A1.2.3%7C123");
        let bad = V2::parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPID|1||123||X||19801399|Q").unwrap();
        let mut w = Writes::default();
        patient(&bad, &mut w).unwrap();
        let wrong: Vec<&str> = w.problems.iter().map(|p| p.location.as_str()).collect();
        assert_eq!(wrong, ["PID-7", "PID-8"], "every problem, not the first only");
    }
}
