//! The FHIR R4 element model (base resources, data types and primitives),
//! generated from the official StructureDefinitions by `tools/gen-model.py`.
//!
//! It answers the questions the wire formats cannot answer on their own:
//! element order (XML), cardinality (JSON arrays), the type of each element
//! (numbers/booleans in JSON, choice types, nested types) and which elements
//! are XML attributes or XHTML.

use std::sync::LazyLock;

use serde_json::Value;

static MODEL_JSON: &str = include_str!("../../conformance/fhir-model.json");

static MODEL: LazyLock<Model> = LazyLock::new(|| Model::parse(MODEL_JSON));

/// What kind of definition a type is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Primitive,
    Complex,
    Resource,
}

/// One type definition (resource, complex data type or primitive).
#[derive(Debug)]
pub struct TypeDef {
    pub name: String,
    pub kind: Kind,
    pub is_abstract: bool,
    pub elements: Vec<ElementDef>,
}

/// One element of a type's snapshot.
#[derive(Debug)]
pub struct ElementDef {
    /// Full dotted path from the type root, e.g. `Patient.contact.name`.
    pub path: String,
    /// JSON/XML name without the `[x]` of choice elements.
    pub name: String,
    pub choice: bool,
    pub min: u32,
    pub repeats: bool,
    pub xml_attr: bool,
    pub xhtml: bool,
    /// Part of the summary view (`_summary=true`).
    pub summary: bool,
    /// Allowed type codes; empty for a contentReference.
    pub types: Vec<String>,
    /// `Questionnaire.item` for `#Questionnaire.item`.
    pub content_ref: Option<String>,
    /// Children of BackboneElement/Element-typed elements, in XML order.
    pub children: Vec<ElementDef>,
}

impl ElementDef {
    /// The JSON property name this element takes with the given type
    /// (`value` + `Quantity` = `valueQuantity` for choices).
    pub fn json_name(&self, type_code: &str) -> String {
        if !self.choice {
            return self.name.clone();
        }
        let mut out = String::with_capacity(self.name.len() + type_code.len());
        out.push_str(&self.name);
        let mut chars = type_code.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
        out
    }

    /// The type code a choice element takes for property `prop`, if `prop`
    /// is `name` followed by one of the allowed types (capitalised).
    pub fn choice_type(&self, prop: &str) -> Option<&str> {
        let suffix = prop.strip_prefix(self.name.as_str())?;
        let mut sfx = suffix.chars();
        let first = sfx.next()?;
        self.types.iter().map(String::as_str).find(|t| {
            let mut tc = t.chars();
            tc.next().is_some_and(|c| c.to_ascii_uppercase() == first) && tc.as_str() == sfx.as_str()
        })
    }
}

struct Model {
    types: Vec<TypeDef>,
    /// By name; looked up for every element a FHIRPath expression walks, hence a fast hasher.
    index: foldhash::HashMap<String, usize>,
}

impl Model {
    fn parse(text: &str) -> Model {
        let root: Value = serde_json::from_str(text).expect("embedded fhir-model.json is valid JSON");
        assert_eq!(root["format"], 2, "fhir-model.json: regenerate it with tools/gen-model.py");
        let types = root["types"].as_object().expect("fhir-model.json has a types object");
        let mut out = Vec::with_capacity(types.len());
        let mut index = foldhash::HashMap::with_capacity_and_hasher(types.len(), Default::default());
        for (name, entry) in types {
            let kind = match entry[0].as_str() {
                Some("P") => Kind::Primitive,
                Some("C") => Kind::Complex,
                Some("R") => Kind::Resource,
                other => panic!("fhir-model.json: bad kind {other:?} for {name}"),
            };
            let elements = parse_elements(&entry[1], name);
            index.insert(name.clone(), out.len());
            out.push(TypeDef { name: name.clone(), kind, is_abstract: entry.get(2).is_some(), elements });
        }
        Model { types: out, index }
    }

