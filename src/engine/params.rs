//! Custom search parameters over the life of an engine, and `$reindex`.

use super::Engine;
use crate::error::Result;
use crate::store::{Bind, Filter, Hit, Page, Position, Version};

/// Resources re-indexed per transaction.
const REINDEX_BATCH: i64 = 200;

impl Engine {
    /// Activates the SearchParameter resources stored in the database (at start-up).
    pub(super) async fn load_custom_params(&self) -> Result<()> {
        let filter = of_type(Some("SearchParameter"));
        let mut after = None;
        loop {
            let hits = self.batch_after(&filter, after, 500).await?;
            let Some(last) = hits.last() else { break };
            after = Some(last.rkey);
            for hit in &hits {
                // Stored before a rule changed, or by an older version: log it, do not refuse to start.
                if let Err(e) = self.activate(&hit.version).await {
                    tracing::warn!("SearchParameter/{} is not active: {e}", hit.version.id);
                }
            }
        }
        Ok(())
    }

    /// After a SearchParameter was written: its parameters apply from the next write on.
    pub(super) async fn custom_params_written(&self, version: &Version) -> Result<()> {
        if version.rtype == "SearchParameter" { self.activate(version).await } else { Ok(()) }
    }

    async fn activate(&self, version: &Version) -> Result<()> {
        let value = crate::resource::parse_json(&version.body)?;
        let params = self.registry.check_custom(&version.id, &value)?;
        // Ids first: a write that sees the parameter must find its id.
        let keys: Vec<(String, String)> = params.iter().map(|(t, p)| (t.clone(), p.code.clone())).collect();
        self.store.register_params(&keys).await?;
        self.registry.set_custom(&version.id, params);
        Ok(())
    }

    /// Recomputes the index rows of every current resource (of `rtype`, or of all types), in
    /// batches, each in its own transaction. A resource written meanwhile was indexed by its own
    /// write and is left alone. Returns how many resources were re-indexed.
    pub async fn reindex(&self, rtype: Option<&str>) -> Result<u64> {
        let filter = of_type(rtype);
        let mut after = None;
        let mut done = 0u64;
        loop {
            let hits = self.batch_after(&filter, after, REINDEX_BATCH).await?;
            let Some(last) = hits.last() else { break };
            after = Some(last.rkey);
            let mut tx = self.store.begin().await?;
            for hit in &hits {
                let v = &hit.version;
                match tx.current(&v.rtype, &v.id).await? {
                    Some(cur) if cur.version == v.version && !cur.deleted => {}
                    _ => continue,
                }
                let value = crate::resource::parse_json(&v.body)?;
                let rows = crate::search::index::extract(&self.registry, &v.rtype, &value);
                tx.set_index(&self.store, &v.rtype, hit.rkey, &rows).await?;
                done += 1;
            }
            tx.commit().await?;
        }
        Ok(done)
    }

    /// The next `limit` current resources matching `filter`, in key order after `after`.
    async fn batch_after(&self, filter: &Filter, after: Option<i64>, limit: i64) -> Result<Vec<Hit>> {
        let position = after.map(|rkey| Position { values: Vec::new(), rkey, backward: false });
        self.store.search(filter, &Page { order: &[], position: position.as_ref(), limit }).await
    }
}

/// Every resource of `rtype`, or of every type.
fn of_type(rtype: Option<&str>) -> Filter {
    match rtype {
        Some(t) => Filter { sql: "r.rtype = $1".into(), binds: vec![Bind::Text(t.to_string())] },
        None => Filter { sql: "1 = 1".into(), binds: Vec::new() },
    }
}
