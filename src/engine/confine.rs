//! Confinement: what a restricted grant lets a request see, as search conditions (patient
//! compartments, SMART v2 query restrictions) and as checks on single resources and on bodies
//! about to be written. The API layer decides the [`Reach`] per type; this module enforces it.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::Engine;
use crate::auth::{Confine, Interaction, Reach};
use crate::error::{Error, Result};
use crate::search::plan::{ALL, Binder};
use crate::search::{self, Handling, SearchQuery, compartment};
use crate::store::{Filter, Page, Version};

/// How far the caller reaches into each type, for each interaction (decided by authorization).
pub type See = dyn Fn(&str, Interaction) -> Reach + Send + Sync;

/// Most patients a care-team panel may hold.
pub const PANEL_MAX: usize = 5000;

/// Ids checked per membership query.
const IDS_PER_QUERY: usize = 200;

impl Engine {
    /// Narrows `filter` (over `types`) to what `see` lets a search reach. Types seen whole keep
    /// their rows; confined types keep the rows inside one of their confinements; types out of
    /// reach keep none. Types that share confinements share one condition.
    pub(super) fn confine(&self, filter: &mut Filter, types: &[String], see: &See) -> Result<bool> {
        let reaches: Vec<(&String, Reach)> = types.iter().map(|t| (t, see(t, Interaction::Search))).collect();
        if reaches.iter().all(|(_, r)| r.is_all()) {
            return Ok(false);
        }
        let mut b = Binder { binds: std::mem::take(&mut filter.binds) };
        let mut parts = Vec::new();
        let whole: Vec<String> =
            reaches.iter().filter(|(_, r)| r.is_all()).map(|(t, _)| b.text(t.as_str())).collect();
        if !whole.is_empty() {
            parts.push(format!("r.rtype IN ({})", whole.join(", ")));
        }
        let mut groups: BTreeMap<Vec<Confine>, Vec<String>> = BTreeMap::new();
        for (t, r) in reaches {
            if let Reach::Only(confines) = r {
                groups.entry(confines).or_default().push(t.clone());
            }
        }
        for (confines, group) in groups {
            let names: Vec<String> = group.iter().map(|t| b.text(t.as_str())).collect();
            let mut alternatives = Vec::new();
            for c in &confines {
                let f = self.confine_sql(c, &group, std::mem::take(&mut b.binds))?;
                b.binds = f.binds;
                alternatives.push(f.sql);
            }
            parts.push(format!(
                "(r.rtype IN ({}) AND (({})))",
                names.join(", "),
                alternatives.join(") OR (")
            ));
        }
        let reach = if parts.is_empty() { "1 = 0".to_string() } else { parts.join(" OR ") };
        filter.sql = format!("({}) AND ({reach})", filter.sql);
        filter.binds = b.binds;
        Ok(true)
    }

    /// One confinement over `types` as a condition, binding after `binds`.
    fn confine_sql(&self, c: &Confine, types: &[String], binds: Vec<crate::store::Bind>) -> Result<Filter> {
        let mut f = Filter { sql: ALL.to_string(), binds };
        if let Some(query) = &c.query {
            let unenforceable = |e: Error| {
                Error::Forbidden(format!(
                    "the access token's query restriction '{query}' cannot be enforced: {e}"
                ))
            };
            let q = SearchQuery::parse(query).map_err(unenforceable)?;
            if !q.criteria.is_empty() {
                let b = Binder { binds: f.binds };
                let plan = match types {
                    [one] => search::plan::plan_from(
                        &self.registry,
                        &self.store,
                        one,
                        &q.criteria,
                        Handling::Strict,
                        b,
                    ),
                    _ => search::plan::plan_many_from(
                        &self.registry,
                        &self.store,
                        types,
                        &q.criteria,
                        Handling::Strict,
                        b,
                    ),
                }
                .map_err(unenforceable)?;
                f = plan.filter;
            }
        }
        if let Some(patients) = &c.patients {
            search::plan::restrict_to_patients(&self.store, &mut f, patients, types)?;
        }
        Ok(f)
    }

