//! The read path: read, vread, history and search.

use std::sync::Arc;

use super::Engine;
use crate::error::{Error, IssueCode, Result};
use crate::store::{HistoryQuery, HistoryScope, Version};

/// One page of history, newest first.
pub struct History {
    pub entries: Vec<Version>,
    /// Cursor for the next (older) page, when there may be one.
    pub next: Option<String>,
    /// Number of versions in the whole history, when cheap to know (instance history).
    pub total: Option<i64>,
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
}

pub(super) fn parse_instant(name: &str, value: &str) -> Result<(i64, i64)> {
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
