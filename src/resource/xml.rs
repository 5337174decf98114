//! FHIR XML <-> JSON conversion (https://hl7.org/fhir/R4/xml.html and
//! json.html), driven by the element model: XML carries no cardinality or
//! types and JSON carries no element order, so both directions need it.
//!
//! Limitation: decimals go through `serde_json::Number` (no
//! `arbitrary_precision`), so their lexical form survives only as far as an
//! f64 does: `1.50` comes back as `1.5`, and digits beyond f64 precision are
//! rounded.

use quick_xml::NsReader;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::ResolveResult;
use serde_json::{Map, Number, Value};

use super::model::{self, Context, ElementDef, ElementInfo};

pub const FHIR_NS: &str = "http://hl7.org/fhir";
pub const XHTML_NS: &str = "http://www.w3.org/1999/xhtml";
/// Real resources nest far less deeply; the limit bounds recursion and
/// memory on hostile input.
pub const MAX_DEPTH: usize = 64;

/// A document that cannot be converted, with the FHIR path of the offending
/// element when known (e.g. `Patient.name[0].given[1]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FormatError {
    pub message: String,
    pub path: Option<String>,
}

impl FormatError {
    fn at(message: impl Into<String>, path: &str) -> Self {
        FormatError { message: message.into(), path: (!path.is_empty()).then(|| path.to_string()) }
    }
}

type Result<T> = std::result::Result<T, FormatError>;
type Object = Map<String, Value>;

// ---------------------------------------------------------------- JSON -> XML

/// Serializes a JSON resource as FHIR XML (with an XML declaration).
pub fn json_to_xml(resource: &Value, pretty: bool) -> Result<String> {
    let mut w = XmlWriter { out: String::with_capacity(4096), pretty, path: String::new() };
    w.out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    w.resource(resource, 0)?;
    if pretty {
        w.out.push('\n');
    }
    Ok(w.out)
}

/// What the object handed to `XmlWriter::complex` stands for.
#[derive(Clone, Copy)]
enum Body<'a> {
    Resource,
    Element,
    /// The `_x` object of a primitive, with the primitive's lexical value.
    Primitive(Option<&'a str>),
}

struct XmlWriter {
    out: String,
    pretty: bool,
    path: String,
}

impl XmlWriter {
    fn err(&self, message: impl Into<String>) -> FormatError {
        FormatError::at(message, &self.path)
    }

    fn indent(&mut self, depth: usize) {
        if self.pretty {
            self.out.push('\n');
            self.out.extend(std::iter::repeat_n("  ", depth));
        }
    }

    fn resource(&mut self, value: &Value, depth: usize) -> Result<()> {
        let obj = value.as_object().ok_or_else(|| self.err("a resource must be a JSON object"))?;
        let rt = obj
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or_else(|| self.err("missing resourceType"))?;
        let ctx = Context::of_type(rt)
            .filter(|_| model::is_resource_type(rt))
            .ok_or_else(|| self.err(format!("unknown resource type '{rt}'")))?;
        if depth == 0 {
            self.path.push_str(rt);
        }
        self.complex(rt, ctx, obj, depth, Body::Resource)
    }

