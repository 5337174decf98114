//! The SearchParameter registry, loaded from the official R4 definitions in `conformance/`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, RwLock};

use serde::Deserialize;

use crate::fhirpath::{self, Expr};

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
    /// The expression, parsed once; `None` when there is none or it does not parse.
    pub compiled: Option<Arc<Expr>>,
    /// The resource's top-level properties the expression reads, when it yields nothing
    /// without them (`fhirpath::top_level_reads`): a resource with none of them has no values.
    pub reads: Option<Vec<String>>,
    /// For reference parameters: the resource types it may point to.
    pub targets: Vec<String>,
    /// For composite parameters: each component's type and expression (relative to the
    /// parameter's expression).
    pub components: Vec<Component>,
    /// For string parameters on a HumanName or Address: the parts that narrower parameters of
    /// the same type index already (`family` is `Patient.name.family`). Their values are stored
    /// once, under the narrower parameter, and this parameter's searches read those rows too.
    pub narrower: Vec<Narrower>,
}

/// A part of a HumanName or Address that its own parameter indexes (see `SearchParam::narrower`).
#[derive(Debug, Clone)]
pub struct Narrower {
    /// The element of the HumanName or Address (`family`, `city`).
    pub element: &'static str,
    /// The parameter whose rows hold it.
    pub code: String,
}

/// The elements of the complex types a string parameter indexes (search.html#string).
pub const HUMAN_NAME_PARTS: &[&str] = &["family", "given", "prefix", "suffix", "text"];
pub const ADDRESS_PARTS: &[&str] = &["line", "city", "district", "state", "postalCode", "country", "text"];

#[derive(Debug, Clone)]
pub struct Component {
    pub kind: ParamType,
    pub compiled: Option<Arc<Expr>>,
}

impl SearchParam {
    /// Whether values of this parameter are written to the index (and so can be searched).
    pub fn indexed(&self) -> bool {
        if self.kind == ParamType::Composite {
            return self.composite_supported();
        }
        self.code == "_id"
            || self.code == "_lastUpdated"
            // Phonetic matching needs an encoder we do not have; starts-with would be a lie.
            || (self.compiled.is_some()
                && self.code != "phonetic"
                && matches!(
                    self.kind,
                    ParamType::String
                        | ParamType::Token
                        | ParamType::Reference
                        | ParamType::Date
                        | ParamType::Number
                        | ParamType::Quantity
                        | ParamType::Uri
                ))
    }

    /// Composites are indexed when they pair a token with one other value (all of R4's but the
    /// three-part MolecularSequence coordinates and DocumentReference `relationship`, whose
    /// published components are crossed).
    fn composite_supported(&self) -> bool {
        self.compiled.is_some()
            && matches!(self.components.as_slice(), [first, second]
            if first.kind == ParamType::Token
                && first.compiled.is_some()
                && second.compiled.is_some()
                && matches!(
                    second.kind,
                    ParamType::Token | ParamType::Quantity | ParamType::Date | ParamType::String | ParamType::Number
                ))
    }

    /// Whether the parameter is stored in index tables (not a column of `resource`).
    pub fn in_index_tables(&self) -> bool {
        self.indexed() && self.code != "_id" && self.code != "_lastUpdated"
    }

    /// Whether extraction leaves `element` of a HumanName or Address to a narrower parameter.
    pub fn leaves(&self, element: &str) -> bool {
        self.narrower.iter().any(|n| n.element == element)
    }

    /// The codes whose index rows this parameter's searches, sorts and `:missing` read: its own,
    /// and its narrower parameters'.
    pub fn stored_under(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.code.as_str()).chain(self.narrower.iter().map(|n| n.code.as_str()))
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
    #[serde(default)]
    target: Vec<String>,
    #[serde(default)]
    component: Vec<RawComponent>,
}

#[derive(Deserialize)]
struct RawComponent {
    definition: String,
    expression: String,
}

/// The official parameters, loaded once per process.
struct Official {
    by_type: HashMap<String, BTreeMap<String, SearchParam>>,
    common: BTreeMap<String, SearchParam>,
}

/// The parameters one database knows: the official ones, and the custom SearchParameter
/// resources stored in it (see `custom.rs`). Each engine owns one.
pub struct Registry {
    official: &'static Official,
    /// Custom parameters by type and code. They are leaked to `'static` so lookups can hand out
    /// plain references while the map changes; a SearchParameter is written rarely, and each
    /// version costs one small allocation for the life of the process.
    pub(super) custom: RwLock<HashMap<String, BTreeMap<String, &'static SearchParam>>>,
    /// Custom parameters by the id of the SearchParameter resource that defines them.
    pub(super) custom_sources: RwLock<HashMap<String, Vec<(String, String)>>>,
    /// Bumped by every change to the custom parameters: index rows extracted under another
    /// generation are extracted again (`engine/draft.rs`).
    pub(super) generation: std::sync::atomic::AtomicU64,
}

