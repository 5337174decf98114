//! HL7 v2 data types as FHIR (v2-to-FHIR IG data type maps): HD → identifier system, CX →
//! Identifier, TS/DTM → date and dateTime, CWE/CE → CodeableConcept, XPN → HumanName, XAD →
//! Address, XTN → ContactPoint, XCN → a Practitioner matched by its identifier.

use std::collections::HashMap;

use super::message::{Field, Segment};
use serde_json::{Map, Value, json};

use super::message::V2;
use crate::engine::{Method, Request};

/// Assigning authorities (namespace id or universal id) → identifier system URI, from the
/// `[hl7v2.authorities]` configuration table.
pub type Authorities = HashMap<String, String>;

const NPI: &str = "http://hl7.org/fhir/sid/us-npi";

/// An `HD` (the subcomponents of component `c` of repetition `rep`) as an identifier system:
/// the configured URI for its namespace or universal id, else `urn:oid:` for ISO ids, the URI
/// itself for URI ids, or a URN made of the namespace.
pub fn hd_system(m: &V2<'_>, f: &Field<'_>, rep: usize, c: usize) -> Option<String> {
    let namespace = m.sub(f, rep, c, 1);
    let universal = m.sub(f, rep, c, 2);
    let kind = m.sub(f, rep, c, 3);
    for key in [&namespace, &universal] {
        if let Some(uri) = m.authorities.get(key.as_str()).filter(|_| !key.is_empty()) {
            return Some(uri.clone());
        }
    }
    match (namespace.as_str(), universal.as_str()) {
        ("NPI", _) | (_, "2.16.840.1.113883.4.6") => return Some(NPI.into()),
        (_, "2.16.840.1.113883.4.1") => return Some("http://hl7.org/fhir/sid/us-ssn".into()),
        _ => {}
    }
    match kind.as_str() {
        "ISO" if !universal.is_empty() => Some(format!("urn:oid:{universal}")),
        "URI" | "URL" if !universal.is_empty() => Some(universal),
        _ if !namespace.is_empty() => Some(format!("urn:hearth:hl7v2:{}", namespace.replace(' ', "-"))),
        _ => None,
    }
}

/// A `CX` repetition (or an `XCN`'s id, with its authority in component `authority`) as an
/// Identifier; `None` without a value.
pub fn identifier(
    m: &V2<'_>,
    f: &Field<'_>,
    rep: usize,
    authority: usize,
    type_code: usize,
) -> Option<Value> {
    let value = m.component(f, rep, 1);
    if value.is_empty() {
        return None;
    }
    let mut id = json!({"value": value});
    let code = m.component(f, rep, type_code);
    match hd_system(m, f, rep, authority) {
        Some(s) => id["system"] = Value::from(s),
        None if code == "NPI" => id["system"] = json!(NPI),
        // No authority: the value is the sending facility's, not the same value of every sender.
        None => {
            if let Some(scope) = m.facility() {
                id["system"] = Value::from(scope);
            }
        }
    }
    if !code.is_empty() {
        id["type"] =
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": code}]});
    }
    Some(id)
}

/// The search token of an Identifier: `system|value`, or `|value` without a system (not the
/// same value in any system).
pub fn token(id: &Value) -> String {
    format!("{}|{}", id["system"].as_str().unwrap_or_default(), id["value"].as_str().unwrap_or_default())
}

/// `YYYY[MM[DD…]]` → a FHIR date; `None` when it is no date.
pub fn date(ts: &str) -> Option<String> {
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

/// The `+HHMM`/`-HHMM` offset at the end of a timestamp.
pub fn offset(ts: &str) -> Option<String> {
    let at = ts.rfind(['+', '-'])?;
    let z = &ts[at + 1..];
    (z.len() == 4 && z.chars().all(|c| c.is_ascii_digit()))
        .then(|| format!("{}{}:{}", &ts[at..=at], &z[..2], &z[2..]))
}

/// A `TS`/`DTM` → a FHIR dateTime. FHIR wants an offset with any time: the timestamp's own, else
/// `zone` (MSH-7's); with neither, only the date is kept rather than a guessed time.
pub fn datetime(ts: &str, zone: Option<&str>) -> Option<String> {
    let day = date(ts)?;
    let d: String = ts.chars().take_while(char::is_ascii_digit).collect();
    if d.len() < 12 {
        return Some(day);
    }
    let Some(z) = offset(ts).or(zone.map(str::to_string)) else { return Some(day) };
    let num = |r: std::ops::Range<usize>| d.get(r).and_then(|x| x.parse::<u32>().ok());
    let (h, mi, s) = (num(8..10)?, num(10..12)?, num(12..14).unwrap_or(0));
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    Some(format!("{day}T{h:02}:{mi:02}:{s:02}{z}"))
}

pub fn code_system(name: &str) -> Option<&'static str> {
    match name {
        "CVX" => Some("http://hl7.org/fhir/sid/cvx"),
        "NDC" => Some("http://hl7.org/fhir/sid/ndc"),
        "MVX" => Some("http://hl7.org/fhir/sid/mvx"),
        "LN" => Some("http://loinc.org"),
        "SCT" | "SNM" => Some("http://snomed.info/sct"),
        "I10C" => Some("http://hl7.org/fhir/sid/icd-10-cm"),
        "I10" => Some("http://hl7.org/fhir/sid/icd-10"),
        "UCUM" => Some("http://unitsofmeasure.org"),
        "CDCREC" | "HL70005" | "HL70189" => Some("urn:oid:2.16.840.1.113883.6.238"),
        "ISO639" => Some("urn:ietf:bcp:47"),
        "NCIT" => Some("http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"),
        "CDCPHINVS" => Some("urn:oid:2.16.840.1.114222.4.5.274"),
        t => t.strip_prefix("HL7").and_then(v2_table),
    }
}

