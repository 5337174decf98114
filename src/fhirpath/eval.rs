//! The tree-walking evaluator: paths, literals, variables and operators.
//! Functions live in `functions.rs`, navigation and `resolve()` in `nav.rs`.

use std::cell::RefCell;
use std::cmp::Ordering;

use serde_json::Value;

use super::parser::{BinOp, Expr, Lit, TypeOp, TypeSpec};
use super::temporal;
use super::types::{self, Prim};
use super::{Env, FhirPathError, Item, Output, eval_err, nav};

/// `$index` / `$total` of the innermost iterating function.
#[derive(Default)]
pub struct Scope<'a> {
    pub index: Option<i64>,
    pub total: Option<Vec<Item<'a>>>,
}

/// One evaluation: the root resource, the environment, and the side outputs
/// (`trace()`, the incomplete flag) that functions record as they run.
pub struct Evaluator<'a, 'e, 'r> {
    pub root: &'a Value,
    pub env: &'e Env<'a, 'r>,
    pub out: RefCell<Output<'a>>,
}

pub fn run<'a>(expr: &Expr, resource: &'a Value, env: &Env<'a, '_>) -> Result<Output<'a>, FhirPathError> {
    let ev = Evaluator { root: resource, env, out: RefCell::new(Output::default()) };
    let input = [nav::resource_item(resource)];
    let items = ev.eval(expr, &input, &Scope::default())?;
    let mut out = ev.out.into_inner();
    out.items = items;
    Ok(out)
}

pub type Items<'a> = Vec<Item<'a>>;

/// At most one item; more is an error (spec: singleton evaluation).
pub fn single<'x, 'a>(items: &'x [Item<'a>], what: &str) -> Result<Option<&'x Item<'a>>, FhirPathError> {
    match items {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => eval_err(format!("{what} expects a single item, got {}", items.len())),
    }
}

/// Singleton evaluation as a boolean: a lone non-boolean counts as true.
pub fn to_bool(items: &[Item], what: &str) -> Result<Option<bool>, FhirPathError> {
    Ok(single(items, what)?.map(|item| match item {
        Item::Bool(b) => *b,
        Item::Node(n) => n.value.as_bool().unwrap_or(true),
        _ => true,
    }))
}

fn bool_items<'a>(b: Option<bool>) -> Items<'a> {
    b.map(Item::Bool).into_iter().collect()
}

impl<'a> Evaluator<'a, '_, '_> {
    /// Small dispatcher (see `call` for why): each arm delegates.
    pub fn eval(
        &self,
        expr: &Expr,
        input: &[Item<'a>],
        scope: &Scope<'a>,
    ) -> Result<Items<'a>, FhirPathError> {
        match expr {
            Expr::Empty => Ok(Vec::new()),
            Expr::Lit(lit) => Ok(vec![literal(lit)]),
            Expr::This => Ok(input.to_vec()),
            Expr::Index => Ok(scope.index.map(Item::Int).into_iter().collect()),
            Expr::Total => Ok(scope.total.clone().unwrap_or_default()),
            Expr::Var(name) => self.variable(name),
            Expr::Member { recv, name } => self.member(recv.as_deref(), name, input, scope),
            Expr::Call { recv, func, args } => {
                let base = self.receiver(recv.as_deref(), input, scope)?;
                self.call(*func, base, args, input, scope)
            }
            Expr::TypeTest { recv, op, ty } => {
                let base = self.receiver(recv.as_deref(), input, scope)?;
                type_test(base, *op, ty)
            }
            Expr::Indexer(base, index) => self.indexer(base, index, input, scope),
            Expr::Neg(inner) => negate(self.eval(inner, input, scope)?),
            Expr::Binary(op, l, r) => self.binary(*op, l, r, input, scope),
        }
    }

    fn receiver(
        &self,
        recv: Option<&Expr>,
        input: &[Item<'a>],
        scope: &Scope<'a>,
    ) -> Result<Items<'a>, FhirPathError> {
        match recv {
            Some(r) => self.eval(r, input, scope),
            None => Ok(input.to_vec()),
        }
    }