    fn get(&self, name: &str) -> Option<&TypeDef> {
        self.index.get(name).map(|&i| &self.types[i])
    }
}

fn parse_elements(list: &Value, parent: &str) -> Vec<ElementDef> {
    let items = list.as_array().expect("fhir-model.json: element list is an array");
    items.iter().map(|item| parse_element(item, parent)).collect()
}

fn parse_element(item: &Value, parent: &str) -> ElementDef {
    let raw_name = item[0].as_str().expect("fhir-model.json: element name");
    let flags = item[1].as_u64().expect("fhir-model.json: element flags");
    let types = item[2].as_str().expect("fhir-model.json: element types");
    let path = format!("{parent}.{raw_name}");
    let (content_ref, types) = match types.strip_prefix('#') {
        Some(target) => (Some(target.to_string()), Vec::new()),
        None => (None, types.split('|').map(str::to_string).collect()),
    };
    let children = match item.get(3) {
        Some(list) => parse_elements(list, &path),
        None => Vec::new(),
    };
    let name = raw_name.strip_suffix("[x]");
    ElementDef {
        name: name.unwrap_or(raw_name).to_string(),
        choice: name.is_some(),
        path,
        min: u32::try_from(flags >> 4).expect("fhir-model.json: min fits u32"),
        repeats: flags & 1 != 0,
        xml_attr: flags & 2 != 0,
        xhtml: flags & 4 != 0,
        summary: flags & 8 != 0,
        types,
        content_ref,
        children,
    }
}

/// Forces the model to load (e.g. at server start, so the first request does
/// not pay for it).
pub fn init() {
    LazyLock::force(&MODEL);
}

/// Looks a type (resource, data type or primitive) up by name.
pub fn type_def(name: &str) -> Option<&'static TypeDef> {
    MODEL.get(name)
}

/// True for concrete resource types (not `Resource`/`DomainResource`).
pub fn is_resource_type(name: &str) -> bool {
    type_def(name).is_some_and(|t| t.kind == Kind::Resource && !t.is_abstract)
}

/// All concrete resource type names, alphabetically.
pub fn resource_types() -> impl Iterator<Item = &'static str> {
    MODEL.types.iter().filter(|t| t.kind == Kind::Resource && !t.is_abstract).map(|t| t.name.as_str())
}

/// True if `code` names a primitive type (`string`, `decimal`, `xhtml`, ...).
pub fn is_primitive_type(code: &str) -> bool {
    type_def(code).is_some_and(|t| t.kind == Kind::Primitive)
}

/// Looks up an element by type and dotted path of JSON property names,
/// descending through backbone elements, data types and content references:
/// `element("Observation", "valueQuantity.unit")`. The path may also start
/// with the type name (`Patient.contact.name`).
pub fn element(type_name: &str, path: &str) -> Option<ElementInfo> {
    let rel = path.strip_prefix(type_name).and_then(|p| p.strip_prefix('.')).unwrap_or(path);
    let mut ctx = Context::of_type(type_name)?;
    let mut segments = rel.split('.').peekable();
    while let Some(seg) = segments.next() {
        let info = ctx.child(seg)?;
        if segments.peek().is_none() {
            return Some(info);
        }
        ctx = info.descend()?;
    }
    None
}

/// The context for the children of the element at `path` (or of the type
/// itself when `path` is empty or the type name): `context("Patient",
/// "contact")` holds `Patient.contact.*`, `context("Patient", "name")` the
/// HumanName elements.
pub fn context(type_name: &str, path: &str) -> Option<Context> {
    if path.is_empty() || path == type_name {
        return Context::of_type(type_name);
    }
    element(type_name, path)?.descend()
}

/// A place in the model whose child elements can be looked up: a type's
/// root, or a backbone element inside a type.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    owner: &'static TypeDef,
    path: &'static str,
    children: &'static [ElementDef],
}

impl Context {
    /// The root of a type.
    pub fn of_type(name: &str) -> Option<Context> {
        let owner = type_def(name)?;
        Some(Context { owner, path: owner.name.as_str(), children: &owner.elements })
    }

