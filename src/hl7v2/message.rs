//! A parsed v2 message with decoded access by position (`PID-5.1`), on `hl7-parser`.
//! Values are unescaped here rather than with the parser's display, which indexes strings by
//! character count and can panic on multi-byte text before an escape.

use hl7_parser::Message;
use hl7_parser::message::{Field, Segment, Separators};

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not an HL7 v2 message: {0}")]
    Malformed(String),
    #[error("unknown segment '{0}'")]
    BadSegment(String),
}

/// Most segments a message may have (each may become a resource to write).
pub const MAX_SEGMENTS: usize = 2000;

/// A message and the text it was parsed from.
pub struct V2<'m> {
    pub message: Message<'m>,
    /// How assigning authorities become identifier systems (configuration).
    pub authorities: std::sync::Arc<super::datatypes::Authorities>,
}

impl<'m> V2<'m> {
    /// Parses a message whose segments end in `\r`, `\n` or `\r\n`.
    pub fn parse(text: &'m str) -> Result<V2<'m>, ParseError> {
        let text = text.trim_matches(|c| c == '\r' || c == '\n');
        if !text.starts_with("MSH") {
            return Err(ParseError::Malformed("it does not start with MSH".into()));
        }
        let message = Message::parse_with_lenient_newlines(text, true)
            .map_err(|e| ParseError::Malformed(e.to_string()))?;
        // The parser stops quietly at a segment it cannot read: every line must have become a
        // segment with a proper name, or the message is broken.
        let lines: Vec<&str> = text.split(['\r', '\n']).filter(|l| !l.is_empty()).collect();
        let named = |name: &str| {
            name.len() == 3
                && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                && name.starts_with(|c: char| c.is_ascii_uppercase())
        };
        if let Some(bad) =
            lines.iter().find(|l| !named(l.split(message.separators.field).next().unwrap_or_default()))
        {
            return Err(ParseError::BadSegment(bad.chars().take(20).collect()));
        }
        if lines.len() > MAX_SEGMENTS {
            return Err(ParseError::Malformed(format!(
                "{} segments; at most {MAX_SEGMENTS} are read",
                lines.len()
            )));
        }
        if lines.len() != message.segments.len() {
            return Err(ParseError::Malformed(format!(
                "{} of its {} segments could be read",
                message.segments.len(),
                lines.len()
            )));
        }
        Ok(V2 { message, authorities: Default::default() })
    }

    /// The sender as recorded and named in Provenance: `MSH-3^MSH-4`.
    pub fn sender(&self) -> String {
        format!("{}^{}", self.get("MSH", 3, 0), self.get("MSH", 4, 0))
    }

    /// The sending facility (MSH-4) as a system for identifiers that name no assigning
    /// authority: they are that facility's.
    pub fn facility(&self) -> Option<String> {
        let f = self.field("MSH", 4)?;
        let name = [1, 2].iter().map(|c| self.component(f, 0, *c)).find(|v| !v.is_empty())?;
        Some(format!("urn:hearth:hl7v2:facility:{}", name.replace(' ', "-")))
    }

    /// The offset of the message's own time (MSH-7), for times sent without one.
    pub fn zone(&self) -> Option<String> {
        super::datatypes::offset(&self.get("MSH", 7, 1))
    }

    pub fn separators(&self) -> &Separators {
        &self.message.separators
    }

    /// Field `n` of the first `segment`.
    pub fn field(&self, segment: &str, n: usize) -> Option<&Field<'m>> {
        // hl7-parser numbers fields from 1 (and asserts it in debug builds).
        if n == 0 {
            return None;
        }
        self.message.segment(segment).and_then(|s| s.field(n))
    }

    /// A component (1-based; `0` for the whole first repetition) of the first `segment`'s
    /// field, decoded; empty when absent.
    pub fn get(&self, segment: &str, field: usize, component: usize) -> String {
        self.field(segment, field).map(|f| self.component(f, 0, component)).unwrap_or_default()
    }

    /// A component (`0`: the whole first repetition) of field `n` of a given segment, decoded.
    pub fn at(&self, seg: &Segment<'_>, n: usize, component: usize) -> String {
        if n == 0 {
            return String::new();
        }
        seg.field(n).map(|f| self.component(f, 0, component)).unwrap_or_default()
    }