    fn complex(&mut self, tag: &str, ctx: Context, obj: &Object, depth: usize, body: Body) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        self.indent(depth);
        self.out.push('<');
        self.out.push_str(tag);
        if depth == 0 {
            push_attr(&mut self.out, "xmlns", FHIR_NS).map_err(|m| self.err(m))?;
        }
        let mut used = usize::from(matches!(body, Body::Resource));
        for def in ctx.elements().iter().filter(|d| d.xml_attr) {
            let text = match body {
                Body::Primitive(value) if def.name == "value" => value.map(str::to_owned),
                _ => match obj.get(&def.name) {
                    Some(v) => {
                        used += 1;
                        Some(self.scalar(v, def.types.first().map_or("string", String::as_str))?)
                    }
                    None => None,
                },
            };
            if let Some(text) = text {
                push_attr(&mut self.out, &def.name, &text).map_err(|m| self.err(m))?;
            }
        }
        self.out.push('>');
        let mark = self.out.len();
        for def in ctx.elements().iter().filter(|d| !d.xml_attr) {
            used += self.property(ctx, def, obj, depth + 1)?;
        }
        if used != obj.len() {
            return Err(self.unknown_key(ctx, obj, body));
        }
        if self.out.len() == mark {
            self.out.truncate(mark - 1);
            self.out.push_str("/>");
        } else {
            self.indent(depth);
            self.out.push_str("</");
            self.out.push_str(tag);
            self.out.push('>');
        }
        Ok(())
    }

    /// Writes one element definition's content; returns how many JSON keys
    /// it consumed so that leftovers can be reported as unknown.
    fn property(
        &mut self,
        ctx: Context,
        def: &'static ElementDef,
        obj: &Object,
        depth: usize,
    ) -> Result<usize> {
        if !def.choice {
            let info = ctx.info(def, def.types.first().map(String::as_str));
            return self.emit(info, &def.name, obj, depth);
        }
        let name = def.name.as_str();
        if !obj.keys().any(|k| k.trim_start_matches('_').starts_with(name)) {
            return Ok(0);
        }
        let (mut used, mut types) = (0, 0);
        for code in &def.types {
            let key = def.json_name(code);
            let n = self.emit(ctx.info(def, Some(code)), &key, obj, depth)?;
            used += n;
            types += usize::from(n > 0);
        }
        if types > 1 {
            return Err(self.err(format!("more than one type given for {name}[x]")));
        }
        Ok(used)
    }

    fn emit(&mut self, info: ElementInfo, key: &str, obj: &Object, depth: usize) -> Result<usize> {
        let value = obj.get(key);
        let ext = match info.is_primitive() && !info.is_xhtml() {
            true => obj.get(&format!("_{key}")),
            false => None,
        };
        if value.is_none() && ext.is_none() {
            return Ok(0);
        }
        let mark = self.path.len();
        self.path.push('.');
        self.path.push_str(key);
        let result = self.emit_values(info, key, value, ext, depth);
        self.path.truncate(mark);
        result.map(|()| usize::from(value.is_some()) + usize::from(ext.is_some()))
    }

    fn emit_values(
        &mut self,
        info: ElementInfo,
        key: &str,
        value: Option<&Value>,
        ext: Option<&Value>,
        depth: usize,
    ) -> Result<()> {
        if info.is_xhtml() {
            return self.xhtml(value.unwrap_or(&Value::Null), depth);
        }
        if !info.is_array() {
            return match info.is_primitive() {
                true => self.primitive(key, info, value, ext, depth),
                false => self.item(key, info, value, depth),
            };
        }
        let values = self.list(value)?;
        let exts = self.list(ext)?;
        if !values.is_empty() && !exts.is_empty() && values.len() != exts.len() {
            return Err(self.err(format!("'{key}' and '_{key}' have different lengths")));
        }
        for i in 0..values.len().max(exts.len()) {
            let mark = self.path.len();
            self.path.push_str(&format!("[{i}]"));
            match info.is_primitive() {
                true => self.primitive(key, info, values.get(i), exts.get(i), depth)?,
                false => self.item(key, info, values.get(i), depth)?,
            }
            self.path.truncate(mark);
        }
        Ok(())
    }

    fn list<'v>(&self, value: Option<&'v Value>) -> Result<&'v [Value]> {
        match value {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(self.err("expected a JSON array")),
        }
    }

    fn primitive(
        &mut self,
        tag: &str,
        info: ElementInfo,
        value: Option<&Value>,
        ext: Option<&Value>,
        depth: usize,
    ) -> Result<()> {
        let code = info.type_code().unwrap_or("string");
        let text = match value.filter(|v| !v.is_null()) {
            Some(v) => Some(self.scalar(v, code)?),
            None => None,
        };
        let empty = Object::new();
        let obj = match ext.filter(|v| !v.is_null()) {
            Some(Value::Object(m)) => m,
            Some(_) => return Err(self.err(format!("'_{tag}' must be a JSON object"))),
            None => &empty,
        };
        if text.is_none() && obj.is_empty() {
            return Err(self.err("a primitive needs a value, an id or extensions"));
        }
        let ctx = Context::of_type(code).ok_or_else(|| self.err(format!("unknown type '{code}'")))?;
        self.complex(tag, ctx, obj, depth, Body::Primitive(text.as_deref()))
    }

    fn item(&mut self, tag: &str, info: ElementInfo, value: Option<&Value>, depth: usize) -> Result<()> {
        let value = value.unwrap_or(&Value::Null);
        let obj = value.as_object().ok_or_else(|| self.err("expected a JSON object"))?;
        if !info.is_resource() {
            let ctx = info.descend().ok_or_else(|| self.err("element type cannot be determined"))?;
            return self.complex(tag, ctx, obj, depth, Body::Element);
        }
        self.indent(depth);
        self.out.push_str(&format!("<{tag}>"));
        self.resource(value, depth + 1)?;
        self.indent(depth);
        self.out.push_str(&format!("</{tag}>"));
        Ok(())
    }

    /// The XML lexical form of a JSON primitive, checking that the JSON type
    /// fits the FHIR type (so the XML reads back as the same JSON).
    fn scalar(&self, v: &Value, code: &str) -> Result<String> {
        match (code, v) {
            ("boolean", Value::Bool(b)) => Ok(b.to_string()),
            ("integer" | "positiveInt" | "unsignedInt", Value::Number(n)) if !n.is_f64() => Ok(n.to_string()),
            ("decimal", Value::Number(n)) => Ok(n.to_string()),
            ("boolean" | "integer" | "positiveInt" | "unsignedInt" | "decimal", _) => {
                Err(self.err(format!("invalid value {v} for a {code}")))
            }
            (_, Value::String(s)) => Ok(s.clone()),
            _ => Err(self.err(format!("invalid value {v} for a {code} (expected a string)"))),
        }
    }

    fn xhtml(&mut self, value: &Value, depth: usize) -> Result<()> {
        let div = value.as_str().ok_or_else(|| self.err("the narrative div must be a string"))?.trim();
        let declared = check_xhtml(div).map_err(|m| self.err(m))?;
        self.indent(depth);
        match declared {
            true => self.out.push_str(div),
            false => self.out.push_str(&with_xhtml_ns(div)),
        }
        Ok(())
    }

    fn unknown_key(&self, ctx: Context, obj: &Object, body: Body) -> FormatError {
        for key in obj.keys() {
            if matches!(body, Body::Resource) && key == "resourceType" {
                continue;
            }
            let known = match key.strip_prefix('_') {
                Some(base) => {
                    ctx.child(base).is_some_and(|i| i.is_primitive() && !i.is_xml_attr() && !i.is_xhtml())
                }
                None => ctx.child(key).is_some() && !(matches!(body, Body::Primitive(_)) && key == "value"),
            };
            if !known {
                return self.err(format!("unknown property '{key}' in {}", ctx.path()));
            }
        }
        self.err(format!("unexpected properties in {}", ctx.path()))
    }
}

