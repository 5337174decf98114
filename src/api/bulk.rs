//! Bulk data over HTTP (FHIR Asynchronous Request Pattern, Bulk Data Access IG 2.0):
//! `$export` kick-off at system, Patient and Group level, the status endpoint (poll, cancel),
//! and the output files.
//!
//! As HAPI names them: status at `[base]/$export-poll-status?_jobId=…` (and
//! `$import-poll-status`), files at `[base]/$bulk-output/{job}/{n}.ndjson`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::request::Ctx;
use super::rest::{body_resource, check_id};
use super::{AppState, respond};
use crate::auth::Interaction;
use crate::engine::{ExportLevel, ExportParams, JobState};
use crate::error::{Error, Issue, IssueCode, Result};
use crate::resource::instant::{format_ms, http_date};
use crate::store::BulkFile;

/// Seconds a client is asked to wait between status requests.
const RETRY_AFTER: &str = "2";

/// `GET|POST [base]/$export`.
pub async fn export_system(State(s): State<Arc<AppState>>, ctx: Ctx, body: Body) -> Response {
    ctx.run(kickoff(&s, &ctx, ExportLevel::System, body)).await
}

/// `GET|POST [base]/Patient/$export`.
pub async fn export_type(
    State(s): State<Arc<AppState>>,
    Path(rtype): Path<String>,
    ctx: Ctx,
    body: Body,
) -> Response {
    ctx.run(async {
        match rtype.as_str() {
            "Patient" => kickoff(&s, &ctx, ExportLevel::Patient, body).await,
            "Group" => {
                Err(Error::invalid(IssueCode::Required, "a Group export names the group: Group/[id]/$export"))
            }
            other => Err(Error::NotFound(format!(
                "$export is defined on the system, Patient and Group/[id], not on {other}"
            ))),
        }
    })
    .await
}

/// `GET|POST [base]/Group/[id]/$export`.
pub async fn export_group(s: &Arc<AppState>, ctx: &Ctx, ctype: &str, id: &str, body: Body) -> Response {
    ctx.run(async {
        if ctype != "Group" {
            return Err(Error::NotFound(format!("$export is defined on Group/[id], not on {ctype}/[id]")));
        }
        check_id(id)?;
        // Before the Group is looked up: its existence is not for everyone to learn.
        ctx.allow_system(&[Interaction::Read, Interaction::Search])?;
        let members = s.engine.group_members(id).await?;
        kickoff(s, ctx, ExportLevel::Group { id: id.to_string(), members }, body).await
    })
    .await
}

async fn kickoff(s: &Arc<AppState>, ctx: &Ctx, level: ExportLevel, body: Body) -> Result<Response> {
    ctx.allow_system(&[Interaction::Read, Interaction::Search])?;
    if !ctx.prefers("respond-async") {
        return Err(Error::invalid(
            IssueCode::Required,
            "$export runs asynchronously: send the header 'Prefer: respond-async'",
        ));
    }
    let lenient = ctx.prefers("handling=lenient");
    let mut params: Vec<(String, String)> = ctx.query.clone();
    if ctx.method == axum::http::Method::POST {
        params.extend(parameters(&body_resource(s, ctx, body).await?)?);
    }
    let params = ExportParams::check(&s.engine, level, &params, lenient).await?;
    let request = format!("{}{}", ctx.base, ctx.path.strip_prefix("/fhir").unwrap_or(&ctx.path))
        + &if ctx.raw_query.is_empty() { String::new() } else { format!("?{}", ctx.raw_query) };
    let id = s.engine.export_kickoff(&params, &request).await?;
    bind_to_client(s, ctx, &id).await?;
    accepted(ctx, &format!("{}/$export-poll-status?_jobId={id}", ctx.base), "the export job is queued")
}

/// 202 with the status URL, and an informational OperationOutcome.
pub(super) fn accepted(ctx: &Ctx, status_url: &str, message: &str) -> Result<Response> {
    let body = respond::outcome(&[Issue::new(IssueCode::Informational, message)], "information");
    let mut resp = respond::value(StatusCode::ACCEPTED, ctx.out, &body);
    let location = HeaderValue::from_str(status_url).map_err(|e| Error::Internal(e.to_string()))?;
    resp.headers_mut().insert(header::CONTENT_LOCATION, location);
    Ok(resp)
}