    /// Component `component` of repetition `rep` (0-based) of a field, decoded; the first
    /// subcomponent only.
    pub fn component(&self, f: &Field<'_>, rep: usize, component: usize) -> String {
        let raw = match f.repeats().nth(rep) {
            None => "",
            Some(r) if component == 0 => r.raw_value(),
            Some(r) => r
                .components()
                .nth(component - 1)
                .map(|c| c.subcomponents().next().map_or(c.raw_value(), |s| s.raw_value()))
                .unwrap_or(""),
        };
        unescape(raw, self.separators())
    }

    /// Subcomponent `sub` (1-based) of a component, decoded.
    pub fn sub(&self, f: &Field<'_>, rep: usize, component: usize, sub: usize) -> String {
        let raw = f
            .repeats()
            .nth(rep)
            .and_then(|r| r.components().nth(component.checked_sub(1)?))
            .and_then(|c| {
                c.subcomponents()
                    .nth(sub.checked_sub(1)?)
                    .map(|s| s.raw_value())
                    .or((sub == 1).then(|| c.raw_value()))
            })
            .unwrap_or("");
        unescape(raw, self.separators())
    }

    /// The repetitions of a field.
    pub fn repeats(&self, f: &Field<'_>) -> usize {
        f.repeats().count()
    }
}

/// Decodes `\F\ \S\ \T\ \R\ \E\ \X..\` and `\.br\` (HL7 v2 chapter 2.7); other escapes
/// (highlighting, character sets) are dropped.
pub fn unescape(raw: &str, sep: &Separators) -> String {
    if !raw.contains(sep.escape) {
        return raw.to_string();
    }
    let mut out = String::with_capacity(raw.len());
    let mut parts = raw.split(sep.escape);
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let mut inside = true;
    for part in parts {
        if inside {
            match part {
                "F" => out.push(sep.field),
                "S" => out.push(sep.component),
                "T" => out.push(sep.subcomponent),
                "R" => out.push(sep.repetition),
                "E" => out.push(sep.escape),
                ".br" => out.push('\n'),
                x if x.starts_with('X') => {
                    let bytes: Vec<u8> = (1..x.len())
                        .step_by(2)
                        .filter_map(|i| x.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                        .collect();
                    out.push_str(&String::from_utf8_lossy(&bytes));
                }
                _ => {}
            }
        } else {
            out.push_str(part);
        }
        inside = !inside;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_components_and_escapes() {
        let text = "MSH|^~\\&|APP|FAC|HEARTH|HOSP|20240101||ADT^A01|42|P|2.5.1\nPID|1||123^^^MRN&1.2.3&ISO^MR~456||Müller\\S\\Smith^Zoë\\T\\x^^^^^L||19800102|F";
        let m = V2::parse(text).unwrap();
        assert_eq!(m.get("MSH", 9, 2), "A01");
        assert_eq!(m.get("PID", 5, 1), "Müller^Smith");
        assert_eq!(m.get("PID", 5, 2), "Zoë&x");
        let pid3 = m.field("PID", 3).unwrap();
        assert_eq!(m.repeats(pid3), 2);
        assert_eq!(m.component(pid3, 1, 1), "456");
        assert_eq!(unescape("a\\X0D0A\\b\\E\\", m.separators()), "a\r\nb\\");
        assert!(V2::parse("garbage").is_err());
        let garbled = V2::parse("MSH|^~\\&|a\rp!d|x")
            .map(|m| m.message.segments.iter().map(|s| s.name.to_string()).collect::<Vec<_>>());
        assert!(garbled.is_err(), "{garbled:?}");
    }

    #[test]
    fn custom_delimiters_from_msh() {
        // Field `#`, component `$`, repetition `*`, escape `!`, subcomponent `@`.
        let text = "MSH#$*!@#APP#FAC#H#H#2024##ADT$A01#7#P#2.5.1\r\nPID#1##9$$$NS@1.2@ISO*8##Doe!S!x$Jo";
        let m = V2::parse(text).unwrap();
        assert_eq!(m.get("MSH", 9, 2), "A01");
        let pid3 = m.field("PID", 3).unwrap();
        assert_eq!(m.repeats(pid3), 2);
        assert_eq!(m.sub(pid3, 0, 4, 2), "1.2");
        assert_eq!(m.get("PID", 5, 1), "Doe$x");
        assert_eq!(m.get("PID", 5, 2), "Jo");
        assert_eq!(m.get("PID", 0, 1), "", "field 0 is nothing");
    }
}
