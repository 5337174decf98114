//! `$export` (hl7.org/fhir/uv/bulkdata/export.html): checking a kick-off request and running
//! the job, one resource type at a time in key order, into NDJSON files per type.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::sink::Sink;
use super::{Claim, Ran};
use crate::engine::Engine;
use crate::engine::search::plan_types;
use crate::error::{Error, IssueCode, Result};
use crate::resource::instant::{format_ms, now_ms, parse_range};
use crate::search::{Handling, SearchQuery, compartment, restrict_to_compartment};
use crate::store::{Bind, Filter, Page, Position, renumber};

/// Resources read per query while exporting.
const BATCH: i64 = 1000;
/// Group members per query: keeps the statement well inside every bind limit.
const MEMBERS_PER_QUERY: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExportLevel {
    /// `[base]/$export`: every resource.
    System,
    /// `[base]/Patient/$export`: the Patient compartments of all patients.
    Patient,
    /// `[base]/Group/[id]/$export`: the Patient compartments of the group's members (patient ids),
    /// as they were at kick-off.
    Group { id: String, members: Vec<String> },
}

/// A checked `$export` request, stored with its job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportParams {
    pub level: ExportLevel,
    /// The types to export, in name order.
    pub types: Vec<String>,
    /// Only resources changed after this instant (ms).
    pub since: Option<i64>,
    /// `_typeFilter` queries per type: a resource of such a type must match one of them.
    pub type_filters: Vec<(String, String)>,
    /// `_elements`: bare names apply to every type, `Type.name` to one.
    pub elements: Vec<String>,
    /// Only resources last changed at or before this instant (ms): the manifest's
    /// `transactionTime`, which a client passes as the next `_since`.
    pub transaction_time: i64,
}

/// The kick-off parameters this server acts on; anything else is refused unless the client
/// asked for lenient handling (export.html#query-parameters).
const KNOWN: &[&str] = &["_outputFormat", "_since", "_type", "_typeFilter", "_elements"];

impl ExportParams {
    /// Checks the kick-off parameters (from the query string or a Parameters body).
    pub async fn check(
        engine: &Engine,
        level: ExportLevel,
        params: &[(String, String)],
        lenient: bool,
    ) -> Result<ExportParams> {
        let mut out = ExportParams {
            level,
            types: Vec::new(),
            since: None,
            type_filters: Vec::new(),
            elements: Vec::new(),
            transaction_time: now_ms(),
        };
        let mut requested: Vec<String> = Vec::new();
        for (name, value) in params {
            match name.as_str() {
                "_outputFormat" => match value.as_str() {
                    "application/fhir+ndjson" | "application/ndjson" | "ndjson" => {}
                    other => {
                        return Err(Error::invalid_at(
                            IssueCode::NotSupported,
                            format!("_outputFormat '{other}' is not supported: use application/fhir+ndjson"),
                            "_outputFormat",
                        ));
                    }
                },
                "_since" => {
                    let (lo, _) = parse_range(value).ok_or_else(|| {
                        Error::invalid_at(
                            IssueCode::Value,
                            format!("_since: '{value}' is not an instant"),
                            "_since",
                        )
                    })?;
                    out.since = Some(lo);
                }
                "_type" => requested
                    .extend(value.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from)),
                "_typeFilter" => {
                    for query in split_type_filters(value) {
                        let (rtype, q) = query.split_once('?').ok_or_else(|| {
                            Error::invalid_at(
                                IssueCode::Value,
                                format!("_typeFilter '{query}' is not of the form Type?query"),
                                "_typeFilter",
                            )
                        })?;
                        out.type_filters.push((rtype.to_string(), q.to_string()));
                    }
                }
                "_elements" => out.elements.extend(value.split(',').map(str::trim).map(String::from)),
                _ if name.starts_with("_format") || name == "_pretty" => {}
                other if !lenient => {
                    let known = KNOWN.join(", ");
                    return Err(Error::invalid_at(
                        IssueCode::NotSupported,
                        format!("$export does not support the parameter '{other}' (supported: {known})"),
                        other.to_string(),
                    ));
                }
                _ => {}
            }
        }
        out.types = out.check_types(requested, lenient)?;
        for (rtype, query) in &out.type_filters {
            if !crate::resource::is_resource_type(rtype) {
                return Err(Error::invalid_at(
                    IssueCode::Value,
                    format!("_typeFilter: unknown type '{rtype}'"),
                    "_typeFilter",
                ));
            }
            // Planned now so that a bad query fails the kick-off, not the job.
            type_filter(engine, rtype, std::slice::from_ref(query))?;
        }
        Ok(out)
    }

    /// The requested types (all of the level's by default), known and in the level's scope.
    fn check_types(&self, requested: Vec<String>, lenient: bool) -> Result<Vec<String>> {
        let patient_level = self.level != ExportLevel::System;
        let in_scope = |t: &str| !patient_level || compartment::params("Patient", t).is_some();
        let mut types: Vec<String> = if requested.is_empty() {
            crate::resource::model::resource_types().filter(|t| in_scope(t)).map(String::from).collect()
        } else {
            let mut types = Vec::new();
            for t in requested {
                if !crate::resource::is_resource_type(&t) {
                    return Err(Error::invalid_at(
                        IssueCode::Value,
                        format!("_type: unknown type '{t}'"),
                        "_type",
                    ));
                }
                if !in_scope(&t) {
                    if lenient {
                        continue;
                    }
                    return Err(Error::invalid_at(
                        IssueCode::NotSupported,
                        format!(
                            "_type: {t} is not in the Patient compartment, so a patient-level export has none"
                        ),
                        "_type",
                    ));
                }
                types.push(t);
            }
            types
        };
        types.sort();
        types.dedup();
        Ok(types)
    }

    fn elements_of(&self, rtype: &str) -> Vec<String> {
        self.elements
            .iter()
            .filter_map(|e| match e.split_once('.') {
                Some((t, name)) if t == rtype => Some(name.to_string()),
                Some(_) => None,
                None => Some(e.clone()),
            })
            .collect()
    }
}

