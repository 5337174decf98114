//! The planner: turns parsed criteria into a SQL filter over `resource r` with bound values,
//! one `r.rkey IN (…)` per criterion against the parameter's index table. No client value is ever
//! spliced into SQL text.

use super::compartment;
use super::conditions as cond;
use super::query::Criterion;
use super::registry::{ParamType, Registry, SearchParam};
use crate::error::{Error, Issue, IssueCode, Result};
use crate::store::{Bind, Filter, Store};

/// How to treat criteria the server cannot evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    /// Ignore them and report each as a warning (the default for search).
    Lenient,
    /// Reject the request (conditional interactions, `Prefer: handling=strict`).
    Strict,
}

/// The filter of a plan without criteria.
pub const ALL: &str = "1 = 1";

pub struct Plan {
    pub filter: Filter,
    /// Criteria that were ignored, as warnings for the search result.
    pub ignored: Vec<Issue>,
    /// Whether the filter already limits the resource types: some criterion selects by index
    /// rows, whose parameter ids are per type. Then a separate condition on `r.rtype` is not
    /// needed, and would tempt SQLite into scanning every resource of the type.
    pub types_implied: bool,
    /// When every condition selects by index rows: the matching keys alone (`SELECT rkey …`,
    /// same placeholders), so a count need not visit the resources (deleted ones have no index
    /// rows).
    pub keys: Option<String>,
}

/// Whether a condition selects resources by their index rows (see `Plan::types_implied`).
fn selects_by_index(cond: &str) -> bool {
    cond.starts_with("r.rkey IN (")
}

/// A criterion the server cannot evaluate: refused (strict) or reported back (lenient).
fn ignore(handling: Handling, issue: Issue, ignored: &mut Vec<Issue>) -> Result<()> {
    match handling {
        Handling::Strict => Err(Error::Invalid(vec![issue])),
        Handling::Lenient => {
            ignored.push(issue);
            Ok(())
        }
    }
}

/// What chains and `_has` consult at every link.
struct Cx<'a> {
    registry: &'a Registry,
    store: &'a Store,
}

/// Placeholders are numbered in the order values are bound.
#[derive(Default)]
pub struct Binder {
    pub binds: Vec<Bind>,
}

