//! Index extraction: the values a resource contributes to each search parameter, found by
//! evaluating the parameter's FHIRPath expression and reading each result by its FHIR type
//! (search.html, "Search Parameter Types": which data types each parameter type indexes).

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::registry::{ADDRESS_PARTS, HUMAN_NAME_PARTS, ParamType, Registry, SearchParam};
use crate::fhirpath::{self, Item};
use crate::resource::instant;
use crate::store::{CompositeRow, DateRow, IndexRows, NumberRow, ReferenceRow, StringRow, TokenRow, UriRow};

/// Case- and accent-insensitive form of a string (NFD, combining marks dropped, lowercased).
pub fn fold(s: &str) -> String {
    // ASCII has no combining marks and decomposes to itself.
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.nfd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}

/// Every index row of the resource, for all indexed parameters of its type.
pub fn extract(registry: &Registry, rtype: &str, resource: &Value) -> IndexRows {
    extract_some(registry, rtype, resource, |_| true)
}

/// The index rows of the parameters `wanted` picks (by code).
pub fn extract_some(
    registry: &Registry,
    rtype: &str,
    resource: &Value,
    wanted: impl Fn(&str) -> bool,
) -> IndexRows {
    let mut rows = IndexRows::default();
    for param in registry.for_type(rtype) {
        if !param.in_index_tables() || !wanted(&param.code) {
            continue;
        }
        let Some(expr) = &param.compiled else { continue };
        if param.reads.as_deref().is_some_and(|names| !fhirpath::has_any(resource, names)) {
            continue;
        }
        if param.kind == ParamType::Composite {
            composite(&mut rows, param, expr, resource);
            continue;
        }
        let items = match fhirpath::evaluate(expr, resource) {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!("indexing {rtype}.{}: {e}", param.code);
                continue;
            }
        };
        for item in &items {
            add(&mut rows, param, param.kind, item);
        }
    }
    rows.dedup();
    rows
}

/// A composite's rows: for each element the parameter's expression reaches, every pairing of its
/// first component's tokens with its second component's values (search.html#composite).
fn composite(rows: &mut IndexRows, param: &SearchParam, expr: &fhirpath::Expr, resource: &Value) {
    let [first, second] = param.components.as_slice() else { return };
    let (Some(first_expr), Some(second_expr)) = (&first.compiled, &second.compiled) else { return };
    let focus = match fhirpath::evaluate(expr, resource) {
        Ok(items) => items,
        Err(e) => {
            tracing::warn!("indexing composite {}: {e}", param.code);
            return;
        }
    };
    for item in focus {
        let part = |kind, expr| {
            let mut scratch = IndexRows::default();
            for v in fhirpath::evaluate_on(expr, resource, item.clone()).unwrap_or_default() {
                add(&mut scratch, param, kind, &v);
            }
            scratch
        };
        let a = part(first.kind, first_expr);
        let b = part(second.kind, second_expr);
        let mut seconds: Vec<CompositeRow> = Vec::new();
        seconds.extend(b.tokens.into_iter().map(|t| CompositeRow {
            system: t.system,
            code: Some(t.code),
            ..Default::default()
        }));
        seconds.extend(b.numbers.into_iter().map(|n| CompositeRow {
            system: n.system,
            code: n.code,
            value: Some(n.value),
            ..Default::default()
        }));
        seconds.extend(b.dates.into_iter().map(|d| CompositeRow {
            lo: Some(d.lo),
            hi: Some(d.hi),
            ..Default::default()
        }));
        if second.kind == ParamType::String {
            seconds.extend(
                b.strings.into_iter().map(|s| CompositeRow { norm: Some(s.norm), ..Default::default() }),
            );
        }
        for t in &a.tokens {
            for s in &seconds {
                rows.composites.push(CompositeRow {
                    param: param.code.clone(),
                    c_system: t.system.clone(),
                    c_code: t.code.clone(),
                    ..s.clone()
                });
            }
        }
    }
}

