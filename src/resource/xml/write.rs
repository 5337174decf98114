//! JSON → XML: elements in StructureDefinition order, primitives as `value` attributes.

use serde_json::Value;

use super::xhtml::*;
use super::*;
use crate::resource::model::{self, Context, ElementDef, ElementInfo};

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
