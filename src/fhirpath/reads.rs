//! Which top-level properties of a resource an expression can read, for expressions that yield
//! nothing without them: indexing skips a search parameter whose properties a resource does not
//! have (most parameters of a type are absent from any one resource), without evaluating it.

use std::collections::BTreeSet;

use super::functions::Func;
use super::parser::{BinOp, Expr, TypeOp};

/// What an expression evaluates to, as far as the resource's top level goes.
enum Shape {
    /// The resource itself, or nothing (`Patient`, `Patient.where(…)`).
    Resource,
    /// Only what is reached through these top-level properties: nothing when all are absent.
    Under(BTreeSet<String>),
    /// Anything: a literal, `exists()`, a comparison… can yield values from nothing.
    Unknown,
}

/// The top-level properties (by element name: `deceased` for `deceasedBoolean`) `expr` reads
/// when it is evaluated on a resource, if it yields nothing when the resource has none of them;
/// `None` when it may yield something regardless.
pub fn top_level_reads(expr: &Expr) -> Option<Vec<String>> {
    match shape(expr) {
        Shape::Under(names) => Some(names.into_iter().collect()),
        Shape::Resource | Shape::Unknown => None,
    }
}

/// What a function call yields, by what it is called on. Filters keep the shape of their input;
/// the other functions here yield nothing for an empty input, whatever their arguments, but on
/// the resource itself may yield anything (`Patient.select(…)`) — except `extension(url)`, which
/// reads `extension`.
fn call_shape(func: Func, base: Shape) -> Shape {
    match func {
        Func::Where
        | Func::First
        | Func::Last
        | Func::Tail
        | Func::Skip
        | Func::Take
        | Func::Single
        | Func::Distinct => base,
        Func::Extension => match base {
            Shape::Resource => Shape::Under(BTreeSet::from(["extension".to_string()])),
            other => other,
        },
        Func::Select | Func::Repeat | Func::Resolve => match base {
            Shape::Under(names) => Shape::Under(names),
            _ => Shape::Unknown,
        },
        _ => Shape::Unknown,
    }
}

fn shape(expr: &Expr) -> Shape {
    match expr {
        Expr::This => Shape::Resource,
        Expr::Member { recv: None, name } => {
            // A leading type name filters the resource by its type (see `eval.rs`).
            if name.starts_with(|c: char| c.is_ascii_uppercase())
                && crate::resource::model::type_def(name).is_some()
            {
                Shape::Resource
            } else {
                Shape::Under(BTreeSet::from([name.clone()]))
            }
        }
        Expr::Member { recv: Some(recv), name } => match shape(recv) {
            Shape::Resource => Shape::Under(BTreeSet::from([name.clone()])),
            other => other,
        },
        Expr::Call { recv, func, .. } => call_shape(*func, recv.as_deref().map_or(Shape::Resource, shape)),
        Expr::TypeTest { recv, op: TypeOp::As | TypeOp::OfType, .. } => {
            recv.as_deref().map_or(Shape::Resource, shape)
        }
        Expr::Indexer(base, _) => shape(base),
        Expr::Binary(BinOp::Union, a, b) => match (shape(a), shape(b)) {
            (Shape::Under(mut x), Shape::Under(y)) => {
                x.extend(y);
                Shape::Under(x)
            }
            _ => Shape::Unknown,
        },
        _ => Shape::Unknown,
    }
}

/// True when `resource` has a property for one of `names` (as [`top_level_reads`] gives them):
/// the property itself, a choice of it (`deceasedBoolean`), or its `_` companion. A prefix
/// match, so it may say yes for a property that only starts alike, never no for one it reads.
pub fn has_any(resource: &serde_json::Value, names: &[String]) -> bool {
    let Some(obj) = resource.as_object() else { return true };
    obj.keys().any(|key| {
        let key = key.strip_prefix('_').unwrap_or(key);
        names.iter().any(|n| key.starts_with(n.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(src: &str) -> Option<Vec<String>> {
        top_level_reads(&super::super::parse(src).unwrap())
    }

    #[test]
    fn paths_read_their_first_property() {
        assert_eq!(reads("Patient.name.family"), Some(vec!["name".into()]));
        assert_eq!(
            reads("Patient.address.city | Patient.telecom"),
            Some(vec!["address".into(), "telecom".into()])
        );
        assert_eq!(reads("Provenance.target.where(resolve() is Patient)"), Some(vec!["target".into()]));
        assert_eq!(reads("(Immunization.occurrence as dateTime)"), Some(vec!["occurrence".into()]));
        assert_eq!(reads("Resource.meta.profile"), Some(vec!["meta".into()]));
        assert_eq!(reads("Patient.telecom.where(system='phone')[0]"), Some(vec!["telecom".into()]));
        assert_eq!(reads("Observation.extension('http://x').value"), Some(vec!["extension".into()]));
    }

    #[test]
    fn what_yields_values_from_nothing_is_not_skipped() {
        assert_eq!(reads("Patient.deceased.exists() and Patient.deceased != false"), None);
        assert_eq!(reads("Patient.name.empty()"), None);
        assert_eq!(reads("'x'"), None);
        assert_eq!(reads("%resource.name"), None);
        assert_eq!(reads("Patient.name | 'x'"), None);
        assert_eq!(reads("Patient.where(active)"), None);
        assert_eq!(reads("Patient.name is HumanName"), None);
        assert_eq!(reads("Patient.select(name)"), None);
        assert_eq!(reads("Patient.name.count()"), None);
    }

    #[test]
    fn presence_counts_choices_and_companions() {
        let r = serde_json::json!({"resourceType": "Patient", "deceasedBoolean": true, "_birthDate": {}});
        assert!(has_any(&r, &["deceased".into()]));
        assert!(has_any(&r, &["birthDate".into()]));
        assert!(!has_any(&r, &["name".into(), "telecom".into()]));
    }
}
