//! `_include` and `_revinclude` (search.html#include): resources referenced by the matches, and
//! resources that reference them, added to the page with `search.mode = include`.

use std::collections::HashSet;

use super::Engine;
use crate::error::{Error, IssueCode, Result};
use crate::search::ParamType;
use crate::search::query::Include;
use crate::store::{Bind, Filter, Hit, Page, Version};

/// Most resources added to one page by includes; beyond it the rest is cut, with a warning.
pub const MAX_INCLUDED: usize = 1000;
/// Rounds of `:iterate`: each round includes from what the previous one added.
const MAX_ROUNDS: usize = 4;

impl Engine {
    /// The resources the includes add to a page of `hits`, without duplicates of the hits.
    pub(super) async fn included(&self, hits: &[Hit], includes: &[Include]) -> Result<Vec<Version>> {
        if includes.is_empty() || hits.is_empty() {
            return Ok(Vec::new());
        }
        let mut seen: HashSet<(String, String)> =
            hits.iter().map(|h| (h.version.rtype.clone(), h.version.id.clone())).collect();
        let mut out = Vec::new();
        let mut frontier: Vec<Hit> = hits.to_vec();
        for round in 0..MAX_ROUNDS {
            let mut added = Vec::new();
            for inc in includes.iter().filter(|i| round == 0 || i.iterate) {
                let found = if inc.reverse {
                    self.reverse_include(inc, &frontier).await?
                } else {
                    self.forward_include(inc, &frontier).await?
                };
                for hit in found {
                    if out.len() + added.len() >= MAX_INCLUDED {
                        break;
                    }
                    if seen.insert((hit.version.rtype.clone(), hit.version.id.clone())) {
                        added.push(hit);
                    }
                }
            }
            if added.is_empty() {
                break;
            }
            out.extend(added.iter().map(|h| h.version.clone()));
            frontier = added;
        }
        Ok(out)
    }

    /// Parameter ids of `source` that the include names (`*`: every reference parameter).
    fn include_pids(&self, source: &str, param: &str) -> Result<Vec<i32>> {
        let registry = &self.registry;
        if param == "*" {
            return Ok(registry
                .for_type(source)
                .into_iter()
                .filter(|p| p.kind == ParamType::Reference && p.in_index_tables())
                .filter_map(|p| self.store.param_id(source, &p.code))
                .collect());
        }
        match registry.get(source, param) {
            Some(p) if p.kind == ParamType::Reference && p.in_index_tables() => {
                Ok(self.store.param_id(source, param).into_iter().collect())
            }
            _ => Err(Error::invalid(
                IssueCode::Value,
                format!("'{source}:{param}' is not a reference search parameter"),
            )),
        }
    }

    async fn forward_include(&self, inc: &Include, frontier: &[Hit]) -> Result<Vec<Hit>> {
        let sources: Vec<&Hit> =
            frontier.iter().filter(|h| inc.source == "*" || h.version.rtype == inc.source).collect();
        let mut targets = Vec::new();
        // Sorted everywhere: the page must come out the same on every backend and every run.
        let mut source_types: Vec<&str> = sources.iter().map(|h| h.version.rtype.as_str()).collect();
        source_types.sort_unstable();
        source_types.dedup();
        for source_type in source_types {
            let pids = self.include_pids(source_type, &inc.param)?;
            let rkeys: Vec<i64> =
                sources.iter().filter(|h| h.version.rtype == source_type).map(|h| h.rkey).collect();
            targets.extend(self.store.reference_targets(&rkeys, &pids).await?);
        }
        targets.sort();
        targets.dedup();
        let mut by_type: Vec<(String, Vec<String>)> = Vec::new();
        for (t, id) in targets {
            if inc.target.as_deref().is_some_and(|want| want != t) {
                continue;
            }
            match by_type.iter_mut().find(|(bt, _)| *bt == t) {
                Some((_, ids)) => ids.push(id),
                None => by_type.push((t, vec![id])),
            }
        }
        let mut out = Vec::new();
        for (t, ids) in by_type {
            let list: Vec<String> = (2..=ids.len() + 1).map(|i| format!("${i}")).collect();
            let mut binds = vec![Bind::Text(t)];
            binds.extend(ids.into_iter().map(Bind::Text));
            let filter = Filter { sql: format!("r.rtype = $1 AND r.id IN ({})", list.join(", ")), binds };
            out.extend(
                self.store
                    .search(&filter, &Page { order: &[], position: None, limit: MAX_INCLUDED as i64 })
                    .await?,
            );
        }
        Ok(out)
    }

    async fn reverse_include(&self, inc: &Include, frontier: &[Hit]) -> Result<Vec<Hit>> {
        if inc.source == "*" {
            return Err(Error::invalid(IssueCode::NotSupported, "_revinclude=* is not supported"));
        }
        let pids = self.include_pids(&inc.source, &inc.param)?;
        if pids.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut types: Vec<&str> = frontier.iter().map(|h| h.version.rtype.as_str()).collect();
        types.sort_unstable();
        types.dedup();
        for t in types {
            let ids: Vec<&str> =
                frontier.iter().filter(|h| h.version.rtype == t).map(|h| h.version.id.as_str()).collect();
            let mut binds: Vec<Bind> = pids.iter().map(|p| Bind::Int((*p).into())).collect();
            let pid_list: Vec<String> = (1..=pids.len()).map(|i| format!("${i}")).collect();
            binds.push(Bind::Text(t.to_string()));
            let type_p = binds.len();
            let id_list: Vec<String> = ids
                .iter()
                .map(|id| {
                    binds.push(Bind::Text((*id).to_string()));
                    format!("${}", binds.len())
                })
                .collect();
            binds.push(Bind::Text(inc.source.clone()));
            let sql = format!(
                "r.rtype = ${} AND EXISTS (SELECT 1 FROM idx_reference x WHERE x.rkey = r.rkey \
                 AND x.pid IN ({}) AND x.target_type = ${type_p} AND x.target_id IN ({}))",
                binds.len(),
                pid_list.join(", "),
                id_list.join(", ")
            );
            out.extend(
                self.store
                    .search(
                        &Filter { sql, binds },
                        &Page { order: &[], position: None, limit: MAX_INCLUDED as i64 },
                    )
                    .await?,
            );
        }
        Ok(out)
    }
}
