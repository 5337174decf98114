//! R4 resources as JSON values: parsing, validation and the server-maintained metadata.
//! Knows nothing of databases or HTTP.

pub mod instant;
pub mod model;
pub mod required;
pub mod schema;
pub mod summary;
pub mod xml;

use serde_json::{Map, Value};

use crate::error::{Error, Issue, IssueCode, Result};

pub use schema::{is_resource_type, resource_types};

/// Parses a JSON resource body. serde_json bounds nesting at 128 levels.
pub fn parse_json(bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::invalid(
            IssueCode::Structure,
            format!("malformed JSON at line {} column {}: {e}", e.line(), e.column()),
        )
    })
}

/// The `resourceType` of a parsed body, checked to be a known R4 type.
pub fn resource_type(value: &Value) -> Result<&str> {
    let Some(obj) = value.as_object() else {
        return Err(Error::invalid(IssueCode::Structure, "a resource must be a JSON object"));
    };
    let Some(rtype) = obj.get("resourceType").and_then(Value::as_str) else {
        return Err(Error::invalid(IssueCode::Required, "the resource has no resourceType"));
    };
    if !is_resource_type(rtype) {
        return Err(Error::invalid_at(
            IssueCode::NotSupported,
            format!("unknown resourceType '{rtype}'"),
            "resourceType",
        ));
    }
    Ok(rtype)
}

/// Checks a resource about to be stored: its type is `expected`, it matches the official JSON
/// schema, and every element with `min ≥ 1` in the StructureDefinitions is present.
pub fn validate(expected: &str, value: &Value) -> Result<()> {
    let rtype = resource_type(value)?;
    if rtype != expected {
        return Err(Error::invalid_at(
            IssueCode::Invalid,
            format!("resourceType '{rtype}' does not match the type '{expected}' of the URL"),
            "resourceType",
        ));
    }
    let mut issues = schema::validate(rtype, value);
    issues.extend(
        required::missing_required(value)
            .into_iter()
            .map(|m| Issue::new(IssueCode::Required, format!("{}: {}", m.path, m.message)).at(m.path)),
    );
    if issues.is_empty() { Ok(()) } else { Err(Error::Invalid(issues)) }
}

/// Whether `id` is a valid FHIR id: `[A-Za-z0-9\-\.]{1,64}`.
/// A version tag as HTTP headers and Bundle entries carry it: `W/"3"` (or `"3"`, `3`) → 3.
pub fn parse_etag(value: &str) -> Result<i64> {
    let v = value.trim();
    let v = v.strip_prefix("W/").unwrap_or(v).trim_matches('"');
    v.parse().map_err(|_| {
        Error::invalid(IssueCode::Value, format!("malformed ETag '{value}': expected W/\"<version>\""))
    })
}

pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Sets the id and the server-owned metadata (`versionId`, `lastUpdated`), keeping the client's
/// other meta (tags, profiles, security, source), and puts `resourceType`, `id`, `meta` first.
pub fn stamp(value: Value, id: &str, version: i64, last_updated_ms: i64) -> Value {
    let Value::Object(mut obj) = value else { return value };
    let rtype = obj.shift_remove("resourceType").unwrap_or(Value::Null);
    obj.shift_remove("id");
    let mut meta = match obj.shift_remove("meta") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    meta.shift_remove("versionId");
    meta.shift_remove("lastUpdated");
    let mut new_meta = Map::with_capacity(meta.len() + 2);
    new_meta.insert("versionId".into(), Value::String(version.to_string()));
    new_meta.insert("lastUpdated".into(), Value::String(instant::format_ms(last_updated_ms)));
    new_meta.extend(meta);
    let mut out = Map::with_capacity(obj.len() + 3);
    out.insert("resourceType".into(), rtype);
    out.insert("id".into(), Value::String(id.to_string()));
    out.insert("meta".into(), Value::Object(new_meta));
    out.extend(obj);
    Value::Object(out)
}