impl Binder {
    pub fn push(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    pub fn text(&mut self, value: impl Into<String>) -> String {
        self.push(Bind::Text(value.into()))
    }
}

pub fn plan(
    registry: &Registry,
    store: &Store,
    rtype: &str,
    criteria: &[Criterion],
    handling: Handling,
) -> Result<Plan> {
    plan_from(registry, store, rtype, criteria, handling, Binder::default())
}

/// `plan`, numbering placeholders after the values `b` holds already (to be joined with
/// another filter).
pub fn plan_from(
    registry: &Registry,
    store: &Store,
    rtype: &str,
    criteria: &[Criterion],
    handling: Handling,
    mut b: Binder,
) -> Result<Plan> {
    let cx = &Cx { registry, store };
    let mut conds = Vec::new();
    let mut ignored = Vec::new();
    for c in criteria {
        if c.code == "_list" {
            conds.push(list(store, c, &mut b)?);
            continue;
        }
        if c.code == "_has" {
            conds.push(has(cx, rtype, c.modifier.as_deref().unwrap_or_default(), c, &mut b, 1)?);
            continue;
        }
        if let Some((head, rest)) = c.raw_name.split_once('.') {
            conds.push(chain(cx, rtype, head, rest, c, &mut b, 1)?);
            continue;
        }
        let param = match registry.get(rtype, &c.code) {
            Some(p) if p.indexed() => p,
            other => {
                let message = match other {
                    None => format!("unknown search parameter '{}' for {rtype}", c.raw_name),
                    Some(p) => format!(
                        "search parameter '{}' ({}) is not supported yet",
                        c.raw_name,
                        p.kind.as_str()
                    ),
                };
                ignore(
                    handling,
                    Issue::new(IssueCode::NotSupported, message).at(c.raw_name.clone()),
                    &mut ignored,
                )?;
                continue;
            }
        };
        conds.push(criterion(registry, store, &[rtype], param, c, &mut b)?);
    }
    let sql = if conds.is_empty() { ALL.to_string() } else { conds.join(" AND ") };
    let types_implied = conds.iter().any(|c| selects_by_index(c));
    let keys = (!conds.is_empty() && conds.iter().all(|c| selects_by_index(c))).then(|| {
        let subqueries: Vec<&str> = conds.iter().filter_map(|c| c.strip_prefix("r.rkey IN ")).collect();
        match subqueries.as_slice() {
            [one] => format!("SELECT COUNT(DISTINCT k.rkey) FROM {one} k"),
            // Each operand a derived table of its own: a chain's `UNION ALL` inside must not
            // group with the `INTERSECT` (the backends disagree on precedence).
            many => {
                let sets: Vec<String> =
                    many.iter().enumerate().map(|(i, q)| format!("SELECT k{i}.rkey FROM {q} k{i}")).collect();
                format!("SELECT COUNT(*) FROM ({}) k", sets.join(" INTERSECT "))
            }
        }
    });
    Ok(Plan { filter: Filter { sql, binds: b.binds }, ignored, types_implied, keys })
}

/// A plan over several types at once (system level, `_type`, compartment-wide): each criterion
/// becomes one condition over the parameter ids of every type that has the parameter, and types
/// without it are ruled out. Chains and `_has` need one type to start from.
pub fn plan_many(
    registry: &Registry,
    store: &Store,
    types: &[String],
    criteria: &[Criterion],
    handling: Handling,
) -> Result<Plan> {
    plan_many_from(registry, store, types, criteria, handling, Binder::default())
}

/// `plan_many`, numbering placeholders after the values `b` holds already.
pub fn plan_many_from(
    registry: &Registry,
    store: &Store,
    types: &[String],
    criteria: &[Criterion],
    handling: Handling,
    mut b: Binder,
) -> Result<Plan> {
    let mut kept: Vec<&str> = types.iter().map(String::as_str).collect();
    let mut selective_over = Vec::new();
    let mut conds = Vec::new();
    let mut ignored = Vec::new();
    for c in criteria {
        if c.code == "_list" {
            conds.push(list(store, c, &mut b)?);
            continue;
        }
        if c.code == "_has" || c.raw_name.contains('.') {
            return Err(invalid(c, "chained parameters and _has need a single resource type"));
        }
        let having: Vec<(&str, &SearchParam)> = kept
            .iter()
            .filter_map(|t| registry.get(t, &c.code).filter(|p| p.indexed()).map(|p| (*t, p)))
            .collect();
        let Some((_, param)) = having.first().copied() else {
            let message = format!("unknown search parameter '{}'", c.raw_name);
            ignore(
                handling,
                Issue::new(IssueCode::NotSupported, message).at(c.raw_name.clone()),
                &mut ignored,
            )?;
            continue;
        };
        if having.iter().any(|(_, p)| p.kind != param.kind) {
            return Err(invalid(
                c,
                "the parameter has a different type in some of the resource types searched",
            ));
        }
        kept = having.iter().map(|(t, _)| *t).collect();
        let cond = criterion(registry, store, &kept, param, c, &mut b)?;
        if selects_by_index(&cond) {
            selective_over.push(kept.len());
        }
        conds.push(cond);
    }
    let all_types = kept.len() == crate::resource::model::resource_types().count();
    // Only a condition over exactly the types that remain limits the types (`kept` shrinks).
    let types_implied = selective_over.contains(&kept.len());
    if !all_types && !types_implied {
        let list: Vec<String> = kept.iter().map(|t| b.text(*t)).collect();
        conds.insert(
            0,
            if list.is_empty() { "1 = 0".to_string() } else { format!("r.rtype IN ({})", list.join(", ")) },
        );
    }
    let sql = if conds.is_empty() { ALL.to_string() } else { conds.join(" AND ") };
    Ok(Plan {
        filter: Filter { sql, binds: b.binds },
        ignored,
        types_implied: types_implied || all_types,
        keys: None,
    })
}

/// Restricts a filter to the resources in the compartment `ctype/cid` (e.g. `Patient/123`) of
/// each of `cids`, or of any `ctype` when `cids` is `None`: those whose compartment parameters
/// reference it, and the compartment's own resource. One lookup in the reference index covers
/// every type: parameter ids are per type.
pub fn restrict_to_compartment(
    store: &Store,
    filter: &mut Filter,
    ctype: &str,
    cids: Option<&[String]>,
    types: &[String],
) -> Result<()> {
    for rtype in types {
        if compartment::params(ctype, rtype).is_none() {
            return Err(Error::invalid(
                IssueCode::NotSupported,
                format!("{rtype} is not part of the {ctype} compartment"),
            ));
        }
    }
    restrict(store, filter, ctype, cids, types, |t| compartment::params(ctype, t))
}

/// Restricts a filter to the resources tied to one of `patients` for authorization
/// (`compartment::patient_links`); types without such ties keep nothing.
pub fn restrict_to_patients(
    store: &Store,
    filter: &mut Filter,
    patients: &[String],
    types: &[String],
) -> Result<()> {
    restrict(store, filter, "Patient", Some(patients), types, compartment::patient_links)
}

fn restrict(
    store: &Store,
    filter: &mut Filter,
    ctype: &str,
    cids: Option<&[String]>,
    types: &[String],
    links: impl Fn(&str) -> Option<&'static [String]>,
) -> Result<()> {
    let mut b = Binder { binds: std::mem::take(&mut filter.binds) };
    let mut pids = Vec::new();
    let mut itself = false;
    for rtype in types {
        let Some(params) = links(rtype) else { continue };
        pids.extend(
            params.iter().filter_map(|p| store.param_id(rtype, p)).map(|pid| b.push(Bind::Int(pid.into()))),
        );
        itself |= rtype == ctype || params.iter().any(|p| p == "{def}");
    }
    let ids = |b: &mut Binder, column: &str| match cids {
        Some(cids) => {
            let list: Vec<String> = cids.iter().map(|c| b.text(c.clone())).collect();
            format!(" AND {column} IN ({})", if list.is_empty() { "NULL".into() } else { list.join(", ") })
        }
        None => String::new(),
    };
    let mut alts = Vec::new();
    if !pids.is_empty() {
        let t = b.text(ctype);
        let id = ids(&mut b, "x.target_id");
        alts.push(format!(
            "r.rkey IN (SELECT x.rkey FROM idx_reference x WHERE x.pid IN ({}) AND x.target_type = {t}{id})",
            pids.join(", ")
        ));
    }
    if itself {
        let t = b.text(ctype);
        let id = ids(&mut b, "r.id");
        alts.push(format!("(r.rtype = {t}{id})"));
    }
    if alts.is_empty() {
        alts.push("1 = 0".into());
    }
    filter.sql = format!("({}) AND ({})", filter.sql, alts.join(" OR "));
    filter.binds = b.binds;
    Ok(())
}

/// `_list=id` (search.html#list): the resources a List names in `entry.item`. Functional lists
/// (`$current-allergies` and the like) need a definition of "current" we do not have.
fn list(store: &Store, c: &Criterion, b: &mut Binder) -> Result<String> {
    if c.modifier.is_some() {
        return Err(invalid(c, "_list takes no modifiers"));
    }
    if let Some(functional) = c.values.iter().find(|v| v.starts_with('$')) {
        return Err(Error::invalid_at(
            IssueCode::NotSupported,
            format!("_list: functional list '{functional}' is not supported"),
            "_list",
        ));
    }
    let pid = store
        .param_id("List", "item")
        .ok_or_else(|| Error::Internal("search parameter List.item has no index id".into()))?;
    let p = b.push(Bind::Int(pid.into()));
    let l = b.text("List");
    let ids: Vec<String> = c.values.iter().map(|v| b.text(v.clone())).collect();
    Ok(format!(
        "(r.rtype, r.id) IN (SELECT x.target_type, x.target_id FROM resource l JOIN idx_reference x \
         ON x.rkey = l.rkey WHERE l.rtype = {l} AND l.id IN ({}) AND NOT l.deleted AND x.pid = {p})",
        ids.join(", ")
    ))
}

/// Longest chain accepted (`a.b.c.d`).
const MAX_CHAIN: usize = 4;

/// A chained criterion `head.rest` (search.html#chaining): `head` is a reference parameter of
/// `rtype` (optionally `param:Type`), `rest` a criterion on the referenced resources, itself
/// possibly chained. Chains are always strict: a typo must not widen the result.
fn chain(
    cx: &Cx,
    rtype: &str,
    head: &str,
    rest: &str,
    c: &Criterion,
    b: &mut Binder,
    depth: usize,
) -> Result<String> {
    if depth > MAX_CHAIN {
        return Err(invalid(c, format!("chains are limited to {MAX_CHAIN} links")));
    }
    let (code, typed) = match head.split_once(':') {
        Some((code, t)) => (code, Some(t)),
        None => (head, None),
    };
    let param = cx
        .registry
        .get(rtype, code)
        .filter(|p| p.kind == ParamType::Reference && p.in_index_tables())
        .ok_or_else(|| invalid(c, format!("'{code}' is not a reference parameter of {rtype}")))?;
    let next_code = rest.split(['.', ':']).next().unwrap_or_default();
    let targets: Vec<&str> = match typed {
        Some(t) if param.targets.iter().any(|x| x == t) => vec![t],
        Some(t) => return Err(invalid(c, format!("'{code}' cannot refer to {t}"))),
        None => param
            .targets
            .iter()
            .map(String::as_str)
            .filter(|t| next_code.starts_with('_') || cx.registry.get(t, next_code).is_some())
            .collect(),
    };
    if targets.is_empty() {
        return Err(invalid(c, format!("no target of '{code}' has a search parameter '{next_code}'")));
    }
    let pid = cx
        .store
        .param_id(rtype, code)
        .ok_or_else(|| Error::Internal(format!("search parameter {rtype}.{code} has no index id")))?;
    let p = b.push(Bind::Int(pid.into()));
    let mut alts = Vec::new();
    for t in targets {
        let inner = match rest.split_once('.') {
            Some((h, r)) => chain(cx, t, h, r, c, b, depth + 1)?,
            None => last_link(cx, t, rest, c, b)?,
        };
        let tp = b.text(t);
        let of_type = if selects_by_index(&inner) { String::new() } else { format!("r.rtype = {tp} AND ") };
        // The inner `r` and `x` shadow the outer ones inside the subquery. One branch per
        // target type, so each is an index lookup by (pid, target_id, target_type).
        alts.push(format!(
            "SELECT x.rkey FROM idx_reference x WHERE x.pid = {p} AND x.target_type = {tp} AND x.target_id IN \
             (SELECT r.id FROM resource r WHERE {of_type}NOT r.deleted AND {inner})"
        ));
    }
    Ok(format!("r.rkey IN ({})", alts.join(" UNION ALL ")))
}

/// Reverse chaining `_has:Type:param:criterion` (search.html#has): resources referenced through
/// `param` by some `Type` resource that matches `criterion` (itself possibly another `_has`).
fn has(cx: &Cx, rtype: &str, spec: &str, c: &Criterion, b: &mut Binder, depth: usize) -> Result<String> {
    if depth > MAX_CHAIN {
        return Err(invalid(c, format!("_has is limited to {MAX_CHAIN} levels")));
    }
    let mut parts = spec.splitn(3, ':');
    let (Some(source), Some(code), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid(c, "_has needs the form _has:Type:parameter:criterion"));
    };
    if !crate::resource::is_resource_type(source) {
        return Err(invalid(c, format!("unknown resource type '{source}'")));
    }
    cx.registry
        .get(source, code)
        .filter(|p| p.kind == ParamType::Reference && p.in_index_tables())
        .ok_or_else(|| invalid(c, format!("'{code}' is not a reference parameter of {source}")))?;
    let pid = cx
        .store
        .param_id(source, code)
        .ok_or_else(|| Error::Internal(format!("search parameter {source}.{code} has no index id")))?;
    let (p, t) = (b.push(Bind::Int(pid.into())), b.text(rtype));
    let inner = if let Some(nested) = rest.strip_prefix("_has:") {
        has(cx, source, nested, c, b, depth + 1)?
    } else if let Some((head, tail)) = rest.split_once('.') {
        chain(cx, source, head, tail, c, b, depth + 1)?
    } else {
        last_link(cx, source, rest, c, b)?
    };
    // `r` outside the subqueries is the resource searched; inside, the referencing one. The
    // innermost criterion drives: the referencing resources first, then what they point to
    // (`+h.pid` so that SQLite looks them up by rkey, as in `search::sort`).
    // Deleted resources have no index rows, so an index-selected inner criterion needs no visit
    // to the resource table. Bound only when used: every placeholder must appear in the statement.
    let referencing = match inner.strip_prefix("r.rkey IN ") {
        Some(keys) if selects_by_index(&inner) => keys.to_string(),
        _ => format!(
            "(SELECT r.rkey FROM resource r WHERE r.rtype = {} AND NOT r.deleted AND {inner})",
            b.text(source)
        ),
    };
    Ok(format!(
        "r.id IN (SELECT h.target_id FROM idx_reference h WHERE +h.pid = {p} AND h.target_type = {t} \
         AND h.rkey IN {referencing})"
    ))
}

