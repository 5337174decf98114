//! Search handlers: type level (GET and POST `_search`), system level, compartments, and
//! `$everything`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;

use super::request::{Ctx, read_body};
use super::rest::{check_id, check_type};
use super::{AppState, bundle};
use crate::auth::Interaction;
use crate::engine::Scope;
use crate::error::{Error, IssueCode, Result};
use crate::search::{Handling, compartment};

pub async fn search_get(State(s): State<Arc<AppState>>, Path(rtype): Path<String>, ctx: Ctx) -> Response {
    ctx.run(async {
        check_type(&rtype)?;
        ctx.allow(&rtype, Interaction::Search)?;
        let query = ctx.criteria_query();
        ctx.allow_query(&query)?;
        let see = ctx.see();
        let result = s.engine.search_seen(Scope::Type(&rtype), &query, ctx.handling, see.as_deref()).await?;
        bundle::searchset(&ctx, &rtype, &query, result)
    })
    .await
}

/// GET `Patient/123/Immunization?…`, `Patient/123/*?…` (every type in the compartment) and
/// `Patient/123/$everything`.
pub async fn search_compartment(
    State(s): State<Arc<AppState>>,
    Path((ctype, cid, rtype)): Path<(String, String, String)>,
    ctx: Ctx,
    body: Body,
) -> Response {
    if rtype == "$export" {
        return super::bulk::export_group(&s, &ctx, &ctype, &cid, body).await;
    }
    ctx.run(async {
        check_type(&ctype)?;
        check_id(&cid)?;
        if rtype != "*" && rtype != "$everything" {
            check_type(&rtype)?;
        }
        if !compartment::is_compartment(&ctype) {
            return Err(Error::NotFound(format!("{ctype} has no compartment")));
        }
        if rtype == "*" || rtype == "$everything" {
            ctx.allow_types(None, Interaction::Search)?;
            ctx.allow_types(None, Interaction::Read)?;
        } else {
            ctx.allow(&rtype, Interaction::Search)?;
        }
        let query = ctx.criteria_query();
        ctx.allow_query(&query)?;
        let path = format!("{ctype}/{cid}/{rtype}");
        let see = ctx.see();
        if rtype == "$everything" {
            let translated = everything_query(&ctx)?;
            let scope = Scope::Compartment { ctype: &ctype, cid: &cid, rtype: "*" };
            ctx.confirm(&s.engine, &ctype, &cid, Interaction::Read).await?;
            s.engine.read(&ctype, &cid).await?;
            let result = s.engine.search_seen(scope, &translated, Handling::Strict, see.as_deref()).await?;
            return bundle::searchset(&ctx, &path, &ctx.criteria_query(), result);
        }
        let scope = Scope::Compartment { ctype: &ctype, cid: &cid, rtype: &rtype };
        let result = s.engine.search_seen(scope, &query, ctx.handling, see.as_deref()).await?;
        bundle::searchset(&ctx, &path, &query, result)
    })
    .await
}

/// POST on `[base]/Type/id/…`: only `Group/[id]/$export` takes one.
pub async fn compartment_post(
    State(s): State<Arc<AppState>>,
    Path((ctype, cid, op)): Path<(String, String, String)>,
    ctx: Ctx,
    body: Body,
) -> Response {
    if op == "$export" {
        return super::bulk::export_group(&s, &ctx, &ctype, &cid, body).await;
    }
    crate::api::respond::error(
        ctx.out,
        Error::MethodNotAllowed(format!("POST is not allowed on {}", ctx.path)),
    )
}

/// POST `_search`: criteria in an `application/x-www-form-urlencoded` body, plus the URL's.
pub async fn search_post(
    State(s): State<Arc<AppState>>,
    Path(rtype): Path<String>,
    ctx: Ctx,
    body: Body,
) -> Response {
    ctx.run(async {
        check_type(&rtype)?;
        ctx.allow(&rtype, Interaction::Search)?;
        let ct = ctx.header("content-type").unwrap_or("application/x-www-form-urlencoded");
        if !ct.starts_with("application/x-www-form-urlencoded") {
            return Err(Error::UnsupportedMediaType(format!(
                "POST _search needs Content-Type application/x-www-form-urlencoded, got '{ct}'"
            )));
        }
        let bytes = read_body(body, s.max_body_bytes, &ctx.headers).await?;
        let form = std::str::from_utf8(&bytes)
            .map_err(|_| Error::invalid(IssueCode::Structure, "the search form is not UTF-8"))?;
        let url_part = ctx.criteria_query();
        let query = [url_part.as_str(), form.trim()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("&");
        ctx.allow_query(&query)?;
        let see = ctx.see();
        let result = s.engine.search_seen(Scope::Type(&rtype), &query, ctx.handling, see.as_deref()).await?;
        bundle::searchset(&ctx, &rtype, &query, result)
    })
    .await
}

/// GET `[base]?…`: every type, or the ones `_type` lists.
pub async fn search_system(State(s): State<Arc<AppState>>, ctx: Ctx) -> Response {
    ctx.run(async {
        let types: Vec<String> = ctx
            .query
            .iter()
            .filter(|(k, _)| k == "_type")
            .flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_string()))
            .collect();
        ctx.allow_types((!types.is_empty()).then_some(types.as_slice()), Interaction::Search)?;
        let query = ctx.criteria_query();
        ctx.allow_query(&query)?;
        let see = ctx.see();
        let result = s.engine.search_seen(Scope::System, &query, ctx.handling, see.as_deref()).await?;
        bundle::searchset(&ctx, "", &query, result)
    })
    .await
}

/// `$everything`'s parameters as a search over the compartment (patient-operation-everything):
/// the compartment's resources and, as includes, what they reference. `start`/`end` (care
/// dates) are not implemented and say so.
fn everything_query(ctx: &Ctx) -> Result<String> {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    out.append_pair("_include", "*");
    for (name, value) in &ctx.query {
        match name.as_str() {
            "_since" => {
                out.append_pair("_lastUpdated", &format!("ge{value}"));
            }
            "_type" | "_count" | "_cursor" => {
                out.append_pair(name, value);
            }
            "_format" | "_pretty" => {}
            other => {
                return Err(Error::invalid_at(
                    IssueCode::NotSupported,
                    format!("$everything does not support the parameter '{other}'"),
                    other,
                ));
            }
        }
    }
    Ok(out.finish())
}

/// POST `[base]/$reindex` (as HAPI names it): recompute every resource's index rows, e.g. after
/// creating a SearchParameter. Runs to completion before answering.
pub async fn reindex(State(s): State<Arc<AppState>>, ctx: Ctx) -> Response {
    ctx.run(async {
        ctx.allow_system(&[Interaction::Update])?;
        reindexed(&ctx, s.engine.reindex(None).await?)
    })
    .await
}

/// POST `[base]/Type/$reindex`: the same for one type.
pub async fn reindex_type(State(s): State<Arc<AppState>>, Path(rtype): Path<String>, ctx: Ctx) -> Response {
    ctx.run(async {
        check_type(&rtype)?;
        ctx.unconfined(&rtype, Interaction::Update, "$reindex")?;
        reindexed(&ctx, s.engine.reindex(Some(&rtype)).await?)
    })
    .await
}

fn reindexed(ctx: &Ctx, n: u64) -> Result<Response> {
    let body = serde_json::json!({
        "resourceType": "Parameters",
        "parameter": [{"name": "count", "valueInteger": n}],
    });
    Ok(super::respond::value(axum::http::StatusCode::OK, ctx.out, &body))
}
