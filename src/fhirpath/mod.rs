//! Hearth's FHIRPath evaluator (FHIRPath N1 as profiled by FHIR R4).
//!
//! Pipeline: [`lexer`] → [`parser`] (produces an [`Expr`] AST, parsed once
//! and evaluated many times) → [`eval`] over borrowed `serde_json::Value`s.
//!
//! ```ignore
//! let expr = fhirpath::parse("Patient.name.where(use='official').family")?;
//! let items = fhirpath::evaluate(&expr, &patient_json)?;
//! ```
//!
//! # Types
//! Every [`Item`] knows its type when it can be known. Items reached by
//! navigating a resource are [`Item::Node`]s: a borrowed JSON value plus the
//! FHIR type from the element model (`Identifier`, `Quantity`, `code`, ...;
//! choice elements take the type of the property present, `valueQuantity` →
//! `Quantity`). Values computed by the evaluator (literals, `count()`, string
//! functions, ...) are System values (`Item::Str`, `Item::Int`, ...).
//!
//! # `resolve()`
//! For each Reference (or canonical/uri string) in the input, in order:
//! 1. `#id` → the resource in the root resource's `contained` with that id
//!    (`#` alone → the root resource), as a typed [`Item::Node`];
//! 2. if the [`Env`] has a resolver and it returns a resource → that
//!    resource as a typed [`Item::Node`];
//! 3. if the root resource is a Bundle, an entry whose `fullUrl` equals the
//!    reference, or whose resource is `Type/id` → that entry's resource;
//! 4. otherwise a reference whose last segments are `Type/id` (relative or
//!    absolute, `_history/n` ignored), or a Reference with only `type` →
//!    [`Item::Resolved`], a placeholder that has the referenced *type* (so
//!    `resolve() is Patient` works) and the id, but no content;
//! 5. anything else contributes nothing.
//!
//! # Deviations and limits (deliberate)
//! - `as` (operator and function) filters like `ofType()` instead of failing
//!   on multi-item input: R4 search expressions such as
//!   `Group.characteristic.value as CodeableConcept` rely on that. `is`
//!   follows the spec (error on more than one item).
//! - Type tests honour derivation for resources (`Resource`,
//!   `DomainResource`), `Element`, and the Quantity profiles (`Age`,
//!   `Duration`, ... are `Quantity`), but keep primitive specialisations
//!   apart (`canonical` is not `uri`, `code` is not `string`), because
//!   search expressions pick alternatives with them.
//! - `memberOf()` and `conformsTo()` have no terminology/profiles: they
//!   return empty and set [`Output::incomplete`]. `htmlChecks()` is `true`.
//! - Decimals are `f64` (`1.0.toString()` is `1`); quantities compare only
//!   with equal units (calendar words = their UCUM codes), no UCUM
//!   conversion. A string compared with a date/dateTime is parsed as one.
//! - `resourceType` can be navigated to (a `code`), although the model has
//!   no such element.
//! - `matches()`/`replaceMatches()` use a small regex engine (see
//!   `regex.rs` for the supported syntax); `matches` searches, as in N1.
//! - `%resource`, `%rootResource` and `%context` are all the evaluated
//!   resource; `%ucum`, `%sct`, `%loinc`, `%vs-x`, `%ext-x` are built in.
//! - Expressions nest at most [`MAX_DEPTH`] units deep (parse error
//!   beyond), which bounds stack use in both parser and evaluator.

mod eval;
mod functions;
mod lexer;
mod nav;
mod parser;
mod reads;
mod regex;
mod scalar;
mod temporal;
mod types;

#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::Value;

use crate::resource::model::Context;

pub use parser::{Expr, MAX_DEPTH};
pub use reads::{has_any, top_level_reads};

/// Why parsing or evaluation failed. Parse errors carry the byte offset into
/// the expression.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FhirPathError {
    #[error("FHIRPath syntax error at {pos}: {msg}")]
    Parse { pos: usize, msg: String },
    #[error("FHIRPath evaluation error: {0}")]
    Eval(String),
}

pub(crate) fn eval_err<T>(msg: impl Into<String>) -> Result<T, FhirPathError> {
    Err(FhirPathError::Eval(msg.into()))
}

