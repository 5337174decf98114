//! Conditions on one index row (alias `x`) for one search value, per parameter type, with the
//! prefix and precision rules of search.html.

use super::index::{fold, split_reference};
use super::plan::Binder;
use super::query::split_token;
use crate::resource::{instant, is_resource_type};
use crate::store::Bind;

/// Upper bound for "starts with" as a range: every string with the prefix sorts below it
/// (byte order in SQLite, `COLLATE "C"` in PostgreSQL).
const MAX_CHAR: char = '\u{10FFFF}';

pub fn token(v: &str, b: &mut Binder) -> String {
    token_in(v, "x.system", "x.code", b)
}

/// A token condition on the given system and code columns.
pub fn token_in(v: &str, system_col: &str, code_col: &str, b: &mut Binder) -> String {
    match split_token(v) {
        (None, code) => format!("{code_col} = {}", b.text(code)),
        (Some(system), code) if system.is_empty() => {
            format!("({code_col} = {} AND {system_col} IS NULL)", b.text(code))
        }
        (Some(system), code) if code.is_empty() => format!("{system_col} = {}", b.text(system)),
        (Some(system), code) => {
            let c = b.text(code);
            let s = b.text(system);
            format!("({code_col} = {c} AND {system_col} = {s})")
        }
    }
}

/// `:of-type`: `type-system|type-code|value` (search.html#token), against the composite rows that
/// pair an identifier's type coding with its value.
pub fn of_type(v: &str, b: &mut Binder) -> Result<String, String> {
    let (Some(system), rest) = split_token(v) else {
        return Err(format!("'{v}' is not system|code|value, as :of-type needs"));
    };
    let (Some(code), value) = split_token(&rest) else {
        return Err(format!("'{v}' is not system|code|value, as :of-type needs"));
    };
    if code.is_empty() || value.is_empty() {
        return Err(format!("'{v}': :of-type needs a type code and a value"));
    }
    let mut conds = vec![format!("x.c_code = {}", b.text(code)), format!("x.code = {}", b.text(value))];
    if !system.is_empty() {
        conds.push(format!("x.c_system = {}", b.text(system)));
    }
    Ok(format!("({})", conds.join(" AND ")))
}

pub fn string_starts(v: &str, b: &mut Binder) -> String {
    let norm = fold(v);
    let lo = b.text(norm.clone());
    let hi = b.text(format!("{norm}{MAX_CHAR}"));
    format!("(x.norm >= {lo} AND x.norm < {hi})")
}

pub fn string_contains(v: &str, b: &mut Binder) -> String {
    let escaped = fold(v).replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("x.norm LIKE {} ESCAPE '\\'", b.text(format!("%{escaped}%")))
}

/// `id`, `Type/id`, or an absolute URL; `:Type` restricts a plain id to that type.
pub fn reference(v: &str, modifier: Option<&str>, b: &mut Binder) -> Result<String, String> {
    let typed = match modifier {
        None => None,
        Some(t) if is_resource_type(t) => Some(t),
        Some(m) => return Err(format!("the modifier ':{m}' is not supported for reference parameters")),
    };
    if v.contains("://") || v.starts_with("urn:") {
        // Absolute references match as written (a type modifier must agree with the URL). One
        // that names a resource is found by its target first; only the others have their URL
        // indexed (migration 0010), and their rows have no target.
        return Ok(match split_reference(v) {
            Some((t, _)) if typed.is_some_and(|m| m != t) => "1 = 0".into(),
            Some((t, id)) => format!(
                "(x.target_type = {} AND x.target_id = {} AND x.url = {})",
                b.text(t),
                b.text(id),
                b.text(v)
            ),
            None => format!("(x.target_id IS NULL AND x.url = {})", b.text(v)),
        });
    }
    match (v.split_once('/'), typed) {
        (Some((t, id)), m) if m.is_none_or(|m| m == t) => {
            Ok(format!("(x.target_type = {} AND x.target_id = {})", b.text(t), b.text(id)))
        }
        (Some(_), _) => Ok("1 = 0".into()),
        (None, Some(t)) => Ok(format!("(x.target_type = {} AND x.target_id = {})", b.text(t), b.text(v))),
        (None, None) => Ok(format!("x.target_id = {}", b.text(v))),
    }
}

