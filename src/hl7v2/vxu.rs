//! VXU^V04 → Patient + one Immunization per RXA (CDC HL7 2.5.1 Immunization Messaging IG,
//! v2-to-FHIR RXA → Immunization). An Immunization is written by a conditional update on an
//! identifier: ORC-3 (filler order number) when given, else one derived from the patient,
//! vaccine, date and lot, so a re-sent VXU updates rather than duplicates.

use hl7_parser::message::Segment;
use serde_json::{Value, json};

use super::ack::Problem;
use super::message::V2;
use crate::engine::{Method, Request};

const CVX: &str = "http://hl7.org/fhir/sid/cvx";
const NDC: &str = "http://hl7.org/fhir/sid/ndc";
const MVX: &str = "http://hl7.org/fhir/sid/mvx";

fn code_system(name: &str) -> Option<&'static str> {
    match name {
        "CVX" => Some(CVX),
        "NDC" => Some(NDC),
        "MVX" => Some(MVX),
        "UCUM" => Some("http://unitsofmeasure.org"),
        "HL70162" => Some("http://terminology.hl7.org/CodeSystem/v2-0162"),
        "HL70163" => Some("http://terminology.hl7.org/CodeSystem/v2-0163"),
        "NCIT" => Some("http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"),
        "NIP001" => Some("urn:oid:2.16.840.1.114222.4.5.274"),
        "NIP002" => Some("urn:oid:2.16.840.1.114222.4.5.272"),
        _ => None,
    }
}

/// A `CE`/`CWE` field (both triplets) as a CodeableConcept; `None` when empty.
fn concept(m: &V2<'_>, seg: &Segment<'_>, n: usize) -> Option<Value> {
    let mut coding = Vec::new();
    for first in [1, 4] {
        let code = m.at(seg, n, first);
        if code.is_empty() {
            continue;
        }
        let mut c = json!({"code": code});
        let display = m.at(seg, n, first + 1);
        if !display.is_empty() {
            c["display"] = json!(display);
        }
        let sys = m.at(seg, n, first + 2);
        match code_system(&sys) {
            Some(s) => c["system"] = json!(s),
            None if !sys.is_empty() => {
                c["system"] = json!(format!("urn:hearth:hl7v2:{}", sys.replace(' ', "-")))
            }
            None => {}
        }
        coding.push(c);
    }
    let text = m.at(seg, n, 2);
    match (coding.is_empty(), text.is_empty()) {
        (true, true) => None,
        (true, false) => Some(json!({"text": text})),
        _ => Some(json!({"coding": coding})),
    }
}

/// `YYYYMMDD…` → `YYYY-MM-DD` (the date of administration; times are dropped, as their zone is
/// often missing).
fn day(ts: &str) -> Option<String> {
    let d: String = ts.chars().take_while(char::is_ascii_digit).collect();
    let ok = d.len() >= 8
        && d.get(4..6).and_then(|x| x.parse::<u32>().ok()).is_some_and(|mo| (1..=12).contains(&mo))
        && d.get(6..8).and_then(|x| x.parse::<u32>().ok()).is_some_and(|dd| (1..=31).contains(&dd));
    ok.then(|| format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..8]))
}

