//! Building HTTP responses, including the one place where an [`Error`] becomes an
//! OperationOutcome with its HTTP status.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::format::{self, Output};
use crate::error::{Error, Issue};
use crate::resource::instant;
use crate::store::Version;

pub fn outcome(issues: &[Issue], severity: &str) -> Value {
    let issue: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut v = json!({"severity": severity, "code": i.code.as_str(), "diagnostics": i.diagnostics});
            if let Some(e) = &i.expression {
                v["expression"] = json!([e]);
            }
            v
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": issue})
}

pub fn with_body(status: StatusCode, out: Output, bytes: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(out.format.content_type()));
    resp
}

pub fn empty(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

/// A value rendered in the negotiated format; a failure to render becomes a 500 outcome.
pub fn value(status: StatusCode, out: Output, value: &Value) -> Response {
    match format::render(out, value) {
        Ok(bytes) => with_body(status, out, bytes),
        Err(e) => error(out, e),
    }
}

/// The error response: an OperationOutcome in the client's format (JSON if that is what failed).
pub fn error(out: Output, err: Error) -> Response {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!("request failed: {err}");
    } else {
        tracing::debug!("request refused ({status}): {err}");
    }
    let body = outcome(&err.issues(), if status.is_server_error() { "fatal" } else { "error" });
    let (out, bytes) = match format::render(out, &body) {
        Ok(bytes) => (out, bytes),
        Err(_) => (Output::default(), serde_json::to_vec(&body).unwrap_or_default()),
    };
    let mut resp = with_body(status, out, bytes);
    if let Error::Unauthorized(why) = &err {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, super::authn::challenge(why));
    }
    resp
}

/// The OperationOutcome an error becomes (inside a batch response entry).
pub fn error_outcome(err: &Error) -> serde_json::Value {
    let severity = if err.status() >= 500 { "fatal" } else { "error" };
    outcome(&err.issues(), severity)
}

/// `W/"n"`.
pub fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{version}\"")).unwrap_or(HeaderValue::from_static("W/\"0\""))
}

/// Adds ETag and Last-Modified for a version.
pub fn version_headers(resp: &mut Response, v: &Version) {
    resp.headers_mut().insert(header::ETAG, etag(v.version));
    if let Ok(lm) = HeaderValue::from_str(&instant::http_date(v.last_updated)) {
        resp.headers_mut().insert(header::LAST_MODIFIED, lm);
    }
}

/// A stored version as the response body (or an empty body for `return=minimal`).
pub fn stored(status: StatusCode, out: Output, v: &Version) -> Response {
    let mut resp = match format::render_stored(out, &v.body) {
        Ok(bytes) => with_body(status, out, bytes),
        Err(e) => return error(out, e),
    };
    version_headers(&mut resp, v);
    resp
}