/// The rows of one value `item` of `param`, read as a `kind` value (a composite's components
/// have their own kinds).
fn add(rows: &mut IndexRows, param: &SearchParam, kind: ParamType, item: &Item) {
    let code = param.code.as_str();
    let ty = item.type_name().unwrap_or_default();
    let value = item.node_value();
    let text =
        || item.as_str().map(str::to_string).or_else(|| value.and_then(Value::as_str).map(str::to_string));
    match kind {
        ParamType::String => match (ty, value) {
            ("HumanName", Some(v)) => strings_of(rows, param, v, HUMAN_NAME_PARTS),
            ("Address", Some(v)) => strings_of(rows, param, v, ADDRESS_PARTS),
            _ => {
                if let Some(s) = text() {
                    push_string(rows, code, &s);
                }
            }
        },
        ParamType::Token => token(rows, code, ty, item, value),
        ParamType::Reference => reference(rows, code, ty, value, text()),
        ParamType::Date => date(rows, code, ty, value, text()),
        ParamType::Number => {
            if let Some(n) = value.and_then(Value::as_f64) {
                rows.numbers.push(NumberRow { param: code.into(), value: n, system: None, code: None });
            }
        }
        ParamType::Quantity => quantity(rows, code, value),
        ParamType::Uri => {
            if let Some(s) = text() {
                rows.uris.push(UriRow { param: code.into(), uri: s });
            }
        }
        ParamType::Composite | ParamType::Special => {}
    }
}

fn push_string(rows: &mut IndexRows, param: &str, s: &str) {
    if !s.is_empty() {
        rows.strings.push(StringRow { param: param.into(), norm: fold(s), exact: s.into() });
    }
}

/// The string rows of a HumanName or Address: each part, but those a narrower parameter holds.
fn strings_of(rows: &mut IndexRows, param: &SearchParam, v: &Value, fields: &[&str]) {
    let code = param.code.as_str();
    for f in fields.iter().filter(|f| !param.leaves(f)) {
        match v.get(*f) {
            Some(Value::String(s)) => push_string(rows, code, s),
            Some(Value::Array(items)) => {
                items.iter().filter_map(Value::as_str).for_each(|s| push_string(rows, code, s))
            }
            _ => {}
        }
    }
}

fn push_token(rows: &mut IndexRows, param: &str, system: Option<&Value>, code: Option<&Value>) {
    let code = match code {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => return,
    };
    let system = system.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    rows.tokens.push(TokenRow { param: param.into(), system, code });
}

/// Token semantics per data type: Coding and Identifier carry a system, CodeableConcept gives
/// each coding (and its text, for `:text`), primitives are codes without a system.
fn token(rows: &mut IndexRows, param: &str, ty: &str, item: &Item, value: Option<&Value>) {
    let Some(v) = value else {
        if let Item::Bool(b) = item {
            rows.tokens.push(TokenRow { param: param.into(), system: None, code: b.to_string() });
        }
        return;
    };
    match ty {
        "CodeableConcept" => {
            for c in v.get("coding").and_then(Value::as_array).into_iter().flatten() {
                push_token(rows, param, c.get("system"), c.get("code"));
                if let Some(d) = c.get("display").and_then(Value::as_str) {
                    push_string(rows, param, d);
                }
            }
            if let Some(t) = v.get("text").and_then(Value::as_str) {
                push_string(rows, param, t);
            }
        }
        "Coding" => {
            push_token(rows, param, v.get("system"), v.get("code"));
            if let Some(d) = v.get("display").and_then(Value::as_str) {
                push_string(rows, param, d);
            }
        }
        "Identifier" => {
            push_token(rows, param, v.get("system"), v.get("value"));
            if let Some(t) = v.pointer("/type/text").and_then(Value::as_str) {
                push_string(rows, param, t);
            }
            // `:of-type` pairs the identifier's type coding with its value: a composite row.
            if let Some(value) = v.get("value").and_then(Value::as_str) {
                for c in v.pointer("/type/coding").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(code) = c.get("code").and_then(Value::as_str) {
                        rows.composites.push(CompositeRow {
                            param: param.into(),
                            c_system: c.get("system").and_then(Value::as_str).map(str::to_string),
                            c_code: code.to_string(),
                            code: Some(value.to_string()),
                            ..Default::default()
                        });
                    }
                }
            }
        }
        // ContactPoint's system (phone, email) is not a URI: index the value alone.
        "ContactPoint" => push_token(rows, param, None, v.get("value")),
        _ => push_token(rows, param, None, Some(v)),
    }
}

/// `Patient/1`, `Patient/1/_history/2`, `http://x/fhir/Patient/1`, or a canonical URL.
fn reference(rows: &mut IndexRows, param: &str, ty: &str, value: Option<&Value>, text: Option<String>) {
    // `:identifier` searches Reference.identifier: token rows under the reference parameter.
    if let Some(id) = value.filter(|_| ty == "Reference").and_then(|v| v.get("identifier")) {
        push_token(rows, param, id.get("system"), id.get("value"));
    }
    let url = match (ty, value) {
        ("Reference", Some(v)) => match v.get("reference").and_then(Value::as_str) {
            Some(r) if !r.starts_with('#') => r.to_string(),
            _ => return,
        },
        _ => match text {
            Some(t) => t,
            None => return,
        },
    };
    let (target_type, target_id) = match split_reference(&url) {
        Some((t, i)) => (Some(t.to_string()), Some(i.to_string())),
        None => (None, None),
    };
    rows.references.push(ReferenceRow { param: param.into(), target_type, target_id, url });
}

