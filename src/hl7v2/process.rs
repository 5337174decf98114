//! One message in, one ACK out: parse, check the header, answer a re-sent message with its
//! first ACK, map, write through the engine's transaction, record. The ACK says AA only once
//! the transaction has committed.

use super::ack::{AckCode, Problem, ack};
use super::datatypes::Writes;
use super::ingest::Commit;
use super::message::V2;
use crate::engine::Engine;
use crate::error::Error;
use crate::resource::instant::now_ms;

/// Versions this server reads.
/// (2.6 to 2.8.2 keep PID's layout: the v2-to-FHIR IG maps 2.8.2.)
const VERSIONS: &[&str] =
    &["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"];
/// ADT events that carry a patient (and maybe a visit) to create or update.
const ADT_PATIENT: &[&str] = &["A01", "A03", "A04", "A05", "A08", "A28", "A31"];
/// What the listener takes, for the AR's text.
const SUPPORTED: &str = "ADT^A01/A03/A04/A05/A08/A28/A31/A40, VXU^V04 and ORU^R01";

/// Processes one message's bytes and returns the ACK's text; `None` when the server is
/// stopping and the message was not taken (no ACK: the sender will send it again).
pub async fn process(
    engine: &Engine,
    ingest: &super::Ingest,
    sender: super::ingest::Sender,
    bytes: &[u8],
) -> Option<String> {
    match decode(bytes) {
        Ok(t) => handle(engine, ingest, &t, false, sender).await,
        Err(p) => Some(ack(None, AckCode::AR, &[p])),
    }
}

/// `hearth hl7 replay`: the stored messages with `control_id` (from `sender`, when given)
/// processed again, as if just received. A message that failed before is recorded with its
/// new answer; one accepted before is not applied twice: it gets its first ACK again.
/// Each message's sender, former status and new ACK.
pub async fn replay(
    engine: &Engine,
    ingest: &super::Ingest,
    control_id: &str,
    sender: Option<&str>,
) -> crate::error::Result<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for (from, status, raw) in engine.store.hl7_messages(control_id, sender).await? {
        // `raw` is the decoded text: it is not decoded again.
        let answer = handle(engine, ingest, &raw, true, super::ingest::Sender::ONCE).await;
        out.push((from, status, answer.unwrap_or_else(|| "not processed: the server is stopping".into())));
    }
    Ok(out)
}

/// One decoded message → its ACK (`None`: the server is stopping). `again`: a replay, which
/// does not answer from the record of an earlier acceptance before trying.
async fn handle(
    engine: &Engine,
    ingest: &super::Ingest,
    text: &str,
    again: bool,
    from: super::ingest::Sender,
) -> Option<String> {
    let text = text.trim_start_matches('\u{feff}');
    let mut m = match V2::parse(text) {
        Ok(m) => m,
        Err(e) => return Some(ack(None, AckCode::AR, &[Problem::new("MSH", 100, e.to_string())])),
    };
    m.authorities = ingest.authorities.clone();
    let sender = m.sender();
    let control_id = m.get("MSH", 10, 0);
    if control_id.is_empty() {
        let missing = Problem::new("MSH-10", 101, "MSH-10 (message control id) is required");
        return Some(ack(Some(&m), AckCode::AR, &[missing]));
    }
    let failed = |e: Error| ack(Some(&m), AckCode::AE, &[Problem::new("MSH", 207, e.to_string())]);
    // A copy of a message accepted before is not looked up first (one query per message on the
    // read pool): its record stops it in the writer's transaction (`Commit::AlreadyAccepted`),
    // and every way of failing asks for an earlier acceptance before answering AE or AR.
    let earlier = || async {
        if again { None } else { engine.store.hl7_ack(&sender, &control_id).await.ok().flatten() }
    };
    let received = |code: AckCode, answer: &str| crate::store::hl7::Received {
        sender: sender.clone(),
        control_id: control_id.clone(),
        message_type: m.get("MSH", 9, 0),
        status: code.as_str(),
        ack: answer.to_string(),
        raw: text.to_string(),
        received: now_ms(),
    };
    let known = match lookups(engine, &m).await {
        Ok(k) => k,
        Err(e) => return Some(earlier().await.unwrap_or_else(|| failed(e))),
    };
    let requests = match requests_of(&m, &known) {
        Ok(r) => r,
        Err((code, problems)) => {
            if let Some(first) = earlier().await {
                return Some(first);
            }
            let answer = ack(Some(&m), code, &problems);
            remember(engine, &received(code, &answer)).await;
            return Some(answer);
        }
    };
    // The AA is recorded in the transaction that stores the message's resources.
    let accepted = ack(Some(&m), AckCode::AA, &[]);
    let record = received(AckCode::AA, &accepted);
    let committed = match crate::engine::Part::new(requests, record) {
        Ok(part) => ingest.commit(engine, part.drafted(engine), from).await,
        Err(e) => Commit::Failed(e),
    };
    match committed {
        Commit::Stored => Some(accepted),
        Commit::AlreadyAccepted => Some(match engine.store.hl7_ack(&sender, &control_id).await {
            Ok(Some(first)) => first,
            Ok(None) => failed(Error::Internal("the message was accepted, but its ACK is gone".into())),
            Err(e) => failed(e),
        }),
        Commit::Failed(e) => {
            if let Some(first) = earlier().await {
                return Some(first);
            }
            let answer = ack(Some(&m), AckCode::AE, &problems_of(&e));
            remember(engine, &received(AckCode::AE, &answer)).await;
            Some(answer)
        }
        Commit::Stopping => None,
    }
}