/// `_typeFilter` values are comma-separated queries, and a query may hold commas of its own
/// (`code=a,b`): a new query begins only where a comma is followed by `Type?`.
fn split_type_filters(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, _) in value.match_indices(',') {
        let rest = &value[i + 1..];
        let starts_query = rest.split_once('?').is_some_and(|(t, _)| {
            !t.is_empty()
                && t.chars().all(|c| c.is_ascii_alphanumeric())
                && t.starts_with(|c: char| c.is_ascii_uppercase())
        });
        if starts_query {
            parts.push(&value[start..i]);
            start = i + 1;
        }
    }
    parts.push(&value[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// The resources of `rtype` matching any of `queries` (all of them when there are none).
fn type_filter(engine: &Engine, rtype: &str, queries: &[String]) -> Result<Filter> {
    if queries.is_empty() {
        return Ok(Filter { sql: "r.rtype = $1".into(), binds: vec![Bind::Text(rtype.to_string())] });
    }
    let mut alts = Vec::new();
    let mut binds = Vec::new();
    for query in queries {
        let q = SearchQuery::parse(query).map_err(|e| e.in_type_filter(query))?;
        let mut ignored = Vec::new();
        let (f, _) = plan_types(engine, &[rtype.to_string()], &q, Handling::Strict, &mut ignored)
            .map_err(|e| e.in_type_filter(query))?;
        alts.push(format!("({})", renumber(&f.sql, binds.len())));
        binds.extend(f.binds);
    }
    Ok(Filter { sql: alts.join(" OR "), binds })
}

impl Error {
    fn in_type_filter(self, query: &str) -> Error {
        match self {
            Error::Invalid(issues) => Error::Invalid(
                issues
                    .into_iter()
                    .map(|mut i| {
                        i.diagnostics = format!("_typeFilter '{query}': {}", i.diagnostics);
                        i.expression = Some("_typeFilter".into());
                        i
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}

impl Engine {
    pub async fn export_kickoff(&self, params: &ExportParams, request: &str) -> Result<String> {
        self.queue("export", request, params).await
    }

    /// The filters that together select the resources of one type to export: one, or for a
    /// large group one per slice of members.
    fn export_filters(&self, p: &ExportParams, rtype: &str) -> Result<Vec<Filter>> {
        let queries: Vec<String> =
            p.type_filters.iter().filter(|(t, _)| t == rtype).map(|(_, q)| q.clone()).collect();
        let mut base = type_filter(self, rtype, &queries)?;
        let and = |f: &mut Filter, cond: &str, v: i64| {
            f.binds.push(Bind::Int(v));
            f.sql = format!("({}) AND r.last_updated {cond} ${}", f.sql, f.binds.len());
        };
        and(&mut base, "<=", p.transaction_time);
        if let Some(since) = p.since {
            and(&mut base, ">", since);
        }
        let types = [rtype.to_string()];
        match &p.level {
            ExportLevel::System => Ok(vec![base]),
            ExportLevel::Patient => {
                restrict_to_compartment(&self.store, &mut base, "Patient", None, &types)?;
                Ok(vec![base])
            }
            ExportLevel::Group { members, .. } => members
                .chunks(MEMBERS_PER_QUERY)
                .map(|slice| {
                    let mut f = base.clone();
                    restrict_to_compartment(&self.store, &mut f, "Patient", Some(slice), &types)?;
                    Ok(f)
                })
                .collect(),
        }
    }

    pub(super) async fn run_export(&self, claim: &Claim<'_>) -> Result<Ran> {
        let p: ExportParams = serde_json::from_str(&claim.job.params)
            .map_err(|e| Error::Internal(format!("stored export parameters: {e}")))?;
        let mut sink = Sink::new(&self.store, claim, self.bulk.max_file_bytes);
        let mut exported: u64 = 0;
        let mut last_touch = now_ms();
        for (i, rtype) in p.types.iter().enumerate() {
            let filters = self.export_filters(&p, rtype)?;
            let elements = p.elements_of(rtype);
            // A resource in the compartments of members in two slices must be written once.
            let mut seen = (filters.len() > 1).then(HashSet::new);
            for filter in &filters {
                let mut after = Position { values: Vec::new(), rkey: 0, backward: false };
                loop {
                    if claim.stopping() {
                        return Ok(Ran::Stopped);
                    }
                    let page = Page { order: &[], position: Some(&after), limit: BATCH };
                    let hits = self.store.search(filter, &page).await?;
                    let Some(last) = hits.last() else { break };
                    after.rkey = last.rkey;
                    for hit in &hits {
                        if seen.as_mut().is_some_and(|s| !s.insert(hit.rkey)) {
                            continue;
                        }
                        let written = if elements.is_empty() {
                            sink.line("output", rtype, &hit.version.body).await?
                        } else {
                            let body = crate::engine::subset(&hit.version.body, &elements, None)?;
                            sink.line("output", rtype, &body).await?
                        };
                        if !written {
                            return Ok(Ran::Lost);
                        }
                        exported += 1;
                    }
                    let now = now_ms();
                    if now - last_touch >= super::HEARTBEAT_MS {
                        last_touch = now;
                        let progress = format!(
                            "{exported} resources exported; {rtype}, type {} of {}",
                            i + 1,
                            p.types.len()
                        );
                        if !self.store.touch_job(&claim.job.id, claim.owner, now, &progress).await? {
                            return Ok(Ran::Lost);
                        }
                    }
                    // Interactive requests go first on a busy node.
                    tokio::task::yield_now().await;
                }
            }
            if !sink.close().await? {
                return Ok(Ran::Lost);
            }
        }
        tracing::info!(job = %claim.job.id, exported, since = ?p.since.map(format_ms), "export finished");
        Ok(Ran::Complete)
    }
}

impl Engine {
    /// The patients of a Group as `$export` sees them: `member.entity` references to Patients
    /// that are not marked inactive.
    pub async fn group_members(&self, id: &str) -> Result<Vec<String>> {
        let group = self.read("Group", id).await?;
        let value = crate::resource::parse_json(&group.body)?;
        let mut members: Vec<String> = value["member"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["inactive"].as_bool() != Some(true))
            .filter_map(|m| m["entity"]["reference"].as_str())
            .filter_map(|r| {
                let mut parts = r.rsplit('/');
                let id = parts.next()?;
                (parts.next()? == "Patient").then(|| id.to_string())
            })
            .collect();
        members.sort();
        members.dedup();
        Ok(members)
    }
}
