//! A parsed v2 message with decoded access by position (`PID-5.1`).
//!
//! The parser only splits: a message becomes its segments, a segment its fields, each a slice
//! of the text. Repetitions, components and subcomponents are split when a mapper asks for
//! one, and only then unescaped. hl7-parser (0.3, nom) built a vector at every one of those
//! levels for every field, which measured ~6 % of the CPU per VXU at 8 connections; the
//! accessors return what it returned (the test `same_as_hl7_parser` compares both on every
//! message in `examples/hl7v2/`).

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not an HL7 v2 message: {0}")]
    Malformed(String),
    #[error("unknown segment '{0}'")]
    BadSegment(String),
}

/// Most segments a message may have (each may become a resource to write).
pub const MAX_SEGMENTS: usize = 2000;

/// The delimiters a message declares in MSH-1 and MSH-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Separators {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
}

/// A message's segments, in order.
#[derive(Debug)]
pub struct Message<'m> {
    pub segments: Vec<Segment<'m>>,
    pub separators: Separators,
}

impl<'m> Message<'m> {
    /// The first segment named `name`.
    pub fn segment(&self, name: &str) -> Option<&Segment<'m>> {
        self.segments.iter().find(|s| s.name == name)
    }
}

/// One segment: its name and its fields (MSH-1 and MSH-2 included, as the standard numbers
/// them).
#[derive(Debug)]
pub struct Segment<'m> {
    pub name: &'m str,
    fields: Vec<Field<'m>>,
}

impl<'m> Segment<'m> {
    /// Field `n`, numbered from 1.
    pub fn field(&self, n: usize) -> Option<&Field<'m>> {
        self.fields.get(n.checked_sub(1)?)
    }
}

/// A field's text, still escaped.
#[derive(Debug, Clone, Copy)]
pub struct Field<'m> {
    raw: &'m str,
    /// MSH-1 and MSH-2: the delimiters themselves, never split.
    whole: bool,
}

impl<'m> Field<'m> {
    pub fn raw_value(&self) -> &'m str {
        self.raw
    }

    /// Repetition `rep` (0-based).
    fn repeat(&self, rep: usize, sep: &Separators) -> Option<&'m str> {
        if self.whole {
            return (rep == 0).then_some(self.raw);
        }
        self.raw.split(sep.repetition).nth(rep)
    }

    fn repeats(&self, sep: &Separators) -> usize {
        if self.whole { 1 } else { self.raw.split(sep.repetition).count() }
    }

    /// Component `c` (1-based) of repetition `rep`.
    fn component(&self, rep: usize, c: usize, sep: &Separators) -> Option<&'m str> {
        let r = self.repeat(rep, sep)?;
        if self.whole {
            return (c == 1).then_some(r);
        }
        r.split(sep.component).nth(c.checked_sub(1)?)
    }
}

/// Splits a message whose segments end in `\r`, `\n` or `\r\n`; empty lines are skipped.
fn parse_message(text: &str) -> Result<Message<'_>, ParseError> {
    let malformed = |why: &str| ParseError::Malformed(why.into());
    let rest = text.strip_prefix("MSH").ok_or_else(|| malformed("it does not start with MSH"))?;
    let mut chars = rest.chars();
    let mut next =
        || chars.next().filter(|c| c.is_ascii() && !c.is_ascii_alphanumeric() && !matches!(c, '\r' | '\n'));
    let (Some(field), Some(component), Some(repetition), Some(escape), Some(subcomponent)) =
        (next(), next(), next(), next(), next())
    else {
        return Err(malformed("MSH-1 and MSH-2 must declare five delimiters"));
    };
    let separators = Separators { field, component, repetition, escape, subcomponent };
    let all = [field, component, repetition, escape, subcomponent];
    if all.iter().enumerate().any(|(i, c)| all[..i].contains(c)) {
        return Err(malformed("MSH-1 and MSH-2 declare the same delimiter twice"));
    }
    let mut segments = Vec::new();
    for line in text.split(['\r', '\n']).filter(|l| !l.is_empty()) {
        if segments.len() == MAX_SEGMENTS {
            return Err(ParseError::Malformed(format!("more than {MAX_SEGMENTS} segments")));
        }
        segments.push(segment(line, field)?);
    }
    Ok(Message { segments, separators })
}

