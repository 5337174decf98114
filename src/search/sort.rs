//! `_sort` (search.html#sort) and the opaque paging cursors that carry a page's position.
//!
//! A resource with several values for a sort parameter sorts by its lowest value ascending and
//! its highest descending (what HAPI does); one without a value sorts last either way.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::plan::Binder;
use super::registry::{ParamType, Registry};
use crate::error::{Error, IssueCode, Result};
use crate::store::{Bind, Filter, Position, SortKey, SortKind, Store};

/// Most sort keys accepted in one `_sort`.
const MAX_KEYS: usize = 8;

/// Parses `_sort=a,-b` into (code, descending) pairs.
pub fn parse(value: &str) -> Result<Vec<(String, bool)>> {
    let keys: Vec<(String, bool)> = value
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| match k.strip_prefix('-') {
            Some(code) => (code.to_string(), true),
            None => (k.to_string(), false),
        })
        .collect();
    if keys.len() > MAX_KEYS {
        return Err(Error::invalid_at(
            IssueCode::Value,
            format!("_sort takes at most {MAX_KEYS} keys"),
            "_sort",
        ));
    }
    Ok(keys)
}

/// The sort keys over `types`, with their parameter ids bound after the filter's values.
pub fn keys(
    registry: &Registry,
    store: &Store,
    types: &[String],
    sort: &[(String, bool)],
    filter: &mut Filter,
) -> Result<Vec<SortKey>> {
    let mut b = Binder { binds: std::mem::take(&mut filter.binds) };
    let result = sort.iter().map(|(code, desc)| key(registry, store, types, code, *desc, &mut b)).collect();
    filter.binds = b.binds;
    result
}

/// A resource of a type without the parameter has no value for it, and sorts last.
fn key(
    registry: &Registry,
    store: &Store,
    types: &[String],
    code: &str,
    desc: bool,
    b: &mut Binder,
) -> Result<SortKey> {
    let bad = |message: String| Error::invalid_at(IssueCode::Value, message, "_sort");
    match code {
        "_id" => return Ok(SortKey { sql: "r.id".into(), kind: SortKind::Text, desc }),
        "_lastUpdated" => return Ok(SortKey { sql: "r.last_updated".into(), kind: SortKind::Int, desc }),
        _ => {}
    }
    let param = types
        .iter()
        .find_map(|t| registry.get(t, code))
        .ok_or_else(|| bad(format!("unknown search parameter '{code}' in _sort")))?;
    let (table, column, kind) = match param.kind {
        ParamType::String => ("idx_string", "norm", SortKind::Text),
        ParamType::Token => ("idx_token", "code", SortKind::Text),
        ParamType::Reference => ("idx_reference", "url", SortKind::Text),
        ParamType::Uri => ("idx_uri", "uri", SortKind::Text),
        ParamType::Date => ("idx_date", if desc { "hi" } else { "lo" }, SortKind::Int),
        ParamType::Number | ParamType::Quantity => ("idx_number", "value", SortKind::Real),
        other => return Err(bad(format!("cannot sort by the {} parameter '{code}'", other.as_str()))),
    };
    // A parameter's narrower parameters hold some of its values (`SearchParam::narrower`).
    let pids: Vec<String> = types
        .iter()
        .filter_map(|t| registry.get(t, code).filter(|p| p.kind == param.kind).map(|p| (t, p)))
        .flat_map(|(t, p)| p.stored_under().filter_map(|c| store.param_id(t, c)))
        .map(|pid| b.push(Bind::Int(pid.into())))
        .collect();
    if pids.is_empty() || !param.in_index_tables() {
        return Err(bad(format!("cannot sort by '{code}': it is not indexed")));
    }
    let agg = if desc { "MAX" } else { "MIN" };
    // `+x.pid` keeps the pid out of index selection: without statistics SQLite would rather walk
    // the (pid, value) index — every row of the parameter — than look the resource's rows up by
    // (rkey, pid). The unary plus changes nothing in PostgreSQL.
    Ok(SortKey {
        sql: format!(
            "SELECT {agg}(x.{column}) FROM {table} x WHERE x.rkey = r.rkey AND +x.pid IN ({})",
            pids.join(", ")
        ),
        kind,
        desc,
    })
}

/// The opaque form of a position, for `_cursor`.
pub fn encode(position: &Position) -> String {
    // Serializing plain data cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).unwrap_or_default())
}

pub fn decode(cursor: &str, order: &[SortKey]) -> Result<Position> {
    let bad = || Error::invalid_at(IssueCode::Value, format!("invalid paging cursor '{cursor}'"), "_cursor");
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| bad())?;
    let position: Position = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if !position.fits(order) {
        return Err(Error::invalid_at(
            IssueCode::Value,
            "the paging cursor belongs to a search with a different _sort",
            "_cursor",
        ));
    }
    Ok(position)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SortValue;

    #[test]
    fn sort_syntax() {
        assert_eq!(
            parse("name,-birthdate").unwrap(),
            vec![("name".into(), false), ("birthdate".into(), true)]
        );
        assert!(parse(&"a,".repeat(9)).is_err());
    }

    #[test]
    fn cursors_round_trip_and_check_their_order() {
        let order = [
            SortKey { sql: String::new(), kind: SortKind::Text, desc: false },
            SortKey { sql: String::new(), kind: SortKind::Real, desc: true },
        ];
        let p = Position {
            values: vec![SortValue::Text("smith".into()), SortValue::Real(1.5)],
            rkey: 42,
            backward: true,
        };
        assert_eq!(decode(&encode(&p), &order).unwrap(), p);
        assert!(decode(&encode(&p), &order[..1]).is_err());
        assert!(decode("not a cursor", &order).is_err());
    }
}