/// The message's text in the character set MSH-18 names: UTF-8 (also ASCII, the default) or
/// ISO-8859-1 (`8859/1`). Bytes that are not UTF-8 without an MSH-18 are read as ISO-8859-1,
/// as many feeds send Latin-1 without saying so.
fn decode(bytes: &[u8]) -> Result<String, Problem> {
    // Control characters have no place in ER7 text (and PostgreSQL's TEXT refuses NUL).
    if let Some(at) = bytes.iter().position(|b| *b < 0x20 && !matches!(b, b'\r' | b'\n' | b'\t')) {
        return Err(Problem::new("MSH", 102, format!("control character 0x{:02X} at byte {at}", bytes[at])));
    }
    let latin1 = || bytes.iter().map(|b| char::from(*b)).collect::<String>();
    // MSH-18 is found on the raw bytes: it is ASCII in every character set we read.
    let head = &bytes[..bytes.iter().position(|b| *b == b'\r' || *b == b'\n').unwrap_or(bytes.len())];
    let head = String::from_utf8_lossy(head);
    let sep = head.trim_start_matches('\u{feff}').chars().nth(3).unwrap_or('|');
    let charset =
        head.split(sep).nth(17).unwrap_or_default().split('~').next().unwrap_or_default().trim().to_string();
    match charset.as_str() {
        "8859/1" => Ok(latin1()),
        "" | "ASCII" | "UNICODE UTF-8" | "UNICODE" => Ok(match std::str::from_utf8(bytes) {
            Ok(t) => t.to_string(),
            Err(_) => latin1(),
        }),
        other => Err(Problem::new(
            "MSH-18",
            103,
            format!("character set '{other}' is not supported (ASCII, UNICODE UTF-8 and 8859/1 are)"),
        )),
    }
}

/// Everything `process` does before the database (decoding, parsing, mapping), for the fuzz
/// target: the number of writes the message maps to, or why it maps to none.
pub fn map_only(bytes: &[u8]) -> Result<usize, String> {
    let text = decode(bytes).map_err(|p| p.text)?;
    let m = V2::parse(text.trim_start_matches('\u{feff}')).map_err(|e| e.to_string())?;
    let _ = ack(Some(&m), AckCode::AE, &[Problem::new("MSH", 207, "x")]);
    requests_of(&m, &Known::default()).map(|r| r.len()).map_err(|(_, p)| format!("{} problems", p.len()))
}

/// What a message's mapping needs from the database, read before its transaction.
#[derive(Default)]
struct Known {
    /// Manufacturer Organizations (ids) that exist.
    manufacturers: Vec<String>,
    /// The Patient an A40 retires.
    retired: Option<super::adt::Retired>,
    /// The stored Patient an ADT updates.
    stored_patient: Option<serde_json::Value>,
}

async fn lookups(engine: &Engine, m: &V2<'_>) -> crate::error::Result<Known> {
    let mut known = Known::default();
    match (m.get("MSH", 9, 1).as_str(), m.get("MSH", 9, 2).as_str()) {
        ("VXU", _) => {
            for code in super::vxu::manufacturer_codes(m) {
                let id = super::vxu::manufacturer_id(&code);
                if !known.manufacturers.contains(&id) && engine.read("Organization", &id).await.is_ok() {
                    known.manufacturers.push(id);
                }
            }
        }
        ("ADT", e) if ADT_PATIENT.contains(&e) => {
            known.stored_patient =
                stored_patient(engine, super::adt::patient_token(m)).await?.map(|r| r.body);
        }
        ("ADT", "A40") => known.retired = stored_patient(engine, super::adt::merged_token(m)).await?,
        _ => {}
    }
    Ok(known)
}

/// The one stored Patient with the identifier `token`, if exactly one has it.
async fn stored_patient(
    engine: &Engine,
    token: Option<String>,
) -> crate::error::Result<Option<super::adt::Retired>> {
    let Some(token) = token else { return Ok(None) };
    let query =
        url::form_urlencoded::Serializer::new(String::new()).append_pair("identifier", &token).finish();
    let found = engine.search("Patient", &query, crate::search::Handling::Strict).await?;
    let [v] = found.hits.as_slice() else { return Ok(None) };
    let body = serde_json::from_slice(&v.body).map_err(|e| crate::error::Error::Internal(e.to_string()))?;
    Ok(Some(super::adt::Retired { id: v.id.clone(), version: v.version, body }))
}

