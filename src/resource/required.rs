//! Required-element (min cardinality) checks against the element model.

use serde_json::{Map, Value};

use super::model::{Context, ElementDef, ElementInfo};

/// Far beyond any real resource; stops runaway recursion on hostile input.
const MAX_DEPTH: usize = 128;

/// One missing required element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// FHIRPath-like location, e.g. `Patient.link[0].other`.
    pub path: String,
    pub message: String,
}

/// Reports every element with `min >= 1` that is absent, in the resource,
/// its backbone elements, data types, extensions and contained resources.
/// Input that is not a resource with a known `resourceType` yields nothing:
/// other checks report that.
pub fn missing_required(resource: &Value) -> Vec<Issue> {
    let mut issues = Vec::new();
    walk_resource(resource, None, &mut issues, 0);
    issues
}

/// Where the walk is, written out only for an issue: most resources have none, and formatting
/// every element's path cost more than the checks.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root(&'a str),
    Child(&'a Path<'a>, &'a str),
    Item(&'a Path<'a>, usize),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root(name) => f.write_str(name),
            Path::Child(parent, name) => write!(f, "{parent}.{name}"),
            Path::Item(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn walk_resource(value: &Value, path: Option<&Path<'_>>, issues: &mut Vec<Issue>, depth: usize) {
    let Some(obj) = value.as_object() else { return };
    let Some(rt) = obj.get("resourceType").and_then(Value::as_str) else { return };
    let Some(ctx) = Context::of_type(rt) else { return };
    let root = Path::Root(rt);
    walk(ctx, obj, path.unwrap_or(&root), issues, depth);
}

fn walk(ctx: Context, obj: &Map<String, Value>, path: &Path<'_>, issues: &mut Vec<Issue>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    for def in ctx.elements().iter().filter(|d| d.min > 0 && !present(d, obj)) {
        let name = if def.choice { format!("{}[x]", def.name) } else { def.name.clone() };
        issues.push(Issue {
            path: format!("{path}.{name}"),
            message: format!("missing required element '{name}' (minimum cardinality {})", def.min),
        });
    }
    for (key, value) in obj {
        let (base, is_ext) = match key.strip_prefix('_') {
            Some(base) => (base, true),
            None => (key.as_str(), false),
        };
        let Some(info) = ctx.child(base) else { continue };
        let child_path = Path::Child(path, base);
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk_value(info, is_ext, item, &Path::Item(&child_path, i), issues, depth + 1);
                }
            }
            _ => walk_value(info, is_ext, value, &child_path, issues, depth + 1),
        }
    }
}

fn walk_value(
    info: ElementInfo,
    is_ext: bool,
    value: &Value,
    path: &Path<'_>,
    issues: &mut Vec<Issue>,
    depth: usize,
) {
    if info.is_resource() {
        return walk_resource(value, Some(path), issues, depth);
    }
    // A primitive's own value has no children; its `_x` object holds the
    // id and extensions, described by the primitive type's definition.
    if info.is_primitive() != is_ext {
        return;
    }
    let ctx = match is_ext {
        true => info.type_code().and_then(Context::of_type),
        false => info.descend(),
    };
    if let (Some(ctx), Some(obj)) = (ctx, value.as_object()) {
        walk(ctx, obj, path, issues, depth);
    }
}

/// An element is present if its JSON property (any `xType` for a choice)
/// or the `_x` companion of a primitive holds something other than null or
/// an empty array.
fn present(def: &ElementDef, obj: &Map<String, Value>) -> bool {
    obj.iter().any(|(key, value)| {
        let base = key.strip_prefix('_').unwrap_or(key);
        let named = match def.choice {
            true => def.choice_type(base).is_some(),
            false => base == def.name,
        };
        named && !value.is_null() && value.as_array().is_none_or(|items| items.iter().any(|v| !v.is_null()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(resource: Value) -> Vec<String> {
        missing_required(&resource).into_iter().map(|i| i.path).collect()
    }

    #[test]
    fn observation_without_status_and_code() {
        let obs = json!({"resourceType": "Observation", "id": "x", "subject": {"reference": "Patient/1"}});
        assert_eq!(paths(obs), ["Observation.status", "Observation.code"]);
        let ok = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
        assert!(paths(ok).is_empty());
        let ext_only = json!({"resourceType": "Observation", "_status": {"extension": [
            {"url": "http://example.org/x", "valueCode": "unknown"}]}, "code": {"text": "x"}});
        assert!(paths(ext_only).is_empty());
    }

    #[test]
    fn backbone_elements_are_checked() {
        let patient = json!({"resourceType": "Patient", "link": [{}]});
        assert_eq!(paths(patient), ["Patient.link[0].other", "Patient.link[0].type"]);
        let issues = missing_required(&json!({"resourceType": "Patient", "link": [{"type": "seealso"}]}));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path, "Patient.link[0].other");
        assert!(issues[0].message.contains("'other'"), "{}", issues[0].message);
    }

    #[test]
    fn data_types_extensions_and_contained() {
        let patient = json!({
            "resourceType": "Patient",
            "text": {"status": "generated"},
            "name": [{"family": "X", "_given": [{"extension": [{"valueString": "a"}]}]}],
            "contained": [{"resourceType": "Observation", "status": "final"}],
            "extension": [{"url": "http://example.org/e", "extension": [{"valueBoolean": true}]}]
        });
        assert_eq!(
            paths(patient),
            [
                "Patient.text.div",
                "Patient.name[0].given[0].extension[0].url",
                "Patient.contained[0].code",
                "Patient.extension[0].extension[0].url",
            ]
        );
    }

    #[test]
    fn choices_and_content_references() {
        let q = json!({"resourceType": "Questionnaire", "status": "draft",
            "item": [{"linkId": "1", "type": "group", "item": [{"type": "string"}]}]});
        assert_eq!(paths(q), ["Questionnaire.item[0].item[0].linkId"]);
        let ext = json!({"resourceType": "Basic", "code": {"text": "x"},
            "modifierExtension": [{"url": "http://example.org/m", "valueQuantity": {"value": 1}}]});
        assert!(paths(ext).is_empty());
        let task = json!({"resourceType": "Task", "status": "draft", "intent": "order",
            "input": [{"type": {"text": "t"}}]});
        assert_eq!(paths(task), ["Task.input[0].value[x]"]);
    }

    #[test]
    fn official_examples_have_required_elements() {
        let mut problems = Vec::new();
        for (name, resource) in crate::resource::official_examples() {
            for issue in missing_required(&resource) {
                problems.push(format!("{name}: {} {}", issue.path, issue.message));
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
