//! The planner: turns parsed criteria into a SQL filter over `resource r` with bound values.
//! No client value is ever spliced into SQL text.

use super::query::{Criterion, split_token};
use super::registry::{ParamType, Registry};
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

pub struct Plan {
    pub filter: Filter,
    /// Criteria that were ignored, as warnings for the search result.
    pub ignored: Vec<Issue>,
}

pub fn plan(store: &Store, rtype: &str, criteria: &[Criterion], handling: Handling) -> Result<Plan> {
    let registry = Registry::global();
    let mut conds = Vec::new();
    let mut binds = Vec::new();
    let mut ignored = Vec::new();
    for c in criteria {
        let param = registry.get(rtype, &c.code);
        let problem = match param {
            None => Some(format!("unknown search parameter '{}' for {rtype}", c.raw_name)),
            Some(p) if !p.indexed() => {
                Some(format!("search parameter '{}' ({}) is not supported yet", c.raw_name, p.kind.as_str()))
            }
            Some(_) if c.modifier.is_some() => {
                Some(format!("modifier in '{}' is not supported yet", c.raw_name))
            }
            Some(_) => None,
        };
        if let Some(message) = problem {
            let issue = Issue::new(IssueCode::NotSupported, message).at(c.raw_name.clone());
            match handling {
                Handling::Strict => return Err(Error::Invalid(vec![issue])),
                Handling::Lenient => {
                    ignored.push(issue);
                    continue;
                }
            }
        }
        let Some(param) = param else { continue };
        let cond = if c.code == "_id" {
            id_condition(&c.values, &mut binds)
        } else if param.kind == ParamType::Token {
            let pid = store.param_id(rtype, &c.code).ok_or_else(|| {
                Error::Internal(format!("search parameter {rtype}.{} has no index id", c.code))
            })?;
            token_condition(pid, &c.values, &mut binds)
        } else {
            continue;
        };
        conds.push(cond);
    }
    let sql = if conds.is_empty() { "1 = 1".to_string() } else { conds.join(" AND ") };
    Ok(Plan { filter: Filter { sql, binds }, ignored })
}

fn placeholder(binds: &mut Vec<Bind>, value: Bind) -> String {
    binds.push(value);
    format!("${}", binds.len())
}

fn id_condition(values: &[String], binds: &mut Vec<Bind>) -> String {
    let list: Vec<String> = values.iter().map(|v| placeholder(binds, Bind::Text(v.clone()))).collect();
    format!("r.id IN ({})", list.join(", "))
}

/// `[system]|[code]` alternatives OR-ed within one indexed EXISTS.
fn token_condition(pid: i32, values: &[String], binds: &mut Vec<Bind>) -> String {
    let p = placeholder(binds, Bind::Int(pid.into()));
    let alternatives: Vec<String> = values
        .iter()
        .map(|v| match split_token(v) {
            (None, code) => format!("t.code = {}", placeholder(binds, Bind::Text(code))),
            (Some(system), code) if system.is_empty() => {
                format!("(t.code = {} AND t.system IS NULL)", placeholder(binds, Bind::Text(code)))
            }
            (Some(system), code) if code.is_empty() => {
                format!("t.system = {}", placeholder(binds, Bind::Text(system)))
            }
            (Some(system), code) => {
                let c = placeholder(binds, Bind::Text(code));
                let s = placeholder(binds, Bind::Text(system));
                format!("(t.code = {c} AND t.system = {s})")
            }
        })
        .collect();
    format!(
        "EXISTS (SELECT 1 FROM idx_token t WHERE t.rkey = r.rkey AND t.pid = {p} AND ({}))",
        alternatives.join(" OR ")
    )
}
