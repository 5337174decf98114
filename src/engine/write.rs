//! The write path: create, update, patch, delete and their conditional forms.

use serde_json::Value;

use super::draft::Drafts;
use super::load::{Origin, Prepared, prepare};
use super::{Engine, lock_key};
use crate::error::{Error, IssueCode, Result};
use crate::resource::{self, instant};
use crate::search::{self, Handling, SearchQuery};
use crate::store::{Current, Filter, NewVersion, Tx, Version};

/// The result of a create or update.
#[derive(Debug, Clone)]
pub struct Written {
    pub version: Version,
    /// True when a new resource came into being (201), false for an update or a conditional
    /// create that matched an existing resource (200).
    pub created: bool,
    /// True when nothing was written because a conditional create found its match.
    pub existing: bool,
}

/// The result of a delete: the version that records the deletion, if one was written.
#[derive(Debug, Clone, Copy)]
pub struct Deleted {
    pub version: Option<i64>,
}

impl Engine {
    /// POST: a new resource with a server-assigned id, or with `If-None-Exist` the existing match.
    pub async fn create(&self, rtype: &str, value: Value, if_none_exist: Option<&str>) -> Result<Written> {
        resource::validate(rtype, &value)?;
        let written = self.retry(|| self.try_create(rtype, &value, if_none_exist)).await?;
        if !written.existing {
            self.custom_params_written(&written.version).await?;
        }
        Ok(written)
    }

    async fn try_create(&self, rtype: &str, value: &Value, if_none_exist: Option<&str>) -> Result<Written> {
        let mut tx = self.store.begin().await?;
        if let Some(condition) = if_none_exist {
            let found = self.find_for_condition(&mut tx, rtype, condition, None).await?;
            match found.as_slice() {
                [] => {}
                [(_, id)] => {
                    drop(tx);
                    let version = self.read(rtype, id).await?;
                    return Ok(Written { version, created: false, existing: true });
                }
                _ => return Err(multiple_matches(rtype, condition)),
            }
        }
        let id = super::new_id();
        let version = self.put(&mut tx, rtype, &id, None, value.clone(), "POST").await?;
        tx.commit().await?;
        Ok(Written { version, created: true, existing: false })
    }

    /// Writes resources that carry their own ids (update-as-create each) in one transaction, as
    /// a bulk load does: all of them or none. Returns how many were written.
    pub async fn import(&self, resources: &[Value]) -> Result<usize> {
        for v in resources {
            let rtype = v.get("resourceType").and_then(Value::as_str).unwrap_or_default();
            resource::validate(rtype, v)?;
        }
        self.import_validated(resources).await
    }

    /// [`Engine::import`] for resources the caller has validated already.
    pub async fn import_validated(&self, resources: &[Value]) -> Result<usize> {
        let mut prepared = Vec::with_capacity(resources.len());
        for (i, v) in resources.iter().enumerate() {
            let origin = Origin { file: String::new(), line: i };
            let p = prepare(&self.registry, origin, v.clone(), false).map_err(|r| {
                Error::invalid(IssueCode::Invalid, format!("resource {i} of the import: {}", r.reason))
            })?;
            prepared.push(p);
        }
        self.write_prepared(&prepared).await
    }

    /// Writes prepared resources (ids given, update-as-create) in one transaction. Returns how
    /// many were written: a resource stored already with the same content is not.
    pub async fn write_prepared(&self, items: &[Prepared]) -> Result<usize> {
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        let unique = items.iter().all(|p| seen.insert((p.rtype.as_str(), p.id.as_str())));
        let (written, versions) = if unique {
            self.retry(|| self.write_batch(items)).await?
        } else {
            // The same resource twice: each write must see the one before it.
            self.retry(|| async {
                let mut tx = self.store.begin().await?;
                let mut written = Vec::with_capacity(items.len());
                for p in items {
                    let current = tx.current(&p.rtype, &p.id).await?;
                    written.push(self.put(&mut tx, &p.rtype, &p.id, current, p.value.clone(), "PUT").await?);
                }
                tx.commit().await?;
                Ok((written.len(), written))
            })
            .await?
        };
        for v in &versions {
            // Stored already: a SearchParameter that cannot be activated is logged, not undone.
            if let Err(e) = self.custom_params_written(v).await {
                tracing::warn!("{}/{} was imported but is not active: {e}", v.rtype, v.id);
            }
        }
        Ok(written)
    }