fn push_attr(out: &mut String, name: &str, value: &str) -> std::result::Result<(), String> {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            // Escaped so that attribute-value normalization keeps them.
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            '\t' => out.push_str("&#x9;"),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                return Err(format!("character U+{:04X} cannot be represented in XML", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(())
}

/// Checks that a JSON narrative is one well-formed XHTML `div`; returns
/// whether it declares the XHTML namespace itself.
fn check_xhtml(div: &str) -> std::result::Result<bool, String> {
    let bad = |e: quick_xml::Error| format!("the narrative div is not well-formed XHTML: {e}");
    let mut reader = quick_xml::Reader::from_str(div);
    let (root, empty) = match reader.read_event().map_err(bad)? {
        Event::Start(e) => (e, false),
        Event::Empty(e) => (e, true),
        _ => return Err("the narrative must be an XHTML <div> element".into()),
    };
    let declared = xhtml_root_declared(&root)?;
    if !empty {
        skip_xhtml(|| reader.read_event(), 1)?;
    }
    loop {
        match reader.read_event().map_err(bad)? {
            Event::Eof => return Ok(declared),
            Event::Comment(_) => {}
            Event::Text(t) if t.iter().all(u8::is_ascii_whitespace) => {}
            _ => return Err("unexpected content after the narrative div".into()),
        }
    }
}

/// Validates the root tag of a narrative; true if it carries
/// `xmlns="http://www.w3.org/1999/xhtml"`.
fn xhtml_root_declared(root: &BytesStart) -> std::result::Result<bool, String> {
    if root.name().as_ref() != b"div" {
        return Err("the narrative must be an unprefixed XHTML <div> element".into());
    }
    for attr in root.attributes() {
        let attr = attr.map_err(|e| format!("malformed attribute in the narrative div: {e}"))?;
        if attr.key.as_ref() == b"xmlns" {
            if attr.value.as_ref() != XHTML_NS.as_bytes() {
                return Err(format!("the narrative div must be in the {XHTML_NS} namespace"));
            }
            return Ok(true);
        }
    }
    Ok(false)
}

fn with_xhtml_ns(div: &str) -> String {
    let rest = div.strip_prefix("<div").unwrap_or(div);
    format!("<div xmlns=\"{XHTML_NS}\"{rest}")
}

/// Consumes an XHTML subtree whose root start tag has been read, checking
/// nesting depth and entity references (XHTML in FHIR has no DTD, so only
/// the XML built-in entities are defined).
fn skip_xhtml<'i>(
    mut next: impl FnMut() -> quick_xml::Result<Event<'i>>,
    base_depth: usize,
) -> std::result::Result<(), String> {
    let mut depth = 1;
    loop {
        match next().map_err(|e| format!("malformed XHTML: {e}"))? {
            Event::Start(_) => {
                depth += 1;
                if base_depth + depth > MAX_DEPTH {
                    return Err(format!("nesting deeper than {MAX_DEPTH} levels"));
                }
            }
            Event::End(_) => {
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
            }
            Event::GeneralRef(r) => check_entity(&r)?,
            Event::DocType(_) => return Err("DOCTYPE declarations are not allowed".into()),
            Event::Eof => return Err("unexpected end of document inside XHTML".into()),
            _ => {}
        }
    }
}

fn check_entity(r: &BytesRef) -> std::result::Result<(), String> {
    if r.is_char_ref() {
        return r.resolve_char_ref().map(drop).map_err(|e| format!("bad character reference: {e}"));
    }
    let name: &[u8] = r;
    match name {
        b"lt" | b"gt" | b"amp" | b"quot" | b"apos" => Ok(()),
        other => Err(format!("undefined entity &{};", String::from_utf8_lossy(other))),
    }
}

// ---------------------------------------------------------------- XML -> JSON

/// Parses a FHIR XML resource into its FHIR JSON form.
pub fn xml_to_json(xml: &str) -> Result<Value> {
    let root = parse_tree(xml.strip_prefix('\u{feff}').unwrap_or(xml))?;
    let mut path = String::new();
    convert_resource(&root, &mut path).map(Value::Object)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    Fhir,
    Xhtml,
    Other,
}

/// A parsed element; XHTML subtrees are kept as their source text.
struct Node {
    name: String,
    ns: Ns,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
    has_text: bool,
    xhtml: Option<String>,
}

fn parse_tree(xml: &str) -> Result<Node> {
    let mut reader = NsReader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let start = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let (ns, event) = match reader.read_resolved_event() {
            Ok(ok) => ok,
            Err(e) => return Err(malformed(&e, reader.error_position())),
        };
        let ns = match ns {
            ResolveResult::Bound(n) if n.as_ref() == FHIR_NS.as_bytes() => Ns::Fhir,
            ResolveResult::Bound(n) if n.as_ref() == XHTML_NS.as_bytes() => Ns::Xhtml,
            _ => Ns::Other,
        };
        let node = match event {
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                return Err(FormatError::at(
                    format!("content after the root element: <{}>", utf8(e.name().as_ref())?),
                    "",
                ));
            }
            Event::Start(e) if ns == Ns::Xhtml => {
                Some(xhtml_node(&mut reader, xml, start, &e, stack.len(), false)?)
            }
            Event::Empty(e) if ns == Ns::Xhtml => {
                Some(xhtml_node(&mut reader, xml, start, &e, stack.len(), true)?)
            }
            Event::Start(e) => {
                stack.push(element_node(&reader, &e, ns, stack.len())?);
                None
            }
            Event::Empty(e) => Some(element_node(&reader, &e, ns, stack.len())?),
            Event::End(_) => stack.pop(),
            Event::Text(t) if t.iter().all(u8::is_ascii_whitespace) => None,
            Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => match stack.last_mut() {
                Some(top) => {
                    top.has_text = true;
                    None
                }
                None => return Err(FormatError::at("text outside the root element", "")),
            },
            Event::DocType(_) => return Err(FormatError::at("DOCTYPE declarations are not allowed", "")),
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) => None,
            Event::Eof => break,
        };
        if let Some(node) = node {
            match stack.last_mut() {
                Some(parent) => parent.children.push(node),
                None => root = Some(node),
            }
        }
    }
    root.filter(|_| stack.is_empty()).ok_or_else(|| FormatError::at("no complete root element", ""))
}

