//! The search path: one or several resource types, optionally inside a compartment, planned per
//! type and run as one keyset-paged query (search.html).

use super::Engine;
use super::confine::See;
use crate::error::{Error, Issue, IssueCode, Result};
use crate::search::{self, Handling, SearchQuery, compartment};
use crate::store::{Bind, Filter, Hit, Page, Position, SortKey, Version};

/// One page of search results.
pub struct SearchResult {
    pub hits: Vec<Version>,
    /// Resources added by `_include` / `_revinclude`.
    pub included: Vec<Version>,
    pub next: Option<String>,
    pub previous: Option<String>,
    pub total: Option<i64>,
    pub count: usize,
    /// Criteria that were ignored (lenient handling), reported as an OperationOutcome entry.
    pub ignored: Vec<Issue>,
}

/// Which resources a search looks at.
pub enum Scope<'a> {
    /// `GET [base]/Type?…`
    Type(&'a str),
    /// `GET [base]?…`: every type, or those `_type` names.
    System,
    /// `GET [base]/Patient/123/Type?…`, or with `*` every type in the compartment.
    Compartment { ctype: &'a str, cid: &'a str, rtype: &'a str },
}

impl Engine {
    /// Type-level search. Unknown or unsupported criteria are reported (lenient) or refused
    /// (strict).
    pub async fn search(&self, rtype: &str, query: &str, handling: Handling) -> Result<SearchResult> {
        self.search_in(Scope::Type(rtype), query, handling).await
    }

    pub async fn search_in(&self, scope: Scope<'_>, query: &str, handling: Handling) -> Result<SearchResult> {
        self.search_seen(scope, query, handling, None).await
    }

    /// A search that sees only what `see` lets the caller reach (authorization's confinements),
    /// matches and included resources alike.
    pub async fn search_seen(
        &self,
        scope: Scope<'_>,
        query: &str,
        handling: Handling,
        see: Option<&See>,
    ) -> Result<SearchResult> {
        let q = SearchQuery::parse(query)?;
        let types = scope_types(&scope, &q.types)?;
        let mut ignored = Vec::new();
        let (mut filter, mut count_sql) = plan_types(self, &types, &q, handling, &mut ignored)?;
        if let Some(see) = see
            && self.confine(&mut filter, &types, see)?
        {
            count_sql = None;
        }
        if let Scope::Compartment { ctype, cid, .. } = scope {
            search::restrict_to_compartment(
                &self.store,
                &mut filter,
                ctype,
                Some(&[cid.to_string()]),
                &types,
            )?;
            count_sql = None;
        }
        for name in &q.unsupported {
            let issue =
                Issue::new(IssueCode::NotSupported, format!("'{name}' is not supported yet and was ignored"));
            if handling == Handling::Strict {
                return Err(Error::Invalid(vec![issue.at(name.clone())]));
            }
            ignored.push(issue.at(name.clone()));
        }
        // The sort keys bind values of their own: the count must not see them.
        let mut sorted = filter.clone();
        let order = search::sort::keys(&self.registry, &self.store, &types, &q.sort, &mut sorted)?;
        let position = q.cursor.as_deref().map(|c| search::sort::decode(c, &order)).transpose()?;
        // _summary=count: the total alone.
        let summary_count = q.summary.as_deref() == Some("count");
        let count = if summary_count { 0 } else { self.page_size(q.count) };
        let page = async {
            if count == 0 {
                Ok((Vec::new(), None, None))
            } else {
                self.page(&sorted, &order, position.as_ref(), count).await
            }
        };
        let total = async {
            match q.total.as_deref() {
                Some("none") if !summary_count => Ok(None),
                _ => match &count_sql {
                    Some(sql) => self.store.count_sql(sql, &filter.binds).await.map(Some),
                    None => self.store.count(&filter).await.map(Some),
                },
            }
        };
        // Two connections, side by side: the page does not wait for the count.
        let ((hits, next, previous), total) = tokio::try_join!(page, total)?;
        let mut included = self.included(&hits, &q.includes).await?;
        if let Some(see) = see {
            included = self.visible_included(included, see).await?;
        }
        let mut hits: Vec<Version> = hits.into_iter().map(|h| h.version).collect();
        if !q.elements.is_empty() || matches!(q.summary.as_deref(), Some("data" | "true" | "text")) {
            for v in &mut hits {
                v.body = subset(&v.body, &q.elements, q.summary.as_deref())?;
            }
        }
        Ok(SearchResult { hits, included, next, previous, total, count, ignored })
    }

    /// One page from `position` with the cursors of the pages after and before it.
    async fn page(
        &self,
        filter: &Filter,
        order: &[SortKey],
        position: Option<&Position>,
        count: usize,
    ) -> Result<(Vec<Hit>, Option<String>, Option<String>)> {
        let page = Page { order, position, limit: count as i64 + 1 };
        let mut hits = self.store.search(filter, &page).await?;
        let more = hits.len() > count;
        hits.truncate(count);
        let backward = position.is_some_and(|p| p.backward);
        if backward {
            hits.reverse();
        }
        let cursor = |h: &Hit, backward: bool| {
            search::sort::encode(&Position { values: h.sort.clone(), rkey: h.rkey, backward })
        };
        // Paging forward, there are earlier rows whenever we did not start at the top; paging
        // backward, there are later rows: the page we came from.
        let (next, previous) = if backward {
            (hits.last().map(|h| cursor(h, false)), hits.first().filter(|_| more).map(|h| cursor(h, true)))
        } else {
            (
                hits.last().filter(|_| more).map(|h| cursor(h, false)),
                hits.first().filter(|_| position.is_some()).map(|h| cursor(h, true)),
            )
        };
        Ok((hits, next, previous))
    }
}

/// The resource types a search covers, in name order.
fn scope_types(scope: &Scope<'_>, requested: &[String]) -> Result<Vec<String>> {
    let mut types: Vec<String> = match scope {
        Scope::Type(t) => return Ok(vec![t.to_string()]),
        Scope::Compartment { rtype, .. } if *rtype != "*" => return Ok(vec![rtype.to_string()]),
        Scope::Compartment { ctype, .. } => crate::resource::model::resource_types()
            .filter(|t| compartment::params(ctype, t).is_some())
            .map(str::to_string)
            .collect(),
        Scope::System => crate::resource::model::resource_types().map(str::to_string).collect(),
    };
    if !requested.is_empty() {
        for t in requested {
            if !crate::resource::is_resource_type(t) {
                return Err(Error::invalid_at(
                    IssueCode::Value,
                    format!("_type: unknown type '{t}'"),
                    "_type",
                ));
            }
        }
        types.retain(|t| requested.contains(t));
    }
    types.sort();
    Ok(types)
}

/// The criteria planned over the types, as one filter that names the types.
pub(super) fn plan_types(
    engine: &Engine,
    types: &[String],
    q: &SearchQuery,
    handling: Handling,
    ignored: &mut Vec<Issue>,
) -> Result<(Filter, Option<String>)> {
    let plan = match types {
        [one] => {
            let mut plan = search::plan(&engine.registry, &engine.store, one, &q.criteria, handling)?;
            if !plan.types_implied {
                plan.filter.binds.push(Bind::Text(one.clone()));
                plan.filter.sql = format!("r.rtype = ${} AND {}", plan.filter.binds.len(), plan.filter.sql);
            }
            plan
        }
        _ => search::plan::plan_many(&engine.registry, &engine.store, types, &q.criteria, handling)?,
    };
    ignored.extend(plan.ignored);
    Ok((plan.filter, plan.keys))
}

/// Applies `_elements`, or without elements `_summary=true|text|data`, to a stored body.
pub fn subset(body: &[u8], elements: &[String], summary: Option<&str>) -> Result<Vec<u8>> {
    use crate::resource::{only_elements, summary, without_text};
    let value = crate::resource::parse_json(body)?;
    let value = match summary {
        _ if !elements.is_empty() => only_elements(&value, elements),
        Some("true") => summary::summary(&value),
        Some("text") => summary::text_only(&value),
        _ => without_text(&value),
    };
    serde_json::to_vec(&value).map_err(|e| Error::Internal(e.to_string()))
}
