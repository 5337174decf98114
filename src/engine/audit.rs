//! The audit trail, as AuditEvents in the FHIR Basic Audit Log Patterns' shape (type `rest`,
//! subtype the interaction, agents the client and the user, entities the resources and the
//! patient, outcome, source address).
//!
//! Writes are audited inside their own transaction (`Engine::put` asks [`current`]): the
//! change and its record commit together or not at all. Everything else (reads, searches,
//! failures) is handed to a bounded queue (`AuditQueue`) that a writer task empties in batches;
//! when the queue is full, requests wait rather than lose their record.
//!
//! The request's [`Audit`] travels in a task-local, so the engine's write path needs no new
//! parameters; work outside a request (bulk jobs, the CLI) has none and is audited where it is
//! started.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::Engine;
use crate::error::Result;
use crate::resource::instant;
use crate::search::compartment;
use crate::store::IndexRows;

tokio::task_local! {
    static CURRENT: Arc<Audit>;
}

/// Who is acting, for the agents of an AuditEvent.
#[derive(Debug, Clone, Default)]
pub struct Who {
    pub client_id: String,
    /// The token's subject: a user name, or the client itself for a backend service.
    pub subject: String,
    pub fhir_user: Option<String>,
    pub address: Option<String>,
}

/// One request's audit record, filled as the request runs.
#[derive(Debug)]
pub struct Audit {
    pub who: Who,
    state: Mutex<Record>,
}

#[derive(Debug, Default)]
struct Record {
    /// A write recorded its AuditEvent in its transaction.
    written: bool,
    /// Resources read (with their bodies, to find their patients later) or found.
    entities: Vec<Seen>,
}

#[derive(Debug, Clone)]
struct Seen {
    reference: String,
    rtype: String,
    body: Option<Vec<u8>>,
}

/// An AuditEvent to be written by the queue's writer: its patients are found there, off the
/// request's path, from the bodies read.
#[derive(Debug)]
pub struct Pending {
    pub event: Value,
    bodies: Vec<(String, Vec<u8>)>,
    patients: Vec<String>,
}

/// What the request did, in the AuditEvent's terms.
#[derive(Debug, Clone)]
pub struct Act {
    /// `http://hl7.org/fhir/restful-interaction` code.
    pub subtype: &'static str,
    /// C, R, U, D or E.
    pub action: &'static str,
    /// `0` success, `4` minor failure (4xx), `8` serious failure (5xx).
    pub outcome: &'static str,
    pub outcome_desc: Option<String>,
    /// The query, for searches and operations.
    pub query: Option<String>,
    /// Resources the request names (`Type/id`).
    pub named: Vec<String>,
    /// Patients the request is about (compartment, criteria, launch context).
    pub patients: Vec<String>,
}

/// Most resources listed as entities of one search's AuditEvent.
const MAX_ENTITIES: usize = 100;

/// Runs `f` with `audit` as the current request's record.
pub async fn scope<F: Future>(audit: Arc<Audit>, f: F) -> F::Output {
    CURRENT.scope(audit, f).await
}

/// The current request's record, if it is audited.
pub fn current() -> Option<Arc<Audit>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Notes a resource the request returns; `body` to find its patients.
pub fn note(rtype: &str, id: &str, version: Option<i64>, body: Option<&[u8]>) {
    if let Some(a) = current() {
        let mut r = a.state.lock().unwrap_or_else(|e| e.into_inner());
        if r.entities.len() < MAX_ENTITIES {
            let reference = match version {
                Some(v) => format!("{rtype}/{id}/_history/{v}"),
                None => format!("{rtype}/{id}"),
            };
            // The body only where the patient must be found in it.
            let needed = rtype != "Patient" && compartment::patient_links(rtype).is_some();
            let body = body.filter(|_| needed).map(<[u8]>::to_vec);
            r.entities.push(Seen { reference, rtype: rtype.into(), body });
        }
    }
}

impl Audit {
    pub fn new(who: Who) -> Self {
        Audit { who, state: Mutex::new(Record::default()) }
    }

