//! Auditing at the HTTP door (when authorization is on): every FHIR request touching patient
//! data leaves an AuditEvent. A successful write has recorded it in its own transaction (see
//! `engine::audit`); everything else — reads, searches, operations and every failure — is
//! queued here once the response is known.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::authn::Principal;
use crate::engine::audit::{self, Act, Audit, Who};
use crate::search::compartment;

/// Wraps a FHIR request in an audit record when the caller is known.
pub async fn record(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let (Some(queue), Some(p)) = (&s.audit, req.extensions().get::<Arc<Principal>>().cloned()) else {
        return next.run(req).await;
    };
    let path = req.uri().path().strip_prefix("/fhir").unwrap_or(req.uri().path()).to_string();
    let query = req.uri().query().map(str::to_string);
    let method = req.method().clone();
    let Some(mut act) = classify(&method, &path) else { return next.run(req).await };
    let address = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let who = Who {
        client_id: p.client_id.clone(),
        subject: p.subject.clone(),
        fhir_user: p.grant.fhir_user.clone(),
        address,
    };
    let record = Arc::new(Audit::new(who));
    let resp = audit::scope(record.clone(), next.run(req)).await;
    let status = resp.status();
    // A batch may have written and read: its writes are recorded, its reads are not yet.
    if record.written() && status.is_success() && act.subtype != "batch" {
        return resp;
    }
    act.outcome = match status.as_u16() {
        0..=399 => "0",
        400..=499 => "4",
        _ => "8",
    };
    if act.outcome != "0" {
        act.outcome_desc = Some(format!("HTTP {status}"));
    }
    if act.action == "R" || act.action == "E" {
        act.query = query.filter(|q| !q.is_empty());
        act.patients.extend(patients_in_query(act.query.as_deref()));
    }
    if let Some(patient) = &p.grant.patient {
        act.patients.push(patient.clone());
    }
    queue.send(record.pending(act)).await;
    resp
}

/// What a request under `/fhir` does; `None` for what is not about patient data.
fn classify(method: &Method, path: &str) -> Option<Act> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let is_type = |t: &str| crate::resource::is_resource_type(t);
    let patient_data = |t: &str| t == "Patient" || compartment::patient_links(t).is_some();
    let write = |m: &Method| match *m {
        Method::POST => ("create", "C"),
        Method::PUT => ("update", "U"),
        Method::PATCH => ("patch", "U"),
        Method::DELETE => ("delete", "D"),
        _ => ("read", "R"),
    };
    let mut named = Vec::new();
    let mut patients = Vec::new();
    let (subtype, action) = match parts.as_slice() {
        [] if method == Method::POST => ("batch", "E"),
        [] => ("search-system", "R"),
        ["metadata"] => return None,
        ["_history"] => ("history-system", "R"),
        [op, ..] if op.starts_with('$') => ("operation", "E"),
        // A compartment search returns what it names, whoever owns the compartment
        // (`Practitioner/1/Observation`).
        [t, id, rest]
            if *rest != "_history" && (patient_data(rest) || *rest == "*" || rest.starts_with('$')) =>
        {
            if *t == "Patient" {
                patients.push(id.to_string());
            }
            if rest.starts_with('$') { ("operation", "E") } else { ("search-type", "R") }
        }
        [t, ..] if is_type(t) && !patient_data(t) => return None,
        [t] if *method == Method::GET => (if is_type(t) { "search-type" } else { return None }, "R"),
        [_t] => write(method),
        [_t, "_search"] => ("search-type", "R"),
        [_t, "_history"] => ("history-type", "R"),
        [_t, op] if op.starts_with('$') => ("operation", "E"),
        [t, id] => {
            named.push(format!("{t}/{id}"));
            if *t == "Patient" {
                patients.push(id.to_string());
            }
            write(method)
        }
        [t, id, "_history"] => {
            named.push(format!("{t}/{id}"));
            ("history-instance", "R")
        }
        [t, id, "_history", v] => {
            named.push(format!("{t}/{id}/_history/{v}"));
            ("vread", "R")
        }
        [t, id, rest] => {
            if *t == "Patient" {
                patients.push(id.to_string());
            }
            if rest.starts_with('$') { ("operation", "E") } else { ("search-type", "R") }
        }
        _ => return None,
    };
    Some(Act { subtype, action, outcome: "0", outcome_desc: None, query: None, named, patients })
}

/// Patients a query names: `patient=`/`subject=` values that are (or point to) a Patient.
fn patients_in_query(query: Option<&str>) -> Vec<String> {
    let Some(q) = query else { return Vec::new() };
    url::form_urlencoded::parse(q.as_bytes())
        .filter(|(k, _)| {
            let name = k.split(':').next().unwrap_or_default();
            name == "patient" || name == "subject"
        })
        .flat_map(|(k, v)| {
            let bare_is_patient = k.split(':').next() == Some("patient") || k.ends_with(":Patient");
            v.split(',')
                .filter_map(|one| match one.rsplit_once("Patient/") {
                    Some((_, id)) => Some(id.to_string()),
                    None if bare_is_patient && !one.contains('/') => Some(one.to_string()),
                    None => None,
                })
                .collect::<Vec<_>>()
        })
        .collect()
}