fn malformed(e: &quick_xml::Error, pos: u64) -> FormatError {
    FormatError::at(format!("malformed XML at byte {pos}: {e}"), "")
}

fn utf8(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|e| FormatError::at(format!("invalid UTF-8: {e}"), ""))
}

fn element_node(reader: &NsReader<&[u8]>, e: &BytesStart, ns: Ns, depth: usize) -> Result<Node> {
    if depth >= MAX_DEPTH {
        return Err(FormatError::at(format!("nesting deeper than {MAX_DEPTH} levels"), ""));
    }
    let mut attrs = Vec::new();
    for attr in e.attributes() {
        let attr = attr.map_err(|err| FormatError::at(format!("malformed attribute: {err}"), ""))?;
        if attr.key.as_namespace_binding().is_some() {
            continue;
        }
        // Namespaced attributes (xsi:schemaLocation, xml:lang) carry no FHIR content.
        let (attr_ns, local) = reader.resolve_attribute(attr.key);
        if !matches!(attr_ns, ResolveResult::Unbound) {
            continue;
        }
        attrs.push((utf8(local.as_ref())?.to_string(), attr_value(&attr.value)?));
    }
    Ok(Node {
        name: utf8(e.local_name().as_ref())?.to_string(),
        ns,
        attrs,
        children: Vec::new(),
        has_text: false,
        xhtml: None,
    })
}

/// Attribute-value normalization (XML 1.0 §3.3.3): literal whitespace
/// becomes spaces, character references survive.
fn attr_value(raw: &[u8]) -> Result<String> {
    let raw = utf8(raw)?;
    let normalized;
    let raw = match raw.contains(['\t', '\n', '\r']) {
        true => {
            normalized = raw.replace("\r\n", " ").replace(['\t', '\n', '\r'], " ");
            normalized.as_str()
        }
        false => raw,
    };
    quick_xml::escape::unescape(raw)
        .map(|v| v.into_owned())
        .map_err(|e| FormatError::at(format!("bad attribute value: {e}"), ""))
}

