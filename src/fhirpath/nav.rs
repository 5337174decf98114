//! Model-aware navigation over JSON (children, choice elements, `_x`
//! primitive extensions, contained resources) and `resolve()`.

use serde_json::{Map, Value};

use super::eval::Evaluator;
use super::{Item, Node};
use crate::resource::model::{self, Context, ElementInfo, Kind};

/// Stands in for the value of a primitive that only has an `_x` part.
static NULL: Value = Value::Null;

/// A resource as an item typed by its `resourceType`.
pub fn resource_item(value: &Value) -> Item<'_> {
    let def = value
        .get("resourceType")
        .and_then(Value::as_str)
        .and_then(model::type_def)
        .filter(|t| t.kind == Kind::Resource);
    let ty = def.map(|t| t.name.as_str());
    let ctx = ty.and_then(Context::of_type);
    Item::Node(Node { value, ty, ext: None, ctx })
}

/// Appends the children called `name` of `item` to `out`.
pub fn child<'a>(item: &Item<'a>, name: &str, out: &mut Vec<Item<'a>>) {
    match item {
        Item::Node(n) => node_child(n, name, out),
        Item::Resolved { id, ty, .. } => match name {
            "id" => out.extend(id.clone().map(Item::Str)),
            "resourceType" => out.push(Item::Str(ty.to_string())),
            _ => {}
        },
        _ => {}
    }
}

fn node_child<'a>(n: &Node<'a>, name: &str, out: &mut Vec<Item<'a>>) {
    let Value::Object(obj) = n.value else {
        // Primitives keep their id/extension in the `_x` sibling.
        if let Some(ext) = n.ext {
            let ctx = Context::of_type("Element");
            node_child(&Node { value: ext, ty: Some("Element"), ext: None, ctx }, name, out);
        }
        return;
    };
    let Some(ctx) = n.ctx else {
        untyped_child(obj, name, out);
        return;
    };
    if let Some(info) = ctx.child(name) {
        push_element(obj, name, info, out);
        return;
    }
    if name == "resourceType" {
        // Not an element in the model, but commonly navigated to.
        if let Some(v) = obj.get(name).filter(|v| v.is_string()) {
            out.push(Item::Node(Node { value: v, ty: Some("code"), ext: None, ctx: None }));
        }
        return;
    }
    // A choice element: the property present names the type.
    let Some(def) = ctx.elements().iter().find(|d| d.choice && d.name == name) else { return };
    for key in obj.keys() {
        let prop = key.strip_prefix('_').unwrap_or(key);
        if key.starts_with('_') && obj.contains_key(prop) {
            continue;
        }
        if let Some(t) = def.choice_type(prop) {
            push_element(obj, prop, ctx.info(def, Some(t)), out);
        }
    }
}

fn untyped_child<'a>(obj: &'a Map<String, Value>, name: &str, out: &mut Vec<Item<'a>>) {
    let push = |v: &'a Value, out: &mut Vec<Item<'a>>| {
        if v.get("resourceType").is_some() {
            out.push(resource_item(v));
        } else if !v.is_null() {
            out.push(Item::Node(Node { value: v, ty: None, ext: None, ctx: None }));
        }
    };
    match obj.get(name) {
        Some(Value::Array(list)) => list.iter().for_each(|v| push(v, out)),
        Some(v) => push(v, out),
        None => {}
    }
}

/// Pushes the value(s) of property `prop` (plus `_prop` for primitives).
fn push_element<'a>(obj: &'a Map<String, Value>, prop: &str, info: ElementInfo, out: &mut Vec<Item<'a>>) {
    let value = obj.get(prop);
    let ext = if info.is_primitive() { obj.get(&format!("_{prop}")) } else { None };
    if value.is_none() && ext.is_none() {
        return;
    }
    // contentReference elements (`Questionnaire.item.item`) have no type
    // code of their own; their targets are backbone elements.
    let ty = info.type_code().or(info.def.content_ref.as_ref().map(|_| "BackboneElement"));
    let ctx = info.descend();
    let make = |v: &'a Value, ext: Option<&'a Value>| {
        if info.is_resource() {
            return resource_item(v);
        }
        Item::Node(Node { value: v, ty, ext, ctx })
    };
    match (value, ext) {
        (Some(Value::Array(list)), _) => {
            let exts = ext.and_then(Value::as_array);
            for (i, v) in list.iter().enumerate() {
                let e = exts.and_then(|x| x.get(i)).filter(|e| !e.is_null());
                if !v.is_null() || e.is_some() {
                    out.push(make(v, e));
                }
            }
        }
        (None, Some(Value::Array(exts))) => {
            out.extend(exts.iter().filter(|e| !e.is_null()).map(|e| make(&NULL, Some(e))));
        }
        (Some(v), e) => {
            if !v.is_null() || e.is_some() {
                out.push(make(v, e));
            }
        }
        (None, e) => out.push(make(&NULL, e)),
    }
}

