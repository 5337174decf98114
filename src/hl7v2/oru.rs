//! ORU^R01 → Observation per OBX and a DiagnosticReport per OBR (v2-to-FHIR OBR →
//! DiagnosticReport, OBX → Observation): LOINC codes, values by OBX-2, units, reference
//! ranges, abnormal flags. A report is matched on its filler order number (OBR-3, else the
//! placer's OBR-2) and its observations on that and OBX-1, so a corrected result updates.

use super::message::Segment;
use serde_json::{Value, json};

use super::ack::Problem;
use super::datatypes::{Writes, code_system, concept, datetime};
use super::message::V2;

const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

/// OBR-25 (table 0123) or OBX-11 (table 0085) → FHIR status, after the v2-to-FHIR concept
/// maps.
fn status(code: &str, report: bool) -> &'static str {
    match (code, report) {
        ("C", _) => "corrected",
        ("X", _) => "cancelled",
        ("D" | "W", false) => "entered-in-error",
        ("P", _) => "preliminary",
        // Observation: S partial, R not verified → preliminary; N not asked → cancelled.
        ("S" | "R", false) => "preliminary",
        ("N", false) => "cancelled",
        ("I" | "O", false) => "registered",
        ("A", false) => "amended",
        // Report: O/I/S ordered, in progress, scheduled → registered; A/R some results → partial.
        ("O" | "I" | "S", true) => "registered",
        ("A" | "R", true) => "partial",
        _ => "final",
    }
}

/// OBX-6 as the unit of a Quantity.
fn quantity(m: &V2<'_>, obx: &Segment<'_>, value: f64) -> Value {
    let mut q = json!({"value": value});
    let unit = m.at(obx, 6, 1);
    if !unit.is_empty() {
        let display = m.at(obx, 6, 2);
        q["unit"] = json!(if display.is_empty() { &unit } else { &display });
        if let Some(sys) = code_system(&m.at(obx, 6, 3)) {
            q["system"] = Value::from(sys);
            q["code"] = Value::from(unit);
        }
    }
    q
}

/// OBX-5 by OBX-2, as `(key, value)` for `Observation.value[x]`.
fn value(m: &V2<'_>, obx: &Segment<'_>, at: &str) -> Result<Option<(&'static str, Value)>, Problem> {
    let raw = m.at(obx, 5, 0);
    if raw.is_empty() {
        return Ok(None);
    }
    let number = |s: &str| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| Problem::new(at, 102, format!("'{s}' is not a number")))
    };
    Ok(Some(match m.at(obx, 2, 1).as_str() {
        "NM" => ("valueQuantity", quantity(m, obx, number(&raw)?)),
        "SN" => {
            let (cmp, n1, sep, n2) = (m.at(obx, 5, 1), m.at(obx, 5, 2), m.at(obx, 5, 3), m.at(obx, 5, 4));
            match (cmp.as_str(), sep.as_str()) {
                (_, ":" | "/") if !n2.is_empty() => (
                    "valueRatio",
                    json!({"numerator": {"value": number(&n1)?}, "denominator": {"value": number(&n2)?}}),
                ),
                ("<" | ">" | "<=" | ">=", _) => {
                    let mut q = quantity(m, obx, number(&n1)?);
                    q["comparator"] = Value::from(cmp);
                    ("valueQuantity", q)
                }
                ("" | "=", "") => ("valueQuantity", quantity(m, obx, number(&n1)?)),
                _ => ("valueString", Value::from(raw)),
            }
        }
        "CE" | "CWE" | "CNE" => match concept(m, obx, 5) {
            Some(c) => ("valueCodeableConcept", c),
            None => return Ok(None),
        },
        "TS" | "DT" | "DTM" => match datetime(&raw, m.zone().as_deref()) {
            Some(d) => ("valueDateTime", Value::from(d)),
            None => return Err(Problem::new(at, 102, format!("'{raw}' is not a time"))),
        },
        _ => ("valueString", json!(m.at(obx, 5, 0))),
    }))
}

/// OBX-7: `low-high`, `<x`, `>x`, or text.
fn range(m: &V2<'_>, obx: &Segment<'_>) -> Option<Value> {
    let text = m.at(obx, 7, 0);
    if text.is_empty() {
        return None;
    }
    let bound = |s: &str| s.trim().parse::<f64>().ok().map(|v| quantity(m, obx, v));
    if let Some((lo, hi)) = text.split_once('-').filter(|(lo, _)| !lo.is_empty())
        && let (Some(low), Some(high)) = (bound(lo), bound(hi))
    {
        return Some(json!({"low": low, "high": high, "text": text}));
    }
    Some(json!({"text": text}))
}

