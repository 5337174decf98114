//! Handlers of the instance and type interactions (http.html).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use super::auth;
use super::request::{Ctx, Return, parse_etag, read_body};
use super::{AppState, bundle, respond};
use crate::auth::Interaction;
use crate::engine::audit;
use crate::engine::{Outcome, Written};
use crate::error::{Error, Issue, IssueCode, Result};
use crate::resource::{self, instant};
use crate::store::{HistoryScope, Version};

pub(super) fn check_type(rtype: &str) -> Result<()> {
    if resource::is_resource_type(rtype) { Ok(()) } else { Err(Error::UnknownType(rtype.to_string())) }
}

pub(super) fn check_id(id: &str) -> Result<()> {
    if resource::valid_id(id) {
        Ok(())
    } else {
        Err(Error::invalid_at(
            IssueCode::Value,
            format!("'{id}' is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})"),
            "id",
        ))
    }
}

pub(super) async fn body_resource(state: &AppState, ctx: &Ctx, body: Body) -> Result<Value> {
    let bytes = read_body(body, state.max_body_bytes, &ctx.headers).await?;
    super::format::parse_body(&ctx.headers, &bytes)
}

/// The response to a create or update, shaped by `Prefer: return`.
fn written(ctx: &Ctx, w: &Written, status: StatusCode) -> Response {
    written_as(ctx, w, status, ctx.prefer_return)
}

fn written_as(ctx: &Ctx, w: &Written, status: StatusCode, prefer: Return) -> Response {
    let v = &w.version;
    let mut resp = match prefer {
        Return::Representation => respond::stored(status, ctx.out, v),
        Return::Minimal => {
            let mut r = respond::empty(status);
            respond::version_headers(&mut r, v);
            r
        }
        Return::OperationOutcome => {
            let what = if w.existing {
                "matched an existing resource"
            } else if w.created {
                "created"
            } else {
                "updated"
            };
            let issue = Issue::new(
                IssueCode::Informational,
                format!("{}/{} {what} (version {})", v.rtype, v.id, v.version),
            );
            let mut r = respond::value(status, ctx.out, &respond::outcome(&[issue], "information"));
            respond::version_headers(&mut r, v);
            r
        }
    };
    let location = format!("{}/{}/{}/_history/{}", ctx.base, v.rtype, v.id, v.version);
    if let Ok(loc) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, loc.clone());
        if status == StatusCode::CREATED {
            resp.headers_mut().insert(header::CONTENT_LOCATION, loc);
        }
    }
    resp
}

fn status_of(w: &Written) -> StatusCode {
    if w.created { StatusCode::CREATED } else { StatusCode::OK }
}

pub async fn create(
    State(s): State<Arc<AppState>>,
    Path(rtype): Path<String>,
    ctx: Ctx,
    body: Body,
) -> Response {
    ctx.run(async {
        check_type(&rtype)?;
        ctx.allow(&rtype, Interaction::Create)?;
        let value = body_resource(&s, &ctx, body).await?;
        if value.get("id").is_some() {
            tracing::debug!("ignoring the client's id on create, as http.html#create requires");
        }
        let condition = ctx.header("if-none-exist").map(|c| c.trim_start_matches('?').to_string());
        if let Some(c) = &condition {
            ctx.unconfined(&rtype, Interaction::Search, "a conditional create")?;
            ctx.allow_query(c)?;
        }
        ctx.confirm_body(&s.engine, &rtype, None, &value, Interaction::Create)?;
        let w = s.engine.create(&rtype, value, condition.as_deref()).await?;
        Ok(written(&ctx, &w, status_of(&w)))
    })
    .await
}

pub async fn update(
    State(s): State<Arc<AppState>>,
    Path((rtype, id)): Path<(String, String)>,
    ctx: Ctx,
    body: Body,
) -> Response {
    ctx.run(async {
        check_type(&rtype)?;
        ctx.allow(&rtype, Interaction::Update)?;
        check_id(&id)?;
        let value = body_resource(&s, &ctx, body).await?;
        if !ctx.reaches_all(&rtype, Interaction::Update) {
            // The stored resource, if any, and the new content must both lie within reach. A
            // deleted one is not brought back: whose it was cannot be checked, and its history
            // would come with it.
            match s.engine.read(&rtype, &id).await {
                Ok(_) => ctx.confirm(&s.engine, &rtype, &id, Interaction::Update).await?,
                Err(Error::Gone(_)) => return Err(Error::NotFound(format!("{rtype}/{id} is not known"))),
                Err(_) => {}
            }
            ctx.confirm_body(&s.engine, &rtype, Some(&id), &value, Interaction::Update)?;
        }
        let w = s.engine.update(&rtype, &id, value, ctx.if_match()?).await?;
        Ok(written(&ctx, &w, status_of(&w)))
    })
    .await
}