fn xhtml_node(
    reader: &mut NsReader<&[u8]>,
    xml: &str,
    start: usize,
    e: &BytesStart,
    depth: usize,
    empty: bool,
) -> Result<Node> {
    let name = utf8(e.local_name().as_ref())?.to_string();
    if e.name().prefix().is_some() {
        return Err(FormatError::at(
            "prefixed XHTML elements are not supported; use xmlns=\"http://www.w3.org/1999/xhtml\"",
            "",
        ));
    }
    let declared = xhtml_root_declared(e).unwrap_or(false);
    if !empty {
        skip_xhtml(|| reader.read_event(), depth).map_err(|m| FormatError::at(m, ""))?;
    }
    let end = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
    let raw = xml.get(start..end).ok_or_else(|| FormatError::at("cannot locate the XHTML source", ""))?;
    Ok(Node {
        name,
        ns: Ns::Xhtml,
        attrs: Vec::new(),
        children: Vec::new(),
        has_text: false,
        xhtml: Some(if declared { raw.to_string() } else { with_xhtml_ns(raw) }),
    })
}

fn convert_resource(node: &Node, path: &mut String) -> Result<Object> {
    if node.ns != Ns::Fhir {
        let msg = format!("<{}> is not in the FHIR namespace ({FHIR_NS})", node.name);
        return Err(FormatError::at(msg, path));
    }
    let ctx = Context::of_type(&node.name)
        .filter(|_| model::is_resource_type(&node.name))
        .ok_or_else(|| FormatError::at(format!("unknown resource type '{}'", node.name), path))?;
    if path.is_empty() {
        path.push_str(&node.name);
    }
    let mut map = Object::new();
    map.insert("resourceType".into(), Value::String(node.name.clone()));
    fill(node, ctx, &mut map, None, path)?;
    Ok(map)
}

/// The values collected for one JSON property (several for arrays).
struct Slot {
    def: &'static ElementDef,
    key: String,
    array: bool,
    values: Vec<Option<Value>>,
    exts: Vec<Option<Value>>,
}

/// Converts the attributes and children of `node` into `map`. For a
/// primitive (`prim` = its type code) the `value` attribute is returned
/// instead, and `map` becomes the `_x` object.
fn fill(
    node: &Node,
    ctx: Context,
    map: &mut Object,
    prim: Option<&str>,
    path: &mut String,
) -> Result<Option<Value>> {
    if node.has_text {
        return Err(FormatError::at(
            "unexpected text content (FHIR XML keeps values in value attributes)",
            path,
        ));
    }
    let mut value = None;
    for (name, text) in &node.attrs {
        let info = ctx
            .child(name)
            .filter(ElementInfo::is_xml_attr)
            .ok_or_else(|| FormatError::at(format!("unknown attribute '{name}'"), path))?;
        match prim {
            Some(code) if name == "value" => value = Some(primitive_json(text, code, path)?),
            _ => {
                let v = primitive_json(text, info.type_code().unwrap_or("string"), path)?;
                map.insert(name.clone(), v);
            }
        }
    }
    let mut slots: Vec<Slot> = Vec::new();
    for child in &node.children {
        convert_child(child, ctx, &mut slots, path)?;
    }
    for slot in slots {
        finish_slot(slot, map);
    }
    Ok(value)
}

fn convert_child(child: &Node, ctx: Context, slots: &mut Vec<Slot>, path: &mut String) -> Result<()> {
    let mark = path.len();
    path.push('.');
    path.push_str(&child.name);
    let Some(info) = ctx.child(&child.name).filter(|i| !i.is_xml_attr()) else {
        let msg = format!("unknown element '{}' in {}", child.name, ctx.path());
        return Err(FormatError::at(msg, path));
    };
    let idx = slots.iter().position(|s| std::ptr::eq(s.def, info.def));
    if let Some(other) = idx.map(|i| &slots[i].key).filter(|k| **k != child.name) {
        return Err(FormatError::at(format!("'{}' conflicts with '{other}'", child.name), path));
    }
    let count = idx.map_or(0, |i| slots[i].values.len());
    if count > 0 && !info.is_array() {
        return Err(FormatError::at(format!("'{}' may occur at most once", child.name), path));
    }
    if info.is_array() {
        path.push_str(&format!("[{count}]"));
    }
    let (value, ext) = convert_value(child, info, path)?;
    path.truncate(mark);
    let slot = match idx {
        Some(i) => &mut slots[i],
        None => {
            slots.push(Slot {
                def: info.def,
                key: child.name.clone(),
                array: info.is_array(),
                values: Vec::new(),
                exts: Vec::new(),
            });
            slots.last_mut().expect("slot was just pushed")
        }
    };
    slot.values.push(value);
    slot.exts.push(ext);
    Ok(())
}