    /// One transaction writing distinct resources with few statements (see `store::many`).
    /// Resources that exist already are stamped again as their next version. Returns how many
    /// were written, and the versions of SearchParameters among them (to activate).
    async fn write_batch(&self, items: &[Prepared]) -> Result<(usize, Vec<Version>)> {
        let mut tx = self.store.begin().await?;
        let keys: Vec<(&str, &str)> = items.iter().map(|p| (p.rtype.as_str(), p.id.as_str())).collect();
        let current = tx.current_many(&keys).await?;
        let mut again = Vec::with_capacity(items.len());
        let mut unchanged = vec![false; items.len()];
        for (i, p) in items.iter().enumerate() {
            let cur = current.get(&(p.rtype.clone(), p.id.clone()));
            again.push(match cur {
                None => None,
                Some((c, stored)) => {
                    let version = c.version + 1;
                    let now = instant::now_ms().max(c.last_updated);
                    let stamped = resource::stamp(p.value.clone(), &p.id, version, now);
                    // A bulk load run again must not pile up versions of what it already wrote.
                    if !c.deleted && same_content(stored, &stamped) {
                        unchanged[i] = true;
                        None
                    } else {
                        let body =
                            serde_json::to_vec(&stamped).map_err(|e| Error::Internal(e.to_string()))?;
                        let index = search::index::extract(&self.registry, &p.rtype, &stamped);
                        Some((c.rkey, version, now, body, index))
                    }
                }
            });
        }
        let rows: Vec<NewVersion> = items
            .iter()
            .zip(&again)
            .zip(&unchanged)
            .filter(|(_, same)| !**same)
            .map(|((p, a), _)| match a {
                None => NewVersion {
                    rtype: &p.rtype,
                    id: &p.id,
                    version: 1,
                    last_updated: p.last_updated,
                    body: &p.body,
                    index: &p.index,
                    rkey: None,
                },
                Some((rkey, version, now, body, index)) => NewVersion {
                    rtype: &p.rtype,
                    id: &p.id,
                    version: *version,
                    last_updated: *now,
                    body,
                    index,
                    rkey: Some(*rkey),
                },
            })
            .collect();
        tx.write_many(&self.store, &rows).await?;
        tx.commit().await?;
        let params = rows
            .iter()
            .filter(|r| r.rtype == "SearchParameter")
            .map(|r| Version {
                rtype: r.rtype.to_string(),
                id: r.id.to_string(),
                version: r.version,
                last_updated: r.last_updated,
                deleted: false,
                method: "PUT".into(),
                body: r.body.to_vec(),
            })
            .collect();
        Ok((rows.len(), params))
    }

    /// PUT `Type/id`: update, or create with the client's id when it does not exist yet.
    pub async fn update(
        &self,
        rtype: &str,
        id: &str,
        value: Value,
        if_match: Option<i64>,
    ) -> Result<Written> {
        check_body_id(&value, Some(id))?;
        resource::validate(rtype, &value)?;
        let written = self.retry(|| self.try_update(rtype, id, &value, if_match)).await?;
        self.custom_params_written(&written.version).await?;
        Ok(written)
    }

    async fn try_update(
        &self,
        rtype: &str,
        id: &str,
        value: &Value,
        if_match: Option<i64>,
    ) -> Result<Written> {
        let mut tx = self.store.begin().await?;
        let current = tx.current(rtype, id).await?;
        check_if_match(current.as_ref(), if_match)?;
        let written = self.write_version(&mut tx, rtype, id, current, value.clone(), "PUT").await?;
        tx.commit().await?;
        Ok(written)
    }

    /// PUT `Type?criteria`: update the single match, create when there is none.
    pub async fn conditional_update(
        &self,
        rtype: &str,
        condition: &str,
        value: Value,
        if_match: Option<i64>,
    ) -> Result<Written> {
        resource::validate(rtype, &value)?;
        let written = self.retry(|| self.try_conditional_update(rtype, condition, &value, if_match)).await?;
        self.custom_params_written(&written.version).await?;
        Ok(written)
    }

    async fn try_conditional_update(
        &self,
        rtype: &str,
        condition: &str,
        value: &Value,
        if_match: Option<i64>,
    ) -> Result<Written> {
        let body_id = value.get("id").and_then(Value::as_str).map(str::to_string);
        let mut tx = self.store.begin().await?;
        let found = self.find_for_condition(&mut tx, rtype, condition, None).await?;
        let id = match found.as_slice() {
            [] => body_id.clone().unwrap_or_else(super::new_id),
            [(_, id)] => {
                // The body may omit the id; if it has one, it must be the match's.
                if body_id.is_some() {
                    check_body_id(value, Some(id))?;
                }
                id.clone()
            }
            _ => return Err(multiple_matches(rtype, condition)),
        };
        let current = tx.current(rtype, &id).await?;
        check_if_match(current.as_ref(), if_match)?;
        let written = self.write_version(&mut tx, rtype, &id, current, value.clone(), "PUT").await?;
        tx.commit().await?;
        Ok(written)
    }