/// The Observation of one OBX.
fn observation(
    m: &V2<'_>,
    obx: &Segment<'_>,
    index: usize,
    report_key: &str,
    key: &str,
    when: Option<&str>,
    subject: &Value,
) -> Result<Value, Problem> {
    let at = |n: usize| format!("OBX[{index}]-{n}");
    let code = concept(m, obx, 3)
        .ok_or_else(|| Problem::new(&at(3), 101, "OBX-3 (observation identifier) is required"))?;
    let key = format!("{report_key}-{key}");
    let mut o = json!({
        "resourceType": "Observation",
        "identifier": [{"system": "urn:hearth:hl7v2:obx", "value": key}],
        "status": status(&m.at(obx, 11, 1), false),
        "category": [{"coding": [{"system": CATEGORY, "code": "laboratory"}]}],
        "code": code,
        "subject": subject,
    });
    if let Some((k, v)) = value(m, obx, &at(5))? {
        o[k] = v;
    }
    if let Some(r) = range(m, obx) {
        o["referenceRange"] = Value::from(vec![r]);
    }
    let flags: Vec<Value> = obx
        .field(8)
        .map(|f| {
            (0..m.repeats(f))
                .map(|rep| m.component(f, rep, 1))
                .filter(|c| !c.is_empty())
                .map(|c| json!({"coding": [{"system": INTERPRETATION, "code": c}]}))
                .collect()
        })
        .unwrap_or_default();
    if !flags.is_empty() {
        o["interpretation"] = Value::from(flags);
    }
    if let Some(t) = datetime(&m.at(obx, 14, 1), m.zone().as_deref()).or(when.map(str::to_string)) {
        o["effectiveDateTime"] = Value::from(t);
    }
    Ok(o)
}

/// Every OBR with its OBXs; the fullUrls of what was written.
pub fn requests(m: &V2<'_>, w: &mut Writes) -> Result<Vec<String>, Problem> {
    let patient = super::adt::patient(m, w)?;
    let patient_ref = super::adt::ensure_patient(w, patient);
    let mut written = vec![patient_ref.clone()];
    let subject = json!({"reference": patient_ref});
    let encounter = super::encounter::encounter(m, "R01", &patient_ref, w)?;
    // The visit as the lab knows it: created if new, never rewritten (ADT owns visits).
    let encounter_ref = encounter.map(|e| {
        let id = e["identifier"][0].clone();
        w.ensure("Encounter", &id, e)
    });
    let segments = &m.message.segments;
    let obrs: Vec<usize> = (0..segments.len()).filter(|i| segments[*i].name == "OBR").collect();
    if obrs.is_empty() {
        return Err(Problem::new("OBR", 100, "an ORU^R01 needs at least one OBR"));
    }
    let mut obx_index = 0;
    for (n, start) in obrs.iter().enumerate() {
        let obr = &segments[*start];
        let end = obrs.get(n + 1).copied().unwrap_or(segments.len());
        let at = |f: usize| format!("OBR[{}]-{f}", n + 1);
        let code = concept(m, obr, 4)
            .ok_or_else(|| Problem::new(&at(4), 101, "OBR-4 (universal service id) is required"))?;
        let (filler, placer) = (m.at(obr, 3, 1), m.at(obr, 2, 1));
        // Placer and filler numbers are separate key spaces; without a namespace, a number is
        // the sending facility's.
        let (kind, number, ns) = if filler.is_empty() {
            ("placer", placer, m.at(obr, 2, 2))
        } else {
            ("filler", filler, m.at(obr, 3, 2))
        };
        if number.is_empty() {
            return Err(Problem::new(&at(3), 101, "OBR-3 or OBR-2 (an order number) is required"));
        }
        let ns = if ns.is_empty() { m.get("MSH", 4, 1) } else { ns };
        let report_key =
            format!("{kind}-{}-{number}", if ns.is_empty() { "-".into() } else { ns.replace(' ', "-") });
        let when = datetime(&m.at(obr, 7, 1), m.zone().as_deref());
        let mut results = Vec::new();
        let obxs: Vec<&Segment<'_>> = segments[*start..end].iter().filter(|s| s.name == "OBX").collect();
        // OBX-1 names a result within its report only if no two share it (some senders put 1
        // everywhere): else the position does.
        let set_ids: Vec<String> = obxs.iter().map(|o| m.at(o, 1, 1)).collect();
        let unique = set_ids.iter().enumerate().all(|(i, s)| !s.is_empty() && !set_ids[..i].contains(s));
        for (position, obx) in obxs.into_iter().enumerate() {
            obx_index += 1;
            let key = if unique { set_ids[position].clone() } else { format!("p{}", position + 1) };
            let mut o = match observation(m, obx, obx_index, &report_key, &key, when.as_deref(), &subject) {
                Ok(o) => o,
                Err(p) => {
                    w.problems.push(p);
                    continue;
                }
            };
            if let Some(e) = &encounter_ref {
                o["encounter"] = json!({"reference": e});
            }
            let id = o["identifier"][0].clone();
            let full = w.upsert("Observation", &id, o);
            results.push(json!({"reference": full}));
            written.push(full);
        }
        let mut report = json!({
            "resourceType": "DiagnosticReport",
            "identifier": [{"system": "urn:hearth:hl7v2:report", "value": report_key}],
            "status": status(&m.at(obr, 25, 1), true),
            "code": code,
            "subject": subject,
        });
        let section = m.at(obr, 24, 1);
        if !section.is_empty() {
            report["category"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": section}]}]);
        }
        if let Some(t) = &when {
            report["effectiveDateTime"] = Value::from(t.as_str());
        }
        // `issued` is an instant: only a time with seconds and an offset qualifies.
        if let Some(t) = datetime(&m.at(obr, 22, 1), m.zone().as_deref()).filter(|t| t.len() > 19) {
            report["issued"] = Value::from(t);
        }
        if let Some(e) = &encounter_ref {
            report["encounter"] = json!({"reference": e});
        }
        if !results.is_empty() {
            report["result"] = Value::from(results);
        }
        let id = report["identifier"][0].clone();
        written.push(w.upsert("DiagnosticReport", &id, report));
    }
    Ok(written)
}