/// Records a message that stored nothing (refused, or failed).
async fn remember(engine: &Engine, r: &crate::store::hl7::Received) {
    if let Err(e) = engine.store.hl7_record(r).await {
        tracing::error!("HL7 message {} from {} was answered but not recorded: {e}", r.control_id, r.sender);
    }
}

/// What the message asks to write (its resources, then a Provenance naming the message), or
/// why it cannot be.
fn requests_of(m: &V2<'_>, known: &Known) -> Result<Vec<crate::engine::Request>, (AckCode, Vec<Problem>)> {
    let version = m.get("MSH", 12, 1);
    if !VERSIONS.contains(&version.as_str()) {
        let why = format!("version '{version}' is not supported (2.3 to 2.8.2 are)");
        return Err((AckCode::AR, vec![Problem::new("MSH-12", 203, why)]));
    }
    let (kind, event) = (m.get("MSH", 9, 1), m.get("MSH", 9, 2));
    // One patient per message: an ORU with several PATIENT_RESULT groups, or an A40 with several
    // PID/MRG pairs, is refused whole rather than filed under its first patient.
    for seg in ["PID", "MRG"] {
        let n = m.message.segments.iter().filter(|s| s.name == seg).count();
        if n > 1 {
            let why =
                format!("{n} {seg} segments: one patient per message is supported; send one message each");
            return Err((AckCode::AE, vec![Problem::new(seg, 100, why)]));
        }
    }
    let mut w = Writes::default();
    let written = match (kind.as_str(), event.as_str()) {
        ("ADT", e) if ADT_PATIENT.contains(&e) => adt_patient(m, e, known.stored_patient.as_ref(), &mut w),
        ("ADT", "A40") => super::adt::merge(m, known.retired.as_ref(), &mut w),
        ("VXU", "V04") => super::vxu::requests(m, &known.manufacturers, &mut w),
        ("ORU", "R01") => super::oru::requests(m, &mut w),
        ("ADT" | "VXU" | "ORU", e) => {
            let why = format!("{kind} event '{e}' is not supported ({SUPPORTED} are)");
            return Err((AckCode::AR, vec![Problem::new("MSH-9", 201, why)]));
        }
        (k, _) => {
            let why = format!("message type '{k}' is not supported ({SUPPORTED} are)");
            return Err((AckCode::AR, vec![Problem::new("MSH-9", 200, why)]));
        }
    };
    let written = match written {
        Ok(w2) if w.problems.is_empty() => w2,
        Ok(_) => return Err((AckCode::AE, w.problems)),
        Err(p) => {
            w.problems.push(p);
            return Err((AckCode::AE, w.problems));
        }
    };
    w.push(crate::engine::Method::Post, "Provenance".into(), provenance(m, &written));
    Ok(w.requests)
}

/// A01/A03/A04/A05/A08/A28/A31: the Patient, and the visit of its PV1.
fn adt_patient(
    m: &V2<'_>,
    event: &str,
    stored: Option<&serde_json::Value>,
    w: &mut Writes,
) -> Result<Vec<String>, Problem> {
    let mut patient = super::adt::patient(m, w)?;
    super::adt::keep_merge(&mut patient, stored);
    let patient_ref = super::adt::write_patient(w, patient);
    let mut written = vec![patient_ref.clone()];
    if let Some(e) = super::encounter::encounter(m, event, &patient_ref, w)? {
        let id = e["identifier"][0].clone();
        written.push(w.upsert("Encounter", &id, e));
    }
    Ok(written)
}

/// Who sent what, for every resource the message created or updated.
fn provenance(m: &V2<'_>, targets: &[String]) -> serde_json::Value {
    let sender = m.sender();
    let control_id = m.get("MSH", 10, 0);
    let event = m.get("MSH", 9, 2);
    let recorded = crate::resource::instant::format_ms(now_ms());
    serde_json::json!({
        "resourceType": "Provenance",
        "target": targets.iter().map(|t| serde_json::json!({"reference": t})).collect::<Vec<_>>(),
        "recorded": recorded,
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0003", "code": event}]},
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
            "who": {"identifier": {"system": "urn:hearth:hl7v2:sender", "value": sender}, "display": sender},
        }],
        "entity": [{
            "role": "source",
            "what": {
                "identifier": {"system": "urn:hearth:hl7v2:message", "value": control_id},
                "display": format!("{} {} from {}", m.get("MSH", 9, 0), control_id, sender),
            },
        }],
    })
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
