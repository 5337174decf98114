//! The read path: read, vread, history and search.

use std::sync::Arc;

use super::Engine;
use crate::error::{Error, Issue, IssueCode, Result};
use crate::search::{self, Handling, SearchQuery};
use crate::store::{Filter, HistoryQuery, HistoryScope, Hit, Page, Position, SortKey, Version};

/// One page of history, newest first.
pub struct History {
    pub entries: Vec<Version>,
    /// Cursor for the next (older) page, when there may be one.
    pub next: Option<String>,
    /// Number of versions in the whole history, when cheap to know (instance history).
    pub total: Option<i64>,
}

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

impl Engine {
    /// The current version; 404 when unknown, 410 when deleted.
    pub async fn read(&self, rtype: &str, id: &str) -> Result<Version> {
        match self.store.read(rtype, id).await? {
            Some(v) if v.deleted => {
                Err(Error::Gone(format!("{rtype}/{id} was deleted (version {})", v.version)))
            }
            Some(v) => Ok(Arc::unwrap_or_clone(v)),
            None => Err(Error::NotFound(format!("{rtype}/{id} is not known"))),
        }
    }

    /// A specific version; the version that records a deletion answers 410.
    pub async fn vread(&self, rtype: &str, id: &str, version: &str) -> Result<Version> {
        let n: i64 = version
            .parse()
            .map_err(|_| Error::NotFound(format!("{rtype}/{id} has no version '{version}'")))?;
        match self.store.vread(rtype, id, n).await? {
            Some(v) if v.deleted => Err(Error::Gone(format!("{rtype}/{id} was deleted in version {n}"))),
            Some(v) => Ok(v),
            None => Err(Error::NotFound(format!("{rtype}/{id} has no version {n}"))),
        }
    }

    pub async fn history(&self, scope: HistoryScope, params: &[(String, String)]) -> Result<History> {
        let mut q = HistoryQuery { scope, since: None, at: None, before: None, count: 0 };
        let mut count = None;
        for (name, value) in params {
            match name.as_str() {
                "_count" => count = Some(crate::search::query::parse_count(value)?),
                "_since" => q.since = Some(parse_instant(name, value)?.0),
                "_at" => q.at = Some(parse_instant(name, value)?.1 - 1),
                "_cursor" => q.before = Some(parse_cursor(value)?),
                _ => {}
            }
        }
        let size = self.page_size(count);
        q.count = size as i64 + 1;
        if let HistoryScope::Instance { rtype, id } = &q.scope
            && self.store.read(rtype, id).await?.is_none()
        {
            return Err(Error::NotFound(format!("{rtype}/{id} is not known")));
        }
        let mut rows = self.store.history(&q).await?;
        let next = (rows.len() > size).then(|| rows[size - 1].0.to_string()).filter(|_| size > 0);
        rows.truncate(size);
        let total = match &q.scope {
            HistoryScope::Instance { rtype, id } if q.since.is_none() && q.at.is_none() => {
                Some(self.store.history_count(rtype, id).await?)
            }
            _ => None,
        };
        Ok(History { entries: rows.into_iter().map(|(_, v)| v).collect(), next, total })
    }

    /// Type-level search. Unknown or unsupported criteria are reported (lenient) or refused
    /// (strict).
    pub async fn search(&self, rtype: &str, query: &str, handling: Handling) -> Result<SearchResult> {
        self.search_in(None, rtype, query, handling).await
    }

    /// Search, optionally within a compartment `(type, id)` such as `("Patient", "123")`.
    pub async fn search_in(
        &self,
        compartment: Option<(&str, &str)>,
        rtype: &str,
        query: &str,
        handling: Handling,
    ) -> Result<SearchResult> {
        let q = SearchQuery::parse(query)?;
        let mut plan = search::plan(&self.store, rtype, &q.criteria, handling)?;
        if let Some((ctype, cid)) = compartment {
            search::restrict_to_compartment(&self.store, &mut plan, ctype, cid, rtype)?;
        }
        for name in &q.unsupported {
            let issue =
                Issue::new(IssueCode::NotSupported, format!("'{name}' is not supported yet and was ignored"));
            if handling == Handling::Strict {
                return Err(Error::Invalid(vec![issue.at(name.clone())]));
            }
            plan.ignored.push(issue.at(name.clone()));
        }
        let order = search::sort::keys(&self.store, rtype, &q.sort, &mut plan)?;
        let position = q.cursor.as_deref().map(|c| search::sort::decode(c, &order)).transpose()?;
        // _summary=count: the total alone.
        let summary_count = q.summary.as_deref() == Some("count");
        let count = if summary_count { 0 } else { self.page_size(q.count) };
        let (hits, next, previous) = if count == 0 {
            (Vec::new(), None, None)
        } else {
            self.page(rtype, &plan.filter, &order, position.as_ref(), count).await?
        };
        let total = match q.total.as_deref() {
            Some("none") if !summary_count => None,
            _ => Some(self.store.count(rtype, &plan.filter).await?),
        };
        let included = self.included(&hits, &q.includes).await?;
        let mut hits: Vec<Version> = hits.into_iter().map(|h| h.version).collect();
        if !q.elements.is_empty() || matches!(q.summary.as_deref(), Some("data" | "true" | "text")) {
            for v in &mut hits {
                v.body = subset(&v.body, &q.elements, q.summary.as_deref())?;
            }
        }
        Ok(SearchResult { hits, included, next, previous, total, count, ignored: plan.ignored })
    }
}

impl Engine {
    /// One page from `position` with the cursors of the pages after and before it.
    async fn page(
        &self,
        rtype: &str,
        filter: &Filter,
        order: &[SortKey],
        position: Option<&Position>,
        count: usize,
    ) -> Result<(Vec<Hit>, Option<String>, Option<String>)> {
        let page = Page { order, position, limit: count as i64 + 1 };
        let mut hits = self.store.search(rtype, filter, &page).await?;
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

fn parse_instant(name: &str, value: &str) -> Result<(i64, i64)> {
    // An unencoded `+` of a time zone arrives as a space.
    crate::resource::instant::parse_range(&value.replace(' ', "+")).ok_or_else(|| {
        Error::invalid_at(
            IssueCode::Value,
            format!("{name} must be a FHIR instant or date, got '{value}'"),
            name,
        )
    })
}

fn parse_cursor(value: &str) -> Result<i64> {
    value.parse().map_err(|_| {
        Error::invalid_at(IssueCode::Value, format!("invalid paging cursor '{value}'"), "_cursor")
    })
}