    /// PATCH with a JSON Patch document; the result is validated like any update.
    pub async fn patch(
        &self,
        rtype: &str,
        id: &str,
        patch: &json_patch::Patch,
        if_match: Option<i64>,
    ) -> Result<Written> {
        let written = self.retry(|| self.try_patch(rtype, id, patch, if_match)).await?;
        self.custom_params_written(&written.version).await?;
        Ok(written)
    }

    async fn try_patch(
        &self,
        rtype: &str,
        id: &str,
        patch: &json_patch::Patch,
        if_match: Option<i64>,
    ) -> Result<Written> {
        let mut tx = self.store.begin().await?;
        let current = tx.current(rtype, id).await?;
        let Some(cur) = current.filter(|c| !c.deleted) else {
            return Err(match current {
                Some(_) => Error::Gone(format!("{rtype}/{id} is deleted")),
                None => Error::NotFound(format!("{rtype}/{id} is not known")),
            });
        };
        check_if_match(Some(&cur), if_match)?;
        let mut value = resource::parse_json(&tx.body(cur.rkey).await?)?;
        json_patch::patch(&mut value, patch).map_err(|e| {
            Error::invalid(IssueCode::Processing, format!("the JSON Patch cannot be applied: {e}"))
        })?;
        check_body_id(&value, Some(id))?;
        resource::validate(rtype, &value)?;
        let version = self.put(&mut tx, rtype, id, Some(cur), value, "PATCH").await?;
        tx.commit().await?;
        Ok(Written { version, created: false, existing: false })
    }

    /// DELETE `Type/id`: a logical delete recorded as a new version. Deleting what is already
    /// gone or never existed succeeds without writing anything.
    pub async fn delete(&self, rtype: &str, id: &str, if_match: Option<i64>) -> Result<Deleted> {
        let deleted = self.retry(|| self.try_delete(rtype, id, if_match)).await?;
        if rtype == "SearchParameter" {
            self.registry.set_custom(id, Vec::new());
        }
        Ok(deleted)
    }

    async fn try_delete(&self, rtype: &str, id: &str, if_match: Option<i64>) -> Result<Deleted> {
        let mut tx = self.store.begin().await?;
        let version = self.delete_in(&mut tx, rtype, id, if_match).await?;
        tx.commit().await?;
        Ok(Deleted { version })
    }

    /// Deletes `rtype/id` inside `tx` if it is there and not deleted yet; the version written.
    pub(super) async fn delete_in(
        &self,
        tx: &mut Tx,
        rtype: &str,
        id: &str,
        if_match: Option<i64>,
    ) -> Result<Option<i64>> {
        let current = tx.current(rtype, id).await?;
        if if_match.is_some() {
            check_if_match(current.as_ref(), if_match)?;
        }
        match current {
            Some(cur) if !cur.deleted => Ok(Some(self.tombstone(tx, rtype, id, cur).await?)),
            _ => Ok(None),
        }
    }

    /// DELETE `Type?criteria`: deletes the single match; several matches are refused (412).
    pub async fn conditional_delete(&self, rtype: &str, condition: &str) -> Result<Deleted> {
        let (deleted, id) = self.retry(|| self.try_conditional_delete(rtype, condition)).await?;
        if let Some(id) = id.filter(|_| rtype == "SearchParameter") {
            self.registry.set_custom(&id, Vec::new());
        }
        Ok(deleted)
    }

    async fn try_conditional_delete(
        &self,
        rtype: &str,
        condition: &str,
    ) -> Result<(Deleted, Option<String>)> {
        let mut tx = self.store.begin().await?;
        let found = self.find_for_condition(&mut tx, rtype, condition, None).await?;
        let version = match found.as_slice() {
            [] => None,
            [(_, id)] => self.delete_in(&mut tx, rtype, id, None).await?,
            _ => return Err(multiple_matches(rtype, condition)),
        };
        tx.commit().await?;
        Ok((Deleted { version }, found.into_iter().next().map(|(_, id)| id)))
    }

    pub(super) async fn write_version(
        &self,
        tx: &mut Tx,
        rtype: &str,
        id: &str,
        current: Option<Current>,
        value: Value,
        method: &str,
    ) -> Result<Written> {
        let version = self.put(tx, rtype, id, current, value, method).await?;
        Ok(written(current, version))
    }