/// One item of a FHIRPath collection.
#[derive(Clone, Debug)]
pub enum Item<'a> {
    /// A value inside the evaluated resource (or a resolved one).
    Node(Node<'a>),
    /// A reference `resolve()` could not load: it knows the target type and
    /// id only. Navigating into it yields `id` and `resourceType`, nothing else.
    Resolved {
        reference: &'a Value,
        ty: &'static str,
        id: Option<String>,
    },
    Bool(bool),
    Int(i64),
    Dec(f64),
    Str(String),
    /// ISO text without the `@`, e.g. `2024-01-01`.
    Date(String),
    /// ISO text without the `@`, e.g. `2024-01-01T10:00:00Z`.
    DateTime(String),
    /// ISO text without `@T`, e.g. `10:00`.
    Time(String),
    Quantity {
        value: f64,
        unit: String,
    },
}

/// A borrowed JSON value with its place in the FHIR model.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    /// The JSON value; `Null` for a primitive that only has an `_x` part.
    pub value: &'a Value,
    /// The FHIR type code (`HumanName`, `dateTime`, `Patient`,
    /// `BackboneElement`), `None` when the model does not know it.
    pub ty: Option<&'static str>,
    /// For primitives: the `_x` sibling object (id/extension), if any.
    pub ext: Option<&'a Value>,
    /// Where this node's children are defined in the model.
    pub(crate) ctx: Option<Context>,
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node").field("ty", &self.ty).field("value", self.value).finish()
    }
}

impl<'a> Item<'a> {
    /// The type name: the FHIR type for nodes (when known), the System type
    /// (`String`, `Integer`, `Decimal`, `Boolean`, `Date`, `DateTime`,
    /// `Time`, `Quantity`) for computed values.
    pub fn type_name(&self) -> Option<&'static str> {
        Some(match self {
            Item::Node(n) => return n.ty,
            Item::Resolved { ty, .. } => ty,
            Item::Bool(_) => "Boolean",
            Item::Int(_) => "Integer",
            Item::Dec(_) => "Decimal",
            Item::Str(_) => "String",
            Item::Date(_) => "Date",
            Item::DateTime(_) => "DateTime",
            Item::Time(_) => "Time",
            Item::Quantity { .. } => "Quantity",
        })
    }

    /// The borrowed JSON value of a node.
    pub fn node_value(&self) -> Option<&'a Value> {
        match self {
            Item::Node(n) => Some(n.value),
            _ => None,
        }
    }

    /// The text of a string-like item (System string or FHIR string-like
    /// primitive, including dates).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Item::Str(s) | Item::Date(s) | Item::DateTime(s) | Item::Time(s) => Some(s),
            Item::Node(n) => n.value.as_str(),
            _ => None,
        }
    }
}

/// Evaluation environment: an optional resolver and extra `%variables`.
#[derive(Default)]
pub struct Env<'a, 'r> {
    /// Looks a reference string (as written in `Reference.reference`) up;
    /// returning `None` falls back to the default behaviour (see module docs).
    #[allow(clippy::type_complexity)]
    pub resolver: Option<&'r dyn Fn(&str) -> Option<&'a Value>>,
    /// `%name` → value; `%resource`, `%context`, `%ucum`, ... are built in.
    pub variables: Vec<(String, Vec<Item<'a>>)>,
}

/// Result of [`evaluate_env`].
#[derive(Debug, Default)]
pub struct Output<'a> {
    pub items: Vec<Item<'a>>,
    /// Set when a function that needs an unavailable service (terminology
    /// for `memberOf()`) was called: the result may be incomplete.
    pub incomplete: bool,
    /// `trace(name)` output: (name, rendered items).
    pub trace: Vec<(String, String)>,
}

/// Parses an expression once; evaluate it many times.
pub fn parse(expr: &str) -> Result<Expr, FhirPathError> {
    parser::parse(expr)
}

/// Evaluates `expr` with `resource` as `%resource` and the initial focus,
/// using the default `resolve()` behaviour.
pub fn evaluate<'a>(expr: &Expr, resource: &'a Value) -> Result<Vec<Item<'a>>, FhirPathError> {
    evaluate_env(expr, resource, &Env::default()).map(|out| out.items)
}

/// Like [`evaluate`], with a resolver/variables, returning the side outputs.
pub fn evaluate_env<'a>(
    expr: &Expr,
    resource: &'a Value,
    env: &Env<'a, '_>,
) -> Result<Output<'a>, FhirPathError> {
    eval::run(expr, resource, env)
}

/// Evaluates `expr` with `focus` (an item reached inside `resource`) as the initial focus, as
/// composite search parameters evaluate their components.
pub fn evaluate_on<'a>(
    expr: &Expr,
    resource: &'a Value,
    focus: Item<'a>,
) -> Result<Vec<Item<'a>>, FhirPathError> {
    let env = Env::default();
    let ev = eval::Evaluator { root: resource, env: &env, out: std::cell::RefCell::new(Output::default()) };
    ev.eval(expr, &[focus], &eval::Scope::default())
}