    /// Whether a write recorded the request in its transaction.
    pub fn written(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).written
    }

    /// The AuditEvent of a request that was not recorded in a transaction.
    pub fn pending(&self, act: Act) -> Pending {
        let r = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut refs: Vec<String> = act.named.clone();
        refs.extend(r.entities.iter().map(|s| s.reference.clone()));
        let bodies = r.entities.iter().filter_map(|s| Some((s.rtype.clone(), s.body.clone()?))).collect();
        let mut patients = act.patients.clone();
        patients.extend(
            r.entities
                .iter()
                .filter(|s| s.rtype == "Patient")
                .filter_map(|s| patient_of_reference(&s.reference)),
        );
        Pending { event: event(&self.who, &act, &refs, &[]), bodies, patients }
    }
}

/// `Patient/x` or `Patient/x/_history/n` → `x`.
fn patient_of_reference(reference: &str) -> Option<String> {
    reference.strip_prefix("Patient/").map(|rest| rest.split('/').next().unwrap_or_default().to_string())
}

/// The patients a resource belongs to, from its index rows.
pub fn patients_in(rtype: &str, id: &str, rows: &IndexRows) -> Vec<String> {
    if rtype == "Patient" {
        return vec![id.to_string()];
    }
    let Some(params) = compartment::patient_links(rtype) else { return Vec::new() };
    let mut out: Vec<String> = rows
        .references
        .iter()
        .filter(|r| params.contains(&r.param) && r.target_type.as_deref() == Some("Patient"))
        .filter_map(|r| r.target_id.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn coding(system: &str, code: &str) -> Value {
    json!({"system": system, "code": code})
}

/// An AuditEvent (R4) for `act` by `who`, naming `refs` and `patients`.
fn event(who: &Who, act: &Act, refs: &[String], patients: &[String]) -> Value {
    let mut agents = Vec::new();
    let user_is_client = who.subject == who.client_id;
    let mut client = json!({
        "type": {"coding": [coding("http://dicom.nema.org/resources/ontology/DCM", "110150")]},
        "who": {"identifier": {"system": "urn:hearth:client", "value": who.client_id}},
        "requestor": user_is_client,
    });
    if let Some(address) = &who.address {
        client["network"] = json!({"address": address, "type": "2"});
    }
    agents.push(client);
    if !user_is_client {
        let whom = match &who.fhir_user {
            Some(r) => {
                json!({"reference": r, "identifier": {"system": "urn:hearth:user", "value": who.subject}})
            }
            None => json!({"identifier": {"system": "urn:hearth:user", "value": who.subject}}),
        };
        agents.push(json!({
            "type": {"coding": [coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP")]},
            "who": whom,
            "requestor": true,
        }));
    }
    let mut entities: Vec<Value> = refs
        .iter()
        .map(|r| {
            json!({
                "what": {"reference": r},
                "type": coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2"),
                "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "4"),
            })
        })
        .collect();
    if let Some(q) = &act.query {
        use base64::Engine as _;
        entities.push(json!({
            "type": coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2"),
            "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "24"),
            "query": base64::engine::general_purpose::STANDARD.encode(q),
        }));
    }
    let mut ev = json!({
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": act.subtype}],
        "action": act.action,
        "recorded": instant::format_ms(instant::now_ms()),
        "outcome": act.outcome,
        "agent": agents,
        "source": {
            "observer": {"display": "Hearth"},
            "type": [coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4")],
        },
        "entity": entities,
    });
    if let Some(d) = &act.outcome_desc {
        ev["outcomeDesc"] = json!(d);
    }
    add_patients(&mut ev, patients);
    ev
}

/// Adds a patient entity for each of `patients` not named yet.
fn add_patients(ev: &mut Value, patients: &[String]) {
    let Some(entities) = ev.get_mut("entity").and_then(Value::as_array_mut) else { return };
    let mut have: Vec<String> = Vec::new();
    for p in patients {
        let reference = format!("Patient/{p}");
        if p.is_empty() || !crate::resource::valid_id(p) || have.contains(&reference) {
            continue;
        }
        entities.push(json!({
            "what": {"reference": reference},
            "type": coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "1"),
            "role": coding("http://terminology.hl7.org/CodeSystem/object-role", "1"),
        }));
        have.push(reference);
    }
}

fn subtype_of(method: &str) -> (&'static str, &'static str) {
    match method {
        "POST" => ("create", "C"),
        "PATCH" => ("patch", "U"),
        "DELETE" => ("delete", "D"),
        _ => ("update", "U"),
    }
}

impl Engine {
    /// The AuditEvent of a write, for its own transaction, when the request is audited and the
    /// resource is not an AuditEvent itself.
    pub(super) fn write_audit(
        &self,
        rtype: &str,
        id: &str,
        version: i64,
        method: &str,
        rows: &IndexRows,
    ) -> Option<Value> {
        if rtype == "AuditEvent" {
            return None;
        }
        let audit = current()?;
        let (subtype, action) = subtype_of(method);
        let act = Act {
            subtype,
            action,
            outcome: "0",
            outcome_desc: None,
            query: None,
            named: Vec::new(),
            patients: Vec::new(),
        };
        let refs = [format!("{rtype}/{id}/_history/{version}")];
        let ev = event(&audit.who, &act, &refs, &patients_in(rtype, id, rows));
        audit.state.lock().unwrap_or_else(|e| e.into_inner()).written = true;
        Some(ev)
    }

    /// Writes queued AuditEvents in one transaction, their patients found from the bodies read.
    pub async fn write_audit_events(&self, pending: &[Pending]) -> Result<usize> {
        let mut prepared = Vec::with_capacity(pending.len());
        for p in pending {
            let mut ev = p.event.clone();
            let mut patients = p.patients.clone();
            for (rtype, body) in &p.bodies {
                // A Patient is its own patient (noted already); others by their patient links
                // only, not by every parameter of their type.
                let Some(links) = compartment::patient_links(rtype).filter(|_| rtype != "Patient") else {
                    continue;
                };
                if let Ok(v) = crate::resource::parse_json(body) {
                    let id = v.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                    let rows = crate::search::index::extract_some(&self.registry, rtype, &v, |c| {
                        links.iter().any(|l| l == c)
                    });
                    patients.extend(patients_in(rtype, &id, &rows));
                }
            }
            add_patients(&mut ev, &patients);
            ev["id"] = json!(super::new_id());
            let origin = super::Origin { file: "audit".into(), line: prepared.len() };
            match super::load::prepare(&self.registry, origin, ev, false) {
                Ok(p) => prepared.push(p),
                Err(r) => tracing::error!("an AuditEvent could not be prepared: {}", r.reason),
            }
        }
        self.write_prepared(&prepared).await
    }
}

/// AuditEvents waiting to be written; at most this many before requests wait.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Most AuditEvents written per transaction.
const BATCH: usize = 500;
/// Attempts at writing a batch before its events go to the log instead.
const ATTEMPTS: u32 = 10;

pub type AuditReceiver = tokio::sync::mpsc::Receiver<Pending>;

/// The sending side of the audit queue, one per node.
#[derive(Clone)]
pub struct AuditQueue {
    tx: tokio::sync::mpsc::Sender<Pending>,
}

impl AuditQueue {
    /// A queue and the receiver its writer (`Engine::run_audit_writer`) empties.
    pub fn new() -> (AuditQueue, tokio::sync::mpsc::Receiver<Pending>) {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE_CAPACITY);
        (AuditQueue { tx }, rx)
    }

    /// Queues an event, waiting while the queue is full.
    pub async fn send(&self, p: Pending) {
        if let Err(e) = self.tx.send(p).await {
            tracing::error!(event = %e.0.event, "the audit writer has stopped; AuditEvent logged instead");
        }
    }
}

impl Engine {
    /// Writes queued AuditEvents as they come, in batches (a batch is whatever arrived while the
    /// last one was written, so an event waits about one write). On `stop` it takes no more
    /// events, writes what is queued, and returns.
    pub async fn run_audit_writer(
        &self,
        mut rx: tokio::sync::mpsc::Receiver<Pending>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut buf = Vec::with_capacity(BATCH);
        loop {
            let n = tokio::select! {
                n = rx.recv_many(&mut buf, BATCH) => n,
                _ = stop.changed() => {
                    rx.close();
                    rx.recv_many(&mut buf, BATCH).await
                }
            };
            if n == 0 {
                return;
            }
            self.write_or_log(&buf).await;
            buf.clear();
        }
    }

    async fn write_or_log(&self, batch: &[Pending]) {
        for attempt in 1..=ATTEMPTS {
            match self.write_audit_events(batch).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!("writing {} AuditEvents failed (attempt {attempt}): {e}", batch.len());
                    tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt))).await;
                }
            }
        }
        // Never dropped silently: what cannot be stored goes to the log.
        for p in batch {
            tracing::error!(event = %p.event, "AuditEvent could not be stored");
        }
    }
}