fn segment(line: &str, sep: char) -> Result<Segment<'_>, ParseError> {
    let bad = || ParseError::BadSegment(line.chars().take(20).collect());
    let (name, rest) = line.split_once(sep).ok_or_else(bad)?;
    let named = name.len() == 3
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if !named {
        return Err(bad());
    }
    // Grown as the fields come: sized from the line's length, one long field would reserve
    // room for thousands.
    let mut fields = Vec::new();
    let mut rest = rest;
    if name == "MSH" {
        // MSH-1 is the field separator itself, MSH-2 the other delimiters: both taken whole.
        fields.push(Field { raw: &line[3..3 + sep.len_utf8()], whole: true });
        // (Up to the next separator: v2.7 adds a fifth, the truncation character.)
        let (encoding, after) = rest.split_once(sep).unwrap_or((rest, ""));
        fields.push(Field { raw: encoding, whole: true });
        rest = after;
    }
    fields.extend(rest.split(sep).map(|raw| Field { raw, whole: false }));
    Ok(Segment { name, fields })
}

/// A message and the text it was parsed from.
pub struct V2<'m> {
    pub message: Message<'m>,
    /// How assigning authorities become identifier systems (configuration).
    pub authorities: std::sync::Arc<super::datatypes::Authorities>,
}

