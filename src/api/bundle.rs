//! Search and history Bundles. Entries embed the stored resource bytes as they are
//! (`RawValue`), so a JSON page is assembled without re-parsing any resource.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use serde_json::value::RawValue;

use super::format::{Format, Output};
use super::request::Ctx;
use super::respond;
use crate::engine::{History, Outcome, SearchResult};
use crate::error::{Error, Result};
use crate::resource::instant;
use crate::store::Version;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    resource_type: &'static str,
    id: String,
    meta: Meta,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<i64>,
    link: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<Entry>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    last_updated: String,
}

#[derive(Serialize)]
struct Link {
    relation: &'static str,
    url: String,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(skip_serializing_if = "Option::is_none")]
    full_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    search: Option<SearchInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<RequestInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<ResponseInfo>,
}

#[derive(Serialize)]
struct SearchInfo {
    mode: &'static str,
}

#[derive(Serialize)]
struct RequestInfo {
    method: String,
    url: String,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct ResponseInfo {
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Box<RawValue>>,
}

fn raw(bytes: &[u8]) -> Result<Box<RawValue>> {
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|e| Error::Internal(format!("stored body is not UTF-8: {e}")))?;
    RawValue::from_string(text).map_err(|e| Error::Internal(format!("stored body is not JSON: {e}")))
}

fn envelope(kind: &'static str, total: Option<i64>, link: Vec<Link>, entry: Vec<Entry>) -> Bundle {
    Bundle {
        resource_type: "Bundle",
        id: uuid::Uuid::new_v4().to_string(),
        meta: Meta { last_updated: instant::format_ms(instant::now_ms()) },
        kind,
        total,
        link,
        entry,
    }
}

/// Serializes the bundle; XML and pretty JSON go through a `Value`, compact JSON does not.
fn finish(out: Output, bundle: &Bundle) -> Result<Response> {
    let bytes = serde_json::to_vec(bundle).map_err(|e| Error::Internal(e.to_string()))?;
    if out.format == Format::Json && !out.pretty {
        return Ok(respond::with_body(StatusCode::OK, out, bytes));
    }
    let value = serde_json::from_slice(&bytes).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(respond::value(StatusCode::OK, out, &value))
}

/// `path?query` with `_cursor` replaced.
fn page_url(ctx: &Ctx, path: &str, query: &str, cursor: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.as_bytes()).into_owned().filter(|(k, _)| k != "_cursor").collect();
    pairs.extend(ctx.query.iter().filter(|(k, _)| k == "_format" || k == "_pretty").cloned());
    if let Some(c) = cursor {
        pairs.push(("_cursor".into(), c.into()));
    }
    let qs = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let url = if path.is_empty() { ctx.base.clone() } else { format!("{}/{path}", ctx.base) };
    if qs.is_empty() { url } else { format!("{url}?{qs}") }
}

fn full_url(ctx: &Ctx, v: &Version) -> String {
    format!("{}/{}/{}", ctx.base, v.rtype, v.id)
}

/// `path` is the search's path below the base: `Patient` or `Patient/123/Immunization`.
pub fn searchset(ctx: &Ctx, path: &str, query: &str, mut result: SearchResult) -> Result<Response> {
    super::auth::visible_includes(ctx.principal.as_deref(), &mut result);
    for v in result.hits.iter().chain(&result.included) {
        crate::engine::audit::note(&v.rtype, &v.id, Some(v.version), None);
    }
    finish(ctx.out, &searchset_bundle(ctx, path, query, result)?)
}

fn searchset_bundle(ctx: &Ctx, path: &str, query: &str, result: SearchResult) -> Result<Bundle> {
    // Links show the parameters that were applied, not the ones ignored (search.html#conformance).
    let ignored: Vec<&str> = result.ignored.iter().filter_map(|i| i.expression.as_deref()).collect();
    let applied = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            url::form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| !ignored.contains(&k.as_ref())),
        )
        .finish();
    let query = applied.as_str();
    let cursor = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "_cursor")
        .map(|(_, v)| v.into_owned());
    let mut link = vec![Link { relation: "self", url: page_url(ctx, path, query, cursor.as_deref()) }];
    link.push(Link { relation: "first", url: page_url(ctx, path, query, None) });
    if let Some(previous) = &result.previous {
        link.push(Link { relation: "previous", url: page_url(ctx, path, query, Some(previous)) });
    }
    if let Some(next) = &result.next {
        link.push(Link { relation: "next", url: page_url(ctx, path, query, Some(next)) });
    }
    let mut entry = Vec::with_capacity(result.hits.len() + 1);
    for v in &result.hits {
        entry.push(Entry {
            full_url: Some(full_url(ctx, v)),
            resource: Some(raw(&v.body)?),
            search: Some(SearchInfo { mode: "match" }),
            ..Entry::default()
        });
    }
    for v in &result.included {
        entry.push(Entry {
            full_url: Some(full_url(ctx, v)),
            resource: Some(raw(&v.body)?),
            search: Some(SearchInfo { mode: "include" }),
            ..Entry::default()
        });
    }
    if !result.ignored.is_empty() {
        let oo = respond::outcome(&result.ignored, "warning");
        entry.push(Entry {
            resource: Some(raw(&serde_json::to_vec(&oo).map_err(|e| Error::Internal(e.to_string()))?)?),
            search: Some(SearchInfo { mode: "outcome" }),
            ..Entry::default()
        });
    }
    Ok(envelope("searchset", result.total, link, entry))
}

