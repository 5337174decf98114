//! Function library. Lambda arguments (`where`, `select`, `all`, ...) are
//! evaluated per input item with that item as `$this`; other arguments are
//! evaluated once against the input of the enclosing expression.

use serde_json::Value;

use super::eval::{Evaluator, Items, Scope, single, to_bool};
use super::parser::Expr;
use super::types::{self, Prim};
use super::{FhirPathError, Item, eval_err, nav};

macro_rules! funcs {
    ($($variant:ident $name:literal $min:literal $max:literal,)*) => {
        /// A known function (resolved at parse time).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Func { $($variant,)* }

        impl Func {
            /// The function and its minimum/maximum argument count.
            pub fn lookup(name: &str) -> Option<(Func, usize, usize)> {
                match name {
                    $($name => Some((Func::$variant, $min, $max)),)*
                    _ => None,
                }
            }
        }
    };
}

funcs! {
    Empty "empty" 0 0, Exists "exists" 0 1, All "all" 1 1, AllTrue "allTrue" 0 0,
    AnyTrue "anyTrue" 0 0, AllFalse "allFalse" 0 0, AnyFalse "anyFalse" 0 0,
    SubsetOf "subsetOf" 1 1, SupersetOf "supersetOf" 1 1, Count "count" 0 0,
    Distinct "distinct" 0 0, IsDistinct "isDistinct" 0 0, Where "where" 1 1,
    Select "select" 1 1, Repeat "repeat" 1 1, Single "single" 0 0, First "first" 0 0,
    Last "last" 0 0, Tail "tail" 0 0, Skip "skip" 1 1, Take "take" 1 1,
    Intersect "intersect" 1 1, Exclude "exclude" 1 1, Union "union" 1 1,
    Combine "combine" 1 1, Iif "iif" 2 3, ToString "toString" 0 0,
    ToInteger "toInteger" 0 0, ToDecimal "toDecimal" 0 0, ToBoolean "toBoolean" 0 0,
    ConvertsToString "convertsToString" 0 0, ConvertsToInteger "convertsToInteger" 0 0,
    ConvertsToDecimal "convertsToDecimal" 0 0, ConvertsToBoolean "convertsToBoolean" 0 0,
    IndexOf "indexOf" 1 1, Substring "substring" 1 2, StartsWith "startsWith" 1 1,
    EndsWith "endsWith" 1 1, Contains "contains" 1 1, Upper "upper" 0 0, Lower "lower" 0 0,
    Replace "replace" 2 2, Matches "matches" 1 1, ReplaceMatches "replaceMatches" 2 2, Length "length" 0 0, ToChars "toChars" 0 0,
    Trim "trim" 0 0, Split "split" 1 1, Join "join" 0 1, Children "children" 0 0,
    Descendants "descendants" 0 0, Trace "trace" 1 2, Now "now" 0 0, Today "today" 0 0,
    TimeOfDay "timeOfDay" 0 0, Not "not" 0 0, HasValue "hasValue" 0 0,
    Extension "extension" 1 1, Resolve "resolve" 0 0, MemberOf "memberOf" 1 1,
    Abs "abs" 0 0, Ceiling "ceiling" 0 0, Floor "floor" 0 0, Truncate "truncate" 0 0,
    Round "round" 0 1, Aggregate "aggregate" 1 2, HtmlChecks "htmlChecks" 0 0,
    ConformsTo "conformsTo" 1 1,
}

/// The text of a primitive item as `toString()` renders it.
pub fn to_text(item: &Item) -> Option<String> {
    Some(match types::prim(item)? {
        Prim::Bool(b) => b.to_string(),
        Prim::Int(i) => i.to_string(),
        Prim::Dec(d) => d.to_string(),
        Prim::Str(s) => s.to_string(),
        Prim::Temporal(_) => item.as_str()?.to_string(),
        Prim::Quantity(v, u) => format!("{v} '{u}'"),
    })
}

pub(super) fn one_str<'x>(items: &'x [Item], what: &str) -> Result<Option<&'x str>, FhirPathError> {
    match single(items, what)? {
        None => Ok(None),
        Some(item) => match item.as_str() {
            Some(s) => Ok(Some(s)),
            None => eval_err(format!("{what} expects a string, got {item:?}")),
        },
    }
}

pub(super) fn one_int(items: &[Item], what: &str) -> Result<Option<i64>, FhirPathError> {
    match single(items, what)?.map(types::prim) {
        None => Ok(None),
        Some(Some(Prim::Int(i))) => Ok(Some(i)),
        Some(other) => eval_err(format!("{what} expects an integer, got {other:?}")),
    }
}

