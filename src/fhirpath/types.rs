//! Type tests (`is`/`as`/`ofType`), the System-value view of FHIR
//! primitives, and equality/equivalence/ordering between items.

use std::cmp::Ordering;

use serde_json::Value;

use super::parser::TypeSpec;
use super::temporal::{self, Temporal};
use super::{FhirPathError, Item, eval_err};
use crate::resource::model::{self, Kind};

const SYSTEM_TYPES: [&str; 8] =
    ["Boolean", "Integer", "Decimal", "String", "Date", "DateTime", "Time", "Quantity"];

/// Types that are profiles of Quantity and appear as their own type codes.
const QUANTITY_TYPES: [&str; 7] =
    ["Quantity", "Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity"];

/// Whether FHIR type `ty` is `of` or derives from it. Primitive
/// specialisations (`code` of `string`, `canonical` of `uri`) are kept
/// distinct on purpose: search expressions such as `ConceptMap.source as uri`
/// vs `as canonical` use them to pick one alternative.
pub fn is_subtype(ty: &str, of: &str) -> bool {
    if ty == of {
        return true;
    }
    let kind = model::type_def(ty).map(|t| t.kind);
    match of {
        "Resource" => kind == Some(Kind::Resource),
        "DomainResource" => {
            kind == Some(Kind::Resource) && !matches!(ty, "Bundle" | "Binary" | "Parameters" | "Resource")
        }
        "Base" => true,
        "Element" => kind.is_some() && kind != Some(Kind::Resource),
        "Quantity" => QUANTITY_TYPES.contains(&ty),
        _ => false,
    }
}

/// Does `item` have the type `spec` names?
pub fn matches_type(item: &Item, spec: &TypeSpec) -> bool {
    let name = spec.name.as_str();
    let system = match spec.namespace.as_deref() {
        Some("System") => true,
        Some(_) => false,
        None => model::type_def(name).is_none() && SYSTEM_TYPES.contains(&name),
    };
    match item {
        Item::Node(n) if !system => n.ty.is_some_and(|t| is_subtype(t, name)),
        // R4's own search expressions write `value.as(DateTime)` for a FHIR `dateTime`: an
        // unqualified System name also matches the FHIR primitive it corresponds to.
        Item::Node(n) if spec.namespace.is_none() => n.ty.is_some_and(|t| fhir_primitive_of(name) == Some(t)),
        Item::Resolved { ty, .. } if !system => is_subtype(ty, name),
        Item::Node(_) | Item::Resolved { .. } => false,
        other => system && other.type_name() == Some(name),
    }
}

fn fhir_primitive_of(system: &str) -> Option<&'static str> {
    Some(match system {
        "Boolean" => "boolean",
        "String" => "string",
        "Integer" => "integer",
        "Decimal" => "decimal",
        "Date" => "date",
        "DateTime" => "dateTime",
        "Time" => "time",
        _ => return None,
    })
}

/// A FHIR primitive or System value, seen as a System value.
#[derive(Debug, Clone)]
pub enum Prim<'x> {
    Bool(bool),
    Int(i64),
    Dec(f64),
    Str(&'x str),
    Temporal(Temporal),
    Quantity(f64, &'x str),
}

fn is_string_like(ty: &str) -> bool {
    matches!(
        ty,
        "string"
            | "code"
            | "id"
            | "markdown"
            | "uri"
            | "url"
            | "canonical"
            | "oid"
            | "uuid"
            | "base64Binary"
            | "xhtml"
    )
}

/// The System value of an item; `None` for complex nodes.
pub fn prim<'x>(item: &'x Item) -> Option<Prim<'x>> {
    Some(match item {
        Item::Bool(b) => Prim::Bool(*b),
        Item::Int(i) => Prim::Int(*i),
        Item::Dec(d) => Prim::Dec(*d),
        Item::Str(s) => Prim::Str(s),
        Item::Date(s) | Item::DateTime(s) => Prim::Temporal(temporal::parse_datetime(s)?),
        Item::Time(s) => Prim::Temporal(temporal::parse_time(s)?),
        Item::Quantity { value, unit } => Prim::Quantity(*value, unit),
        Item::Resolved { .. } => return None,
        Item::Node(n) => return node_prim(n.value, n.ty),
    })
}

fn node_prim<'x>(v: &'x Value, ty: Option<&str>) -> Option<Prim<'x>> {
    Some(match (ty, v) {
        (Some("date" | "dateTime" | "instant"), Value::String(s)) => {
            Prim::Temporal(temporal::parse_datetime(s)?)
        }
        (Some("time"), Value::String(s)) => Prim::Temporal(temporal::parse_time(s)?),
        (Some(t), Value::Object(o)) if QUANTITY_TYPES.contains(&t) => {
            let unit = o.get("code").or_else(|| o.get("unit")).and_then(Value::as_str).unwrap_or("");
            Prim::Quantity(o.get("value")?.as_f64()?, unit)
        }
        (Some(t), Value::String(s)) if is_string_like(t) => Prim::Str(s),
        (_, Value::Bool(b)) => Prim::Bool(*b),
        (Some("decimal"), Value::Number(n)) => Prim::Dec(n.as_f64()?),
        (_, Value::Number(n)) => match n.as_i64() {
            Some(i) => Prim::Int(i),
            None => Prim::Dec(n.as_f64()?),
        },
        (_, Value::String(s)) => Prim::Str(s),
        _ => return None,
    })
}