/// The `Type/id` at the end of a reference, ignoring `_history/n`.
pub fn split_reference(url: &str) -> Option<(&str, &str)> {
    let url = match url.find("/_history/") {
        Some(i) => &url[..i],
        None => url,
    };
    let mut parts = url.rsplitn(3, '/');
    let id = parts.next()?;
    let rtype = parts.next()?;
    (crate::resource::is_resource_type(rtype) && crate::resource::valid_id(id)).then_some((rtype, id))
}

fn date(rows: &mut IndexRows, param: &str, ty: &str, value: Option<&Value>, text: Option<String>) {
    let mut push = |lo: i64, hi: i64| rows.dates.push(DateRow { param: param.into(), lo, hi });
    match (ty, value) {
        ("Period", Some(v)) => {
            let lo = v
                .get("start")
                .and_then(Value::as_str)
                .and_then(instant::parse_range)
                .map_or(i64::MIN, |r| r.0);
            let hi =
                v.get("end").and_then(Value::as_str).and_then(instant::parse_range).map_or(i64::MAX, |r| r.1);
            push(lo, hi);
        }
        ("Timing", Some(v)) => {
            for e in v.get("event").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
            {
                if let Some((lo, hi)) = instant::parse_range(e) {
                    push(lo, hi);
                }
            }
        }
        _ => {
            if let Some((lo, hi)) = text.as_deref().and_then(instant::parse_range) {
                push(lo, hi);
            }
        }
    }
}