    fn indexer(
        &self,
        base: &Expr,
        index: &Expr,
        input: &[Item<'a>],
        scope: &Scope<'a>,
    ) -> Result<Items<'a>, FhirPathError> {
        let base = self.eval(base, input, scope)?;
        let index = self.eval(index, input, scope)?;
        match single(&index, "indexer")? {
            None => Ok(Vec::new()),
            Some(Item::Int(i)) => {
                Ok(usize::try_from(*i).ok().and_then(|i| base.into_iter().nth(i)).into_iter().collect())
            }
            Some(other) => eval_err(format!("index must be an integer, got {other:?}")),
        }
    }

    fn variable(&self, name: &str) -> Result<Items<'a>, FhirPathError> {
        let text = |s: &str| Ok(vec![Item::Str(s.to_string())]);
        match name {
            "resource" | "rootResource" | "context" => Ok(vec![nav::resource_item(self.root)]),
            "ucum" => text("http://unitsofmeasure.org"),
            "sct" => text("http://snomed.info/sct"),
            "loinc" => text("http://loinc.org"),
            _ => {
                if let Some((_, items)) = self.env.variables.iter().find(|(n, _)| n == name) {
                    return Ok(items.clone());
                }
                if let Some(id) = name.strip_prefix("vs-") {
                    return text(&format!("http://hl7.org/fhir/ValueSet/{id}"));
                }
                if let Some(id) = name.strip_prefix("ext-") {
                    return text(&format!("http://hl7.org/fhir/StructureDefinition/{id}"));
                }
                eval_err(format!("unknown variable %{name}"))
            }
        }
    }

    fn member(
        &self,
        recv: Option<&Expr>,
        name: &str,
        input: &[Item<'a>],
        scope: &Scope<'a>,
    ) -> Result<Items<'a>, FhirPathError> {
        let owned;
        let base: &[Item<'a>] = match recv {
            Some(r) => {
                owned = self.eval(r, input, scope)?;
                &owned
            }
            None => input,
        };
        let mut out = Vec::new();
        // A leading type name (`Patient.name`) filters the input by type.
        if recv.is_none() && name.starts_with(|c: char| c.is_ascii_uppercase()) {
            let spec = super::parser::TypeSpec { namespace: None, name: name.to_string() };
            if crate::resource::model::type_def(name).is_some() {
                out.extend(base.iter().filter(|i| types::matches_type(i, &spec)).cloned());
                return Ok(out);
            }
        }
        for item in base {
            nav::child(item, name, &mut out);
        }
        Ok(out)
    }

    fn binary(
        &self,
        op: BinOp,
        l: &Expr,
        r: &Expr,
        input: &[Item<'a>],
        scope: &Scope<'a>,
    ) -> Result<Items<'a>, FhirPathError> {
        let left = self.eval(l, input, scope)?;
        if let Some(result) = short_circuit(op, &left)? {
            return Ok(bool_items(Some(result)));
        }
        let right = self.eval(r, input, scope)?;
        match op {
            BinOp::Union => {
                let mut out = Vec::with_capacity(left.len() + right.len());
                types::push_distinct(&mut out, left);
                types::push_distinct(&mut out, right);
                Ok(out)
            }
            BinOp::And | BinOp::Or | BinOp::Xor | BinOp::Implies => logic(op, &left, &right),
            BinOp::Eq => Ok(bool_items(equal_lists(&left, &right))),
            BinOp::Ne => Ok(bool_items(equal_lists(&left, &right).map(|b| !b))),
            BinOp::Equiv => Ok(vec![Item::Bool(equiv_lists(&left, &right))]),
            BinOp::NotEquiv => Ok(vec![Item::Bool(!equiv_lists(&left, &right))]),
            BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => ordering(op, &left, &right),
            BinOp::In => membership(&left, &right),
            BinOp::Contains => membership(&right, &left),
            _ => arithmetic(op, &left, &right),
        }
    }
}