/// All child items of `item`, in model order when the type is known.
pub fn children<'a>(item: &Item<'a>, out: &mut Vec<Item<'a>>) {
    let Item::Node(n) = item else { return };
    let Value::Object(obj) = n.value else {
        if let Some(ext) = n.ext {
            let ctx = Context::of_type("Element");
            children(&Item::Node(Node { value: ext, ty: Some("Element"), ext: None, ctx }), out);
        }
        return;
    };
    match n.ctx {
        Some(ctx) => {
            for def in ctx.elements() {
                node_child(n, &def.name, out);
            }
        }
        None => {
            for (key, _) in obj.iter().filter(|(k, _)| !k.starts_with('_') && *k != "resourceType") {
                untyped_child(obj, key, out);
            }
        }
    }
}

impl<'a> Evaluator<'a, '_, '_> {
    /// See the module documentation of `fhirpath` for the resolution order.
    pub fn resolve(&self, item: &Item<'a>) -> Option<Item<'a>> {
        let (node, text): (&'a Value, Option<&str>) = match item {
            Item::Node(n) => match n.value {
                Value::String(s) => (n.value, Some(s.as_str())),
                Value::Object(o) => (n.value, o.get("reference").and_then(Value::as_str)),
                _ => return None,
            },
            Item::Str(s) => (&NULL, Some(s.as_str())),
            _ => return None,
        };
        let Some(text) = text else {
            // A logical reference (identifier only) still knows its type.
            let ty = node.get("type").and_then(Value::as_str).and_then(resource_type)?;
            return Some(Item::Resolved { reference: node, ty, id: None });
        };
        if let Some(id) = text.strip_prefix('#') {
            return self.contained(id);
        }
        if let Some(found) = self.env.resolver.and_then(|r| r(text)) {
            return Some(resource_item(found));
        }
        if let Some(found) = self.in_bundle(text) {
            return Some(found);
        }
        let (ty, id) = split_reference(text)?;
        Some(Item::Resolved { reference: node, ty, id: Some(id.to_string()) })
    }

    fn contained(&self, id: &str) -> Option<Item<'a>> {
        if id.is_empty() {
            return Some(resource_item(self.root));
        }
        let list = self.root.get("contained")?.as_array()?;
        list.iter().find(|r| r.get("id").and_then(Value::as_str) == Some(id)).map(resource_item)
    }

    fn in_bundle(&self, text: &str) -> Option<Item<'a>> {
        if self.root.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return None;
        }
        let entries = self.root.get("entry")?.as_array()?;
        let found = entries.iter().find(|e| {
            if e.get("fullUrl").and_then(Value::as_str) == Some(text) {
                return true;
            }
            let res = e.get("resource");
            let rt = res.and_then(|r| r.get("resourceType")).and_then(Value::as_str);
            let id = res.and_then(|r| r.get("id")).and_then(Value::as_str);
            matches!((rt, id), (Some(rt), Some(id)) if text.strip_prefix(rt).and_then(|t| t.strip_prefix('/')) == Some(id))
        })?;
        found.get("resource").map(resource_item)
    }
}

fn resource_type(name: &str) -> Option<&'static str> {
    model::type_def(name).filter(|t| t.kind == Kind::Resource && !t.is_abstract).map(|t| t.name.as_str())
}

/// `Patient/1`, `http://x/fhir/Patient/1/_history/2` → (`Patient`, `1`).
fn split_reference(text: &str) -> Option<(&'static str, &str)> {
    let mut segs: Vec<&str> = text.split('/').collect();
    if segs.len() >= 4 && segs[segs.len() - 2] == "_history" {
        segs.truncate(segs.len() - 2);
    }
    let [.., ty, id] = segs.as_slice() else { return None };
    if id.is_empty() {
        return None;
    }
    Some((resource_type(ty)?, id))
}