/// Calendar words and their UCUM codes compare equal (`1 day` = `1 'd'`);
/// the spec keeps years and months apart because they are not exact, but
/// for comparisons inside one calendar that distinction does not matter.
fn unit_key(unit: &str) -> &str {
    match unit.trim_end_matches('s') {
        "year" => "a",
        "month" => "mo",
        "week" => "wk",
        "day" => "d",
        "hour" => "h",
        "minute" => "min",
        "second" => "s",
        "millisecond" => "ms",
        _ => unit,
    }
}

/// Ordering of two System values; `Ok(None)` = unknown (precision),
/// `Err` = not comparable.
pub fn compare_prims(a: &Prim, b: &Prim) -> Result<Option<Ordering>, FhirPathError> {
    Ok(match (a, b) {
        (Prim::Int(x), Prim::Int(y)) => Some(x.cmp(y)),
        (Prim::Int(_) | Prim::Dec(_), Prim::Int(_) | Prim::Dec(_)) => num(a).partial_cmp(&num(b)),
        (Prim::Str(x), Prim::Str(y)) => Some(x.cmp(y)),
        (Prim::Temporal(x), Prim::Temporal(y)) => temporal::compare(x, y),
        (Prim::Temporal(x), Prim::Str(s)) => {
            str_temporal(s, x.is_time).and_then(|y| temporal::compare(x, &y))
        }
        (Prim::Str(s), Prim::Temporal(y)) => {
            str_temporal(s, y.is_time).and_then(|x| temporal::compare(&x, y))
        }
        (Prim::Quantity(x, u), Prim::Quantity(y, v)) if unit_key(u) == unit_key(v) => x.partial_cmp(y),
        (Prim::Quantity(..), Prim::Quantity(..)) => None,
        (Prim::Bool(x), Prim::Bool(y)) => Some(x.cmp(y)),
        _ => return eval_err(format!("cannot compare {a:?} with {b:?}")),
    })
}

fn str_temporal(s: &str, time: bool) -> Option<Temporal> {
    if time { temporal::parse_time(s) } else { temporal::parse_datetime(s) }
}

fn num(p: &Prim) -> f64 {
    match p {
        Prim::Int(i) => *i as f64,
        Prim::Dec(d) => *d,
        _ => f64::NAN,
    }
}

/// `=` between two items: `None` when the answer is unknown.
pub fn equals(a: &Item, b: &Item) -> Option<bool> {
    if let (Item::Node(x), Item::Node(y)) = (a, b)
        && std::ptr::eq(x.value, y.value)
    {
        return Some(true);
    }
    match (prim(a), prim(b)) {
        (Some(x), Some(y)) => match compare_prims(&x, &y) {
            Ok(Some(ord)) => Some(ord == Ordering::Equal),
            Ok(None) if matches!((&x, &y), (Prim::Quantity(..), _)) => Some(false),
            Ok(None) => None,
            Err(_) => Some(false),
        },
        (None, None) => match (a, b) {
            (Item::Node(x), Item::Node(y)) => Some(x.value == y.value),
            (Item::Resolved { reference: r1, .. }, Item::Resolved { reference: r2, .. }) => Some(r1 == r2),
            _ => Some(false),
        },
        _ => Some(false),
    }
}

/// `~`: case/whitespace-insensitive strings, decimals at the lesser
/// precision, unknown temporal comparisons count as "not equivalent".
pub fn equivalent(a: &Item, b: &Item) -> bool {
    match (prim(a), prim(b)) {
        (Some(Prim::Str(x)), Some(Prim::Str(y))) => normalize(x) == normalize(y),
        (Some(x @ (Prim::Dec(_) | Prim::Int(_))), Some(y @ (Prim::Dec(_) | Prim::Int(_)))) => {
            let (x, y) = (num(&x), num(&y));
            (x - y).abs() <= 0.5 * 10f64.powi(-(decimals(x).min(decimals(y)) as i32))
        }
        _ => equals(a, b) == Some(true),
    }
}

fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn decimals(x: f64) -> usize {
    let text = x.to_string();
    text.split_once('.').map_or(0, |(_, f)| f.len())
}

/// Order of two single items for `<`, `>`, `<=`, `>=`.
pub fn compare(a: &Item, b: &Item) -> Result<Option<Ordering>, FhirPathError> {
    match (prim(a), prim(b)) {
        (Some(x), Some(y)) => compare_prims(&x, &y),
        _ => eval_err("cannot order complex values"),
    }
}

/// Adds each item not already present (by `=`), keeping first occurrences.
pub fn push_distinct<'a>(out: &mut Vec<Item<'a>>, items: impl IntoIterator<Item = Item<'a>>) {
    for item in items {
        if !out.iter().any(|o| equals(o, &item) == Some(true)) {
            out.push(item);
        }
    }
}
