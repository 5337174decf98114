//! Content negotiation: which format a request body is in and which one the client wants back
//! (`Accept`, `_format`, `_pretty`), and turning resources into response bytes in that format.

use axum::http::{HeaderMap, header};
use serde_json::Value;

use crate::error::{Error, IssueCode, Result};
use crate::resource::{self, xml};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/fhir+json; charset=utf-8",
            Format::Xml => "application/fhir+xml; charset=utf-8",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Format::Json => "application/fhir+json",
            Format::Xml => "application/fhir+xml",
        }
    }
}

/// The representation the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    pub format: Format,
    pub pretty: bool,
}

impl Default for Output {
    fn default() -> Self {
        Output { format: Format::Json, pretty: false }
    }
}

/// Media types and `_format` shorthands, each with the format it means.
const MEDIA: &[(&str, Format)] = &[
    ("application/fhir+json", Format::Json),
    ("application/json+fhir", Format::Json),
    ("application/json", Format::Json),
    ("text/json", Format::Json),
    ("json", Format::Json),
    ("application/fhir+xml", Format::Xml),
    ("application/xml+fhir", Format::Xml),
    ("application/xml", Format::Xml),
    ("text/xml", Format::Xml),
    ("xml", Format::Xml),
];

/// The formats this server reads and writes, for the CapabilityStatement.
pub const FORMATS: &[&str] = &["application/fhir+json", "application/fhir+xml", "json", "xml"];

fn media(essence: &str) -> Option<Format> {
    let essence = essence.trim().to_ascii_lowercase();
    MEDIA.iter().find(|(m, _)| *m == essence).map(|(_, f)| *f)
}

/// `_format` wins over `Accept`; an Accept with nothing we can produce is 406.
pub fn negotiate(headers: &HeaderMap, query: &[(String, String)]) -> Result<Output> {
    let pretty = query.iter().any(|(k, v)| k == "_pretty" && v == "true");
    if let Some((_, f)) = query.iter().find(|(k, _)| k == "_format") {
        let essence = f.split(';').next().unwrap_or_default();
        let format = media(essence).ok_or_else(|| {
            Error::NotAcceptable(format!("_format '{f}' is not supported: use json or xml"))
        })?;
        return Ok(Output { format, pretty });
    }
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Output { format: Format::Json, pretty });
    };
    let mut best: Option<(f32, Format)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let format = match essence.as_str() {
            "*/*" | "application/*" | "" => Some(Format::Json),
            e => media(e),
        };
        if let Some(f) = format.filter(|_| q > 0.0)
            && best.is_none_or(|(bq, _)| q > bq)
        {
            best = Some((q, f));
        }
    }
    match best {
        Some((_, format)) => Ok(Output { format, pretty }),
        None => Err(Error::NotAcceptable(format!(
            "none of the media types in Accept '{accept}' can be produced: use application/fhir+json or application/fhir+xml"
        ))),
    }
}

/// Parses a resource body according to its Content-Type (sniffed only when there is none).
pub fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value> {
    let format = match headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        Some(ct) => {
            let essence = ct.split(';').next().unwrap_or_default();
            media(essence).ok_or_else(|| {
                Error::UnsupportedMediaType(format!(
                    "Content-Type '{ct}' is not supported: send application/fhir+json or application/fhir+xml"
                ))
            })?
        }
        None => match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'<') => Format::Xml,
            _ => Format::Json,
        },
    };
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::invalid(IssueCode::Required, "the request has no resource in its body"));
    }
    match format {
        Format::Json => resource::parse_json(body),
        Format::Xml => {
            let text = std::str::from_utf8(body)
                .map_err(|_| Error::invalid(IssueCode::Structure, "the XML body is not UTF-8"))?;
            xml::xml_to_json(text).map_err(|e| {
                let issue = crate::error::Issue::new(
                    IssueCode::Structure,
                    format!("invalid FHIR XML: {}", e.message),
                );
                Error::Invalid(vec![match e.path {
                    Some(p) => issue.at(p),
                    None => issue,
                }])
            })
        }
    }
}

/// Response bytes for a stored JSON body: the stored bytes themselves in the common case.
pub fn render_stored(out: Output, stored: &[u8]) -> Result<Vec<u8>> {
    if out == (Output { format: Format::Json, pretty: false }) {
        return Ok(stored.to_vec());
    }
    let value: Value = serde_json::from_slice(stored)
        .map_err(|e| Error::Internal(format!("stored JSON is unreadable: {e}")))?;
    render(out, &value)
}

pub fn render(out: Output, value: &Value) -> Result<Vec<u8>> {
    match out.format {
        Format::Json if out.pretty => serde_json::to_vec_pretty(value),
        Format::Json => serde_json::to_vec(value),
        Format::Xml => {
            return xml::json_to_xml(value, out.pretty)
                .map(String::into_bytes)
                .map_err(|e| Error::Internal(format!("cannot write XML: {}", e.message)));
        }
    }
    .map_err(|e| Error::Internal(e.to_string()))
}