fn quantity(rows: &mut IndexRows, param: &str, value: Option<&Value>) {
    let Some(v) = value else { return };
    let Some(n) = v.get("value").and_then(Value::as_f64).or_else(|| v.as_f64()) else { return };
    let system = v.get("system").and_then(Value::as_str).map(str::to_string);
    // Money carries its unit as `currency`.
    let code = v.get("code").or_else(|| v.get("currency")).or_else(|| v.get("unit")).and_then(Value::as_str);
    rows.numbers.push(NumberRow { param: param.into(), value: n, system, code: code.map(str::to_string) });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A parameter with narrower ones (`name` and `family`, `address` and `address-city`) loses
    /// no value by leaving their parts to them: on every official example, its values indexed in
    /// full are exactly those under it and its narrower parameters.
    #[test]
    fn narrower_parameters_hold_the_parts_left_out() {
        let registry = Registry::global();
        let name = registry.get("Patient", "name").unwrap();
        let codes: Vec<&str> = name.stored_under().collect();
        assert_eq!(codes, ["name", "family", "given"]);
        let address: Vec<&str> = registry.get("Practitioner", "address").unwrap().stored_under().collect();
        assert!(address.contains(&"address-city") && address.contains(&"address-postalcode"), "{address:?}");
        // Each value once: the family under `family` only, the line (no parameter of its own)
        // under `address`.
        let p = json!({"resourceType": "Patient", "name": [{"family": "Kim", "text": "Dr Kim"}],
            "address": [{"line": ["1 Elm"], "city": "Oslo"}]});
        let strings = extract(registry, "Patient", &p).strings;
        let mut rows: Vec<(&str, &str)> =
            strings.iter().map(|s| (s.param.as_str(), s.exact.as_str())).collect();
        rows.sort();
        assert_eq!(
            rows,
            [("address", "1 Elm"), ("address-city", "Oslo"), ("family", "Kim"), ("name", "Dr Kim")]
        );
        let mut checked = 0;
        for (_, example) in &crate::resource::official_examples() {
            let Some(rtype) = example["resourceType"].as_str() else { continue };
            let rows = extract(registry, rtype, example);
            for param in registry.for_type(rtype).into_iter().filter(|p| !p.narrower.is_empty()) {
                let Some(expr) = &param.compiled else { continue };
                let full = SearchParam { narrower: Vec::new(), ..param.clone() };
                let mut expected = IndexRows::default();
                for item in &fhirpath::evaluate(expr, example).unwrap() {
                    add(&mut expected, &full, full.kind, item);
                }
                let mut want: Vec<(&str, &str)> =
                    expected.strings.iter().map(|s| (s.norm.as_str(), s.exact.as_str())).collect();
                let under: Vec<&str> = param.stored_under().collect();
                let mut got: Vec<(&str, &str)> = rows
                    .strings
                    .iter()
                    .filter(|s| under.contains(&s.param.as_str()))
                    .map(|s| (s.norm.as_str(), s.exact.as_str()))
                    .collect();
                want.sort();
                want.dedup();
                got.sort();
                got.dedup();
                assert_eq!(got, want, "{rtype}.{}", param.code);
                checked += usize::from(!want.is_empty());
            }
        }
        // The examples are there in CI (`official_examples` is empty without them).
        if !crate::resource::official_examples().is_empty() {
            assert!(checked > 20, "{checked} values checked");
        }
    }

    /// Skipping a parameter whose properties a resource lacks (`SearchParam::reads`) loses
    /// nothing: on every official example, and on each with one top-level property taken away,
    /// every skipped parameter's expression yields nothing.
    #[test]
    fn skipped_parameters_have_no_values() {
        let examples = crate::resource::official_examples();
        if examples.is_empty() {
            return;
        }
        let registry = Registry::global();
        let (mut skipped, mut evaluated) = (0, 0);
        for (name, example) in &examples {
            let Some(rtype) = example["resourceType"].as_str() else { continue };
            let mut variants = vec![example.clone()];
            for key in example.as_object().unwrap().keys().filter(|k| *k != "resourceType") {
                let mut less = example.clone();
                less.as_object_mut().unwrap().remove(key);
                variants.push(less);
            }
            for r in &variants {
                for param in registry.for_type(rtype) {
                    let (Some(expr), Some(names)) = (&param.compiled, &param.reads) else { continue };
                    evaluated += 1;
                    if fhirpath::has_any(r, names) {
                        continue;
                    }
                    skipped += 1;
                    let items = fhirpath::evaluate(expr, r).unwrap_or_default();
                    assert!(items.is_empty(), "{rtype}.{} has values in {name}", param.code);
                }
            }
        }
        // Most parameters of a type are absent from any one resource.
        assert!(skipped * 2 > evaluated, "{skipped} of {evaluated} skipped");
    }

    #[test]
    fn patient_rows() {
        let p = json!({
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}, {"value": "x"}],
            "gender": "male", "active": true, "birthDate": "1974-12-25",
            "name": [{"family": "Müller", "given": ["Peter", "James"]}],
            "telecom": [{"system": "phone", "value": "555"}],
            "generalPractitioner": [{"reference": "Practitioner/dr1"}],
            "meta": {"tag": [{"system": "http://t", "code": "a"}]}
        });
        let rows = extract(Registry::global(), "Patient", &p);
        let tokens = |param: &str| -> Vec<(Option<&str>, &str)> {
            rows.tokens
                .iter()
                .filter(|r| r.param == param)
                .map(|r| (r.system.as_deref(), r.code.as_str()))
                .collect()
        };
        assert_eq!(
            tokens("identifier"),
            vec![(None, "x"), (Some("urn:oid:1.2.36.146.595.217.0.1"), "12345")]
        );
        assert_eq!(tokens("gender"), vec![(None, "male")]);
        assert_eq!(tokens("active"), vec![(None, "true")]);
        assert_eq!(tokens("phone"), vec![(None, "555")]);
        assert_eq!(tokens("_tag"), vec![(Some("http://t"), "a")]);
        // `name`'s values are all under `family` and `given` (`SearchParam::narrower`).
        let names: Vec<&str> = rows
            .strings
            .iter()
            .filter(|r| ["name", "family", "given"].contains(&r.param.as_str()))
            .map(|r| r.norm.as_str())
            .collect();
        assert_eq!(names, vec!["muller", "james", "peter"]);
        assert!(!rows.strings.iter().any(|r| r.param == "name"));
        let family: Vec<&str> =
            rows.strings.iter().filter(|r| r.param == "family").map(|r| r.exact.as_str()).collect();
        assert_eq!(family, vec!["Müller"]);
        let gp: Vec<_> = rows.references.iter().filter(|r| r.param == "general-practitioner").collect();
        assert_eq!(gp[0].target_type.as_deref(), Some("Practitioner"));
        assert_eq!(gp[0].target_id.as_deref(), Some("dr1"));
        let bd: Vec<_> = rows.dates.iter().filter(|r| r.param == "birthdate").collect();
        assert_eq!(bd[0].hi - bd[0].lo, 86_400_000);
    }

    #[test]
    fn folding_and_references() {
        assert_eq!(fold("ÉLODIE Müller"), "elodie muller");
        assert_eq!(fold("Bench PAT 7"), "bench pat 7");
        assert_eq!(split_reference("http://x/fhir/Patient/1/_history/2"), Some(("Patient", "1")));
        assert_eq!(split_reference("Patient/1"), Some(("Patient", "1")));
        assert_eq!(split_reference("urn:uuid:123"), None);
    }
}