/// `http://terminology.hl7.org/CodeSystem/v2-NNNN` for the tables terminology.hl7.org has.
fn v2_table(n: &str) -> Option<&'static str> {
    Some(match n {
        "0002" => "http://terminology.hl7.org/CodeSystem/v2-0002",
        "0063" => "http://terminology.hl7.org/CodeSystem/v2-0063",
        "0064" => "http://terminology.hl7.org/CodeSystem/v2-0064",
        "0078" => "http://terminology.hl7.org/CodeSystem/v2-0078",
        "0131" => "http://terminology.hl7.org/CodeSystem/v2-0131",
        "0162" => "http://terminology.hl7.org/CodeSystem/v2-0162",
        "0163" => "http://terminology.hl7.org/CodeSystem/v2-0163",
        "0203" => "http://terminology.hl7.org/CodeSystem/v2-0203",
        "0322" => "http://terminology.hl7.org/CodeSystem/v2-0322",
        _ => return None,
    })
}

/// A `CE`/`CWE` (both triplets) of field `n`, repetition `rep`, as a CodeableConcept.
pub fn concept_at(m: &V2<'_>, f: &Field<'_>, rep: usize) -> Option<Value> {
    let mut coding = Vec::new();
    for first in [1, 4] {
        let code = m.component(f, rep, first);
        if code.is_empty() {
            continue;
        }
        let mut c = json!({"code": code});
        let display = m.component(f, rep, first + 1);
        if !display.is_empty() {
            c["display"] = Value::from(display);
        }
        let sys = m.component(f, rep, first + 2);
        match code_system(&sys) {
            None if !sys.is_empty() => {
                c["system"] = json!(format!("urn:hearth:hl7v2:{}", sys.replace(' ', "-")))
            }
            Some(s) => c["system"] = Value::from(s),
            None => {}
        }
        coding.push(c);
    }
    let mut text = m.component(f, rep, 9);
    if coding.is_empty() && text.is_empty() {
        // A display without a code (`^Report`) is still the concept's text.
        text = m.component(f, rep, 2);
    }
    match (coding.is_empty(), text.is_empty()) {
        (true, true) => None,
        (true, false) => Some(json!({"text": text})),
        (false, true) => Some(json!({"coding": coding})),
        (false, false) => Some(json!({"coding": coding, "text": text})),
    }
}

/// A `CE`/`CWE` field of a segment (first repetition).
pub fn concept(m: &V2<'_>, seg: &Segment<'_>, n: usize) -> Option<Value> {
    seg.field(n).and_then(|f| concept_at(m, f, 0))
}

