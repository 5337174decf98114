//! FHIR XML <-> JSON conversion (https://hl7.org/fhir/R4/xml.html and
//! json.html), driven by the element model: XML carries no cardinality or
//! types and JSON carries no element order, so both directions need it.
//!
//! Limitation: decimals go through `serde_json::Number` (no
//! `arbitrary_precision`), so their lexical form survives only as far as an
//! f64 does: `1.50` comes back as `1.5`, and digits beyond f64 precision are
//! rounded.

mod read;
mod write;
mod xhtml;

use serde_json::{Map, Value};

pub use read::xml_to_json;
pub use write::json_to_xml;

pub const FHIR_NS: &str = "http://hl7.org/fhir";
pub const XHTML_NS: &str = "http://www.w3.org/1999/xhtml";
/// Real resources nest far less deeply; the limit bounds recursion and
/// memory on hostile input.
pub const MAX_DEPTH: usize = 64;

/// A document that cannot be converted, with the FHIR path of the offending
/// element when known (e.g. `Patient.name[0].given[1]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FormatError {
    pub message: String,
    pub path: Option<String>,
}

impl FormatError {
    pub(super) fn at(message: impl Into<String>, path: &str) -> Self {
        FormatError { message: message.into(), path: (!path.is_empty()).then(|| path.to_string()) }
    }
}

pub(super) type Result<T> = std::result::Result<T, FormatError>;
pub(super) type Object = Map<String, Value>;

#[cfg(test)]
mod tests;