/// A stable id from the message's facts (FNV-1a), for RXAs without a filler order number.
fn derived_id(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in parts.join("|").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// One RXA with the ORC before it and the RXRs after it.
struct Dose<'a, 'm> {
    orc: Option<&'a Segment<'m>>,
    rxa: &'a Segment<'m>,
    rxr: Option<&'a Segment<'m>>,
    index: usize,
}

fn doses<'a, 'm>(m: &'a V2<'m>) -> Vec<Dose<'a, 'm>> {
    let mut out: Vec<Dose<'a, 'm>> = Vec::new();
    let mut orc = None;
    for seg in &m.message.segments {
        match seg.name {
            "ORC" => orc = Some(seg),
            "RXA" => {
                let index = out.len() + 1;
                out.push(Dose { orc: orc.take(), rxa: seg, rxr: None, index });
            }
            "RXR" => {
                if let Some(d) = out.last_mut().filter(|d| d.rxr.is_none()) {
                    d.rxr = Some(seg);
                }
            }
            _ => {}
        }
    }
    out
}

/// The Immunization of one dose, referencing the message's Patient by `patient_ref`.
fn immunization(
    m: &V2<'_>,
    d: &Dose<'_, '_>,
    patient_ref: &str,
    patient_key: &str,
) -> Result<Value, Problem> {
    let at = |n: usize| format!("RXA[{}]-{n}", d.index);
    let vaccine = concept(m, d.rxa, 5)
        .ok_or_else(|| Problem::new(&at(5), 101, "RXA-5 (administered code) is required"))?;
    let when = m.at(d.rxa, 3, 1);
    let date =
        day(&when).ok_or_else(|| Problem::new(&at(3), 102, format!("RXA-3 '{when}' is not a date")))?;
    let lot = m.at(d.rxa, 15, 1);
    let mut imm = json!({
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": vaccine,
        "patient": {"reference": patient_ref},
        "occurrenceDateTime": date,
    });
    let filler = d.orc.map(|o| (m.at(o, 3, 1), m.at(o, 3, 2))).filter(|(id, _)| !id.is_empty());
    let identifier = match filler {
        Some((id, ns)) => {
            json!({"system": format!("urn:hearth:hl7v2:filler:{}", if ns.is_empty() { "-".into() } else { ns.replace(' ', "-") }), "value": id})
        }
        None => {
            let code = m.at(d.rxa, 5, 1);
            json!({"system": "urn:hearth:hl7v2:dose", "value": derived_id(&[patient_key, &code, &date, &lot])})
        }
    };
    imm["identifier"] = json!([identifier]);
    let amount = m.at(d.rxa, 6, 1);
    if let Ok(v) = amount.parse::<f64>()
        && amount != "999"
    {
        let mut q = json!({"value": v});
        let unit = m.at(d.rxa, 7, 1);
        if !unit.is_empty() {
            q["unit"] = json!(unit);
            q["system"] = json!("http://unitsofmeasure.org");
            q["code"] = json!(unit);
        }
        imm["doseQuantity"] = q;
    }
    if !lot.is_empty() {
        imm["lotNumber"] = json!(lot);
    }
    if let Some(exp) = day(&m.at(d.rxa, 16, 1)) {
        imm["expirationDate"] = json!(exp);
    }
    match m.at(d.rxa, 9, 1).as_str() {
        "" => {}
        "00" => imm["primarySource"] = json!(true),
        _ => {
            imm["primarySource"] = json!(false);
            if let Some(origin) = concept(m, d.rxa, 9) {
                imm["reportOrigin"] = origin;
            }
        }
    }
    match m.at(d.rxa, 20, 1).as_str() {
        "" | "CP" => {}
        "PA" => imm["isSubpotent"] = json!(true),
        "RE" | "NA" => {
            imm["status"] = json!("not-done");
            if let Some(reason) = concept(m, d.rxa, 18) {
                imm["statusReason"] = reason;
            }
        }
        other => {
            return Err(Problem::new(
                &at(20),
                103,
                format!("completion status '{other}' is not in table 0322"),
            ));
        }
    }
    if m.at(d.rxa, 21, 1) == "D" {
        imm["status"] = json!("entered-in-error");
    }
    if let Some(rxr) = d.rxr {
        if let Some(route) = concept(m, rxr, 1) {
            imm["route"] = route;
        }
        if let Some(site) = concept(m, rxr, 2) {
            imm["site"] = site;
        }
    }
    Ok(imm)
}

/// The id of the Organization for an MVX manufacturer code: one per code, so that messages
/// need no conditional lookup (whose lock would serialize every message naming it).
pub fn manufacturer_id(code: &str) -> String {
    let clean: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).take(50).collect();
    format!("mvx-{}", clean.to_ascii_lowercase())
}

/// The MVX codes a message names (RXA-17).
pub fn manufacturer_codes(m: &V2<'_>) -> Vec<String> {
    doses(m).iter().map(|d| m.at(d.rxa, 17, 1)).filter(|c| !c.is_empty()).collect()
}

/// The manufacturer (RXA-17, MVX) as the Organization `mvx-<code>`, written (update-as-create)
/// only when it is not `known` to exist yet.
fn manufacturer(
    m: &V2<'_>,
    d: &Dose<'_, '_>,
    imm: &mut Value,
    requests: &mut Vec<Request>,
    known: &[String],
) {
    let code = m.at(d.rxa, 17, 1);
    if code.is_empty() {
        return;
    }
    let id = manufacturer_id(&code);
    let url = format!("Organization/{id}");
    if !known.contains(&id) && !requests.iter().any(|r| r.url == url) {
        let mut org =
            json!({"resourceType": "Organization", "id": id, "identifier": [{"system": MVX, "value": code}]});
        let name = m.at(d.rxa, 17, 2);
        if !name.is_empty() {
            org["name"] = json!(name);
        }
        requests.push(Request {
            method: Method::Put,
            url: url.clone(),
            full_url: None,
            resource: Some(org),
            if_match: None,
            if_none_exist: None,
        });
    }
    imm["manufacturer"] = json!({"reference": url});
}

/// The whole VXU as transaction requests: the Patient, then each dose. `known`: the
/// manufacturer Organizations (ids) that exist already.
pub fn requests(m: &V2<'_>, known: &[String]) -> Result<Vec<Request>, Problem> {
    let patient = super::adt::patient(m)?;
    let id = &patient["identifier"][0];
    let key =
        format!("{}|{}", id["system"].as_str().unwrap_or_default(), id["value"].as_str().unwrap_or_default());
    let patient_ref = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let mut out = super::adt::patient_requests(patient);
    out[0].full_url = Some(patient_ref.clone());
    let doses = doses(m);
    if doses.is_empty() {
        return Err(Problem::new("RXA", 100, "a VXU needs at least one RXA"));
    }
    for d in &doses {
        let mut imm = immunization(m, d, &patient_ref, &key)?;
        manufacturer(m, d, &mut imm, &mut out, known);
        let ident = &imm["identifier"][0];
        let token = format!(
            "{}|{}",
            ident["system"].as_str().unwrap_or_default(),
            ident["value"].as_str().unwrap_or_default()
        );
        let query =
            url::form_urlencoded::Serializer::new(String::new()).append_pair("identifier", &token).finish();
        out.push(Request {
            method: Method::Put,
            url: format!("Immunization?{query}"),
            full_url: None,
            resource: Some(imm),
            if_match: None,
            if_none_exist: None,
        });
    }
    Ok(out)
}