fn convert_value(
    node: &Node,
    info: ElementInfo,
    path: &mut String,
) -> Result<(Option<Value>, Option<Value>)> {
    if info.is_xhtml() {
        return match (&node.xhtml, node.name.as_str()) {
            (Some(raw), "div") => Ok((Some(Value::String(raw.clone())), None)),
            _ => Err(FormatError::at("the narrative must be an XHTML <div> element", path)),
        };
    }
    if node.ns != Ns::Fhir {
        let msg = format!("<{}> is not in the FHIR namespace ({FHIR_NS})", node.name);
        return Err(FormatError::at(msg, path));
    }
    if info.is_primitive() {
        let code = info.type_code().unwrap_or("string");
        let ctx =
            Context::of_type(code).ok_or_else(|| FormatError::at(format!("unknown type '{code}'"), path))?;
        let mut ext = Object::new();
        let value = fill(node, ctx, &mut ext, Some(code), path)?;
        if value.is_none() && ext.is_empty() {
            return Err(FormatError::at(
                "a primitive element needs a value attribute, an id or extensions",
                path,
            ));
        }
        return Ok((value, (!ext.is_empty()).then_some(Value::Object(ext))));
    }
    if info.is_resource() {
        return match node.children.as_slice() {
            [inner] if node.attrs.is_empty() && !node.has_text => {
                Ok((Some(Value::Object(convert_resource(inner, path)?)), None))
            }
            _ => Err(FormatError::at("must contain exactly one resource element", path)),
        };
    }
    let ctx = info.descend().ok_or_else(|| FormatError::at("element type cannot be determined", path))?;
    let mut map = Object::new();
    fill(node, ctx, &mut map, None, path)?;
    Ok((Some(Value::Object(map)), None))
}

fn finish_slot(slot: Slot, map: &mut Object) {
    let ext_key = format!("_{}", slot.key);
    if slot.array {
        if slot.values.iter().any(Option::is_some) {
            let items = slot.values.into_iter().map(|v| v.unwrap_or(Value::Null));
            map.insert(slot.key, Value::Array(items.collect()));
        }
        if slot.exts.iter().any(Option::is_some) {
            let items = slot.exts.into_iter().map(|v| v.unwrap_or(Value::Null));
            map.insert(ext_key, Value::Array(items.collect()));
        }
        return;
    }
    if let Some(v) = slot.values.into_iter().next().flatten() {
        map.insert(slot.key, v);
    }
    if let Some(e) = slot.exts.into_iter().next().flatten() {
        map.insert(ext_key, e);
    }
}

/// The JSON form of a primitive's lexical value: numbers and booleans for
/// the numeric/boolean types, strings otherwise.
fn primitive_json(text: &str, code: &str, path: &str) -> Result<Value> {
    let parsed = match code {
        "boolean" => match text {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        "integer" | "positiveInt" | "unsignedInt" => parse_integer(text, code).map(Value::from),
        "decimal" => parse_decimal(text).map(Value::Number),
        _ => return Ok(Value::String(text.to_string())),
    };
    parsed.ok_or_else(|| FormatError::at(format!("invalid {code} value '{text}'"), path))
}

fn parse_integer(text: &str, code: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits.len() == 1 || !digits.starts_with('0'));
    // FHIR integers are 32-bit.
    let n: i32 = text.parse().ok().filter(|_| canonical)?;
    let in_range = match code {
        "positiveInt" => n >= 1,
        "unsignedInt" => n >= 0,
        _ => true,
    };
    in_range.then_some(i64::from(n))
}

/// FHIR's decimal grammar is JSON's number grammar, so serde_json does the
/// validation; only surrounding whitespace (which it would accept) is ruled
/// out first.
fn parse_decimal(text: &str) -> Option<Number> {
    let plain = text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'));
    if !plain {
        return None;
    }
    serde_json::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patient(body: &str) -> String {
        format!(r#"<Patient xmlns="http://hl7.org/fhir">{body}</Patient>"#)
    }

    fn parse_err(xml: &str) -> FormatError {
        xml_to_json(xml).expect_err("document should be rejected")
    }

    #[test]
    fn official_examples_round_trip() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fhir-r4/examples");
        let Ok(entries) = std::fs::read_dir(dir) else {
            println!("skipping: {dir} not found");
            return;
        };
        let mut count = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().display().to_string();
            let original: Value =
                serde_json::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap();
            for pretty in [false, true] {
                let xml = json_to_xml(&original, pretty).unwrap_or_else(|e| panic!("{name}: {e:?}"));
                let back = xml_to_json(&xml).unwrap_or_else(|e| panic!("{name}: {e:?}\n{xml}"));
                assert!(back == original, "{name} (pretty={pretty}) differs after the round trip");
            }
            count += 1;
        }
        println!("{count} official examples round-tripped");
        assert!(count >= 181);
    }

    const PATIENT_XML: &str = r##"<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<Patient xmlns="http://hl7.org/fhir" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xsi:schemaLocation="http://hl7.org/fhir patient.xsd">
  <id value="p1"/>
  <text>
    <status value="generated"/>
    <div xmlns="http://www.w3.org/1999/xhtml"><p>Peter &amp; <b>James</b></p></div>
  </text>
  <contained>
    <Organization>
      <id value="org"/>
      <name value="Acme"/>
    </Organization>
  </contained>
  <extension url="http://example.org/rank">
    <valueDecimal value="1.50"/>
  </extension>
  <active value="true"/>
  <name id="n1">
    <family value="Chalmers"/>
    <given value="Peter"/>
    <?some-pi ignored?>
    <given id="g2" value="James"/>
    <given>
      <extension url="http://example.org/absent">
        <valueCode value="unknown"/>
      </extension>
    </given>
  </name>
  <birthDate value="1974-12-25">
    <extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">
      <valueDateTime value="1974-12-25T14:35:45-05:00"/>
    </extension>
  </birthDate>
  <multipleBirthInteger value="2"/>
  <managingOrganization>
    <reference value="#org"/>
    <display value="Line 1&#xA;Line 2 &quot;quoted&quot;"/>
  </managingOrganization>