static OFFICIAL: LazyLock<Official> = LazyLock::new(|| {
    // The file is compiled into the binary and checked by the tests: failing here is a build bug.
    let bundle: RawBundle =
        serde_json::from_str(SEARCH_PARAMETERS).expect("conformance/search-parameters.json is valid");
    Official::from_params(bundle.entry.into_iter().map(|e| e.resource))
});

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// Each type's official parameters, common ones included, ordered by code.
static OFFICIAL_BY_TYPE: LazyLock<HashMap<String, Vec<&'static SearchParam>>> = LazyLock::new(|| {
    let o: &'static Official = &OFFICIAL;
    o.by_type.keys().map(|t| (t.clone(), official_for_type(o, t))).collect()
});

/// The official parameters of `rtype` (its own, and the common ones it does not redefine),
/// ordered by code.
fn official_for_type<'a>(o: &'a Official, rtype: &str) -> Vec<&'a SearchParam> {
    let mut all: Vec<&SearchParam> = o.common.values().collect();
    if let Some(own) = o.by_type.get(rtype) {
        all.retain(|p| !own.contains_key(&p.code));
        all.extend(own.values());
    }
    all.sort_by(|a, b| a.code.cmp(&b.code));
    all
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl Registry {
    /// The official parameters alone (no database's custom ones).
    pub fn global() -> &'static Registry {
        &REGISTRY
    }

    /// A registry with the official parameters and no custom ones yet.
    pub fn new() -> Registry {
        Registry {
            official: &OFFICIAL,
            custom: RwLock::default(),
            custom_sources: RwLock::default(),
            generation: Default::default(),
        }
    }

    /// The official parameter `code` of `rtype`, ignoring custom ones.
    pub fn official(&self, rtype: &str, code: &str) -> Option<&'static SearchParam> {
        let o = self.official;
        o.by_type.get(rtype).and_then(|m| m.get(code)).or_else(|| o.common.get(code))
    }

    /// The parameter `code` for resources of `rtype` (type-specific first, then custom, then
    /// common ones).
    pub fn get(&self, rtype: &str, code: &str) -> Option<&SearchParam> {
        let o = self.official;
        o.by_type
            .get(rtype)
            .and_then(|m| m.get(code))
            .or_else(|| {
                let custom = self.custom.read().unwrap_or_else(|e| e.into_inner());
                custom.get(rtype).and_then(|m| m.get(code)).copied()
            })
            .or_else(|| o.common.get(code))
    }

    /// Changes with every change to the custom parameters.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// True when a custom parameter applies to `rtype`.
    pub fn has_custom(&self, rtype: &str) -> bool {
        let custom = self.custom.read().unwrap_or_else(|e| e.into_inner());
        custom.get(rtype).is_some_and(|m| !m.is_empty())
    }

    /// Every parameter that applies to `rtype`, common and custom ones included, ordered by code.
    pub fn for_type(&self, rtype: &str) -> Vec<&SearchParam> {
        let custom = self.custom.read().unwrap_or_else(|e| e.into_inner());
        let extra = custom.get(rtype).filter(|m| !m.is_empty());
        // Indexing asks for every resource it writes: the official list is merged and sorted
        // once per type.
        if extra.is_none()
            && let Some(merged) = OFFICIAL_BY_TYPE.get(rtype)
        {
            return merged.clone();
        }
        let mut all = official_for_type(self.official, rtype);
        if let Some(extra) = extra {
            all.retain(|p| !extra.contains_key(&p.code));
            all.extend(extra.values().copied());
            all.sort_by(|a, b| a.code.cmp(&b.code));
        }
        all
    }
}

