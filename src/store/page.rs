//! One page of search results in a caller-given order, positioned by keyset (the sort values and
//! key of the row before it), so paging neither skips nor repeats rows when data changes.
//!
//! Every sort key `s` is ordered as `(s IS NULL), s`: resources without a value come last in
//! both directions. The resource key `rkey` is the final tie-breaker, so the order is total.

use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Row};

use super::tx::bind_all;
use super::{Bind, Filter, Hit, Store, Version, on_backend};
use crate::error::Result;

/// The SQL type a sort expression yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKind {
    Text,
    Int,
    Real,
}

/// One sort key: a scalar SQL expression over `resource r` (its `$N` placeholders continue the
/// filter's numbering), and its direction.
#[derive(Debug, Clone)]
pub struct SortKey {
    pub sql: String,
    pub kind: SortKind,
    pub desc: bool,
}

/// A sort value of one row, as carried in a paging cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SortValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl SortValue {
    fn fits(&self, kind: SortKind) -> bool {
        matches!(
            (self, kind),
            (SortValue::Null, _)
                | (SortValue::Int(_), SortKind::Int)
                | (SortValue::Real(_), SortKind::Real)
                | (SortValue::Text(_), SortKind::Text)
        )
    }
}

/// Where a page starts: strictly after (or, paging backward, strictly before) the row with these
/// sort values and key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    #[serde(rename = "v")]
    pub values: Vec<SortValue>,
    #[serde(rename = "k")]
    pub rkey: i64,
    #[serde(rename = "b", default)]
    pub backward: bool,
}

impl Position {
    /// Whether this position was taken from a page with the same sort keys.
    pub fn fits(&self, order: &[SortKey]) -> bool {
        self.values.len() == order.len() && self.values.iter().zip(order).all(|(v, k)| v.fits(k.kind))
    }
}

pub struct Page<'a> {
    pub order: &'a [SortKey],
    pub position: Option<&'a Position>,
    pub limit: i64,
}

impl Store {
    /// Up to `page.limit` live resources matching `filter` (which names their types), in the
    /// page's order (reversed when paging backward: the caller restores it), each with its sort
    /// values.
    pub async fn search(&self, filter: &Filter, page: &Page<'_>) -> Result<Vec<Hit>> {
        let mut binds = filter.binds.clone();
        let keys: String =
            page.order.iter().enumerate().map(|(i, k)| format!(", ({}) AS s{i}", k.sql)).collect();
        let mut sql = format!(
            "SELECT * FROM (SELECT r.rkey, r.rtype, r.id, r.version, r.last_updated, r.deleted, r.body{keys} \
             FROM resource r WHERE ({}) AND NOT r.deleted) t",
            filter.sql,
        );
        let backward = page.position.is_some_and(|p| p.backward);
        if let Some(position) = page.position {
            sql.push_str(&format!(" WHERE {}", after(page.order, position, &mut binds)));
        }
        let mut order: Vec<String> = Vec::new();
        for (i, k) in page.order.iter().enumerate() {
            order.push(format!("(t.s{i} IS NULL){}", if backward { " DESC" } else { "" }));
            order.push(format!("t.s{i}{}", if k.desc != backward { " DESC" } else { "" }));
        }
        order.push(format!("t.rkey{}", if backward { " DESC" } else { "" }));
        // The limit is written into the SQL, not bound: SQLite re-prepares a statement whose
        // LIMIT is a parameter every time that parameter is bound (sqlite3ExprIsInteger marks
        // it), which cost ~5 % of a write's CPU in the statements that used it.
        sql.push_str(&format!(" ORDER BY {} LIMIT {}", order.join(", "), page.limit));
        let n = page.order.len();
        let hits = on_backend!(self, pool => {
            let rows = bind_all!(sqlx::query(AssertSqlSafe(sql.clone())), binds.iter()).fetch_all(pool).await?;
            let mut hits = Vec::with_capacity(rows.len());
            for row in rows {
                let mut sort = Vec::with_capacity(n);
                for (i, k) in page.order.iter().enumerate() {
                    let col = 7 + i;
                    sort.push(match k.kind {
                        SortKind::Text => row.try_get::<Option<String>, _>(col)?.map_or(SortValue::Null, SortValue::Text),
                        SortKind::Int => row.try_get::<Option<i64>, _>(col)?.map_or(SortValue::Null, SortValue::Int),
                        SortKind::Real => row.try_get::<Option<f64>, _>(col)?.map_or(SortValue::Null, SortValue::Real),
                    });
                }
                hits.push(Hit {
                    rkey: row.try_get(0)?,
                    version: Version {
                        rtype: row.try_get(1)?,
                        id: row.try_get(2)?,
                        version: row.try_get(3)?,
                        last_updated: row.try_get(4)?,
                        deleted: row.try_get(5)?,
                        method: "GET".into(),
                        body: row.try_get(6)?,
                    },
                    sort,
                });
            }
            hits
        });
        Ok(hits)
    }
}

/// The keyset condition "comes after `p` in the page order" over the columns `t.s0…`, `t.rkey`:
/// an OR over each key of (all earlier keys equal AND this key after).
fn after(order: &[SortKey], p: &Position, binds: &mut Vec<Bind>) -> String {
    let mut bind = |v: Bind| {
        binds.push(v);
        format!("${}", binds.len())
    };
    let mut equal_so_far: Vec<String> = Vec::new();
    let mut alts: Vec<String> = Vec::new();
    for (i, (key, value)) in order.iter().zip(&p.values).enumerate() {
        let col = format!("t.s{i}");
        let greater = key.desc == p.backward;
        match value {
            // Nulls sort last: after a null only other nulls (then later keys) follow.
            SortValue::Null => {
                if p.backward {
                    alts.push(and(&equal_so_far, &format!("{col} IS NOT NULL")));
                }
                equal_so_far.push(format!("{col} IS NULL"));
            }
            v => {
                let b = bind(match v {
                    SortValue::Int(n) => Bind::Int(*n),
                    SortValue::Real(x) => Bind::Real(*x),
                    SortValue::Text(s) => Bind::Text(s.clone()),
                    SortValue::Null => Bind::OptText(None),
                });
                let op = if greater { ">" } else { "<" };
                let beyond = if p.backward {
                    format!("{col} {op} {b}")
                } else {
                    format!("({col} IS NULL OR {col} {op} {b})")
                };
                alts.push(and(&equal_so_far, &beyond));
                equal_so_far.push(format!("{col} = {b}"));
            }
        }
    }
    let k = bind(Bind::Int(p.rkey));
    alts.push(and(&equal_so_far, &format!("t.rkey {} {k}", if p.backward { "<" } else { ">" })));
    format!("({})", alts.join(" OR "))
}

fn and(conds: &[String], last: &str) -> String {
    let mut all = conds.to_vec();
    all.push(last.to_string());
    format!("({})", all.join(" AND "))
}