    /// Writes a version [`stamp_version`] made on `current`, as a create or update.
    pub(super) async fn write_stamped(
        &self,
        tx: &mut Tx,
        rtype: &str,
        id: &str,
        current: Option<Current>,
        stamped: Stamped,
        method: &str,
    ) -> Result<Written> {
        let version = self.put_stamped(tx, rtype, id, current, stamped, method).await?;
        Ok(written(current, version))
    }

    /// Writes the next version: current row, history row and index rows.
    pub(super) async fn put(
        &self,
        tx: &mut Tx,
        rtype: &str,
        id: &str,
        current: Option<Current>,
        value: Value,
        method: &str,
    ) -> Result<Version> {
        let stamped = stamp_version(&self.registry, rtype, id, current, Source::Value(value, None))?;
        self.put_stamped(tx, rtype, id, current, stamped, method).await
    }

    /// Writes a version [`stamp_version`] made on `current`.
    pub(super) async fn put_stamped(
        &self,
        tx: &mut Tx,
        rtype: &str,
        id: &str,
        current: Option<Current>,
        stamped: Stamped,
        method: &str,
    ) -> Result<Version> {
        let Stamped { version, now, body, index } = stamped;
        let rkey = match current {
            Some(c) => {
                tx.update(c.rkey, version, now, false, &body).await?;
                c.rkey
            }
            None => tx.insert(rtype, id, now, &body).await?,
        };
        tx.history(rkey, rtype, id, version, now, method, &body).await?;
        tx.set_index(&self.store, rtype, rkey, &index).await?;
        if let Some(event) = self.write_audit(rtype, id, version, method, &index) {
            self.put_audit(tx, event).await?;
        }
        Ok(Version {
            rtype: rtype.into(),
            id: id.into(),
            version,
            last_updated: now,
            deleted: false,
            method: method.into(),
            body,
        })
    }

    /// Records a write's AuditEvent in the write's transaction.
    async fn put_audit(&self, tx: &mut Tx, event: Value) -> Result<()> {
        let id = super::new_id();
        let now = instant::now_ms();
        let stamped = resource::stamp(event, &id, 1, now);
        let body = serde_json::to_vec(&stamped).map_err(|e| Error::Internal(e.to_string()))?;
        let index = search::index::extract(&self.registry, "AuditEvent", &stamped);
        let rkey = tx.insert("AuditEvent", &id, now, &body).await?;
        tx.history(rkey, "AuditEvent", &id, 1, now, "POST", &body).await?;
        tx.set_index(&self.store, "AuditEvent", rkey, &index).await
    }

    async fn tombstone(&self, tx: &mut Tx, rtype: &str, id: &str, cur: Current) -> Result<i64> {
        let version = cur.version + 1;
        if super::audit::current().is_some() && rtype != "AuditEvent" {
            // The patients of what is deleted, from its last content.
            let old = resource::parse_json(&tx.body(cur.rkey).await?)?;
            let rows = search::index::extract(&self.registry, rtype, &old);
            if let Some(event) = self.write_audit(rtype, id, version, "DELETE", &rows) {
                self.put_audit(tx, event).await?;
            }
        }
        let now = instant::now_ms().max(cur.last_updated);
        tx.update(cur.rkey, version, now, true, b"").await?;
        tx.history(cur.rkey, rtype, id, version, now, "DELETE", b"").await?;
        tx.set_index(&self.store, rtype, cur.rkey, &Default::default()).await?;
        Ok(version)
    }

    /// Resolves the criteria of a conditional interaction inside the write transaction, holding
    /// a lock on the condition so two writers cannot both see "no match" and both create.
    /// `planned`: where the sender planned the condition's query already (`draft.rs`).
    pub(super) async fn find_for_condition(
        &self,
        tx: &mut Tx,
        rtype: &str,
        condition: &str,
        planned: Option<&Drafts>,
    ) -> Result<Vec<(i64, String)>> {
        let made;
        let filter = match planned.and_then(|d| d.condition(&self.registry, rtype, condition)) {
            Some(filter) => filter,
            None => {
                made = self.condition_filter(rtype, condition)?;
                &made
            }
        };
        tx.lock(lock_key(&[rtype, condition])).await?;
        tx.matching(rtype, filter, 2).await
    }

    /// The query a condition (`identifier=…`) on `rtype` stands for.
    pub(super) fn condition_filter(&self, rtype: &str, condition: &str) -> Result<Filter> {
        let query = SearchQuery::parse(condition)?;
        if query.criteria.is_empty() {
            return Err(Error::invalid(
                IssueCode::Invalid,
                format!("the conditional request on {rtype} has no search criteria"),
            ));
        }
        Ok(search::plan(&self.registry, &self.store, rtype, &query.criteria, Handling::Strict)?.filter)
    }
}