/// The `parameter`s of a Parameters body as (name, value) pairs.
fn parameters(body: &Value) -> Result<Vec<(String, String)>> {
    if body["resourceType"] != "Parameters" {
        return Err(Error::invalid(IssueCode::Invalid, "a POST kick-off takes a Parameters resource"));
    }
    let mut out = Vec::new();
    for p in body["parameter"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or_default().to_string();
        let value =
            p.as_object().and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")).map(|(_, v)| v));
        match value {
            Some(Value::String(v)) => out.push((name, v.clone())),
            Some(Value::Bool(b)) => out.push((name, b.to_string())),
            _ if name == "patient" => {
                return Err(Error::invalid_at(
                    IssueCode::NotSupported,
                    "$export: the 'patient' parameter is not supported; export a Group instead",
                    "patient",
                ));
            }
            _ => {
                return Err(Error::invalid(
                    IssueCode::Value,
                    format!("$export parameter '{name}' has no usable value"),
                ));
            }
        }
    }
    Ok(out)
}

/// A job started with a token belongs to that token's client.
pub(super) async fn bind_to_client(s: &AppState, ctx: &Ctx, id: &str) -> Result<()> {
    match &ctx.principal {
        Some(p) => s.engine.store.set_job_client(id, &p.client_id).await,
        None => Ok(()),
    }
}

/// That the caller's client started job `id` (when it was started with a token); another
/// client's job reads as not found.
async fn check_owner(s: &AppState, ctx: &Ctx, id: &str) -> Result<()> {
    let Some(p) = &ctx.principal else { return Ok(()) };
    let Some(job) = s.engine.store.job(id).await? else { return Ok(()) };
    match &job.client_id {
        Some(owner) if *owner != p.client_id => Err(Error::NotFound(format!("no bulk job {id}"))),
        _ => Ok(()),
    }
}

fn job_id(ctx: &Ctx) -> Result<String> {
    ctx.query
        .iter()
        .find(|(k, _)| k == "_jobId")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| Error::invalid_at(IssueCode::Required, "the status request needs _jobId", "_jobId"))
}

/// `GET [base]/$export-poll-status?_jobId=…`.
pub async fn export_status(State(s): State<Arc<AppState>>, ctx: Ctx) -> Response {
    ctx.run(status(&s, &ctx, "export")).await
}

/// `DELETE [base]/$export-poll-status?_jobId=…`: cancels the job and removes its files.
pub async fn export_cancel(State(s): State<Arc<AppState>>, ctx: Ctx) -> Response {
    ctx.run(cancel(&s, &ctx, "export")).await
}

pub(super) async fn cancel(s: &Arc<AppState>, ctx: &Ctx, kind: &str) -> Result<Response> {
    ctx.allow_system(&[Interaction::Read])?;
    check_owner(s, ctx, &job_id(ctx)?).await?;
    s.engine.delete_job(kind, &job_id(ctx)?).await?;
    let body = respond::outcome(
        &[Issue::new(IssueCode::Informational, format!("the {kind} job was deleted"))],
        "information",
    );
    Ok(respond::value(StatusCode::ACCEPTED, ctx.out, &body))
}

pub(super) async fn status(s: &Arc<AppState>, ctx: &Ctx, kind: &str) -> Result<Response> {
    ctx.allow_system(&[Interaction::Read])?;
    let id = job_id(ctx)?;
    check_owner(s, ctx, &id).await?;
    match s.engine.job_state(kind, &id).await? {
        JobState::InProgress(progress) => {
            let mut resp = respond::empty(StatusCode::ACCEPTED);
            let h = resp.headers_mut();
            h.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
            if let Ok(p) = HeaderValue::from_str(&progress) {
                h.insert("x-progress", p);
            }
            Ok(resp)
        }
        JobState::Failed(e) => Err(e),
        JobState::Complete { job, files } => {
            let transaction_time: i64 = serde_json::from_str::<Value>(&job.params)
                .ok()
                .and_then(|p| p["transaction_time"].as_i64())
                .unwrap_or(job.created);
            let entry = |f: &BulkFile| {
                json!({
                    "type": f.rtype,
                    "url": format!("{}/$bulk-output/{id}/{}.ndjson", ctx.base, f.file_no),
                    "count": f.count,
                })
            };
            let of = |role: &str| files.iter().filter(|f| f.role == role).map(entry).collect::<Vec<_>>();
            let manifest = json!({
                "transactionTime": format_ms(transaction_time),
                "request": job.request,
                "requiresAccessToken": s.requires_access_token,
                "output": of("output"),
                "error": of("error"),
            });
            let mut resp = respond::with_body(
                StatusCode::OK,
                ctx.out,
                serde_json::to_vec(&manifest).map_err(|e| Error::Internal(e.to_string()))?,
            );
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let expires = job.finished.unwrap_or(job.created) + s.engine.bulk.retention.as_millis() as i64;
            if let Ok(v) = HeaderValue::from_str(&http_date(expires)) {
                h.insert(header::EXPIRES, v);
            }
            Ok(resp)
        }
    }
}