    /// The type this context belongs to.
    pub fn type_def(&self) -> &'static TypeDef {
        self.owner
    }

    pub fn type_name(&self) -> &'static str {
        &self.owner.name
    }

    /// Model path of this context, e.g. `Questionnaire.item`.
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// The child elements in XML order.
    pub fn elements(&self) -> &'static [ElementDef] {
        self.children
    }

    /// Looks up a child by its JSON property name (choice properties such
    /// as `valueQuantity` resolve to their type; `value[x]` finds the choice
    /// with no type chosen). `_x` is not stripped.
    pub fn child(&self, prop: &str) -> Option<ElementInfo> {
        if let Some(base) = prop.strip_suffix("[x]") {
            let def = self.children.iter().find(|d| d.choice && d.name == base)?;
            return Some(self.info(def, None));
        }
        let mut choice = None;
        for def in self.children {
            if !def.choice {
                if def.name == prop {
                    return Some(self.info(def, single_type(def)));
                }
            } else if choice.is_none()
                && let Some(t) = def.choice_type(prop)
            {
                choice = Some(self.info(def, Some(t)));
            }
        }
        choice
    }

    /// Info for one of this context's element definitions with a chosen type.
    pub fn info(&self, def: &'static ElementDef, type_code: Option<&'static str>) -> ElementInfo {
        ElementInfo { def, owner: self.owner, type_code }
    }
}

fn single_type(def: &ElementDef) -> Option<&str> {
    match def.types.as_slice() {
        [t] => Some(t.as_str()),
        _ => None,
    }
}

/// An element definition together with the concrete type it has in hand.
#[derive(Clone, Copy, Debug)]
pub struct ElementInfo {
    pub def: &'static ElementDef,
    owner: &'static TypeDef,
    type_code: Option<&'static str>,
}

impl ElementInfo {
    pub fn is_array(&self) -> bool {
        self.def.repeats
    }

    pub fn is_choice(&self) -> bool {
        self.def.choice
    }

    pub fn min(&self) -> u32 {
        self.def.min
    }

    /// The resolved type code (`Quantity` for `valueQuantity`); `None` for an
    /// unresolved choice or a contentReference.
    pub fn type_code(&self) -> Option<&'static str> {
        self.type_code
    }

    /// All allowed type codes.
    pub fn types(&self) -> &'static [String] {
        &self.def.types
    }

    /// The JSON property name with the resolved choice type.
    pub fn json_name(&self) -> String {
        self.def.json_name(self.type_code.unwrap_or(""))
    }

    pub fn is_primitive(&self) -> bool {
        self.type_code.is_some_and(is_primitive_type)
    }

    /// True for elements that hold a whole resource (`contained`,
    /// `Bundle.entry.resource`, ...).
    pub fn is_resource(&self) -> bool {
        self.type_code == Some("Resource")
    }

    pub fn is_xml_attr(&self) -> bool {
        self.def.xml_attr
    }

    pub fn is_xhtml(&self) -> bool {
        self.def.xhtml
    }

    /// The context holding this element's children: its own nested
    /// definition for backbone elements, the target of a contentReference,
    /// or the definition of its (resolved) data type. `None` for resources
    /// (their type comes from the instance) and unresolved choices.
    pub fn descend(&self) -> Option<Context> {
        if let Some(target) = &self.def.content_ref {
            return find_in_type(self.owner, target);
        }
        if !self.def.children.is_empty() {
            return Some(Context { owner: self.owner, path: &self.def.path, children: &self.def.children });
        }
        match self.type_code? {
            "Resource" => None,
            code => Context::of_type(code),
        }
    }
}