/// The JSON bytes of [`stamp`]`(value, …)`, written straight from `value`: the writer needs the
/// stamped version's bytes, and rebuilding the object first (a new map, every key hashed again)
/// cost as much as serializing it.
pub fn stamped_body(
    value: &Value,
    id: &str,
    version: i64,
    last_updated_ms: i64,
) -> serde_json::Result<Vec<u8>> {
    let Value::Object(obj) = value else { return serde_json::to_vec(value) };
    let mut out = Vec::with_capacity(512);
    stamp_head(&mut out, obj.get("resourceType").unwrap_or(&Value::Null), id, version, last_updated_ms)?;
    meta_members(&mut out, obj)?;
    out.push(b'}');
    other_members(&mut out, obj)?;
    out.push(b'}');
    Ok(out)
}

/// A resource serialized ahead of its stamp: all of [`stamped_body`] but the id, versionId and
/// lastUpdated, which [`BodyParts::stamped`] puts in.
pub struct BodyParts {
    pub resource_type: Value,
    /// The members of `meta` but versionId and lastUpdated, each as `,"key":value`.
    pub meta: String,
    /// The members after `meta`, each as `,"key":value`.
    pub rest: String,
}

impl BodyParts {
    pub fn of(value: &Value) -> Option<BodyParts> {
        let Value::Object(obj) = value else { return None };
        let (mut meta, mut rest) = (Vec::new(), Vec::with_capacity(512));
        meta_members(&mut meta, obj).ok()?;
        other_members(&mut rest, obj).ok()?;
        Some(BodyParts {
            resource_type: obj.get("resourceType").cloned().unwrap_or(Value::Null),
            meta: String::from_utf8(meta).ok()?,
            rest: String::from_utf8(rest).ok()?,
        })
    }

    /// The bytes [`stamped_body`] makes of the same resource.
    pub fn stamped(&self, id: &str, version: i64, last_updated_ms: i64) -> serde_json::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.meta.len() + self.rest.len() + 128);
        stamp_head(&mut out, &self.resource_type, id, version, last_updated_ms)?;
        out.extend_from_slice(self.meta.as_bytes());
        out.push(b'}');
        out.extend_from_slice(self.rest.as_bytes());
        out.push(b'}');
        Ok(out)
    }
}

/// `{"resourceType":…,"id":…,"meta":{"versionId":…,"lastUpdated":…`
fn stamp_head(out: &mut Vec<u8>, rtype: &Value, id: &str, version: i64, ms: i64) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"resourceType\":");
    serde_json::to_writer(&mut *out, rtype)?;
    out.extend_from_slice(b",\"id\":");
    serde_json::to_writer(&mut *out, id)?;
    out.extend_from_slice(b",\"meta\":{\"versionId\":");
    serde_json::to_writer(&mut *out, &version.to_string())?;
    out.extend_from_slice(b",\"lastUpdated\":");
    serde_json::to_writer(&mut *out, &instant::format_ms(ms))
}

fn member(out: &mut Vec<u8>, key: &str, v: &Value) -> serde_json::Result<()> {
    out.push(b',');
    serde_json::to_writer(&mut *out, key)?;
    out.push(b':');
    serde_json::to_writer(&mut *out, v)
}

fn meta_members(out: &mut Vec<u8>, obj: &Map<String, Value>) -> serde_json::Result<()> {
    if let Some(Value::Object(meta)) = obj.get("meta") {
        for (k, v) in meta.iter().filter(|(k, _)| !matches!(k.as_str(), "versionId" | "lastUpdated")) {
            member(out, k, v)?;
        }
    }
    Ok(())
}

fn other_members(out: &mut Vec<u8>, obj: &Map<String, Value>) -> serde_json::Result<()> {
    for (k, v) in obj.iter().filter(|(k, _)| !matches!(k.as_str(), "resourceType" | "id" | "meta")) {
        member(out, k, v)?;
    }
    Ok(())
}

