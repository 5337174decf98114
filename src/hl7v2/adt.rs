//! ADT → Patient (v2-to-FHIR IG, PID → Patient): identifiers, names, birth date, sex,
//! addresses, phones, language, marital status, death. The Patient is written by a conditional
//! update on its first PID-3 identifier, so a re-sent or updated ADT updates the same Patient.

use serde_json::{Map, Value, json};

use super::ack::Problem;
use super::message::V2;
use crate::engine::{Method, Request};

/// `HD` assigning authority → identifier system: `urn:oid:` for ISO universal ids, else a URN
/// made of the namespace id (a configurable table is the next step).
fn system(m: &V2<'_>, f: &hl7_parser::message::Field<'_>, rep: usize) -> Option<String> {
    let namespace = m.sub(f, rep, 4, 1);
    let universal = m.sub(f, rep, 4, 2);
    let kind = m.sub(f, rep, 4, 3);
    match kind.as_str() {
        "ISO" if !universal.is_empty() => Some(format!("urn:oid:{universal}")),
        "URI" | "URL" if !universal.is_empty() => Some(universal),
        _ if !namespace.is_empty() => Some(format!("urn:hearth:hl7v2:{}", namespace.replace(' ', "-"))),
        _ => None,
    }
}

/// `YYYY[MM[DD[HHMM[SS]]]]` → a FHIR date (the date part only); `None` when it is no date.
fn date(ts: &str) -> Option<String> {
    let d: String = ts.chars().take_while(char::is_ascii_digit).collect();
    let part = |r: std::ops::Range<usize>| d.get(r).and_then(|x| x.parse::<u32>().ok());
    if part(4..6).is_some_and(|mo| !(1..=12).contains(&mo))
        || part(6..8).is_some_and(|dd| !(1..=31).contains(&dd))
    {
        return None;
    }
    match d.len() {
        4 => Some(d),
        6.. if d.len() < 8 => Some(format!("{}-{}", &d[..4], &d[4..6])),
        8.. => Some(format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..8])),
        _ => None,
    }
}

