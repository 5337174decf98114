//! PV1 → Encounter (v2-to-FHIR PV1 → Encounter): class (PV1-2), location (PV1-3), attending
//! doctor (PV1-7), visit number (PV1-19), admit and discharge times (PV1-44/45). The Encounter
//! is matched on the visit number, so A01, A08 and A03 of one visit update the same Encounter.

use serde_json::{Value, json};

use super::ack::Problem;
use super::datatypes::{Writes, datetime, identifier};
use super::message::V2;

const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// PV1-2 (table 0004) → Encounter.class; `None` for `N` (not applicable) and unknown classes.
fn class(code: &str) -> Option<(&'static str, &'static str)> {
    match code {
        "I" => Some(("IMP", "inpatient encounter")),
        "O" | "R" | "B" | "C" => Some(("AMB", "ambulatory")),
        "E" => Some(("EMER", "emergency")),
        "P" => Some(("PRENC", "pre-admission")),
        _ => None,
    }
}

/// The Encounter of a message's PV1 for `event`, about the Patient at `patient`; `None` when
/// the message has no visit to record (no PV1, class N, or neither a visit number nor an
/// admit time).
pub fn encounter(m: &V2<'_>, event: &str, patient: &str, w: &mut Writes) -> Result<Option<Value>, Problem> {
    let Some(pv1) = m.message.segment("PV1") else { return Ok(None) };
    let class_code = m.at(pv1, 2, 1);
    let Some((code, display)) = class(&class_code) else { return Ok(None) };
    let zone = m.zone();
    let admit = m.at(pv1, 44, 1);
    let discharge = m.at(pv1, 45, 1);
    let start = match admit.as_str() {
        "" => None,
        t => Some(
            datetime(t, zone.as_deref())
                .ok_or_else(|| Problem::new("PV1-44", 102, format!("'{t}' is not a time")))?,
        ),
    };
    let end = match discharge.as_str() {
        "" => None,
        t => Some(
            datetime(t, zone.as_deref())
                .ok_or_else(|| Problem::new("PV1-45", 102, format!("'{t}' is not a time")))?,
        ),
    };
    let visit = pv1.field(19).and_then(|f| identifier(m, f, 0, 4, 5));
    let key = match (visit, &start) {
        (Some(v), _) => v,
        // No visit number: the patient and admit time name the visit.
        (None, Some(s)) => json!({
            "system": "urn:hearth:hl7v2:visit",
            "value": format!("{:016x}", crate::engine::stable_hash(&[&super::adt::patient_token(m).unwrap_or_default(), s])),
        }),
        (None, None) => return Ok(None),
    };
    let status = match (event, &end) {
        ("A03", _) | (_, Some(_)) => "finished",
        ("A05", _) => "planned",
        ("A11", _) => "cancelled",
        _ => "in-progress",
    };
    let mut e = json!({
        "resourceType": "Encounter",
        "identifier": [key.clone()],
        "status": status,
        "class": {"system": ACT_CODE, "code": code, "display": display},
        "subject": {"reference": patient},
    });
    if start.is_some() || end.is_some() {
        let mut period = json!({});
        if let Some(s) = start {
            period["start"] = Value::from(s);
        }
        if let Some(x) = end {
            period["end"] = Value::from(x);
        }
        e["period"] = period;
    }
    let place: Vec<String> =
        [4, 1, 2, 3].iter().map(|c| m.at(pv1, 3, *c)).filter(|p| !p.is_empty()).collect();
    if !place.is_empty() {
        e["location"] = json!([{"location": {"display": place.join(" ")}}]);
    }
    let mut participants = Vec::new();
    for (n, kind, text) in [(7, "ATND", "attender"), (8, "REF", "referrer"), (17, "ADM", "admitter")] {
        let Some(f) = pv1.field(n) else { continue };
        for rep in 0..m.repeats(f) {
            if let Some(who) = w.practitioner(m, Some(f), rep) {
                participants.push(json!({
                    "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": kind, "display": text}]}],
                    "individual": who,
                }));
            }
        }
    }
    if !participants.is_empty() {
        e["participant"] = Value::from(participants);
    }
    Ok(Some(e))
}
