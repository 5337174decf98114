//! HL7 v2 ingest (issue 7, begun): MLLP framing and listener, message access, ADT → Patient and
//! VXU → Patient + Immunizations through the engine's transaction, original-mode ACKs, and
//! idempotency by control id. A03/A40, ORU, Provenance, `POST /hl7v2` and TLS are not there
//! yet: such messages are rejected with AR, never acknowledged as stored.

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