fn identifiers(m: &V2<'_>) -> Result<Vec<Value>, Problem> {
    let Some(f) = m.field("PID", 3) else {
        return Err(Problem::new("PID-3", 101, "PID-3 (patient identifier list) is required"));
    };
    let mut out = Vec::new();
    for rep in 0..m.repeats(f) {
        let value = m.component(f, rep, 1);
        if value.is_empty() {
            continue;
        }
        let mut id = json!({"value": value});
        if let Some(s) = system(m, f, rep) {
            id["system"] = json!(s);
        }
        let code = m.component(f, rep, 5);
        if !code.is_empty() {
            id["type"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": code}]});
        }
        out.push(id);
    }
    if out.is_empty() {
        return Err(Problem::new("PID-3", 101, "PID-3 holds no identifier"));
    }
    Ok(out)
}

fn names(m: &V2<'_>) -> Vec<Value> {
    let Some(f) = m.field("PID", 5) else { return Vec::new() };
    (0..m.repeats(f))
        .filter_map(|rep| {
            let mut n = Map::new();
            let family = m.component(f, rep, 1);
            if !family.is_empty() {
                n.insert("family".into(), json!(family));
            }
            let given: Vec<String> =
                [2, 3].iter().map(|c| m.component(f, rep, *c)).filter(|g| !g.is_empty()).collect();
            if !given.is_empty() {
                n.insert("given".into(), json!(given));
            }
            for (c, key) in [(5, "prefix"), (4, "suffix")] {
                let v = m.component(f, rep, c);
                if !v.is_empty() {
                    n.insert(key.into(), json!([v]));
                }
            }
            let use_ = match m.component(f, rep, 7).as_str() {
                "L" => Some("official"),
                "D" => Some("usual"),
                "M" | "B" => Some("maiden"),
                "N" => Some("nickname"),
                "A" => Some("anonymous"),
                _ => None,
            };
            if let Some(u) = use_ {
                n.insert("use".into(), json!(u));
            }
            (!n.is_empty()).then_some(Value::Object(n))
        })
        .collect()
}

fn addresses(m: &V2<'_>) -> Vec<Value> {
    let Some(f) = m.field("PID", 11) else { return Vec::new() };
    (0..m.repeats(f))
        .filter_map(|rep| {
            let mut a = Map::new();
            let lines: Vec<String> =
                [1, 2].iter().map(|c| m.component(f, rep, *c)).filter(|l| !l.is_empty()).collect();
            if !lines.is_empty() {
                a.insert("line".into(), json!(lines));
            }
            for (c, key) in [(3, "city"), (4, "state"), (5, "postalCode"), (6, "country")] {
                let v = m.component(f, rep, c);
                if !v.is_empty() {
                    a.insert(key.into(), json!(v));
                }
            }
            if a.is_empty() {
                return None;
            }
            match m.component(f, rep, 7).as_str() {
                "H" => a.insert("use".into(), json!("home")),
                "B" | "O" => a.insert("use".into(), json!("work")),
                "C" => a.insert("use".into(), json!("temp")),
                "M" => a.insert("type".into(), json!("postal")),
                _ => None,
            };
            Some(Value::Object(a))
        })
        .collect()
}

/// PID-13 (home) and PID-14 (business) `XTN`s.
fn telecoms(m: &V2<'_>) -> Vec<Value> {
    let mut out = Vec::new();
    for (n, default_use) in [(13, "home"), (14, "work")] {
        let Some(f) = m.field("PID", n) else { continue };
        for rep in 0..m.repeats(f) {
            let equipment = m.component(f, rep, 3);
            let email = m.component(f, rep, 4);
            let (system, value) = if equipment == "Internet" || equipment == "X.400" || !email.is_empty() {
                ("email", email)
            } else {
                let number = m.component(f, rep, 1);
                let built = format!("{}{}", m.component(f, rep, 6), m.component(f, rep, 7));
                ("phone", if number.is_empty() { built } else { number })
            };
            if value.is_empty() {
                continue;
            }
            let use_ = if equipment == "CP" { "mobile" } else { default_use };
            out.push(json!({"system": if equipment == "FX" { "fax" } else { system }, "value": value, "use": use_}));
        }
    }
    out
}

/// The Patient of a message's PID segment.
pub fn patient(m: &V2<'_>) -> Result<Value, Problem> {
    if m.message.segment("PID").is_none() {
        return Err(Problem::new("PID", 100, "the message has no PID segment"));
    }
    let mut p = json!({"resourceType": "Patient", "identifier": identifiers(m)?});
    let names = names(m);
    if !names.is_empty() {
        p["name"] = json!(names);
    }
    let birth = m.get("PID", 7, 1);
    if !birth.is_empty() {
        p["birthDate"] = json!(date(&birth).ok_or_else(|| Problem::new(
            "PID-7",
            102,
            format!("'{birth}' is not a date")
        ))?);
    }
    let gender = match m.get("PID", 8, 1).as_str() {
        "" => None,
        "M" => Some("male"),
        "F" => Some("female"),
        "O" | "A" => Some("other"),
        "U" | "N" => Some("unknown"),
        other => {
            return Err(Problem::new(
                "PID-8",
                103,
                format!("administrative sex '{other}' is not in table 0001"),
            ));
        }
    };
    if let Some(g) = gender {
        p["gender"] = json!(g);
    }
    for (key, values) in [("address", addresses(m)), ("telecom", telecoms(m))] {
        if !values.is_empty() {
            p[key] = json!(values);
        }
    }
    let language = m.get("PID", 15, 1);
    if !language.is_empty() {
        p["communication"] = json!([{"language": {"coding": [{"code": language}], "text": language}}]);
    }
    let marital = m.get("PID", 16, 1);
    if !marital.is_empty() {
        p["maritalStatus"] =
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0002", "code": marital}]});
    }
    let death_time = m.get("PID", 29, 1);
    if let Some(d) = date(&death_time) {
        p["deceasedDateTime"] = json!(d);
    } else if m.get("PID", 30, 1) == "Y" {
        p["deceasedBoolean"] = json!(true);
    }
    Ok(p)
}

/// The transaction that stores the Patient: a conditional update on its first identifier.
pub fn patient_requests(patient: Value) -> Vec<Request> {
    let id = &patient["identifier"][0];
    let value = id["value"].as_str().unwrap_or_default();
    let token = match id["system"].as_str() {
        Some(s) => format!("{s}|{value}"),
        // `|value`: an identifier without a system, not the same value in any system.
        None => format!("|{value}"),
    };
    let query =
        url::form_urlencoded::Serializer::new(String::new()).append_pair("identifier", &token).finish();
    vec![Request {
        method: Method::Put,
        url: format!("Patient?{query}"),
        full_url: None,
        resource: Some(patient),
        if_match: None,
        if_none_exist: None,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_maps_to_a_patient() {
        let text = "MSH|^~\\&|APP|FAC|HEARTH|HOSP|20240101||ADT^A01|42|P|2.5.1\rPID|1||123^^^MRN&1.2.3&ISO^MR~X9^^^Clinic||Ward^Ada^B^Jr^Dr^^L||19800102|F|||1 Main St^Apt 2^Springfield^IL^62701^USA^H||^PRN^PH^^^555^1234567~^NET^Internet^ada@example.org|||M||||||||||||||Y";
        let m = V2::parse(text).unwrap();
        let p = patient(&m).unwrap();
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
        let r = patient_requests(p);
        assert_eq!(r[0].url, "Patient?identifier=urn%3Aoid%3A1.2.3%7C123");
        let bad = V2::parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPID|1||123||X||19801399|Q").unwrap();
        assert_eq!(patient(&bad).unwrap_err().location, "PID-7");
    }
}
