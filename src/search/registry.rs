//! The SearchParameter registry, loaded from the official R4 definitions in `conformance/`.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use serde::Deserialize;

const SEARCH_PARAMETERS: &str = include_str!("../../conformance/search-parameters.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Number => "number",
            ParamType::Date => "date",
            ParamType::String => "string",
            ParamType::Token => "token",
            ParamType::Reference => "reference",
            ParamType::Composite => "composite",
            ParamType::Quantity => "quantity",
            ParamType::Uri => "uri",
            ParamType::Special => "special",
        }
    }
}

/// A search parameter as it applies to one resource type.
#[derive(Debug, Clone)]
pub struct SearchParam {
    pub code: String,
    pub url: String,
    pub kind: ParamType,
    pub description: String,
    /// The FHIRPath expression restricted to this resource type's alternatives.
    pub expression: Option<String>,
    /// The expression as plain element paths below the resource (e.g. `["identifier"]`), when it
    /// is one; such parameters are indexed without a FHIRPath evaluator.
    pub paths: Option<Vec<Vec<String>>>,
}

impl SearchParam {
    /// Whether values of this parameter are written to the index (and so can be searched).
    pub fn indexed(&self) -> bool {
        self.code == "_id" || (self.kind == ParamType::Token && self.paths.is_some())
    }
}

#[derive(Deserialize)]
struct RawBundle {
    entry: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    resource: RawParam,
}

#[derive(Deserialize)]
struct RawParam {
    code: String,
    url: String,
    base: Vec<String>,
    #[serde(rename = "type")]
    kind: ParamType,
    #[serde(default)]
    description: String,
    expression: Option<String>,
}

pub struct Registry {
    by_type: HashMap<String, BTreeMap<String, SearchParam>>,
    common: BTreeMap<String, SearchParam>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    // The file is compiled into the binary and checked by the tests: failing here is a build bug.
    let bundle: RawBundle =
        serde_json::from_str(SEARCH_PARAMETERS).expect("conformance/search-parameters.json is valid");
    Registry::from_params(bundle.entry.into_iter().map(|e| e.resource))
});

impl Registry {
    pub fn global() -> &'static Registry {
        &REGISTRY
    }

    fn from_params(params: impl Iterator<Item = RawParam>) -> Registry {
        let mut by_type: HashMap<String, BTreeMap<String, SearchParam>> = HashMap::new();
        let mut common = BTreeMap::new();
        for raw in params {
            for base in &raw.base {
                let expression = raw.expression.as_deref().and_then(|e| restrict(e, base));
                let param = SearchParam {
                    code: raw.code.clone(),
                    url: raw.url.clone(),
                    kind: raw.kind,
                    description: raw.description.clone(),
                    paths: expression.as_deref().and_then(|e| simple_paths(e, base)),
                    expression,
                };
                if base == "Resource" || base == "DomainResource" {
                    common.insert(raw.code.clone(), param);
                } else {
                    by_type.entry(base.clone()).or_default().insert(raw.code.clone(), param);
                }
            }
        }
        Registry { by_type, common }
    }

    /// The parameter `code` for resources of `rtype` (type-specific first, then common ones).
    pub fn get(&self, rtype: &str, code: &str) -> Option<&SearchParam> {
        self.by_type.get(rtype).and_then(|m| m.get(code)).or_else(|| self.common.get(code))
    }

    /// Every parameter that applies to `rtype`, common ones included, ordered by code.
    pub fn for_type(&self, rtype: &str) -> Vec<&SearchParam> {
        let mut all: Vec<&SearchParam> = self.common.values().collect();
        if let Some(own) = self.by_type.get(rtype) {
            all.retain(|p| !own.contains_key(&p.code));
            all.extend(own.values());
        }
        all.sort_by(|a, b| a.code.cmp(&b.code));
        all
    }
}

/// Keeps the `|`-separated alternatives of a multi-base expression that apply to `base`.
fn restrict(expression: &str, base: &str) -> Option<String> {
    let parts: Vec<&str> = expression.split('|').map(str::trim).collect();
    if parts.len() == 1 {
        return Some(expression.trim().to_string());
    }
    let prefix = format!("{base}.");
    let paren = format!("({base}.");
    let own: Vec<&str> =
        parts.into_iter().filter(|p| p.starts_with(&prefix) || p.starts_with(&paren)).collect();
    (!own.is_empty()).then(|| own.join(" | "))
}

/// `Patient.identifier | Patient.link.other` → `[["identifier"], ["link", "other"]]`, or None
/// when any alternative needs more than element navigation.
fn simple_paths(expression: &str, base: &str) -> Option<Vec<Vec<String>>> {
    expression
        .split('|')
        .map(|part| {
            let mut segments = part.trim().split('.');
            let head = segments.next()?;
            if head != base && head != "Resource" && head != "DomainResource" {
                return None;
            }
            let rest: Vec<String> = segments.map(str::to_string).collect();
            let plain = rest.iter().all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()));
            (plain && !rest.is_empty()).then_some(rest)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_official_definitions() {
        let r = Registry::global();
        let id = r.get("Patient", "identifier").unwrap();
        assert_eq!(id.kind, ParamType::Token);
        assert_eq!(id.paths.as_deref(), Some(&[vec!["identifier".to_string()]][..]));
        assert_eq!(r.get("Observation", "_id").unwrap().code, "_id");
        let gender = r.get("Patient", "gender").unwrap();
        assert_eq!(gender.expression.as_deref(), Some("Patient.gender"));
        // A multi-base parameter restricted to one base.
        let code = r.get("Immunization", "vaccine-code").unwrap();
        assert_eq!(code.paths.as_deref(), Some(&[vec!["vaccineCode".to_string()]][..]));
        let tag = r.get("Task", "_tag").unwrap();
        assert_eq!(tag.paths.as_deref(), Some(&[vec!["meta".to_string(), "tag".to_string()]][..]));
        // `as` casts need the FHIRPath evaluator: not a simple path.
        assert!(r.get("Observation", "value-concept").unwrap().paths.is_none());
    }
}
