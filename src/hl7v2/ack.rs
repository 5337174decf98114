//! Original-mode acknowledgements (HL7 v2 chapter 2.9): MSH with sender and receiver swapped,
//! MSA with the code and the message's control id, and an ERR segment per problem.

use super::message::V2;

/// MSA-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Accepted and committed.
    AA,
    /// Error: understood, but it could not be processed (nothing was stored).
    AE,
    /// Rejected: not a message this server takes (type, version, framing of the content).
    AR,
}

impl AckCode {
    /// MSA-1, and the status a message is recorded with.
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
        }
    }
}

/// A problem, for an ERR segment: location (`PID-3`), HL7 table 0357 code, text.
#[derive(Debug, Clone)]
pub struct Problem {
    pub location: String,
    pub code: u16,
    pub text: String,
}

impl Problem {
    pub fn new(location: &str, code: u16, text: impl Into<String>) -> Problem {
        Problem { location: location.into(), code, text: text.into() }
    }
}

fn code_name(code: u16) -> &'static str {
    match code {
        100 => "Segment sequence error",
        101 => "Required field missing",
        102 => "Data type error",
        103 => "Table value not found",
        200 => "Unsupported message type",
        201 => "Unsupported event code",
        202 => "Unsupported processing id",
        203 => "Unsupported version id",
        205 => "Duplicate key identifier",
        _ => "Application internal error",
    }
}

/// Escapes text for a field of the ACK (default delimiters).
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\E\\"),
            '|' => out.push_str("\\F\\"),
            '^' => out.push_str("\\S\\"),
            '&' => out.push_str("\\T\\"),
            '~' => out.push_str("\\R\\"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// At most 200 characters of a problem's text: a parser's message can quote the whole input.
fn short(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// The ACK of `msg` (or of an unparseable message, with what little is known).
pub fn ack(msg: Option<&V2<'_>>, code: AckCode, problems: &[Problem]) -> String {
    let g = |f: usize, c: usize| msg.map(|m| esc(&m.get("MSH", f, c))).unwrap_or_default();
    // An HD (application, facility) keeps its components, re-encoded with our delimiters.
    let hd = |f: usize| {
        let parts: Vec<String> = (1..=3).map(|c| g(f, c)).collect();
        parts.join("^").trim_end_matches('^').to_string()
    };
    let processing =
        Some(g(11, 1)).filter(|p| matches!(p.as_str(), "P" | "T" | "D")).unwrap_or_else(|| "P".into());
    let now = time::OffsetDateTime::now_utc();
    let stamp = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let version = Some(g(12, 1)).filter(|v| !v.is_empty()).unwrap_or_else(|| "2.5.1".into());
    let control = uuid::Uuid::new_v4().simple().to_string()[..20].to_string();
    let mut out = format!(
        "MSH|^~\\&|{}|{}|{}|{}|{stamp}||ACK^{}^ACK|{control}|{processing}|{version}\rMSA|{}|{}",
        hd(5),
        hd(6),
        hd(3),
        hd(4),
        g(9, 2),
        code.as_str(),
        g(10, 0),
    );
    if let Some(first) = problems.first().filter(|_| code != AckCode::AA) {
        out.push('|');
        out.push_str(&esc(&short(&first.text)));
    }
    for p in problems {
        let severity = if code == AckCode::AA { "W" } else { "E" };
        out.push_str(&format!(
            "\rERR||{}|{}^{}^HL70357|{severity}||||{}",
            esc(&p.location),
            p.code,
            code_name(p.code),
            esc(&short(&p.text))
        ));
    }
    out.push('\r');
    out
}
