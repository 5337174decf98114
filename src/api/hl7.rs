//! `POST /hl7v2`: one HL7 v2 message over HTTP (HL7 over HTTP), processed exactly as one from
//! the MLLP listener, with the ACK as the body. The HTTP status is 200 whatever the ACK says
//! (MSA-1 carries the outcome, and bytes that are no HL7 get an AR), as HL7 over HTTP has it.
//! A caller without the rights, another media type, a body over the limit, or a server that is
//! stopping (503) get the FHIR API's OperationOutcome instead.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::request::{Ctx, read_body};
use crate::auth::scope::Interaction;
use crate::error::Error;

/// The types a message can create or update: a caller needs create and update on each, not
/// confined to patients or a query (a feed writes for whichever patient it names).
const WRITES: &[&str] = &[
    "Patient",
    "Practitioner",
    "Encounter",
    "Immunization",
    "Organization",
    "Observation",
    "DiagnosticReport",
    "Provenance",
];

const ER7: &str = "x-application/hl7-v2+er7";

pub async fn post(State(state): State<Arc<AppState>>, ctx: Ctx, body: Body) -> Response {
    // Not `ctx.run`: the answer is an ACK, whatever FHIR format the Accept header asks for.
    let answer = async {
        let types: Vec<String> = WRITES.iter().map(|t| t.to_string()).collect();
        for i in [Interaction::Create, Interaction::Update] {
            ctx.unconfined_types(Some(&types), i, "POST /hl7v2")?;
        }
        let kind = ctx.header("content-type").unwrap_or_default();
        let essence = kind.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if !matches!(essence.as_str(), ER7 | "application/hl7-v2" | "text/plain") {
            return Err(Error::UnsupportedMediaType(format!(
                "POST /hl7v2 takes an HL7 v2 message as {ER7} or text/plain, not '{kind}'"
            )));
        }
        let bytes = read_body(body, state.hl7.max_bytes, &ctx.headers).await?;
        let Some(answer) = crate::hl7v2::process::process(
            &state.engine,
            &state.hl7,
            crate::hl7v2::ingest::Sender::ONCE,
            &bytes,
        )
        .await
        else {
            return Err(Error::Unavailable("the server is stopping; send the message again".into()));
        };
        let mut resp = (StatusCode::OK, answer).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ER7));
        Ok(resp)
    };
    answer.await.unwrap_or_else(|e| super::respond::error(ctx.out, e))
}