fn type_test<'a>(base: Items<'a>, op: TypeOp, ty: &TypeSpec) -> Result<Items<'a>, FhirPathError> {
    if op == TypeOp::Is {
        let item = single(&base, "is")?;
        return Ok(bool_items(item.map(|i| types::matches_type(i, ty))));
    }
    Ok(base.into_iter().filter(|i| types::matches_type(i, ty)).collect())
}

pub fn literal<'a>(lit: &Lit) -> Item<'a> {
    match lit {
        Lit::Bool(b) => Item::Bool(*b),
        Lit::Int(i) => Item::Int(*i),
        Lit::Dec(d) => Item::Dec(*d),
        Lit::Str(s) => Item::Str(s.clone()),
        Lit::Date(s) => Item::Date(s.clone()),
        Lit::DateTime(s) => Item::DateTime(s.clone()),
        Lit::Time(s) => Item::Time(s.clone()),
        Lit::Quantity(v, u) => Item::Quantity { value: *v, unit: u.clone() },
    }
}

/// `false and x`, `true or x`, `false implies x` are decided by the left side.
fn short_circuit(op: BinOp, left: &[Item]) -> Result<Option<bool>, FhirPathError> {
    let decided = match op {
        BinOp::And => to_bool(left, "and")? == Some(false),
        BinOp::Or => to_bool(left, "or")? == Some(true),
        BinOp::Implies => to_bool(left, "implies")? == Some(false),
        _ => return Ok(None),
    };
    Ok(decided.then_some(op != BinOp::And))
}

fn logic<'a>(op: BinOp, left: &[Item], right: &[Item]) -> Result<Items<'a>, FhirPathError> {
    let (a, b) = (to_bool(left, "logic")?, to_bool(right, "logic")?);
    let result = match op {
        BinOp::And => match (a, b) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        BinOp::Or => match (a, b) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        BinOp::Xor => a.zip(b).map(|(x, y)| x != y),
        _ => match (a, b) {
            (Some(false), _) | (_, Some(true)) => Some(true),
            (Some(true), Some(false)) => Some(false),
            _ => None,
        },
    };
    Ok(bool_items(result))
}

fn equal_lists(left: &[Item], right: &[Item]) -> Option<bool> {
    if left.is_empty() || right.is_empty() {
        return None;
    }
    if left.len() != right.len() {
        return Some(false);
    }
    let mut all = Some(true);
    for (a, b) in left.iter().zip(right) {
        match types::equals(a, b) {
            Some(false) => return Some(false),
            None => all = None,
            Some(true) => {}
        }
    }
    all
}

fn equiv_lists(left: &[Item], right: &[Item]) -> bool {
    left.len() == right.len() && left.iter().all(|a| right.iter().any(|b| types::equivalent(a, b)))
}

fn ordering<'a>(op: BinOp, left: &[Item], right: &[Item]) -> Result<Items<'a>, FhirPathError> {
    let (Some(a), Some(b)) = (single(left, "comparison")?, single(right, "comparison")?) else {
        return Ok(Vec::new());
    };
    let Some(ord) = types::compare(a, b)? else { return Ok(Vec::new()) };
    let result = match op {
        BinOp::Lt => ord == Ordering::Less,
        BinOp::Gt => ord == Ordering::Greater,
        BinOp::Le => ord != Ordering::Greater,
        _ => ord != Ordering::Less,
    };
    Ok(vec![Item::Bool(result)])
}

/// `item in collection`.
fn membership<'a>(item: &[Item], collection: &[Item]) -> Result<Items<'a>, FhirPathError> {
    let Some(needle) = single(item, "in/contains")? else { return Ok(Vec::new()) };
    Ok(vec![Item::Bool(collection.iter().any(|c| types::equals(needle, c) == Some(true)))])
}