/// The next version of a resource, ready to be written: what a write computes without the
/// database, so it can be made on another thread while the writer writes something else.
pub(super) struct Stamped {
    version: i64,
    now: i64,
    body: Vec<u8>,
    index: crate::store::IndexRows,
}

/// A new version written on `current`: updating a deleted resource brings it back, as a create
/// would.
fn written(current: Option<Current>, version: Version) -> Written {
    Written { version, created: current.is_none_or(|c| c.deleted), existing: false }
}

/// Stamps `value` as the version after `current` (id, versionId, lastUpdated), serializes it and
/// extracts its index rows — those `drafted` lacks, when it was extracted ahead (`draft.rs`).
pub(super) fn stamp_version(
    registry: &search::registry::Registry,
    rtype: &str,
    id: &str,
    current: Option<Current>,
    source: Source,
) -> Result<Stamped> {
    let version = current.map_or(1, |c| c.version + 1);
    // Never move lastUpdated backwards, even if this node's clock is behind the last writer's.
    let now = current.map_or_else(instant::now_ms, |c| instant::now_ms().max(c.last_updated));
    let internal = |e: serde_json::Error| Error::Internal(e.to_string());
    let (value, drafted) = match source {
        Source::Drafted(index, parts) => {
            let body = parts.stamped(id, version, now).map_err(internal)?;
            return Ok(Stamped { version, now, body, index });
        }
        Source::Value(value, drafted) => (value, drafted),
    };
    let body = resource::stamped_body(&value, id, version, now).map_err(internal)?;
    // The stamped value itself, only to check a SearchParameter or to extract index rows.
    let index = match drafted {
        Some(rows) if !super::draft::needs_stamped(registry, rtype) => rows,
        drafted => {
            let stamped = resource::stamp(value, id, version, now);
            if rtype == "SearchParameter" {
                // Refused before it is stored: a parameter that cannot work must not look accepted.
                registry.check_custom(id, &stamped)?;
            }
            match drafted {
                Some(mut rows) => {
                    let at_write = |code: &str| super::draft::AT_WRITE.contains(&code);
                    rows.extend(search::index::extract_some(registry, rtype, &stamped, at_write));
                    rows
                }
                None => search::index::extract(registry, rtype, &stamped),
            }
        }
    };
    Ok(Stamped { version, now, body, index })
}

/// What a new version is made from: the resource (with its drafted rows, if any), or its
/// draft, whose body was serialized ahead (`draft.rs`).
pub(super) enum Source {
    Value(Value, Option<crate::store::IndexRows>),
    Drafted(crate::store::IndexRows, resource::BodyParts),
}

pub(super) fn multiple_matches(rtype: &str, condition: &str) -> Error {
    Error::PreconditionFailed(format!("the condition '{condition}' matches more than one {rtype}"))
}

pub(super) fn check_if_match(current: Option<&Current>, if_match: Option<i64>) -> Result<()> {
    let Some(expected) = if_match else { return Ok(()) };
    match current {
        Some(c) if !c.deleted && c.version == expected => Ok(()),
        Some(c) if !c.deleted => Err(Error::PreconditionFailed(format!(
            "If-Match expected version {expected}, but the current version is {}",
            c.version
        ))),
        _ => Err(Error::PreconditionFailed(format!(
            "If-Match expected version {expected}, but the resource does not exist"
        ))),
    }
}

/// On update the body's id must be present and equal the URL's (http.html#update).
fn check_body_id(value: &Value, url_id: Option<&str>) -> Result<()> {
    let body_id = value.get("id").and_then(Value::as_str);
    match (body_id, url_id) {
        (None, Some(_)) => Err(Error::invalid_at(
            IssueCode::Required,
            "the resource has no id; an update needs the id of the URL",
            "id",
        )),
        (Some(b), Some(u)) if b != u => Err(Error::invalid_at(
            IssueCode::Invalid,
            format!("the resource id '{b}' does not match the id '{u}' of the URL"),
            "id",
        )),
        _ => Ok(()),
    }
}

/// Whether a stored body and a newly stamped resource differ only in `meta.versionId` and
/// `meta.lastUpdated`.
fn same_content(stored: &[u8], stamped: &Value) -> bool {
    let Ok(mut old) = serde_json::from_slice::<Value>(stored) else { return false };
    if let (Some(meta), Some(new_meta)) =
        (old.get_mut("meta").and_then(Value::as_object_mut), stamped.get("meta"))
    {
        for field in ["versionId", "lastUpdated"] {
            match new_meta.get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
    }
    &old == stamped
}