/// The final, unchained `code[:modifier]` of a chain or `_has`, applied to `rtype` with the
/// criterion's values.
fn last_link(cx: &Cx, rtype: &str, rest: &str, c: &Criterion, b: &mut Binder) -> Result<String> {
    let (code, modifier) = match rest.split_once(':') {
        Some((code, m)) => (code.to_string(), Some(m.to_string())),
        None => (rest.to_string(), None),
    };
    let inner = Criterion { code, modifier, values: c.values.clone(), raw_name: c.raw_name.clone() };
    let param = cx
        .registry
        .get(rtype, &inner.code)
        .filter(|p| p.indexed())
        .ok_or_else(|| invalid(c, format!("'{}' is not a supported parameter of {rtype}", inner.code)))?;
    criterion(cx.registry, cx.store, &[rtype], param, &inner, b)
}

fn invalid(c: &Criterion, message: impl Into<String>) -> Error {
    Error::invalid_at(IssueCode::Value, format!("{}: {}", c.raw_name, message.into()), c.raw_name.clone())
}

/// The index table holding a parameter type's rows.
fn table(kind: ParamType) -> &'static str {
    match kind {
        ParamType::Token => "idx_token",
        ParamType::String => "idx_string",
        ParamType::Reference => "idx_reference",
        ParamType::Date => "idx_date",
        ParamType::Number | ParamType::Quantity => "idx_number",
        ParamType::Composite => "idx_composite",
        _ => "idx_uri",
    }
}