impl Official {
    fn from_params(params: impl Iterator<Item = RawParam>) -> Official {
        let params: Vec<RawParam> = params.collect();
        let kinds: HashMap<&str, ParamType> = params.iter().map(|p| (p.url.as_str(), p.kind)).collect();
        let mut by_type: HashMap<String, BTreeMap<String, SearchParam>> = HashMap::new();
        let mut common = BTreeMap::new();
        for raw in &params {
            let components: Vec<Component> = raw
                .component
                .iter()
                .map(|c| Component {
                    kind: kinds.get(c.definition.as_str()).copied().unwrap_or(ParamType::Special),
                    compiled: compile(&raw.url, &c.expression),
                })
                .collect();
            for base in &raw.base {
                let expression = raw.expression.as_deref().and_then(|e| restrict(e, base));
                let compiled = expression.as_deref().and_then(|e| compile(&raw.url, e));
                let param = SearchParam {
                    code: raw.code.clone(),
                    url: raw.url.clone(),
                    kind: raw.kind,
                    description: raw.description.clone(),
                    reads: compiled.as_deref().and_then(crate::fhirpath::top_level_reads),
                    compiled,
                    expression,
                    targets: raw.target.clone(),
                    components: components.clone(),
                    narrower: Vec::new(),
                };
                if base == "Resource" || base == "DomainResource" {
                    common.insert(raw.code.clone(), param);
                } else {
                    by_type.entry(base.clone()).or_default().insert(raw.code.clone(), param);
                }
            }
        }
        by_type.values_mut().for_each(find_narrower);
        Official { by_type, common }
    }
}

/// Pairs each string parameter on a HumanName or Address with the parameters of the same type
/// whose expression is its own plus one part (`Patient.address` and `Patient.address.city`):
/// both would otherwise store the same value, a fifth of the string rows a Patient writes.
fn find_narrower(params: &mut BTreeMap<String, SearchParam>) {
    let mut found: Vec<(String, Narrower)> = Vec::new();
    let indexed_string = |p: &&SearchParam| p.kind == ParamType::String && p.in_index_tables();
    for wide in params.values().filter(indexed_string) {
        let Some(expr) = wide.expression.as_deref() else { continue };
        for element in HUMAN_NAME_PARTS.iter().chain(ADDRESS_PARTS) {
            let narrow_expr = format!("{expr}.{element}");
            let narrow = params
                .values()
                .filter(indexed_string)
                .find(|p| p.expression.as_deref() == Some(narrow_expr.as_str()));
            if let Some(narrow) = narrow {
                found.push((wide.code.clone(), Narrower { element, code: narrow.code.clone() }));
            }
        }
    }
    for (code, narrower) in found {
        if let Some(p) = params.get_mut(&code) {
            p.narrower.push(narrower);
        }
    }
}

pub(super) fn compile(url: &str, expression: &str) -> Option<Arc<Expr>> {
    match fhirpath::parse(expression) {
        Ok(x) => Some(Arc::new(x)),
        Err(err) => {
            tracing::warn!("SearchParameter {url} does not parse: {err}");
            None
        }
    }
}

/// Keeps the `|`-separated alternatives of a multi-base expression that apply to `base`.
pub(super) fn restrict(expression: &str, base: &str) -> Option<String> {
    let parts: Vec<&str> = expression.split('|').map(str::trim).collect();
    if parts.len() == 1 {
        return Some(expression.trim().to_string());
    }
    let prefix = format!("{base}.");
    let paren = format!("({base}.");
    let own: Vec<&str> =
        parts.into_iter().filter(|p| *p == base || p.starts_with(&prefix) || p.starts_with(&paren)).collect();
    (!own.is_empty()).then(|| own.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_official_definitions() {
        let r = Registry::global();
        let id = r.get("Patient", "identifier").unwrap();
        assert_eq!(id.kind, ParamType::Token);
        assert!(id.indexed());
        assert_eq!(r.get("Observation", "_id").unwrap().code, "_id");
        let gender = r.get("Patient", "gender").unwrap();
        assert_eq!(gender.expression.as_deref(), Some("Patient.gender"));
        // A multi-base parameter restricted to one base.
        let code = r.get("Immunization", "vaccine-code").unwrap();
        assert_eq!(code.expression.as_deref(), Some("Immunization.vaccineCode"));
        assert!(r.get("Observation", "value-concept").unwrap().indexed());
        // Every official expression parses.
        let broken: Vec<&str> = r
            .official
            .by_type
            .values()
            .flat_map(|m| m.values())
            .filter(|p| p.expression.is_some() && p.compiled.is_none())
            .map(|p| p.url.as_str())
            .collect();
        assert!(broken.is_empty(), "{broken:?}");
        assert!(r.get("Observation", "code-value-quantity").unwrap().indexed());
        assert!(r.get("Observation", "component-code-value-concept").unwrap().indexed());
        assert!(!r.get("MolecularSequence", "chromosome-window-coordinate").unwrap().indexed());
    }
}