</Patient>"##;

    fn patient_json() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "p1",
            "text": {
                "status": "generated",
                "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Peter &amp; <b>James</b></p></div>"
            },
            "contained": [{"resourceType": "Organization", "id": "org", "name": "Acme"}],
            "extension": [{"url": "http://example.org/rank", "valueDecimal": 1.5}],
            "active": true,
            "name": [{
                "id": "n1",
                "family": "Chalmers",
                "given": ["Peter", "James", null],
                "_given": [null, {"id": "g2"}, {"extension": [
                    {"url": "http://example.org/absent", "valueCode": "unknown"}]}]
            }],
            "birthDate": "1974-12-25",
            "_birthDate": {"extension": [{
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "1974-12-25T14:35:45-05:00"
            }]},
            "multipleBirthInteger": 2,
            "managingOrganization": {"reference": "#org", "display": "Line 1\nLine 2 \"quoted\""}
        })
    }

    #[test]
    fn hand_written_patient() {
        assert_eq!(xml_to_json(PATIENT_XML).unwrap(), patient_json());
        let again = json_to_xml(&patient_json(), true).unwrap();
        assert_eq!(xml_to_json(&again).unwrap(), patient_json());
    }

    #[test]
    fn hand_written_bundle_and_quantity() {
        let xml = r#"<f:Bundle xmlns:f="http://hl7.org/fhir"><f:type value="collection"/>
            <f:entry><f:fullUrl value="urn:uuid:1"/><f:resource><f:Observation>
              <f:status value="final"/><f:code><f:text value="Weight"/></f:code>
              <f:valueQuantity><f:value value="72.0"/><f:unit value="kg"/></f:valueQuantity>
              <f:component><f:code><f:text value="c"/></f:code><f:valueBoolean value="false"/></f:component>
            </f:Observation></f:resource></f:entry></f:Bundle>"#;
        let expected = json!({"resourceType": "Bundle", "type": "collection", "entry": [{
            "fullUrl": "urn:uuid:1",
            "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "Weight"},
                "valueQuantity": {"value": 72.0, "unit": "kg"},
                "component": [{"code": {"text": "c"}, "valueBoolean": false}]}
        }]});
        assert_eq!(xml_to_json(xml).unwrap(), expected);
    }

    #[test]
    fn json_to_xml_orders_and_escapes() {
        let patient = json!({
            "gender": "male",
            "name": [{"given": ["A<B", "C"], "_given": [{"id": "x"}, null], "family": "Tab\there"}],
            "resourceType": "Patient",
            "active": false,
            "multipleBirthBoolean": true,
            "contained": [{"resourceType": "Basic", "code": {"text": "b"}}]
        });
        let expected = concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Patient xmlns="http://hl7.org/fhir">"#,
            r#"<contained><Basic><code><text value="b"/></code></Basic></contained>"#,
            r#"<active value="false"/><name><family value="Tab&#x9;here"/><given id="x" value="A&lt;B"/>"#,
            r#"<given value="C"/></name><gender value="male"/><multipleBirthBoolean value="true"/></Patient>"#
        );
        assert_eq!(json_to_xml(&patient, false).unwrap(), expected);
        let pretty = json_to_xml(&patient, true).unwrap();
        assert!(pretty.contains("\n  <active value=\"false\"/>\n"), "{pretty}");
    }

    #[test]
    fn json_to_xml_rejects_bad_input() {
        let err = json_to_xml(&json!({"resourceType": "Patient", "name": [{"foo": 1}]}), false).unwrap_err();
        assert_eq!(err.path.as_deref(), Some("Patient.name[0]"));
        assert!(err.message.contains("'foo'"), "{}", err.message);
        let err = json_to_xml(&json!({"resourceType": "Patient", "active": "yes"}), false).unwrap_err();
        assert_eq!(err.path.as_deref(), Some("Patient.active"));
        assert!(json_to_xml(&json!({"resourceType": "Nope"}), false).is_err());
        let two = json!({"resourceType": "Patient", "deceasedBoolean": true, "deceasedDateTime": "2020"});
        assert!(json_to_xml(&two, false).unwrap_err().message.contains("deceased[x]"));
        assert!(json_to_xml(&json!({"resourceType": "Patient", "gender": "a\u{1}"}), false).is_err());
        let bad_div =
            json!({"resourceType": "Patient", "text": {"status": "generated", "div": "<div><p></div>"}});
        assert_eq!(json_to_xml(&bad_div, false).unwrap_err().path.as_deref(), Some("Patient.text.div"));
    }

    #[test]
    fn rejects_unknown_elements_and_attributes() {
        let err = parse_err(&patient(r#"<name><given value="a"/><nickname value="b"/></name>"#));
        assert_eq!(err.path.as_deref(), Some("Patient.name[0].nickname"));
        assert!(err.message.contains("unknown element 'nickname'"), "{}", err.message);
        let err = parse_err(&patient(r#"<active value="true" colour="red"/>"#));
        assert_eq!(err.path.as_deref(), Some("Patient.active"));
        assert!(parse_err(r#"<Foo xmlns="http://hl7.org/fhir"/>"#).message.contains("unknown resource type"));
        assert!(
            parse_err(&patient(r#"<gender value="male"/><gender value="female"/>"#))
                .message
                .contains("at most once")
        );
        assert!(parse_err(&patient(r#"<active>true</active>"#)).message.contains("text content"));
        let two = patient(r#"<deceasedBoolean value="true"/><deceasedDateTime value="2020"/>"#);
        assert_eq!(parse_err(&two).path.as_deref(), Some("Patient.deceasedDateTime"));
    }

    #[test]
    fn rejects_bad_namespaces() {
        assert!(parse_err(r#"<Patient><id value="x"/></Patient>"#).message.contains("FHIR namespace"));
        assert!(parse_err(r#"<Patient xmlns="http://hl7.org/fhir/"/>"#).message.contains("FHIR namespace"));
        let err = parse_err(&patient(r#"<id xmlns="urn:x" value="x"/>"#));
        assert_eq!(err.path.as_deref(), Some("Patient.id"));
        let div_in_fhir_ns = &patient(r#"<text><status value="generated"/><div/></text>"#);
        assert!(parse_err(div_in_fhir_ns).message.contains("XHTML"));
    }

    #[test]
    fn rejects_doctype_and_malformed_xml() {
        let xxe = r#"<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY x SYSTEM "file:///etc/passwd">]>
            <Patient xmlns="http://hl7.org/fhir"><id value="&x;"/></Patient>"#;
        assert!(parse_err(xxe).message.contains("DOCTYPE"));
        assert!(parse_err(&patient(r#"<id value="x">"#)).message.contains("malformed"));
        assert!(parse_err("").message.contains("root"));
        assert!(
            parse_err(r#"<Patient xmlns="http://hl7.org/fhir"/><Patient xmlns="http://hl7.org/fhir"/>"#)
                .message
                .contains("after the root")
        );
    }

    #[test]
    fn rejects_bad_primitive_values() {
        let err = parse_err(&patient(r#"<active value="yes"/>"#));
        assert_eq!(err.path.as_deref(), Some("Patient.active"));
        assert!(err.message.contains("boolean"), "{}", err.message);
        let err = parse_err(&patient(r#"<multipleBirthInteger value="01"/>"#));
        assert_eq!(err.path.as_deref(), Some("Patient.multipleBirthInteger"));
        let obs = |v: &str| {
            format!(
                r#"<Observation xmlns="http://hl7.org/fhir"><valueQuantity><value value="{v}"/></valueQuantity></Observation>"#
            )
        };
        assert_eq!(parse_err(&obs("1,5")).path.as_deref(), Some("Observation.valueQuantity.value"));
        assert!(parse_err(&obs(" 1")).message.contains("decimal"));
        assert_eq!(xml_to_json(&obs("-1.5e3")).unwrap()["valueQuantity"]["value"], json!(-1500.0));
        assert!(parse_err(&patient(r#"<gender/>"#)).message.contains("value"));
    }

    #[test]
    fn rejects_deep_nesting() {
        let depth = MAX_DEPTH + 5;
        let mut xml = String::from(r#"<Patient xmlns="http://hl7.org/fhir">"#);
        xml.push_str(&r#"<extension url="u">"#.repeat(depth));
        xml.push_str(&"</extension>".repeat(depth));
        xml.push_str("</Patient>");
        assert!(parse_err(&xml).message.contains("nesting"));
        let mut ext = json!({"url": "u", "valueString": "x"});
        for _ in 0..depth {
            ext = json!({"url": "u", "extension": [ext]});
        }
        let err = json_to_xml(&json!({"resourceType": "Patient", "extension": [ext]}), false).unwrap_err();
        assert!(err.message.contains("nesting"), "{}", err.message);
    }
}