pub async fn conditional_update(
    State(s): State<Arc<AppState>>,
    Path(rtype): Path<String>,
    ctx: Ctx,
    body: Body,
) -> Response {
    ctx.run(async {
        check_type(&rtype)?;
        ctx.unconfined(&rtype, Interaction::Update, "a conditional update")?;
        ctx.unconfined(&rtype, Interaction::Search, "a conditional update")?;
        ctx.allow_query(&ctx.criteria_query())?;
        let value = body_resource(&s, &ctx, body).await?;
        let w = s.engine.conditional_update(&rtype, &ctx.criteria_query(), value, ctx.if_match()?).await?;
        Ok(written(&ctx, &w, status_of(&w)))
    })
    .await
}

pub async fn patch(
    State(s): State<Arc<AppState>>,
    Path((rtype, id)): Path<(String, String)>,
    ctx: Ctx,
    body: Body,
) -> Response {
    ctx.run(async {
        check_type(&rtype)?;
        ctx.allow(&rtype, Interaction::Update)?;
        check_id(&id)?;
        let ct = ctx.header("content-type").unwrap_or_default();
        let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/json-patch+json" => {}
            "application/fhir+json" | "application/fhir+xml" | "application/xml-patch+xml" => {
                return Err(Error::NotImplemented(format!(
                    "PATCH with '{essence}' (FHIRPath or XML Patch) is not supported; use application/json-patch+json"
                )));
            }
            _ => {
                return Err(Error::UnsupportedMediaType(format!(
                    "PATCH needs Content-Type application/json-patch+json, got '{ct}'"
                )));
            }
        }
        let bytes = read_body(body, s.max_body_bytes, &ctx.headers).await?;
        let patch: json_patch::Patch = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(IssueCode::Structure, format!("invalid JSON Patch document: {e}")))?;
        let mut if_match = ctx.if_match()?;
        if !ctx.reaches_all(&rtype, Interaction::Update) {
            if_match = Some(confined_patch(&s, &ctx, &rtype, &id, &patch, if_match).await?);
        }
        let w = s.engine.patch(&rtype, &id, &patch, if_match).await?;
        // The patched resource holds what the caller did not send: only for those who may read it.
        if ctx.allow(&rtype, Interaction::Read).is_err() && ctx.prefer_return == Return::Representation {
            return Ok(written_as(&ctx, &w, StatusCode::OK, Return::Minimal));
        }
        Ok(written(&ctx, &w, StatusCode::OK))
    })
    .await
}

/// Under a confined grant, a patch must start and end within reach: it is tried on the current
/// version here, and the engine then applies it to that same version (`If-Match`) or fails.
async fn confined_patch(
    s: &AppState,
    ctx: &Ctx,
    rtype: &str,
    id: &str,
    patch: &json_patch::Patch,
    if_match: Option<i64>,
) -> Result<i64> {
    ctx.confirm(&s.engine, rtype, id, Interaction::Update).await?;
    let current = s.engine.read(rtype, id).await?;
    let mut value = resource::parse_json(&current.body)?;
    if json_patch::patch(&mut value, patch).is_ok() {
        ctx.confirm_body(&s.engine, rtype, Some(id), &value, Interaction::Update)?;
    }
    Ok(if_match.unwrap_or(current.version))
}

pub async fn read(
    State(s): State<Arc<AppState>>,
    Path((rtype, id)): Path<(String, String)>,
    ctx: Ctx,
) -> Response {
    ctx.run(async {
        check_type(&rtype)?;
        ctx.allow(&rtype, Interaction::Read)?;
        check_id(&id)?;
        ctx.confirm(&s.engine, &rtype, &id, Interaction::Read).await?;
        let v = s.engine.read(&rtype, &id).await?;
        audit::note(&rtype, &id, Some(v.version), Some(&v.body));
        if not_modified(&ctx, v.version, v.last_updated)? {
            let mut r = respond::empty(StatusCode::NOT_MODIFIED);
            respond::version_headers(&mut r, &v);
            return Ok(r);
        }
        let v = read_view(&ctx, v)?;
        Ok(respond::stored(StatusCode::OK, ctx.out, &v))
    })
    .await
}