/// Resolves a contentReference path such as `Questionnaire.item.item`
/// inside its own type.
fn find_in_type(owner: &'static TypeDef, path: &str) -> Option<Context> {
    let rel = path.strip_prefix(owner.name.as_str())?.strip_prefix('.')?;
    let mut children: &'static [ElementDef] = &owner.elements;
    let mut found: Option<&'static ElementDef> = None;
    for seg in rel.split('.') {
        let def = children.iter().find(|d| d.name == seg)?;
        children = &def.children;
        found = Some(def);
    }
    let def = found?;
    Some(Context { owner, path: &def.path, children: &def.children })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn loads_quickly() {
        let start = Instant::now();
        let model = Model::parse(MODEL_JSON);
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        println!("model: {} types, parsed in {ms:.2} ms", model.types.len());
        assert!(model.types.len() > 200);
    }

    #[test]
    fn resource_type_list() {
        assert!(is_resource_type("Patient"));
        assert!(is_resource_type("Bundle"));
        assert!(!is_resource_type("DomainResource"));
        assert!(!is_resource_type("HumanName"));
        assert!(!is_resource_type("patient"));
        assert_eq!(resource_types().count(), 146);
    }

    #[test]
    fn choice_and_nested_lookup() {
        let info = element("Observation", "valueQuantity").unwrap();
        assert_eq!(info.type_code(), Some("Quantity"));
        assert!(!info.is_primitive());
        assert_eq!(info.json_name(), "valueQuantity");
        let unit = element("Observation", "valueQuantity.unit").unwrap();
        assert_eq!(unit.type_code(), Some("string"));
        assert!(unit.is_primitive());
        let b = element("Patient", "Patient.deceasedBoolean").unwrap();
        assert_eq!(b.type_code(), Some("boolean"));
        assert!(element("Patient", "deceasedQuantity").is_none());
        assert!(element("Patient", "deceased").is_none());
        let any = element("Patient", "deceased[x]").unwrap();
        assert_eq!((any.type_code(), any.types().len()), (None, 2));
        assert!(any.descend().is_none());
        let given = element("Patient", "contact.name.given").unwrap();
        assert!(given.is_array());
        let other = element("Patient", "link.other").unwrap();
        assert_eq!(other.min(), 1);
        assert!(!other.is_array());
    }

    #[test]
    fn attributes_and_xhtml() {
        assert!(element("Patient", "contact.id").unwrap().is_xml_attr());
        assert!(!element("Patient", "id").unwrap().is_xml_attr());
        assert!(element("Extension", "url").unwrap().is_xml_attr());
        assert!(element("Patient", "text.div").unwrap().is_xhtml());
        assert!(element("Patient", "contained").unwrap().is_resource());
        assert!(element("Bundle", "entry.resource").unwrap().descend().is_none());
    }

    #[test]
    fn content_reference_descends_to_target() {
        let item = element("Questionnaire", "item.item").unwrap();
        assert!(item.is_array());
        let ctx = item.descend().unwrap();
        assert_eq!(ctx.path(), "Questionnaire.item");
        assert!(ctx.child("linkId").is_some());
        let deep = element("Questionnaire", "item.item.item.answerOption.valueCoding.code");
        assert_eq!(deep.unwrap().type_code(), Some("code"));
        assert_eq!(context("Questionnaire", "Questionnaire.item.item").unwrap().path(), "Questionnaire.item");
        assert_eq!(context("Patient", "name").unwrap().path(), "HumanName");
        assert_eq!(context("Patient", "").unwrap().path(), "Patient");
        let steps = element("ExampleScenario", "process.step.alternative.step.process").unwrap();
        assert_eq!(steps.descend().unwrap().path(), "ExampleScenario.process");
    }

    #[test]
    fn exact_names_win_over_choices() {
        // ElementDefinition has both `fixed[x]`/`pattern[x]` and plain names.
        let ctx = Context::of_type("ElementDefinition").unwrap();
        assert_eq!(ctx.child("fixedString").unwrap().type_code(), Some("string"));
        assert_eq!(ctx.child("min").unwrap().type_code(), Some("unsignedInt"));
        let primitive = Context::of_type("string").unwrap();
        assert!(primitive.child("value").unwrap().is_xml_attr());
    }
}
