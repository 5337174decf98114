//! Structural validation against the official R4 JSON Schema (conformance/fhir.schema.json).
//!
//! One validator per resource type, compiled on first use (≈90 ms each; compiling all 146 at
//! once with `validator_map_for` takes minutes) and cached. `warm_up` compiles the care
//! coordination types in the background at start.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use jsonschema::Validator;
use jsonschema::error::ValidationErrorKind;
use serde_json::{Map, Value};

use crate::error::{Issue, IssueCode};

const SCHEMA: &str = include_str!("../../conformance/fhir.schema.json");

/// Most issues reported for one resource: enough to fix a batch of mistakes, bounded output.
const MAX_ISSUES: usize = 20;
/// Schema messages quote the offending instance, which can be large.
const MAX_MESSAGE: usize = 300;

/// The types Hearth is built around, compiled ahead of their first write.
const CORE_TYPES: &[&str] = &[
    "Patient",
    "Practitioner",
    "Immunization",
    "CarePlan",
    "Task",
    "Organization",
    "PractitionerRole",
    "CareTeam",
    "Encounter",
    "Observation",
    "Communication",
    "RelatedPerson",
    "Consent",
    "AuditEvent",
    "Provenance",
    "Group",
    "Subscription",
    "Bundle",
    "OperationOutcome",
];

struct Schema {
    /// The schema document without its root `oneOf`, to be rooted at one definition at a time.
    definitions: Map<String, Value>,
    types: Vec<String>,
}

static SCHEMA_DOC: LazyLock<Schema> = LazyLock::new(|| {
    // The schema is compiled into the binary and exercised by the tests: a failure is a build bug.
    let mut doc: Map<String, Value> =
        serde_json::from_str(SCHEMA).expect("conformance/fhir.schema.json is a JSON object");
    let mut types: Vec<String> = doc
        .get("discriminator")
        .and_then(|d| d["mapping"].as_object())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    types.sort();
    doc.remove("oneOf");
    doc.remove("discriminator");
    add_fhir_version(&mut doc);
    Schema { definitions: doc, types }
});

static VALIDATORS: LazyLock<RwLock<HashMap<String, Arc<Validator>>>> = LazyLock::new(Default::default);

/// The published R4 schema predates the 4.0.1 technical correction: its FHIRVersion enums stop
/// at 4.0.0, so it would refuse every CapabilityStatement of an R4 server, ours included.
fn add_fhir_version(value: &mut Map<String, Value>) {
    for (key, v) in value.iter_mut() {
        match v {
            Value::Array(items)
                if key == "enum"
                    && items.iter().any(|i| i == "4.0.0")
                    && !items.iter().any(|i| i == "4.0.1") =>
            {
                items.push(Value::String("4.0.1".into()));
            }
            Value::Object(m) => add_fhir_version(m),
            _ => {}
        }
    }
}

fn validator(rtype: &str) -> Option<Arc<Validator>> {
    if let Some(v) = VALIDATORS.read().unwrap_or_else(|e| e.into_inner()).get(rtype) {
        return Some(v.clone());
    }
    if !is_resource_type(rtype) {
        return None;
    }
    let mut root = SCHEMA_DOC.definitions.clone();
    root.insert("$ref".into(), Value::String(format!("#/definitions/{rtype}")));
    let compiled = match jsonschema::validator_for(&Value::Object(root)) {
        Ok(v) => Arc::new(v),
        Err(e) => {
            tracing::error!("the R4 schema of {rtype} does not compile: {e}");
            return None;
        }
    };
    let mut map = VALIDATORS.write().unwrap_or_else(|e| e.into_inner());
    Some(map.entry(rtype.to_string()).or_insert(compiled).clone())
}

/// Compiles the validators of the core types now rather than on their first writes.
pub fn warm_up() {
    for t in CORE_TYPES {
        validator(t);
    }
}

/// Every resource type of R4, sorted.
pub fn resource_types() -> &'static [String] {
    &SCHEMA_DOC.types
}

pub fn is_resource_type(name: &str) -> bool {
    SCHEMA_DOC.types.binary_search_by(|t| t.as_str().cmp(name)).is_ok()
}

/// Schema violations of `resource` (whose `resourceType` is `rtype`), as located issues.
pub fn validate(rtype: &str, resource: &Value) -> Vec<Issue> {
    let Some(validator) = validator(rtype) else {
        return vec![Issue::new(IssueCode::NotSupported, format!("unknown resource type '{rtype}'"))];
    };
    // Most resources are valid: checking is cheaper than collecting what is wrong.
    if validator.is_valid(resource) {
        return Vec::new();
    }
    validator
        .iter_errors(resource)
        // Required elements are checked from the StructureDefinitions (`required.rs`), which also
        // accept a primitive given only by its `_element` extension; the schema's list is partial.
        .filter(|e| !matches!(e.kind(), ValidationErrorKind::Required { .. }))
        .take(MAX_ISSUES)
        .map(|e| {
            let mut message = e.to_string();
            if message.len() > MAX_MESSAGE {
                let cut = (0..=MAX_MESSAGE).rev().find(|i| message.is_char_boundary(*i)).unwrap_or(0);
                message.truncate(cut);
                message.push('…');
            }
            let path = fhirpath_of_pointer(rtype, e.instance_path().as_str());
            Issue::new(IssueCode::Structure, format!("{path}: {message}")).at(path)
        })
        .collect()
}

/// `/name/0/given` → `Patient.name[0].given`.
pub fn fhirpath_of_pointer(rtype: &str, pointer: &str) -> String {
    let mut out = rtype.to_string();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.chars().all(|c| c.is_ascii_digit()) && !seg.is_empty() {
            out.push_str(&format!("[{seg}]"));
        } else {
            out.push('.');
            out.push_str(&seg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validates_patient() {
        assert!(is_resource_type("Patient"));
        assert!(!is_resource_type("Banana"));
        assert!(
            validate("Patient", &json!({"resourceType": "Patient", "birthDate": "1974-12-25"})).is_empty()
        );
        let issues = validate("Patient", &json!({"resourceType": "Patient", "birthDate": "not-a-date"}));
        assert_eq!(issues[0].expression.as_deref(), Some("Patient.birthDate"));
        let issues = validate("Patient", &json!({"resourceType": "Patient", "name": [{"given": [1]}]}));
        assert_eq!(issues[0].expression.as_deref(), Some("Patient.name[0].given[0]"));
        assert!(!validate("Patient", &json!({"resourceType": "Patient", "banana": 1})).is_empty());
    }
}