/// `x.pid = $n`, or `x.pid IN (…)` when the parameter spans several types (ids are per type) or
/// reads its narrower parameters' rows too (`SearchParam::narrower`).
fn pid_condition(
    registry: &Registry,
    store: &Store,
    types: &[&str],
    code: &str,
    b: &mut Binder,
) -> Result<String> {
    let mut pids = Vec::new();
    for t in types {
        let param = registry.get(t, code);
        let codes = param.map_or_else(|| vec![code], |p| p.stored_under().collect());
        for c in codes {
            let pid = store
                .param_id(t, c)
                .ok_or_else(|| Error::Internal(format!("search parameter {t}.{c} has no index id")))?;
            pids.push(b.push(Bind::Int(pid.into())));
        }
    }
    Ok(match pids.as_slice() {
        [one] => format!("x.pid = {one}"),
        _ => format!("x.pid IN ({})", pids.join(", ")),
    })
}

/// One criterion on a parameter that every type in `types` has, with the same type.
fn criterion(
    registry: &Registry,
    store: &Store,
    types: &[&str],
    param: &SearchParam,
    c: &Criterion,
    b: &mut Binder,
) -> Result<String> {
    let modifier = c.modifier.as_deref();
    if param.code == "_id" || param.code == "_lastUpdated" {
        if modifier.is_some() {
            return Err(invalid(c, "modifiers are not supported on this parameter"));
        }
        return if param.code == "_id" {
            let list: Vec<String> = c.values.iter().map(|v| b.text(v.clone())).collect();
            Ok(format!("r.id IN ({})", list.join(", ")))
        } else {
            let alts = c
                .values
                .iter()
                .map(|v| {
                    cond::date(v, "r.last_updated", "(r.last_updated + 1)", b).map_err(|m| invalid(c, m))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(format!("({})", alts.join(" OR ")))
        };
    }
    let t = table(param.kind);
    if modifier == Some("missing") {
        let mut having = format!(
            "SELECT x.rkey FROM {t} x WHERE {}",
            pid_condition(registry, store, types, &param.code, b)?
        );
        if param.kind == ParamType::Reference {
            // A reference with only an identifier has token rows and no reference row.
            let pids = pid_condition(registry, store, types, &param.code, b)?;
            having = format!("{having} UNION SELECT x.rkey FROM idx_token x WHERE {pids}");
        }
        return match c.values.as_slice() {
            [v] if v == "true" => Ok(format!("r.rkey NOT IN ({having})")),
            [v] if v == "false" => Ok(format!("r.rkey IN ({having})")),
            _ => Err(invalid(c, ":missing takes true or false")),
        };
    }
    let (table, negate) = match (param.kind, modifier) {
        (ParamType::Token, Some("text")) => ("idx_string", false),
        (ParamType::Token, Some("not")) => (t, true),
        (ParamType::Token, Some("of-type")) if param.code == "identifier" => ("idx_composite", false),
        (ParamType::Token, Some("of-type")) => {
            return Err(invalid(c, ":of-type applies to identifier parameters only"));
        }
        (ParamType::Reference, Some("identifier")) => ("idx_token", false),
        _ => (t, false),
    };
    let p = pid_condition(registry, store, types, &param.code, b)?;
    let alts = c
        .values
        .iter()
        .map(|v| match param.kind {
            ParamType::Composite => composite_condition(param, modifier, v, b),
            kind => value_condition(kind, modifier, v, b),
        })
        .map(|r| r.map_err(|m| invalid(c, m)))
        .collect::<Result<Vec<_>>>()?;
    // Uncorrelated: the database reads the matching keys from the index once, rather than
    // probing the index for every resource of the type.
    let matching = format!("SELECT x.rkey FROM {table} x WHERE {p} AND ({})", alts.join(" OR "));
    Ok(format!("r.rkey {}IN ({matching})", if negate { "NOT " } else { "" }))
}

/// `token$value` on one composite row: the first part against the token columns, the second
/// with its own type's condition (the table names its columns like that type's table).
fn composite_condition(
    param: &SearchParam,
    modifier: Option<&str>,
    v: &str,
    b: &mut Binder,
) -> Result<String, String> {
    if let Some(m) = modifier {
        return Err(format!("the modifier ':{m}' is not supported for composite parameters"));
    }
    let (Some((first, second)), [_, component]) = (v.split_once('$'), param.components.as_slice()) else {
        return Err(format!("'{v}' is not a composite value: expected two parts joined by '$'"));
    };
    let head = cond::token_in(first, "x.c_system", "x.c_code", b);
    let tail = value_condition(component.kind, None, second, b)?;
    Ok(format!("({head} AND {tail})"))
}

/// The condition on one index row (alias `x`) for one comma-separated value.
fn value_condition(
    kind: ParamType,
    modifier: Option<&str>,
    v: &str,
    b: &mut Binder,
) -> Result<String, String> {
    match (kind, modifier) {
        (ParamType::Token, None | Some("not")) => Ok(cond::token(v, b)),
        (ParamType::Token, Some("text")) => Ok(cond::string_starts(v, b)),
        (ParamType::String, None) => Ok(cond::string_starts(v, b)),
        // The folded form narrows by index; the exact comparison decides.
        (ParamType::String, Some("exact")) => {
            Ok(format!("(x.norm = {} AND x.exact = {})", b.text(super::index::fold(v)), b.text(v)))
        }
        (ParamType::String, Some("contains")) => Ok(cond::string_contains(v, b)),
        (ParamType::Token, Some("of-type")) => cond::of_type(v, b),
        (ParamType::Reference, Some("identifier")) => Ok(cond::token(v, b)),
        (ParamType::Reference, m) => cond::reference(v, m, b),
        (ParamType::Date, None) => cond::date(v, "x.lo", "x.hi", b),
        (ParamType::Number, None) => cond::number(v, b),
        (ParamType::Quantity, None) => cond::quantity(v, b),
        (ParamType::Uri, None) => Ok(format!("x.uri = {}", b.text(v))),
        (ParamType::Uri, Some("below")) => {
            let (lo, hi) = (b.text(v), b.text(format!("{v}\u{10FFFF}")));
            Ok(format!("(x.uri >= {lo} AND x.uri < {hi})"))
        }
        (ParamType::Uri, Some("above")) => {
            let p = b.text(v);
            Ok(format!("substr({p}, 1, length(x.uri)) = x.uri"))
        }
        (_, Some(m)) => Err(format!("the modifier ':{m}' is not supported for {} parameters", kind.as_str())),
        (_, None) => Err(format!("{} parameters are not supported yet", kind.as_str())),
    }
}
