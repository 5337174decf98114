//! Index extraction: the values a resource contributes to each search parameter.

use serde_json::Value;

use super::registry::{ParamType, Registry};
use crate::store::TokenRow;

/// Token rows for every indexed token parameter of the resource's type.
pub fn tokens(registry: &Registry, rtype: &str, resource: &Value) -> Vec<TokenRow> {
    let mut rows = Vec::new();
    for param in registry.for_type(rtype) {
        if param.kind != ParamType::Token || param.code == "_id" {
            continue;
        }
        let Some(paths) = &param.paths else { continue };
        for path in paths {
            let mut values = Vec::new();
            collect(resource, path, &mut values);
            for v in values {
                token_values(v, &param.code, &mut rows);
            }
        }
    }
    rows.sort_by(|a, b| (&a.param, &a.system, &a.code).cmp(&(&b.param, &b.system, &b.code)));
    rows.dedup();
    rows
}

/// Follows an element path through objects and arrays, collecting every value reached.
fn collect<'a>(value: &'a Value, path: &[String], out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|i| collect(i, path, out)),
        _ if path.is_empty() => out.push(value),
        Value::Object(map) => {
            if let Some(next) = map.get(&path[0]) {
                collect(next, &path[1..], out);
            }
        }
        _ => {}
    }
}

fn push(rows: &mut Vec<TokenRow>, param: &str, system: Option<&Value>, code: Option<&Value>) {
    let code = match code {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => return,
    };
    let system = system.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    rows.push(TokenRow { param: param.to_string(), system, code });
}

/// Token semantics per data type (search.html#token): Coding and Identifier carry a system,
/// CodeableConcept contributes each of its codings, primitives are codes without a system.
fn token_values(value: &Value, param: &str, rows: &mut Vec<TokenRow>) {
    match value {
        Value::String(_) | Value::Bool(_) => push(rows, param, None, Some(value)),
        Value::Object(map) => {
            if let Some(Value::Array(codings)) = map.get("coding") {
                for c in codings {
                    push(rows, param, c.get("system"), c.get("code"));
                }
            } else if map.contains_key("code") {
                push(rows, param, map.get("system"), map.get("code"));
            } else if map.contains_key("value") {
                // Identifier (system|value); ContactPoint's system is not a URI, so it is ignored.
                let system = map.get("system").filter(|s| s.as_str().is_some_and(|s| s.contains(':')));
                push(rows, param, system, map.get("value"));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patient_tokens() {
        let p = json!({
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}, {"value": "x"}],
            "gender": "male", "active": true,
            "telecom": [{"system": "phone", "value": "555"}],
            "meta": {"tag": [{"system": "http://t", "code": "a"}]}
        });
        let rows = tokens(Registry::global(), "Patient", &p);
        let find = |param: &str| -> Vec<(Option<&str>, &str)> {
            rows.iter().filter(|r| r.param == param).map(|r| (r.system.as_deref(), r.code.as_str())).collect()
        };
        assert_eq!(find("identifier"), vec![(None, "x"), (Some("urn:oid:1.2.36.146.595.217.0.1"), "12345")]);
        assert_eq!(find("gender"), vec![(None, "male")]);
        assert_eq!(find("active"), vec![(None, "true")]);
        assert_eq!(find("phone"), vec![]);
        assert_eq!(find("telecom"), vec![(None, "555")]);
        assert_eq!(find("_tag"), vec![(Some("http://t"), "a")]);
    }
}
