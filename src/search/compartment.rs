//! Compartments (compartmentdefinition.html): which search parameters put a resource of a type
//! into, say, a Patient's compartment. Loaded from the official R4 CompartmentDefinitions.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

const DEFINITIONS: &[&str] = &[
    include_str!("../../conformance/compartments/CompartmentDefinition-patient.json"),
    include_str!("../../conformance/compartments/CompartmentDefinition-encounter.json"),
    include_str!("../../conformance/compartments/CompartmentDefinition-practitioner.json"),
    include_str!("../../conformance/compartments/CompartmentDefinition-relatedPerson.json"),
    include_str!("../../conformance/compartments/CompartmentDefinition-device.json"),
];

#[derive(Deserialize)]
struct Definition {
    url: String,
    code: String,
    resource: Vec<Member>,
}

#[derive(Deserialize)]
struct Member {
    code: String,
    #[serde(default)]
    param: Vec<String>,
}

struct Compartments {
    /// (compartment type, resource type) → parameters linking the resource to the compartment.
    params: HashMap<(String, String), Vec<String>>,
    urls: Vec<String>,
}

static COMPARTMENTS: LazyLock<Compartments> = LazyLock::new(|| {
    let mut params = HashMap::new();
    let mut urls = Vec::new();
    for text in DEFINITIONS {
        // Compiled into the binary and loaded by the tests: a failure here is a build bug.
        let def: Definition = serde_json::from_str(text).expect("conformance/compartments are valid");
        urls.push(def.url);
        for m in def.resource.into_iter().filter(|m| !m.param.is_empty()) {
            params.insert((def.code.clone(), m.code), m.param);
        }
    }
    Compartments { params, urls }
});

/// The parameters that place `rtype` in a `ctype` compartment; `None` when it is not a member.
pub fn params(ctype: &str, rtype: &str) -> Option<&'static [String]> {
    COMPARTMENTS.params.get(&(ctype.to_string(), rtype.to_string())).map(Vec::as_slice)
}

/// The parameters that tie `rtype` to a patient for authorization (patient-scoped grants, the
/// care-team policy): the Patient compartment's, plus Task through `patient` (`Task.for`). R4
/// leaves Task out of the compartment, but a Task for a patient is that patient's data, and
/// Hearth's care coordination runs on Tasks: leaving it out would either hide every Task from
/// patient-scoped apps or show every patient's Tasks to care-team-confined users.
pub fn patient_links(rtype: &str) -> Option<&'static [String]> {
    static TASK: LazyLock<Vec<String>> = LazyLock::new(|| vec!["patient".to_string()]);
    match rtype {
        "Task" => Some(TASK.as_slice()),
        _ => params("Patient", rtype),
    }
}

/// Whether `ctype` has a compartment at all.
pub fn is_compartment(ctype: &str) -> bool {
    COMPARTMENTS.params.keys().any(|(c, _)| c == ctype)
}

/// Canonical URLs of the supported CompartmentDefinitions, for the CapabilityStatement.
pub fn urls() -> &'static [String] {
    &COMPARTMENTS.urls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_compartment() {
        assert_eq!(params("Patient", "Immunization"), Some(&["patient".to_string()][..]));
        assert_eq!(params("Patient", "Observation").map(<[String]>::len), Some(2));
        assert_eq!(params("Patient", "Task"), None);
        assert!(is_compartment("Encounter") && !is_compartment("Banana"));
        assert_eq!(urls().len(), 5);
    }
}