    /// The care-team policy's panel of a Practitioner: the patients whose `generalPractitioner`
    /// it is, and the patients of active CareTeams it takes part in. At most `PANEL_MAX`; a
    /// larger panel is refused rather than cut, since a cut panel would hide patients silently.
    pub async fn care_team_panel(&self, practitioner: &str) -> Result<Vec<String>> {
        let reference = format!("Practitioner/{practitioner}");
        let gp = self.hits("Patient", &format!("general-practitioner={reference}")).await?;
        let teams = self.hits("CareTeam", &format!("participant={reference}&status=active")).await?;
        let mut panel: Vec<String> = gp.into_iter().map(|v| v.id).collect();
        for team in teams {
            let body = crate::resource::parse_json(&team.body)?;
            if let Some(id) = body
                .pointer("/subject/reference")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("Patient/"))
            {
                panel.push(id.to_string());
            }
        }
        panel.sort();
        panel.dedup();
        if panel.len() > PANEL_MAX {
            return Err(Error::Forbidden(format!(
                "the care-team policy cannot confine to more than {PANEL_MAX} patients; ask an administrator"
            )));
        }
        Ok(panel)
    }

    /// Every resource of `rtype` matching `query`, up to `PANEL_MAX + 1`.
    async fn hits(&self, rtype: &str, query: &str) -> Result<Vec<Version>> {
        let q = SearchQuery::parse(query)?;
        let types = [rtype.to_string()];
        let (filter, _) = super::search::plan_types(self, &types, &q, Handling::Strict, &mut Vec::new())?;
        let page = Page { order: &[], position: None, limit: PANEL_MAX as i64 + 1 };
        Ok(self.store.search(&filter, &page).await?.into_iter().map(|h| h.version).collect())
    }

    /// Which of `ids` (of `rtype`, not deleted) lie inside one of `confines`.
    pub async fn visible_ids(
        &self,
        rtype: &str,
        ids: &[String],
        confines: &[Confine],
    ) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        let only = Reach::Only(confines.to_vec());
        let see = move |_: &str, _: Interaction| only.clone();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let mut b = Binder::default();
            let t = b.text(rtype);
            let list: Vec<String> = chunk.iter().map(|id| b.text(id.as_str())).collect();
            let mut filter =
                Filter { sql: format!("r.rtype = {t} AND r.id IN ({})", list.join(", ")), binds: b.binds };
            self.confine(&mut filter, &[rtype.to_string()], &see)?;
            let page = Page { order: &[], position: None, limit: chunk.len() as i64 };
            out.extend(self.store.search(&filter, &page).await?.into_iter().map(|h| h.version.id));
        }
        Ok(out)
    }

    /// The included resources `see` lets the caller read.
    pub async fn visible_included(&self, included: Vec<Version>, see: &See) -> Result<Vec<Version>> {
        let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for v in &included {
            by_type.entry(v.rtype.clone()).or_default().push(v.id.clone());
        }
        let mut keep: HashSet<(String, String)> = HashSet::new();
        for (rtype, ids) in by_type {
            match see(&rtype, Interaction::Read) {
                Reach::All => keep.extend(ids.into_iter().map(|id| (rtype.clone(), id))),
                Reach::Nothing => {}
                Reach::Only(confines) => {
                    let seen = self.visible_ids(&rtype, &ids, &confines).await?;
                    keep.extend(seen.into_iter().map(|id| (rtype.clone(), id)));
                }
            }
        }
        Ok(included.into_iter().filter(|v| keep.contains(&(v.rtype.clone(), v.id.clone()))).collect())
    }

    /// Whether a resource about to be written (`id`: its id when known) lies inside one of
    /// `confines`: its compartment references name one of the patients (or it is one of them),
    /// and it matches the query. Queries are checked on the index rows the resource would get,
    /// which supports token criteria only; anything else cannot be checked and is refused.
    pub fn body_within(
        &self,
        rtype: &str,
        id: Option<&str>,
        body: &Value,
        confines: &[Confine],
    ) -> Result<bool> {
        let rows = search::index::extract(&self.registry, rtype, body);
        for c in confines {
            let in_compartment = match &c.patients {
                None => true,
                Some(patients) => {
                    // Every patient the resource would be tied to must be in reach, not just
                    // one: else a write could land in (or pull) another patient's record, and
                    // a CareTeam naming one's own patient could widen one's panel.
                    let params = compartment::patient_links(rtype).unwrap_or_default();
                    let linked: Vec<&String> = rows
                        .references
                        .iter()
                        .filter(|r| params.contains(&r.param) && r.target_type.as_deref() == Some("Patient"))
                        .filter_map(|r| r.target_id.as_ref())
                        .collect();
                    let itself = rtype == "Patient" && id.is_some_and(|id| patients.iter().any(|p| p == id));
                    (itself || !linked.is_empty()) && linked.iter().all(|t| patients.contains(t))
                }
            };
            if in_compartment && self.query_holds(rtype, c.query.as_deref(), &rows)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether a resource's index rows satisfy a query restriction made of token criteria.
    fn query_holds(&self, rtype: &str, query: Option<&str>, rows: &crate::store::IndexRows) -> Result<bool> {
        let Some(query) = query else { return Ok(true) };
        let q = SearchQuery::parse(query)?;
        for c in &q.criteria {
            let token = self.registry.get(rtype, &c.code).is_some_and(|p| p.kind == search::ParamType::Token);
            if !token || c.modifier.is_some() || c.raw_name.contains('.') {
                return Err(Error::Forbidden(format!(
                    "a write under the query restriction '{query}' cannot be checked ('{}'); only token criteria can",
                    c.raw_name
                )));
            }
            let mine: Vec<_> = rows.tokens.iter().filter(|t| t.param == c.code).collect();
            let hit = c.values.iter().any(|v| {
                mine.iter().any(|t| match v.split_once('|') {
                    Some(("", code)) => t.system.is_none() && t.code == code,
                    Some((system, "")) => t.system.as_deref() == Some(system),
                    Some((system, code)) => t.system.as_deref() == Some(system) && t.code == code,
                    None => t.code == *v,
                })
            });
            if !hit {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