const PREFIXES: &[&str] = &["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"];

fn split_prefix(v: &str) -> (&str, &str) {
    match v.get(..2) {
        Some(p) if PREFIXES.contains(&p) => (p, &v[2..]),
        _ => ("eq", v),
    }
}

/// Range semantics on a row range [lo, hi) against the search range [s, e).
pub fn date(v: &str, lo: &str, hi: &str, b: &mut Binder) -> Result<String, String> {
    let (prefix, value) = split_prefix(v);
    let (s, e) = instant::parse_range(&value.replace(' ', "+"))
        .ok_or_else(|| format!("'{value}' is not a valid date, dateTime or instant"))?;
    let (s, e) = if prefix == "ap" {
        // ±10% of the distance to now (search.html#prefix), at least the value's own precision.
        let slack = (instant::now_ms() - s).abs() / 10;
        (s.saturating_sub(slack), e.saturating_add(slack))
    } else {
        (s, e)
    };
    // Only the values a prefix uses are bound: every placeholder must appear in the statement.
    let (start, end) = (s, e);
    // `lo < hi` always holds, so `hi <= e` implies `lo < e`: saying so bounds the index range.
    let eq = |s: &str, e: &str| format!("({lo} >= {s} AND {lo} < {e} AND {hi} <= {e})");
    Ok(match prefix {
        "gt" => format!("{hi} > {}", b.push(Bind::Int(end))),
        "lt" => format!("{lo} < {}", b.push(Bind::Int(start))),
        "sa" => format!("{lo} >= {}", b.push(Bind::Int(end))),
        "eb" => {
            let s = b.push(Bind::Int(start));
            format!("({lo} < {s} AND {hi} <= {s})")
        }
        _ => {
            let (s, e) = (b.push(Bind::Int(start)), b.push(Bind::Int(end)));
            match prefix {
                "eq" => eq(&s, &e),
                "ne" => format!("NOT {}", eq(&s, &e)),
                "ge" => format!("({hi} > {e} OR {})", eq(&s, &e)),
                "le" => format!("({lo} < {s} OR {})", eq(&s, &e)),
                _ => format!("({lo} < {e} AND {hi} > {s})"),
            }
        }
    })
}

/// Comparison on `x.value` with the implicit precision of the written number: `5.4` means
/// [5.35, 5.45).
pub fn number(v: &str, b: &mut Binder) -> Result<String, String> {
    let (prefix, value) = split_prefix(v);
    let n: f64 = value.trim().parse().map_err(|_| format!("'{value}' is not a number"))?;
    if !n.is_finite() {
        return Err(format!("'{value}' is not a number"));
    }
    let half = match (value.find(['e', 'E']), value.find('.')) {
        (Some(_), _) => n.abs() * 1e-12,
        (None, Some(dot)) => 0.5 * 10f64.powi(-((value.len() - dot - 1) as i32)),
        (None, None) => 0.5,
    };
    let mut p = |x: f64| b.push(Bind::Real(x));
    Ok(match prefix {
        "eq" => format!("(x.value >= {} AND x.value < {})", p(n - half), p(n + half)),
        "ne" => format!("NOT (x.value >= {} AND x.value < {})", p(n - half), p(n + half)),
        "gt" | "sa" => format!("x.value > {}", p(n)),
        "lt" | "eb" => format!("x.value < {}", p(n)),
        "ge" => format!("x.value >= {}", p(n)),
        "le" => format!("x.value <= {}", p(n)),
        _ => {
            let slack = (n.abs() * 0.1).max(half);
            format!("(x.value >= {} AND x.value <= {})", p(n - slack), p(n + slack))
        }
    })
}

/// `[prefix]number|system|code`, `number||code` or just a number.
pub fn quantity(v: &str, b: &mut Binder) -> Result<String, String> {
    let mut parts = v.splitn(3, '|');
    let number_part = parts.next().unwrap_or_default();
    let system = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let mut conds = vec![number(number_part, b)?];
    if !system.is_empty() {
        conds.push(format!("x.system = {}", b.text(system)));
    }
    if !code.is_empty() {
        conds.push(format!("x.code = {}", b.text(code)));
    }
    Ok(format!("({})", conds.join(" AND ")))
}
