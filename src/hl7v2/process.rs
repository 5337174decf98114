//! One message in, one ACK out: parse, check the header, answer a re-sent message with its
//! first ACK, map, write through the engine's transaction, record. The ACK says AA only once
//! the transaction has committed.

use super::ack::{AckCode, Problem, ack};
use super::message::V2;
use crate::engine::Engine;
use crate::error::Error;
use crate::resource::instant::now_ms;

/// Versions this server reads.
/// (2.6 to 2.8.2 keep PID's layout: the v2-to-FHIR IG maps 2.8.2.)
const VERSIONS: &[&str] =
    &["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"];
/// ADT events that carry a patient to create or update.
const ADT_PATIENT: &[&str] = &["A01", "A04", "A05", "A08", "A28", "A31"];

/// Processes one message's bytes and returns the ACK's text.
pub async fn process(engine: &Engine, ingest: &super::Ingest, bytes: &[u8]) -> String {
    let text = decode(bytes);
    let text = text.trim_start_matches('\u{feff}');
    let m = match V2::parse(text) {
        Ok(m) => m,
        Err(e) => return ack(None, AckCode::AR, &[Problem::new("MSH", 100, e.to_string())]),
    };
    let sender = format!("{}^{}", m.get("MSH", 3, 0), m.get("MSH", 4, 0));
    let control_id = m.get("MSH", 10, 0);
    if control_id.is_empty() {
        return ack(
            Some(&m),
            AckCode::AR,
            &[Problem::new("MSH-10", 101, "MSH-10 (message control id) is required")],
        );
    }
    match engine.store.hl7_ack(&sender, &control_id).await {
        Ok(Some(first)) => return first,
        Ok(None) => {}
        Err(e) => return ack(Some(&m), AckCode::AE, &[Problem::new("MSH", 207, e.to_string())]),
    }
    let message_type = m.get("MSH", 9, 0);
    let received = |status: &'static str, answer: &str| crate::store::hl7::Received {
        sender: sender.clone(),
        control_id: control_id.clone(),
        message_type: message_type.clone(),
        status,
        ack: answer.to_string(),
        raw: text.to_string(),
        received: now_ms(),
    };
    let known = known_manufacturers(engine, &m).await;
    let requests = match requests_of(&m, &known) {
        Ok(r) => r,
        Err((code, problems)) => {
            let answer = ack(Some(&m), code, &problems);
            remember(engine, &received(status_of(code), &answer)).await;
            return answer;
        }
    };
    // The AA is recorded in the transaction that stores the message's resources.
    let accepted = ack(Some(&m), AckCode::AA, &[]);
    let record = received("AA", &accepted);
    match ingest.commit(crate::engine::Part { requests, record }).await {
        Ok(_) => accepted,
        Err(e) => {
            let answer = ack(Some(&m), AckCode::AE, &problems_of(&e));
            remember(engine, &received("AE", &answer)).await;
            answer
        }
    }
}

/// The message's text. MSH-18 may name another character set; UTF-8 and ASCII are read as
/// they are, and ISO-8859-1 byte by byte.
fn decode(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(t) => t.to_string(),
        Err(_) => bytes.iter().map(|b| char::from(*b)).collect(),
    }
}

/// Everything `process` does before the database (decoding, parsing, mapping), for the fuzz
/// target: the number of writes the message maps to, or why it maps to none.
pub fn map_only(bytes: &[u8]) -> Result<usize, String> {
    let text = decode(bytes);
    let m = V2::parse(text.trim_start_matches('\u{feff}')).map_err(|e| e.to_string())?;
    let _ = ack(Some(&m), AckCode::AE, &[Problem::new("MSH", 207, "x")]);
    requests_of(&m, &[]).map(|r| r.len()).map_err(|(_, p)| format!("{} problems", p.len()))
}

/// The manufacturer Organizations a VXU names that are stored already.
async fn known_manufacturers(engine: &Engine, m: &V2<'_>) -> Vec<String> {
    if m.get("MSH", 9, 1) != "VXU" {
        return Vec::new();
    }
    let mut known = Vec::new();
    for code in super::vxu::manufacturer_codes(m) {
        let id = super::vxu::manufacturer_id(&code);
        if !known.contains(&id) && engine.read("Organization", &id).await.is_ok() {
            known.push(id);
        }
    }
    known
}

fn status_of(code: AckCode) -> &'static str {
    match code {
        AckCode::AA => "AA",
        AckCode::AE => "AE",
        AckCode::AR => "AR",
    }
}

/// Records a message that stored nothing (refused, or failed).
async fn remember(engine: &Engine, r: &crate::store::hl7::Received) {
    if let Err(e) = engine.store.hl7_record(r).await {
        tracing::error!("HL7 message {} from {} was answered but not recorded: {e}", r.control_id, r.sender);
    }
}

/// What the message asks to write, or why it cannot be.
fn requests_of(m: &V2<'_>, known: &[String]) -> Result<Vec<crate::engine::Request>, (AckCode, Vec<Problem>)> {
    let version = m.get("MSH", 12, 1);
    if !VERSIONS.contains(&version.as_str()) {
        let why = format!("version '{version}' is not supported (2.3 to 2.8.2 are)");
        return Err((AckCode::AR, vec![Problem::new("MSH-12", 203, why)]));
    }
    let (kind, event) = (m.get("MSH", 9, 1), m.get("MSH", 9, 2));
    let requests = match (kind.as_str(), event.as_str()) {
        ("ADT", e) if ADT_PATIENT.contains(&e) => super::adt::patient(m).map(super::adt::patient_requests),
        ("VXU", "V04") => super::vxu::requests(m, known),
        ("ADT", e) => {
            let why = format!("ADT event '{e}' is not supported yet ({} are)", ADT_PATIENT.join(", "));
            return Err((AckCode::AR, vec![Problem::new("MSH-9", 201, why)]));
        }
        (k, _) => {
            let why = format!("message type '{k}' is not supported yet (ADT and VXU^V04 are)");
            return Err((AckCode::AR, vec![Problem::new("MSH-9", 200, why)]));
        }
    };
    requests.map_err(|p| (AckCode::AE, vec![p]))
}

/// The engine's refusal as ERR segments (HL7 table 0357).
fn problems_of(e: &Error) -> Vec<Problem> {
    match e {
        Error::Invalid(issues) => issues
            .iter()
            .map(|i| {
                Problem::new(
                    "PID",
                    102,
                    format!("{}: {}", i.expression.as_deref().unwrap_or("Patient"), i.diagnostics),
                )
            })
            .collect(),
        Error::PreconditionFailed(why) => vec![Problem::new("PID-3", 205, why.clone())],
        other => vec![Problem::new("MSH", 207, other.to_string())],
    }
}
