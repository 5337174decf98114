//! The narrative `div`: XHTML carried as text in JSON and as markup in XML.

use quick_xml::events::{BytesRef, BytesStart, Event};

use super::*;

/// Checks that a JSON narrative is one well-formed XHTML `div`; returns
/// whether it declares the XHTML namespace itself.
pub(super) fn check_xhtml(div: &str) -> std::result::Result<bool, String> {
    let bad = |e: quick_xml::Error| format!("the narrative div is not well-formed XHTML: {e}");
    let mut reader = quick_xml::Reader::from_str(div);
    let (root, empty) = match reader.read_event().map_err(bad)? {
        Event::Start(e) => (e, false),
        Event::Empty(e) => (e, true),
        _ => return Err("the narrative must be an XHTML <div> element".into()),
    };
    let declared = xhtml_root_declared(&root)?;
    if !empty {
        skip_xhtml(|| reader.read_event(), 1)?;
    }
    loop {
        match reader.read_event().map_err(bad)? {
            Event::Eof => return Ok(declared),
            Event::Comment(_) => {}
            Event::Text(t) if t.iter().all(u8::is_ascii_whitespace) => {}
            _ => return Err("unexpected content after the narrative div".into()),
        }
    }
}

/// Validates the root tag of a narrative; true if it carries
/// `xmlns="http://www.w3.org/1999/xhtml"`.
pub(super) fn xhtml_root_declared(root: &BytesStart) -> std::result::Result<bool, String> {
    if root.name().as_ref() != b"div" {
        return Err("the narrative must be an unprefixed XHTML <div> element".into());
    }
    for attr in root.attributes() {
        let attr = attr.map_err(|e| format!("malformed attribute in the narrative div: {e}"))?;
        if attr.key.as_ref() == b"xmlns" {
            if attr.value.as_ref() != XHTML_NS.as_bytes() {
                return Err(format!("the narrative div must be in the {XHTML_NS} namespace"));
            }
            return Ok(true);
        }
    }
    Ok(false)
}

pub(super) fn with_xhtml_ns(div: &str) -> String {
    let rest = div.strip_prefix("<div").unwrap_or(div);
    format!("<div xmlns=\"{XHTML_NS}\"{rest}")
}

/// Consumes an XHTML subtree whose root start tag has been read, checking
/// nesting depth and entity references (XHTML in FHIR has no DTD, so only
/// the XML built-in entities are defined).
pub(super) fn skip_xhtml<'i>(
    mut next: impl FnMut() -> quick_xml::Result<Event<'i>>,
    base_depth: usize,
) -> std::result::Result<(), String> {
    let mut depth = 1;
    loop {
        match next().map_err(|e| format!("malformed XHTML: {e}"))? {
            Event::Start(_) => {
                depth += 1;
                if base_depth + depth > MAX_DEPTH {
                    return Err(format!("nesting deeper than {MAX_DEPTH} levels"));
                }
            }
            Event::End(_) => {
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
            }
            Event::GeneralRef(r) => check_entity(&r)?,
            Event::DocType(_) => return Err("DOCTYPE declarations are not allowed".into()),
            Event::Eof => return Err("unexpected end of document inside XHTML".into()),
            _ => {}
        }
    }
}

pub(super) fn check_entity(r: &BytesRef) -> std::result::Result<(), String> {
    if r.is_char_ref() {
        return r.resolve_char_ref().map(drop).map_err(|e| format!("bad character reference: {e}"));
    }
    let name: &[u8] = r;
    match name {
        b"lt" | b"gt" | b"amp" | b"quot" | b"apos" => Ok(()),
        other => Err(format!("undefined entity &{};", String::from_utf8_lossy(other))),
    }
}
