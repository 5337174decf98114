//! `_summary=true` and `_summary=text` (search.html#summary): views of a resource cut down by
//! the element definitions of the base specification.

use serde_json::{Map, Value};

use super::model::Context;

/// The elements marked `isSummary` in the base definition, recursively through backbone
/// elements; data types are kept whole. `resourceType`, `id` and `meta` always stay.
pub fn summary(value: &Value) -> Value {
    let ctx = value.get("resourceType").and_then(Value::as_str).and_then(Context::of_type);
    match (value, ctx) {
        (Value::Object(obj), Some(ctx)) => super::subsetted(Value::Object(keep_summary(obj, ctx, true))),
        _ => value.clone(),
    }
}

fn keep_summary(obj: &Map<String, Value>, ctx: Context, root: bool) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, v) in obj {
        let name = key.strip_prefix('_').unwrap_or(key);
        if root && matches!(name, "resourceType" | "id" | "meta") {
            out.insert(key.clone(), v.clone());
            continue;
        }
        let Some(info) = ctx.child(name) else { continue };
        if !info.def.summary {
            continue;
        }
        let backbone = if info.def.children.is_empty() { None } else { info.descend() };
        let kept = match (backbone, v) {
            (Some(inner), Value::Object(o)) => Value::Object(keep_summary(o, inner, false)),
            (Some(inner), Value::Array(items)) => Value::Array(
                items
                    .iter()
                    .map(|i| match i {
                        Value::Object(o) => Value::Object(keep_summary(o, inner, false)),
                        other => other.clone(),
                    })
                    .collect(),
            ),
            _ => v.clone(),
        };
        out.insert(key.clone(), kept);
    }
    out
}

/// The narrative, `id`, `meta` and the top-level mandatory elements.
pub fn text_only(value: &Value) -> Value {
    let Value::Object(obj) = value else { return value.clone() };
    let ctx = obj.get("resourceType").and_then(Value::as_str).and_then(Context::of_type);
    let kept: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| {
            let name = k.strip_prefix('_').unwrap_or(k);
            matches!(name, "resourceType" | "id" | "meta" | "text")
                || ctx.and_then(|c| c.child(name)).is_some_and(|i| i.min() > 0)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    super::subsetted(Value::Object(kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summary_keeps_summary_elements_only() {
        let p = json!({
            "resourceType": "Patient", "id": "1", "text": {"status": "generated", "div": "<div/>"},
            "name": [{"family": "Chalmers"}], "birthDate": "1974-12-25", "_birthDate": {"id": "b"},
            "photo": [{"title": "me"}], "maritalStatus": {"text": "M"},
            "contact": [{"name": {"family": "Du"}}],
            "link": [{"other": {"reference": "Patient/2"}, "type": "seealso"}]
        });
        let s = summary(&p);
        let keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["resourceType", "id", "name", "birthDate", "_birthDate", "link", "meta"]);
        assert_eq!(s["meta"]["tag"][0]["code"], "SUBSETTED");
        let t = text_only(&json!({"resourceType": "Observation", "id": "o", "status": "final",
            "code": {"text": "x"}, "text": {"status": "generated"}, "valueString": "v"}));
        let keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["resourceType", "id", "status", "code", "text", "meta"]);
    }
}
