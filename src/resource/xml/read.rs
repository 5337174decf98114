//! XML → JSON: the model says which elements repeat and which primitives are numbers.

use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use serde_json::{Number, Value};

use super::xhtml::*;
use super::*;
use crate::resource::model::{self, Context, ElementDef, ElementInfo};

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
