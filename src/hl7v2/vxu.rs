//! VXU^V04 → Patient + one Immunization per RXA (CDC HL7 2.5.1 Immunization Messaging IG,
//! v2-to-FHIR RXA → Immunization). An Immunization is written by a conditional update on an
//! identifier: ORC-3 (filler order number) when given, else one derived from the patient,
//! vaccine, date and lot, so a re-sent VXU updates rather than duplicates.

use super::message::Segment;
use serde_json::{Value, json};

use super::ack::Problem;
use super::datatypes::{Writes, concept, token};
use super::message::V2;
use crate::engine::Method;

const MVX: &str = "http://hl7.org/fhir/sid/mvx";
/// Who did what for a dose (HL7 table 0443).
const FUNCTION: &str = "http://terminology.hl7.org/CodeSystem/v2-0443";

/// `YYYYMMDD…` → `YYYY-MM-DD`, a whole day only (the date of administration; times are
/// dropped, as their zone is often missing).
fn day(ts: &str) -> Option<String> {
    super::datatypes::date(ts).filter(|d| d.len() == 10)
}

/// One RXA with the ORC before it and the RXRs after it.
struct Dose<'a, 'm> {
    orc: Option<&'a Segment<'m>>,
    rxa: &'a Segment<'m>,
    rxr: Option<&'a Segment<'m>>,
    obx: Vec<&'a Segment<'m>>,
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
                out.push(Dose { orc: orc.take(), rxa: seg, rxr: None, obx: Vec::new(), index });
            }
            "RXR" => {
                if let Some(d) = out.last_mut().filter(|d| d.rxr.is_none()) {
                    d.rxr = Some(seg);
                }
            }
            "OBX" => {
                if let Some(d) = out.last_mut() {
                    d.obx.push(seg);
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
    w: &mut Writes,
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
    // `9999` is the CDC IG's placeholder for "no order" (historical doses, refusals).
    let filler =
        d.orc.map(|o| (m.at(o, 3, 1), m.at(o, 3, 2))).filter(|(id, _)| !id.is_empty() && id != "9999");
    let identifier = match filler {
        Some((id, ns)) => {
            let ns = if ns.is_empty() { m.get("MSH", 4, 1) } else { ns };
            json!({"system": format!("urn:hearth:hl7v2:filler:{}", if ns.is_empty() { "-".into() } else { ns.replace(' ', "-") }), "value": id})
        }
        None => {
            let code = m.at(d.rxa, 5, 1);
            json!({"system": "urn:hearth:hl7v2:dose", "value": format!("{:016x}", crate::engine::stable_hash(&[patient_key, &code, &date, &lot]))})
        }
    };
    imm["identifier"] = Value::from(vec![identifier]);
    let amount = m.at(d.rxa, 6, 1);
    if let Ok(v) = amount.parse::<f64>()
        && amount != "999"
        && v.is_finite()
    {
        let mut q = json!({"value": v});
        let unit = m.at(d.rxa, 7, 1);
        if !unit.is_empty() {
            q["unit"] = json!(unit);
            q["system"] = json!("http://unitsofmeasure.org");
            q["code"] = Value::from(unit);
        }
        imm["doseQuantity"] = q;
    }
    if !lot.is_empty() {
        imm["lotNumber"] = Value::from(lot);
    }
    if let Some(exp) = day(&m.at(d.rxa, 16, 1)) {
        imm["expirationDate"] = Value::from(exp);
    }
    match m.at(d.rxa, 9, 1).as_str() {
        "" => {}
        "00" => imm["primarySource"] = Value::from(true),
        _ => {
            imm["primarySource"] = Value::from(false);
            if let Some(origin) = concept(m, d.rxa, 9) {
                imm["reportOrigin"] = origin;
            }
        }
    }
    match m.at(d.rxa, 20, 1).as_str() {
        "" | "CP" => {}
        "PA" => imm["isSubpotent"] = Value::from(true),
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
    let mut performers = Vec::new();
    let who = [(Some(d.rxa), 10, "AP", "Administering Provider"), (d.orc, 12, "OP", "Ordering Provider")];
    for (seg, n, code, display) in who {
        if let Some(actor) = seg.and_then(|s| w.practitioner(m, s.field(n), 0)) {
            performers.push(json!({"function": {"coding": [{"system": FUNCTION, "code": code, "display": display}]}, "actor": actor}));
        }
    }
    if !performers.is_empty() {
        imm["performer"] = Value::from(performers);
    }
    observations(m, d, &mut imm);
    Ok(imm)
}

/// The dose's OBX segments (CDC IG): funding eligibility (64994-7) and source (30963-3), and
/// the VIS given (69764-9 document, 29768-9 published, 29769-7 presented), grouped by OBX-4.
fn observations(m: &V2<'_>, d: &Dose<'_, '_>, imm: &mut Value) {
    let mut eligibility = Vec::new();
    let mut education: Vec<(String, serde_json::Map<String, Value>)> = Vec::new();
    for obx in &d.obx {
        let loinc = m.at(obx, 3, 1);
        let group = m.at(obx, 4, 1);
        let mut vis = |key: &str, value: Value| {
            match education.iter_mut().find(|(g, _)| *g == group) {
                Some((_, e)) => e.insert(key.into(), value),
                None => {
                    let mut e = serde_json::Map::new();
                    e.insert(key.into(), value);
                    education.push((group.clone(), e));
                    None
                }
            };
        };
        match loinc.as_str() {
            "64994-7" => eligibility.extend(concept(m, obx, 5)),
            "30963-3" => {
                if let Some(c) = concept(m, obx, 5) {
                    imm["fundingSource"] = c;
                }
            }
            "69764-9" => {
                let doc = m.at(obx, 5, 1);
                if !doc.is_empty() {
                    vis("documentType", Value::from(doc));
                }
            }
            "29768-9" | "29769-7" => {
                if let Some(day) = super::datatypes::datetime(&m.at(obx, 5, 1), m.zone().as_deref()) {
                    vis(
                        if loinc == "29768-9" { "publicationDate" } else { "presentationDate" },
                        Value::from(day),
                    );
                }
            }
            _ => {}
        }
    }
    if !eligibility.is_empty() {
        imm["programEligibility"] = Value::from(eligibility);
    }
    // FHIR's imm-1: an education entry needs a document type or a reference.
    let education: Vec<Value> = education
        .into_iter()
        .map(|(_, e)| Value::Object(e))
        .filter(|e| e.get("documentType").is_some() || e.get("reference").is_some())
        .collect();
    if !education.is_empty() {
        imm["education"] = Value::from(education);
    }
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
fn manufacturer(m: &V2<'_>, d: &Dose<'_, '_>, imm: &mut Value, w: &mut Writes, known: &[String]) {
    let code = m.at(d.rxa, 17, 1);
    if code.is_empty() {
        return;
    }
    let id = manufacturer_id(&code);
    let url = format!("Organization/{id}");
    if !known.contains(&id) && !w.requests.iter().any(|r| r.url == url) {
        let mut org =
            json!({"resourceType": "Organization", "id": id, "identifier": [{"system": MVX, "value": code}]});
        let name = m.at(d.rxa, 17, 2);
        if !name.is_empty() {
            org["name"] = Value::from(name);
        }
        w.push(Method::Put, url.clone(), org);
    }
    imm["manufacturer"] = json!({"reference": url});
}

/// The whole VXU: the Patient, then each dose; the fullUrls of the Patient and the doses.
/// `known`: the manufacturer Organizations (ids) that exist already.
pub fn requests(m: &V2<'_>, known: &[String], w: &mut Writes) -> Result<Vec<String>, Problem> {
    let patient = super::adt::patient(m, w)?;
    let key = token(&patient["identifier"][0]);
    let patient_ref = super::adt::ensure_patient(w, patient);
    let doses = doses(m);
    if doses.is_empty() {
        return Err(Problem::new("RXA", 100, "a VXU needs at least one RXA"));
    }
    let mut written = vec![patient_ref.clone()];
    for d in &doses {
        let mut imm = match immunization(m, d, &patient_ref, &key, w) {
            Ok(imm) => imm,
            Err(p) => {
                w.problems.push(p);
                continue;
            }
        };
        manufacturer(m, d, &mut imm, w, known);
        let ident = imm["identifier"][0].clone();
        written.push(w.upsert("Immunization", &ident, imm));
    }
    Ok(written)
}