/// An `XPN` repetition as a HumanName.
pub fn name(m: &V2<'_>, f: &Field<'_>, rep: usize) -> Option<Value> {
    let mut n = Map::new();
    let family = m.component(f, rep, 1);
    if !family.is_empty() {
        n.insert("family".into(), Value::from(family));
    }
    let given: Vec<String> =
        [2, 3].iter().map(|c| m.component(f, rep, *c)).filter(|g| !g.is_empty()).collect();
    if !given.is_empty() {
        n.insert("given".into(), Value::from(given));
    }
    for (c, key) in [(5, "prefix"), (4, "suffix")] {
        let v = m.component(f, rep, c);
        if !v.is_empty() {
            n.insert(key.into(), Value::from(vec![v]));
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
        n.insert("use".into(), Value::from(u));
    }
    (!n.is_empty()).then_some(Value::Object(n))
}

/// An `XAD` repetition as an Address.
pub fn address(m: &V2<'_>, f: &Field<'_>, rep: usize) -> Option<Value> {
    let mut a = Map::new();
    let lines: Vec<String> =
        [1, 2].iter().map(|c| m.component(f, rep, *c)).filter(|l| !l.is_empty()).collect();
    if !lines.is_empty() {
        a.insert("line".into(), Value::from(lines));
    }
    for (c, key) in [(3, "city"), (4, "state"), (5, "postalCode"), (6, "country"), (9, "district")] {
        let v = m.component(f, rep, c);
        if !v.is_empty() {
            a.insert(key.into(), Value::from(v));
        }
    }
    if a.is_empty() {
        return None;
    }
    match m.component(f, rep, 7).as_str() {
        "H" => a.insert("use".into(), json!("home")),
        "B" | "O" => a.insert("use".into(), json!("work")),
        "C" => a.insert("use".into(), json!("temp")),
        "M" | "P" => a.insert("type".into(), json!("postal")),
        _ => None,
    };
    Some(Value::Object(a))
}

/// An `XTN` repetition as a ContactPoint; `default_use` for phones without a better one.
pub fn telecom(m: &V2<'_>, f: &Field<'_>, rep: usize, default_use: &str) -> Option<Value> {
    let equipment = m.component(f, rep, 3);
    let email = m.component(f, rep, 4);
    let (system, value) = if equipment == "Internet" || equipment == "X.400" || !email.is_empty() {
        ("email", email)
    } else {
        let number = m.component(f, rep, 1);
        // Area code and number; the country code (XTN-5) is left to the number's context.
        let built = format!("{}{}", m.component(f, rep, 6), m.component(f, rep, 7));
        ("phone", if number.is_empty() { built } else { number })
    };
    if value.is_empty() {
        return None;
    }
    let use_ = if equipment == "CP" { "mobile" } else { default_use };
    Some(json!({"system": if equipment == "FX" { "fax" } else { system }, "value": value, "use": use_}))
}

/// Every repetition of a field through `one` (the first 100: no patient has more names).
pub fn each(
    m: &V2<'_>,
    f: Option<&Field<'_>>,
    one: impl Fn(&Field<'_>, usize) -> Option<Value>,
) -> Vec<Value> {
    f.map(|f| (0..m.repeats(f).min(100)).filter_map(|rep| one(f, rep)).collect()).unwrap_or_default()
}

/// The writes one message maps to, built up as segments are read: resources referenced from
/// several places (a practitioner) are written once.
#[derive(Default)]
pub struct Writes {
    pub requests: Vec<Request>,
    /// Conditional-create token → the entry's fullUrl.
    seen: HashMap<String, String>,
    /// What is wrong with the message so far: mapping goes on after a bad field, so that the
    /// AE names every problem, not only the first.
    pub problems: Vec<super::ack::Problem>,
}

impl Writes {
    pub fn push(&mut self, method: Method, url: String, resource: Value) -> String {
        let full = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        self.requests.push(Request {
            method,
            url,
            full_url: Some(full.clone()),
            resource: Some(resource),
            if_match: None,
            if_none_exist: None,
        });
        full
    }

    /// An update of the resource that has `id` (or a new one): conditional update.
    /// The same identifier twice in one message (a dose listed twice) is written once, as
    /// first given: two conditional updates on one condition would make two resources.
    pub fn upsert(&mut self, rtype: &str, id: &Value, resource: Value) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("identifier", &token(id))
            .finish();
        let url = format!("{rtype}?{query}");
        if let Some(full) = self.seen.get(&url) {
            return full.clone();
        }
        let full = self.push(Method::Put, url.clone(), resource);
        self.seen.insert(url, full.clone());
        full
    }

    /// The resource that has `id`, created when there is none (conditional create): a
    /// reference to a practitioner does not rewrite them.
    pub fn ensure(&mut self, rtype: &str, id: &Value, resource: Value) -> String {
        let cond = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("identifier", &token(id))
            .finish();
        if let Some(full) = self.seen.get(&format!("{rtype}?{cond}")) {
            return full.clone();
        }
        let full = self.push(Method::Post, rtype.to_string(), resource);
        if let Some(r) = self.requests.last_mut() {
            r.if_none_exist = Some(cond.clone());
        }
        self.seen.insert(format!("{rtype}?{cond}"), full.clone());
        full
    }

    /// An `XCN` repetition: a reference to the Practitioner with its id (created from the
    /// name if new), or a display-only reference when it has no id.
    pub fn practitioner(&mut self, m: &V2<'_>, f: Option<&Field<'_>>, rep: usize) -> Option<Value> {
        let f = f?;
        let mut person = Map::new();
        let family = m.component(f, rep, 2);
        let given: Vec<String> =
            [3, 4].iter().map(|c| m.component(f, rep, *c)).filter(|g| !g.is_empty()).collect();
        let mut name = Map::new();
        if !family.is_empty() {
            name.insert("family".into(), json!(family));
        }
        if !given.is_empty() {
            name.insert("given".into(), json!(given));
        }
        let prefix = m.component(f, rep, 6);
        if !prefix.is_empty() {
            name.insert("prefix".into(), Value::from(vec![prefix]));
        }
        let display: Vec<String> =
            given.iter().cloned().chain((!family.is_empty()).then(|| family.clone())).collect();
        let display = display.join(" ");
        let Some(id) = identifier(m, f, rep, 9, 13) else {
            return (!display.is_empty()).then(|| json!({"display": display}));
        };
        person.insert("resourceType".into(), json!("Practitioner"));
        person.insert("identifier".into(), json!([id]));
        if !name.is_empty() {
            person.insert("name".into(), json!([Value::Object(name)]));
        }
        let full = self.ensure("Practitioner", &id, Value::Object(person));
        let mut r = json!({"reference": full});
        if !display.is_empty() {
            r["display"] = Value::from(display);
        }
        Some(r)
    }
}