pub(super) fn bools<'a>(b: bool) -> Items<'a> {
    vec![Item::Bool(b)]
}

pub(super) fn opt<'a>(item: Option<Item<'a>>) -> Items<'a> {
    item.into_iter().collect()
}

/// Functions combining the input with a second collection.
fn set_op<'a>(func: Func, base: Items<'a>, other: Items<'a>) -> Result<Items<'a>, FhirPathError> {
    let member = |x: &Item, of: &[Item]| of.iter().any(|o| types::equals(x, o) == Some(true));
    let mut out = Vec::new();
    match func {
        Func::SubsetOf => return Ok(bools(base.iter().all(|b| member(b, &other)))),
        Func::SupersetOf => return Ok(bools(other.iter().all(|o| member(o, &base)))),
        Func::Intersect => {
            let kept: Vec<_> = base.into_iter().filter(|b| member(b, &other)).collect();
            types::push_distinct(&mut out, kept);
        }
        Func::Exclude => out.extend(base.into_iter().filter(|b| !member(b, &other))),
        Func::Union => {
            types::push_distinct(&mut out, base);
            types::push_distinct(&mut out, other);
        }
        _ => out.extend(base.into_iter().chain(other)),
    }
    Ok(out)
}

impl<'a> Evaluator<'a, '_, '_> {
    /// Evaluates `expr` once per item with the item as `$this`.
    fn per_item(&self, base: &[Item<'a>], expr: &Expr) -> Result<Vec<Items<'a>>, FhirPathError> {
        let mut out = Vec::with_capacity(base.len());
        for (i, item) in base.iter().enumerate() {
            let scope = Scope { index: Some(i as i64), total: None };
            out.push(self.eval(expr, std::slice::from_ref(item), &scope)?);
        }
        Ok(out)
    }

    fn filter(&self, base: Items<'a>, crit: &Expr) -> Result<Items<'a>, FhirPathError> {
        let results = self.per_item(&base, crit)?;
        let mut out = Vec::new();
        for (item, r) in base.into_iter().zip(results) {
            if to_bool(&r, "where() criteria")? == Some(true) {
                out.push(item);
            }
        }
        Ok(out)
    }

    /// Kept tiny on purpose: it sits on the stack once per nested call, and
    /// debug builds give big dispatch functions multi-kilobyte frames.
    pub fn call(
        &self,
        func: Func,
        base: Items<'a>,
        args: &[Expr],
        input: &[Item<'a>],
        scope: &Scope<'a>,
    ) -> Result<Items<'a>, FhirPathError> {
        use Func::*;
        match func {
            Where | Select | Repeat | All | Exists | Iif | Aggregate | Trace => {
                self.lambda(func, base, args, input, scope)
            }
            _ => self.builtin(func, base, args, input, scope),
        }
    }

    fn builtin(
        &self,
        func: Func,
        base: Items<'a>,
        args: &[Expr],
        input: &[Item<'a>],
        scope: &Scope<'a>,
    ) -> Result<Items<'a>, FhirPathError> {
        let arg = |i: usize| -> Result<Items<'a>, FhirPathError> {
            match args.get(i) {
                Some(e) => self.eval(e, input, scope),
                None => Ok(Vec::new()),
            }
        };
        use Func::*;
        match func {
            Empty => Ok(bools(base.is_empty())),
            AllTrue | AnyTrue | AllFalse | AnyFalse => {
                let want = matches!(func, AllTrue | AnyTrue);
                let hits = base.iter().filter(|i| matches!(types::prim(i), Some(Prim::Bool(b)) if b == want));
                let n = hits.count();
                Ok(bools(if matches!(func, AllTrue | AllFalse) { n == base.len() } else { n > 0 }))
            }
            Count => Ok(vec![Item::Int(base.len() as i64)]),
            Distinct | IsDistinct => {
                let len = base.len();
                let mut out = Vec::with_capacity(len);
                types::push_distinct(&mut out, base);
                Ok(if func == Distinct { out } else { bools(out.len() == len) })
            }
            Single => Ok(opt(single(&base, "single()")?.cloned())),
            First => Ok(opt(base.into_iter().next())),
            Last => Ok(opt(base.into_iter().last())),
            Tail => Ok(base.into_iter().skip(1).collect()),
            Skip | Take => {
                let n = one_int(&arg(0)?, "skip/take")?.unwrap_or(0).max(0) as usize;
                Ok(if func == Skip {
                    base.into_iter().skip(n).collect()
                } else {
                    base.into_iter().take(n).collect()
                })
            }
            Children | Descendants => Ok(self.children(base, func == Descendants)),
            Resolve => Ok(base.iter().filter_map(|i| self.resolve(i)).collect()),
            MemberOf | ConformsTo => {
                self.out.borrow_mut().incomplete = true;
                Ok(Vec::new())
            }
            Extension => {
                let url = one_str(&arg(0)?, "extension()")?.map(str::to_string);
                let mut exts = Vec::new();
                base.iter().for_each(|b| nav::child(b, "extension", &mut exts));
                let matches = |e: &Item| {
                    let url_of = e.node_value().and_then(|v| v.get("url")).and_then(Value::as_str);
                    url.is_some() && url_of == url.as_deref()
                };
                Ok(exts.into_iter().filter(matches).collect())
            }
            HtmlChecks => Ok(bools(true)),
            SubsetOf | SupersetOf | Intersect | Exclude | Union | Combine => set_op(func, base, arg(0)?),
            _ => self.scalar(func, base, &arg),
        }
    }

    fn lambda(
        &self,
        func: Func,
        base: Items<'a>,
        args: &[Expr],
        input: &[Item<'a>],
        scope: &Scope<'a>,
    ) -> Result<Items<'a>, FhirPathError> {
        match (func, args) {
            (Func::Where, [crit]) => self.filter(base, crit),
            (Func::Select, [proj]) => Ok(self.per_item(&base, proj)?.into_iter().flatten().collect()),
            (Func::Exists, []) => Ok(bools(!base.is_empty())),
            (Func::Exists, [crit]) => Ok(bools(!self.filter(base, crit)?.is_empty())),
            (Func::All, [crit]) => {
                for r in self.per_item(&base, crit)? {
                    if to_bool(&r, "all() criteria")? != Some(true) {
                        return Ok(bools(false));
                    }
                }
                Ok(bools(true))
            }
            (Func::Repeat, [proj]) => self.repeat(base, proj),
            (Func::Iif, [crit, yes, rest @ ..]) => {
                let ctx = &base;
                let cond = to_bool(&self.eval(crit, ctx, scope)?, "iif() criterion")?;
                match (cond, rest) {
                    (Some(true), _) => self.eval(yes, ctx, scope),
                    (_, [no]) => self.eval(no, ctx, scope),
                    _ => Ok(Vec::new()),
                }
            }
            (Func::Aggregate, [agg, init @ ..]) => {
                let mut total = match init.first() {
                    Some(e) => self.eval(e, input, scope)?,
                    None => Vec::new(),
                };
                for (i, item) in base.iter().enumerate() {
                    let scope = Scope { index: Some(i as i64), total: Some(total) };
                    total = self.eval(agg, std::slice::from_ref(item), &scope)?;
                }
                Ok(total)
            }
            (Func::Trace, [name, proj @ ..]) => {
                let label = one_str(&self.eval(name, input, scope)?, "trace()")?.unwrap_or("").to_string();
                let shown = match proj.first() {
                    Some(p) => self.per_item(&base, p)?.into_iter().flatten().collect(),
                    None => base.clone(),
                };
                self.out.borrow_mut().trace.push((label, format!("{shown:?}")));
                Ok(base)
            }
            _ => eval_err(format!("bad arguments for {func:?}")),
        }
    }

    fn repeat(&self, base: Items<'a>, proj: &Expr) -> Result<Items<'a>, FhirPathError> {
        let mut out: Items<'a> = Vec::new();
        let mut frontier = base;
        // Bounded: a projection that keeps producing new values stops here.
        for _ in 0..256 {
            let mut next = Vec::new();
            for item in self.per_item(&frontier, proj)?.into_iter().flatten() {
                if !out.iter().any(|o| types::equals(o, &item) == Some(true)) {
                    out.push(item.clone());
                    next.push(item);
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        Ok(out)
    }

    fn children(&self, base: Items<'a>, deep: bool) -> Items<'a> {
        let mut out = Vec::new();
        let mut stack: Vec<Item<'a>> = base.into_iter().rev().collect();
        while let Some(item) = stack.pop() {
            let mut kids = Vec::new();
            nav::children(&item, &mut kids);
            if deep {
                stack.extend(kids.iter().rev().cloned());
            }
            out.extend(kids);
        }
        out
    }
}
