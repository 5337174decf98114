//! HL7 v2 ingest: MLLP (and TLS) framing and listener, message access, the v2-to-FHIR
//! mappings (ADT → Patient/Encounter and merges, VXU → Immunizations, ORU → Observations and
//! DiagnosticReports) with a Provenance per message, original-mode ACKs after the commit,
//! idempotency by sender and control id, and the group-committing writer. `POST /hl7v2` is in
//! `api::hl7`.

pub mod ack;
pub mod adt;
pub mod datatypes;
pub mod encounter;
pub mod ingest;
pub mod listener;
pub mod message;
pub mod mllp;
pub mod oru;
pub mod process;
pub mod vxu;

pub use ingest::Ingest;
pub use listener::{AsEngine, MllpSettings};