fn negate(items: Items) -> Result<Items, FhirPathError> {
    let Some(item) = single(&items, "unary minus")? else { return Ok(Vec::new()) };
    let out = match types::prim(item) {
        Some(Prim::Int(i)) => match i.checked_neg() {
            Some(n) => Item::Int(n),
            None => return Ok(Vec::new()),
        },
        Some(Prim::Dec(d)) => Item::Dec(-d),
        Some(Prim::Quantity(v, u)) => Item::Quantity { value: -v, unit: u.to_string() },
        _ => return eval_err("unary minus needs a number or quantity"),
    };
    Ok(vec![out])
}

fn arithmetic<'a>(op: BinOp, left: &[Item], right: &[Item]) -> Result<Items<'a>, FhirPathError> {
    if op == BinOp::Concat {
        let text = |items: &[Item]| -> Result<String, FhirPathError> {
            Ok(single(items, "&")?.and_then(|i| super::functions::to_text(i)).unwrap_or_default())
        };
        return Ok(vec![Item::Str(text(left)? + &text(right)?)]);
    }
    let (Some(a), Some(b)) = (single(left, "arithmetic")?, single(right, "arithmetic")?) else {
        return Ok(Vec::new());
    };
    let (Some(x), Some(y)) = (types::prim(a), types::prim(b)) else {
        return eval_err("arithmetic needs primitive values");
    };
    Ok(arith_prims(op, &x, &y)?.into_iter().collect())
}

fn arith_prims<'a>(op: BinOp, x: &Prim, y: &Prim) -> Result<Option<Item<'a>>, FhirPathError> {
    use BinOp::*;
    Ok(match (x, y) {
        (Prim::Int(a), Prim::Int(b)) if op != Div => match op {
            Add => a.checked_add(*b).map(Item::Int),
            Sub => a.checked_sub(*b).map(Item::Int),
            Mul => a.checked_mul(*b).map(Item::Int),
            IntDiv => a.checked_div(*b).map(Item::Int),
            _ => a.checked_rem(*b).map(Item::Int),
        },
        (Prim::Int(_) | Prim::Dec(_), Prim::Int(_) | Prim::Dec(_)) => {
            let (a, b) = (as_f64(x), as_f64(y));
            let r = match op {
                Add => a + b,
                Sub => a - b,
                Mul => a * b,
                Div => a / b,
                IntDiv => return Ok((b != 0.0).then(|| Item::Int((a / b).trunc() as i64))),
                _ => a % b,
            };
            r.is_finite().then_some(Item::Dec(r))
        }
        (Prim::Str(a), Prim::Str(b)) if op == Add => Some(Item::Str(format!("{a}{b}"))),
        (Prim::Temporal(t), Prim::Quantity(v, u)) if matches!(op, Add | Sub) => {
            let amount = if op == Add { *v } else { -v };
            temporal::add(t, amount, u).map(|r| temporal_item(&r))
        }
        (Prim::Quantity(a, u), Prim::Quantity(b, v)) if matches!(op, Add | Sub) && u == v => {
            let value = if op == Add { a + b } else { a - b };
            Some(Item::Quantity { value, unit: u.to_string() })
        }
        (Prim::Quantity(a, u), Prim::Int(_) | Prim::Dec(_)) if matches!(op, Mul | Div) => {
            let value = if op == Mul { a * as_f64(y) } else { a / as_f64(y) };
            value.is_finite().then(|| Item::Quantity { value, unit: u.to_string() })
        }
        _ => return eval_err(format!("unsupported operands {x:?} {op:?} {y:?}")),
    })
}

fn as_f64(p: &Prim) -> f64 {
    match p {
        Prim::Int(i) => *i as f64,
        Prim::Dec(d) => *d,
        _ => f64::NAN,
    }
}

pub fn temporal_item<'a>(t: &temporal::Temporal) -> Item<'a> {
    let text = temporal::format(t);
    if t.is_time {
        Item::Time(text)
    } else if t.prec >= 4 {
        Item::DateTime(text)
    } else {
        Item::Date(text)
    }
}