impl<'m> V2<'m> {
    /// Parses a message whose segments end in `\r`, `\n` or `\r\n`.
    pub fn parse(text: &'m str) -> Result<V2<'m>, ParseError> {
        let message = parse_message(text.trim_matches(|c| c == '\r' || c == '\n'))?;
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

    /// Field `n` (from 1) of the first `segment`.
    pub fn field(&self, segment: &str, n: usize) -> Option<&Field<'m>> {
        self.message.segment(segment).and_then(|s| s.field(n))
    }

    /// A component (1-based; `0` for the whole first repetition) of the first `segment`'s
    /// field, decoded; empty when absent.
    pub fn get(&self, segment: &str, field: usize, component: usize) -> String {
        self.field(segment, field).map(|f| self.component(f, 0, component)).unwrap_or_default()
    }

    /// A component (`0`: the whole first repetition) of field `n` of a given segment, decoded.
    pub fn at(&self, seg: &Segment<'_>, n: usize, component: usize) -> String {
        seg.field(n).map(|f| self.component(f, 0, component)).unwrap_or_default()
    }

    /// Component `component` of repetition `rep` (0-based) of a field, decoded; the first
    /// subcomponent only.
    pub fn component(&self, f: &Field<'_>, rep: usize, component: usize) -> String {
        let sep = self.separators();
        let raw = if component == 0 {
            f.repeat(rep, sep)
        } else {
            f.component(rep, component, sep).map(|c| first_sub(f, c, sep))
        };
        unescape(raw.unwrap_or(""), sep)
    }

    /// Subcomponent `sub` (1-based) of a component, decoded.
    pub fn sub(&self, f: &Field<'_>, rep: usize, component: usize, sub: usize) -> String {
        let sep = self.separators();
        let raw = f.component(rep, component, sep).and_then(|c| match f.whole {
            true => (sub == 1).then_some(c),
            false => c.split(sep.subcomponent).nth(sub.checked_sub(1)?),
        });
        unescape(raw.unwrap_or(""), sep)
    }

    /// The repetitions of a field.
    pub fn repeats(&self, f: &Field<'_>) -> usize {
        f.repeats(self.separators())
    }
}

/// A component's first subcomponent (a delimiter field is never split).
fn first_sub<'m>(f: &Field<'m>, c: &'m str, sep: &Separators) -> &'m str {
    if f.whole { c } else { c.split(sep.subcomponent).next().unwrap_or(c) }
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

    /// Every accessor answers as it did on hl7-parser, for every message of `examples/hl7v2/`
    /// (decoded as `process` decodes them) and for delimiters in odd places.
    #[test]
    fn same_as_hl7_parser() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hl7v2");
        let mut texts: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "hl7"))
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
            .collect();
        assert!(texts.len() > 30, "{}", texts.len());
        texts.extend(
            [
                "MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5.1|",
                "MSH|^~\\&",
                "MSH|^~\\&|",
                "MSH|^~\\&|A~B^C&D~|E\\F\\x||\nPID|||^^^&&~~||\r\nZZ1|a&b^c~d&e^f&g&h|",
                "MSH#$*!@#APP#FAC#H#H#2024##ADT$A01#7#P#2.5.1\rPID#1##9$$$NS@1.2@ISO*8##Doe!S!x$Jo",
            ]
            .map(String::from),
        );
        for text in &texts {
            let text = text.trim_start_matches('\u{feff}').trim_matches(|c| c == '\r' || c == '\n');
            let ours = V2::parse(text).unwrap();
            let old = *ours.separators();
            let theirs = hl7_parser::Message::parse_with_lenient_newlines(text, true).unwrap();
            let s = theirs.separators;
            assert_eq!(
                old,
                Separators {
                    field: s.field,
                    component: s.component,
                    repetition: s.repetition,
                    escape: s.escape,
                    subcomponent: s.subcomponent
                }
            );
            assert_eq!(ours.message.segments.len(), theirs.segments.len(), "{text}");
            for (seg, other) in ours.message.segments.iter().zip(&theirs.segments) {
                assert_eq!(seg.name, other.name);
                for n in 1..other.fields.len() + 3 {
                    let (f, g) = (seg.field(n), other.field(n));
                    assert_eq!(f.map(|f| f.raw_value()), g.map(|g| g.raw_value()), "{}-{n}", seg.name);
                    let (Some(f), Some(g)) = (f, g) else { continue };
                    assert_eq!(ours.repeats(f), g.repeats().count(), "{}-{n}", seg.name);
                    for rep in 0..ours.repeats(f) + 1 {
                        for c in 0..8 {
                            let at = format!("{}-{n}[{rep}].{c} in {text:?}", seg.name);
                            assert_eq!(ours.component(f, rep, c), old_component(g, rep, c, &old), "{at}");
                            for s in 1..5 {
                                assert_eq!(ours.sub(f, rep, c, s), old_sub(g, rep, c, s, &old), "{at}.{s}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// `V2::component` as it was on hl7-parser.
    fn old_component(
        f: &hl7_parser::message::Field<'_>,
        rep: usize,
        component: usize,
        sep: &Separators,
    ) -> String {
        let raw = match f.repeats().nth(rep) {
            None => "",
            Some(r) if component == 0 => r.raw_value(),
            Some(r) => r
                .components()
                .nth(component - 1)
                .map(|c| c.subcomponents().next().map_or(c.raw_value(), |s| s.raw_value()))
                .unwrap_or(""),
        };
        unescape(raw, sep)
    }

    /// `V2::sub` as it was on hl7-parser.
    fn old_sub(
        f: &hl7_parser::message::Field<'_>,
        rep: usize,
        component: usize,
        sub: usize,
        sep: &Separators,
    ) -> String {
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
        unescape(raw, sep)
    }

    /// Mangled messages (delimiters, line ends, multi-byte text and bytes cut away at random
    /// places): parsing and every accessor either answer or refuse, never panic.
    #[test]
    fn mangled_messages_never_panic() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hl7v2");
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n.max(1) as u64) as usize
        };
        let noise = ["|", "^", "~", "\\", "&", "\r", "\n", "\r\n", "é", "MSH|", "\\X41\\", "\\", "#"];
        let (mut parsed, mut refused) = (0, 0);
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            for _ in 0..300 {
                let mut t: Vec<char> = text.chars().collect();
                for _ in 0..1 + next(6) {
                    let at = next(t.len() + 1);
                    match next(3) {
                        0 => t.splice(at..at, noise[next(noise.len())].chars()).for_each(drop),
                        1 => t.truncate(at),
                        _ => t.drain(at..(at + next(8)).min(t.len())).for_each(drop),
                    }
                }
                let t: String = t.into_iter().collect();
                let Ok(m) = V2::parse(&t) else {
                    refused += 1;
                    continue;
                };
                parsed += 1;
                for seg in &m.message.segments {
                    for n in 0..seg.fields.len() + 2 {
                        let _ = m.at(seg, n, next(6));
                        let Some(f) = seg.field(n) else { continue };
                        for rep in 0..m.repeats(f) + 1 {
                            for c in 0..6 {
                                let _ = (m.component(f, rep, c), m.sub(f, rep, c, c % 3));
                            }
                        }
                    }
                }
            }
        }
        assert!(parsed > 1000 && refused > 1000, "{parsed} parsed, {refused} refused");
    }

    #[test]
    fn refuses_what_is_not_a_message() {
        for (text, why) in [
            ("", "does not start with MSH"),
            ("MSH|^~", "five delimiters"),
            ("MSH|^~\\|", "same delimiter twice"),
            ("MSH|^~\\^|A", "same delimiter twice"),
            ("MSH|^~a&|A", "five delimiters"),
        ] {
            let e = V2::parse(text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(why), "{text:?}: {e}");
        }
        for line in ["PID", "pid|1", "PI|1", "1ID|x", "PIDX|1", "P\u{e9}D|1"] {
            let text = format!("MSH|^~\\&|A\r{line}");
            assert!(matches!(V2::parse(&text), Err(ParseError::BadSegment(_))), "{line}");
        }
        let many = format!("MSH|^~\\&|A{}", "\rOBX|1".repeat(MAX_SEGMENTS));
        assert!(matches!(V2::parse(&many), Err(ParseError::Malformed(_))));
        assert!(V2::parse(&many[..many.len() - 6]).is_ok());
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