/// `_summary` and `_elements` on a read (search.html#summary applies to reads too).
fn read_view(ctx: &Ctx, mut v: Version) -> Result<Version> {
    let param = |name: &str| ctx.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let elements: Vec<String> = param("_elements")
        .map(|e| e.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    let summary = param("_summary").filter(|s| matches!(*s, "true" | "text" | "data"));
    if !elements.is_empty() || summary.is_some() {
        v.body = crate::engine::subset(&v.body, &elements, summary)?;
    }
    Ok(v)
}

/// `If-None-Match` (ETag) takes precedence over `If-Modified-Since` (RFC 9110 §13.2.2).
fn not_modified(ctx: &Ctx, version: i64, last_updated: i64) -> Result<bool> {
    if let Some(inm) = ctx.header("if-none-match") {
        if inm.trim() == "*" {
            return Ok(true);
        }
        for tag in inm.split(',') {
            if parse_etag(tag)? == version {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    if let Some(since) = ctx.header("if-modified-since").and_then(instant::parse_http_date) {
        return Ok(last_updated.div_euclid(1000) * 1000 <= since);
    }
    Ok(false)
}

pub async fn vread(
    State(s): State<Arc<AppState>>,
    Path((rtype, id, vid)): Path<(String, String, String)>,
    ctx: Ctx,
) -> Response {
    ctx.run(async {
        check_type(&rtype)?;
        ctx.allow(&rtype, Interaction::Read)?;
        check_id(&id)?;
        ctx.confirm(&s.engine, &rtype, &id, Interaction::Read).await?;
        let v = s.engine.vread(&rtype, &id, &vid).await?;
        // A resource may have been elsewhere before (another patient, another category).
        if !ctx.reaches_all(&rtype, Interaction::Read) && !version_visible(&s, &ctx, &v)? {
            return Err(Error::NotFound(format!("{rtype}/{id}/_history/{vid} is not known")));
        }
        audit::note(&rtype, &id, Some(v.version), Some(&v.body));
        if not_modified(&ctx, v.version, v.last_updated)? {
            return Ok(respond::empty(StatusCode::NOT_MODIFIED));
        }
        Ok(respond::stored(StatusCode::OK, ctx.out, &v))
    })
    .await
}

fn deleted_response(ctx: &Ctx, version: Option<i64>, what: String) -> Response {
    let mut resp = match ctx.prefer_return {
        Return::Minimal => respond::empty(StatusCode::NO_CONTENT),
        _ => {
            let issue = Issue::new(IssueCode::Informational, what);
            respond::value(StatusCode::OK, ctx.out, &respond::outcome(&[issue], "information"))
        }
    };
    if let Some(v) = version {
        resp.headers_mut().insert(header::ETAG, respond::etag(v));
    }
    resp
}

pub async fn delete(
    State(s): State<Arc<AppState>>,
    Path((rtype, id)): Path<(String, String)>,
    ctx: Ctx,
) -> Response {
    ctx.run(async {
        check_type(&rtype)?;
        ctx.allow(&rtype, Interaction::Delete)?;
        check_id(&id)?;
        ctx.confirm(&s.engine, &rtype, &id, Interaction::Delete).await?;
        let d = s.engine.delete(&rtype, &id, ctx.if_match()?).await?;
        let what = match d.version {
            Some(v) => format!("{rtype}/{id} deleted (version {v})"),
            None => format!("{rtype}/{id} did not exist or was already deleted; nothing changed"),
        };
        Ok(deleted_response(&ctx, d.version, what))
    })
    .await
}

pub async fn conditional_delete(
    State(s): State<Arc<AppState>>,
    Path(rtype): Path<String>,
    ctx: Ctx,
) -> Response {
    ctx.run(async {
        check_type(&rtype)?;
        ctx.unconfined(&rtype, Interaction::Delete, "a conditional delete")?;
        ctx.unconfined(&rtype, Interaction::Search, "a conditional delete")?;
        let condition = ctx.criteria_query();
        ctx.allow_query(&condition)?;
        let d = s.engine.conditional_delete(&rtype, &condition).await?;
        let what = match d.version {
            Some(_) => format!("deleted the {rtype} matching '{condition}'"),
            None => format!("no {rtype} matches '{condition}'; nothing changed"),
        };
        Ok(deleted_response(&ctx, d.version, what))
    })
    .await
}

async fn history(s: &AppState, ctx: &Ctx, scope: HistoryScope, path: String) -> Result<Response> {
    let confined = match &scope {
        HistoryScope::Instance { rtype, .. } => !ctx.reaches_all(rtype, Interaction::Read),
        _ => false,
    };
    let mut h = s.engine.history(scope, &ctx.query).await?;
    if confined {
        // Only the versions that lay within reach themselves; the count would tell the rest.
        let mut kept = Vec::with_capacity(h.entries.len());
        for v in h.entries {
            if version_visible(s, ctx, &v)? {
                kept.push(v);
            }
        }
        h.entries = kept;
        h.total = None;
    }
    bundle::history(ctx, &path, h)
}

/// Whether a stored version lies within the caller's read reach by its own content.
fn version_visible(s: &AppState, ctx: &Ctx, v: &Version) -> Result<bool> {
    if v.deleted || v.body.is_empty() {
        return Ok(false);
    }
    let value = resource::parse_json(&v.body)?;
    Ok(ctx.confirm_body(&s.engine, &v.rtype, Some(&v.id), &value, Interaction::Read).is_ok())
}

pub async fn history_instance(
    State(s): State<Arc<AppState>>,
    Path((rtype, id)): Path<(String, String)>,
    ctx: Ctx,
) -> Response {
    ctx.run(async {
        check_type(&rtype)?;
        ctx.allow(&rtype, Interaction::Read)?;
        check_id(&id)?;
        ctx.confirm(&s.engine, &rtype, &id, Interaction::Read).await?;
        let path = format!("{rtype}/{id}/_history");
        history(&s, &ctx, HistoryScope::Instance { rtype, id }, path).await
    })
    .await
}

pub async fn history_type(State(s): State<Arc<AppState>>, Path(rtype): Path<String>, ctx: Ctx) -> Response {
    ctx.run(async {
        check_type(&rtype)?;
        ctx.unconfined(&rtype, Interaction::Read, "type history")?;
        ctx.unconfined(&rtype, Interaction::Search, "type history")?;
        let path = format!("{rtype}/_history");
        history(&s, &ctx, HistoryScope::Type(rtype), path).await
    })
    .await
}

pub async fn history_system(State(s): State<Arc<AppState>>, ctx: Ctx) -> Response {
    ctx.run(async {
        ctx.unconfined_types(None, Interaction::Read, "system history")?;
        ctx.unconfined_types(None, Interaction::Search, "system history")?;
        // It would show the audit log's entries too.
        if !ctx.reaches_all("AuditEvent", Interaction::Read) {
            return Err(Error::Forbidden(
                "system history includes AuditEvents, which only admins read".into(),
            ));
        }
        history(&s, &ctx, HistoryScope::System, "_history".into()).await
    })
    .await
}

/// POST `[base]`: a batch or transaction Bundle.
pub async fn system_post(State(s): State<Arc<AppState>>, ctx: Ctx, body: Body) -> Response {
    ctx.run(async {
        let value = body_resource(&s, &ctx, body).await?;
        let (transaction, requests) = crate::engine::parse_bundle(&value)?;
        let principal = ctx.principal.as_deref();
        if transaction {
            let requests = requests.into_iter().collect::<Result<Vec<_>>>()?;
            // Every entry is allowed, or nothing runs.
            for (i, r) in requests.iter().enumerate() {
                auth::allow_entry(principal, r).map_err(|e| e.in_entry(i))?;
            }
            let outcomes = s.engine.transaction(requests).await?;
            let outcomes = visible(&s, &ctx, outcomes).await?;
            bundle::bundle_response(&ctx, "transaction-response", outcomes)
        } else {
            let requests = requests
                .into_iter()
                .map(|r| r.and_then(|r| auth::allow_entry(principal, &r).map(|()| r)))
                .collect();
            let results = s.engine.batch(requests).await;
            bundle::bundle_response(&ctx, "batch-response", visible(&s, &ctx, results).await?)
        }
    })
    .await
}

/// The included resources of Bundle entries' searches, cut to what the caller may read (the
/// entries' own types are reached whole: `allow_entry` sees to that).
async fn visible(
    s: &AppState,
    ctx: &Ctx,
    mut outcomes: Vec<Result<Outcome>>,
) -> Result<Vec<Result<Outcome>>> {
    let see = ctx.see();
    for o in outcomes.iter_mut() {
        if let Ok(Outcome::Searched(result, _)) = o {
            auth::visible_includes(ctx.principal.as_deref(), result);
            if let Some(see) = &see {
                result.included =
                    s.engine.visible_included(std::mem::take(&mut result.included), see.as_ref()).await?;
            }
        }
    }
    Ok(outcomes)
}