/// `GET [base]/$bulk-output/{job}/{n}.ndjson`: one file, streamed chunk by chunk.
pub async fn output_file(
    State(s): State<Arc<AppState>>,
    Path((job, file)): Path<(String, String)>,
    ctx: Ctx,
) -> Response {
    ctx.run(async {
        ctx.allow_system(&[Interaction::Read])?;
        let file_no: i32 = file
            .strip_suffix(".ndjson")
            .unwrap_or(&file)
            .parse()
            .map_err(|_| Error::NotFound(format!("no bulk file {job}/{file}")))?;
        check_owner(&s, &ctx, &job).await?;
        s.engine.job_file(&job, file_no).await?;
        let state = s.clone();
        let stream = futures_util::stream::unfold(Some(0i32), move |seq| {
            let state = state.clone();
            let job = job.clone();
            async move {
                let seq = seq?;
                match state.engine.job_file_chunk(&job, file_no, seq).await {
                    Ok(Some(data)) => Some((Ok(bytes::Bytes::from(data)), Some(seq + 1))),
                    Ok(None) => None,
                    Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
                }
            }
        });
        let mut resp = Response::new(Body::from_stream(stream));
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+ndjson"));
        Ok(resp)
    })
    .await
}

/// `POST [base]/$import`: an NDJSON body (`Content-Encoding: gzip` allowed) loaded in the
/// background. Answers 202 once the upload is stored; the status endpoint reports what was
/// loaded and, line by line, what was refused.
pub async fn import(State(s): State<Arc<AppState>>, ctx: Ctx, body: Body) -> Response {
    ctx.run(async {
        ctx.allow_system(&[Interaction::Create, Interaction::Update])?;
        if !ctx.prefers("respond-async") {
            return Err(Error::invalid(
                IssueCode::Required,
                "$import runs asynchronously: send the header 'Prefer: respond-async'",
            ));
        }
        let ct = ctx.header("content-type").unwrap_or_default();
        let mime = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if !matches!(mime.as_str(), "application/fhir+ndjson" | "application/ndjson" | "application/x-ndjson")
        {
            return Err(Error::UnsupportedMediaType(format!(
                "$import takes application/fhir+ndjson (one resource per line), not '{ct}'"
            )));
        }
        let gzip = match ctx.header("content-encoding").map(str::trim) {
            None | Some("identity") => false,
            Some(e) if e.eq_ignore_ascii_case("gzip") => true,
            Some(other) => {
                return Err(Error::UnsupportedMediaType(format!(
                    "Content-Encoding '{other}' is not supported: use gzip"
                )));
            }
        };
        let limit = s.max_upload_bytes;
        let declared = ctx.header("content-length").and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(Error::PayloadTooLarge(usize::try_from(limit).unwrap_or(usize::MAX)));
        }
        let request = format!("{}/$import", ctx.base);
        let mut upload = s.engine.import_begin(&request, gzip, limit).await?;
        bind_to_client(&s, &ctx, &upload.id).await?;
        let mut stream = body.into_data_stream();
        while let Some(frame) = futures_util::StreamExt::next(&mut stream).await {
            let written = match frame {
                Ok(bytes) => upload.write(&s.engine, &bytes).await,
                Err(e) => Err(Error::invalid(IssueCode::Structure, format!("cannot read the upload: {e}"))),
            };
            if let Err(e) = written {
                s.engine.import_abort(upload).await;
                return Err(e);
            }
        }
        let id = s.engine.import_finish(upload).await?;
        accepted(&ctx, &format!("{}/$import-poll-status?_jobId={id}", ctx.base), "the import job is queued")
    })
    .await
}

/// `GET [base]/$import-poll-status?_jobId=…`.
pub async fn import_status(State(s): State<Arc<AppState>>, ctx: Ctx) -> Response {
    ctx.run(status(&s, &ctx, "import")).await
}

/// `DELETE [base]/$import-poll-status?_jobId=…`: forgets the job and its files (what was
/// loaded stays loaded).
pub async fn import_cancel(State(s): State<Arc<AppState>>, ctx: Ctx) -> Response {
    ctx.run(cancel(&s, &ctx, "import")).await
}