/// A copy of the resource with only the given top-level elements (plus `resourceType`, `id`,
/// `meta`), tagged SUBSETTED as search.html#elements requires.
pub fn only_elements(value: &Value, elements: &[String]) -> Value {
    let Value::Object(obj) = value else { return value.clone() };
    let kept: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| {
            let name = k.trim_start_matches('_');
            matches!(name, "resourceType" | "id" | "meta") || elements.iter().any(|e| e == name)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    subsetted(Value::Object(kept))
}

/// `_summary=data`: everything but the narrative.
pub fn without_text(value: &Value) -> Value {
    let Value::Object(obj) = value else { return value.clone() };
    let mut obj = obj.clone();
    obj.shift_remove("text");
    subsetted(Value::Object(obj))
}

pub(crate) fn subsetted(mut value: Value) -> Value {
    let tag = serde_json::json!({
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "SUBSETTED",
        "display": "As requested, resource has been subsetted"
    });
    if let Some(obj) = value.as_object_mut() {
        let meta = obj.entry("meta").or_insert_with(|| Value::Object(Map::new()));
        if let Some(meta) = meta.as_object_mut() {
            match meta.entry("tag").or_insert_with(|| Value::Array(Vec::new())) {
                Value::Array(tags) => tags.push(tag),
                other => *other = Value::Array(vec![tag]),
            }
        }
    }
    value
}

/// The official R4 examples (`shared/fhir-r4/examples`), by file name; none when the folder is
/// not beside the repository (the tests that read them then say so and pass).
#[cfg(test)]
pub(crate) fn official_examples() -> Vec<(String, Value)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fhir-r4/examples");
    let Ok(entries) = std::fs::read_dir(dir) else {
        println!("skipping: {dir} not found");
        return Vec::new();
    };
    let mut out: Vec<(String, Value)> = entries
        .flatten()
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            (e.file_name().display().to_string(), serde_json::from_str(&text).unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stamps_meta_first() {
        let v = json!({"gender": "male", "meta": {"tag": [{"code": "x"}], "versionId": "9"}, "resourceType": "Patient", "id": "old", "active": true, "birthDate": "2000"});
        let s = serde_json::to_string(&stamp(v, "p1", 2, 0)).unwrap();
        assert_eq!(
            s,
            r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"2","lastUpdated":"1970-01-01T00:00:00.000Z","tag":[{"code":"x"}]},"gender":"male","active":true,"birthDate":"2000"}"#
        );
    }

    /// `stamped_body` writes the bytes `stamp` and `to_vec` would: on every official example,
    /// and on the odd shapes stamping handles.
    #[test]
    fn stamped_body_is_the_stamped_value_serialized() {
        let same = |v: &Value| {
            let expected = serde_json::to_vec(&stamp(v.clone(), "x-1", 3, 1_700_000_000_123)).unwrap();
            assert_eq!(stamped_body(v, "x-1", 3, 1_700_000_000_123).unwrap(), expected, "{v}");
        };
        same(
            &json!({"gender": "male", "meta": {"tag": [{"code": "x"}], "versionId": "9"}, "resourceType": "Patient", "id": "old"}),
        );
        same(
            &json!({"resourceType": "Patient", "meta": "not an object", "name": [{"family": "Ünïcode \"q\""}]}),
        );
        same(&json!({"active": true}));
        same(&json!([1, 2]));
        for (_, example) in official_examples() {
            same(&example);
        }
    }

    #[test]
    fn validation_reports_paths() {
        let err = validate("Patient", &json!({"resourceType": "Observation"})).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(validate("Patient", &json!({"resourceType": "Patient", "gender": "male"})).is_ok());
        let Error::Invalid(issues) =
            validate("Observation", &json!({"resourceType": "Observation"})).unwrap_err()
        else {
            panic!()
        };
        let paths: Vec<_> = issues.iter().filter_map(|i| i.expression.as_deref()).collect();
        assert!(paths.contains(&"Observation.status") && paths.contains(&"Observation.code"), "{paths:?}");
    }
}