pub fn history(ctx: &Ctx, path: &str, h: History) -> Result<Response> {
    let query = ctx.criteria_query();
    let cursor = ctx.query.iter().find(|(k, _)| k == "_cursor").map(|(_, v)| v.as_str());
    let mut link = vec![Link { relation: "self", url: page_url(ctx, path, &query, cursor) }];
    link.push(Link { relation: "first", url: page_url(ctx, path, &query, None) });
    if let Some(next) = &h.next {
        link.push(Link { relation: "next", url: page_url(ctx, path, &query, Some(next)) });
    }
    let mut entry = Vec::with_capacity(h.entries.len());
    for v in &h.entries {
        let deleted = v.method == "DELETE";
        let (method, url, status) = match v.method.as_str() {
            "POST" => ("POST", v.rtype.clone(), "201 Created"),
            "DELETE" => ("DELETE", format!("{}/{}", v.rtype, v.id), "200 OK"),
            m => (m, format!("{}/{}", v.rtype, v.id), if v.version == 1 { "201 Created" } else { "200 OK" }),
        };
        entry.push(Entry {
            full_url: Some(full_url(ctx, v)),
            resource: if deleted { None } else { Some(raw(&v.body)?) },
            request: Some(RequestInfo { method: method.into(), url }),
            response: Some(ResponseInfo {
                status: status.into(),
                etag: Some(format!("W/\"{}\"", v.version)),
                last_modified: Some(instant::format_ms(v.last_updated)),
                ..ResponseInfo::default()
            }),
            ..Entry::default()
        });
    }
    finish(ctx.out, &envelope("history", h.total, link, entry))
}

/// The `batch-response` or `transaction-response` to a Bundle: one entry per request entry, in
/// order, with status, location, etag and lastModified, and the resource unless
/// `Prefer: return=minimal`; a failed batch entry carries its OperationOutcome.
pub fn bundle_response(ctx: &Ctx, kind: &'static str, results: Vec<Result<Outcome>>) -> Result<Response> {
    let minimal = ctx.prefer_return == super::request::Return::Minimal;
    let status =
        |code: StatusCode| format!("{} {}", code.as_u16(), code.canonical_reason().unwrap_or_default());
    let mut entry = Vec::with_capacity(results.len());
    for result in results {
        let e = match result {
            Ok(Outcome::Written(w)) => {
                let v = &w.version;
                let code = if w.created { StatusCode::CREATED } else { StatusCode::OK };
                Entry {
                    full_url: Some(full_url(ctx, v)),
                    resource: if minimal { None } else { Some(raw(&v.body)?) },
                    response: Some(ResponseInfo {
                        status: status(code),
                        location: Some(format!("{}/{}/_history/{}", v.rtype, v.id, v.version)),
                        etag: Some(format!("W/\"{}\"", v.version)),
                        last_modified: Some(instant::format_ms(v.last_updated)),
                        ..ResponseInfo::default()
                    }),
                    ..Entry::default()
                }
            }
            Ok(Outcome::Deleted(d)) => Entry {
                response: Some(ResponseInfo {
                    status: status(StatusCode::NO_CONTENT),
                    etag: d.version.map(|v| format!("W/\"{v}\"")),
                    ..ResponseInfo::default()
                }),
                ..Entry::default()
            },
            Ok(Outcome::Read(v)) => Entry {
                full_url: Some(full_url(ctx, &v)),
                resource: Some(raw(&v.body)?),
                response: Some(ResponseInfo {
                    status: status(StatusCode::OK),
                    etag: Some(format!("W/\"{}\"", v.version)),
                    last_modified: Some(instant::format_ms(v.last_updated)),
                    ..ResponseInfo::default()
                }),
                ..Entry::default()
            },
            Ok(Outcome::Searched(result, url)) => {
                let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
                let bundle = searchset_bundle(ctx, path, query, *result)?;
                let bytes = serde_json::to_vec(&bundle).map_err(|e| Error::Internal(e.to_string()))?;
                Entry {
                    resource: Some(raw(&bytes)?),
                    response: Some(ResponseInfo {
                        status: status(StatusCode::OK),
                        ..ResponseInfo::default()
                    }),
                    ..Entry::default()
                }
            }
            Err(err) => {
                let code = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let oo = respond::error_outcome(&err);
                let bytes = serde_json::to_vec(&oo).map_err(|e| Error::Internal(e.to_string()))?;
                Entry {
                    response: Some(ResponseInfo {
                        status: status(code),
                        outcome: Some(raw(&bytes)?),
                        ..ResponseInfo::default()
                    }),
                    ..Entry::default()
                }
            }
        };
        entry.push(e);
    }
    finish(ctx.out, &envelope(kind, None, Vec::new(), entry))
}
