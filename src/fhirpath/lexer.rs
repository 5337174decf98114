//! Tokenizer. Keywords (`and`, `is`, `div`, ...) come out as identifiers:
//! whether they are operators depends on where they stand, which only the
//! parser knows (`x.contains('a')` vs `a contains b`).

use super::FhirPathError;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// Plain identifier or keyword.
    Ident(String),
    /// Backtick-delimited identifier: never a keyword.
    Quoted(String),
    Str(String),
    /// Integer or decimal text.
    Number(String),
    /// `@2024-01-01`, `@2024-01-01T10:00` (text without `@`).
    DateTime(String),
    /// `@T10:00` (text without `@T`).
    Time(String),
    /// `%name`, `%'name'`, `%`name``.
    Ext(String),
    /// `$this`, `$index`, `$total`.
    Special(String),
    Punct(&'static str),
    Eof,
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub pos: usize,
}

/// Longest first, so `<=` wins over `<`.
const PUNCTS: [&str; 22] = [
    "!=", "!~", "<=", ">=", ".", ",", "(", ")", "[", "]", "{", "}", "+", "-", "*", "/", "&", "|", "=", "~",
    "<", ">",
];

fn err<T>(pos: usize, msg: impl Into<String>) -> Result<T, FhirPathError> {
    Err(FhirPathError::Parse { pos, msg: msg.into() })
}

pub fn tokenize(src: &str) -> Result<Vec<Token>, FhirPathError> {
    let mut lx = Lexer { src, pos: 0, out: Vec::new() };
    lx.run()?;
    Ok(lx.out)
}

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    out: Vec<Token>,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn push(&mut self, tok: Tok, pos: usize) {
        self.out.push(Token { tok, pos });
    }

    fn run(&mut self) -> Result<(), FhirPathError> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else if self.rest().starts_with("//") {
                self.skip_line_comment();
            } else if self.rest().starts_with("/*") {
                self.skip_block_comment()?;
            } else if c == '\'' {
                let s = self.quoted('\'')?;
                self.push(Tok::Str(s), start);
            } else if c == '`' {
                let s = self.quoted('`')?;
                self.push(Tok::Quoted(s), start);
            } else if c.is_ascii_digit() {
                let n = self.number();
                self.push(Tok::Number(n), start);
            } else if c.is_alphabetic() || c == '_' {
                let id = self.ident();
                self.push(Tok::Ident(id), start);
            } else if c == '@' {
                self.pos += 1;
                self.temporal(start)?;
            } else if c == '%' || c == '$' {
                self.pos += 1;
                let name = match self.peek() {
                    Some(q @ ('\'' | '`')) => self.quoted(q)?,
                    Some(c) if c.is_alphabetic() || c == '_' => self.ident(),
                    _ => return err(start, format!("expected a name after '{c}'")),
                };
                let tok = if c == '%' { Tok::Ext(name) } else { Tok::Special(name) };
                self.push(tok, start);
            } else if let Some(p) = PUNCTS.iter().find(|p| self.rest().starts_with(**p)) {
                self.pos += p.len();
                self.push(Tok::Punct(p), start);
            } else {
                return err(start, format!("unexpected character '{c}'"));
            }
        }
        self.push(Tok::Eof, self.pos);
        Ok(())
    }

    fn skip_line_comment(&mut self) {
        let len = self.rest().find('\n').unwrap_or(self.rest().len());
        self.pos += len;
    }

    fn skip_block_comment(&mut self) -> Result<(), FhirPathError> {
        match self.rest()[2..].find("*/") {
            Some(i) => {
                self.pos += i + 4;
                Ok(())
            }
            None => err(self.pos, "unterminated comment"),
        }
    }

    fn ident(&mut self) -> String {
        let len = self.rest().find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(self.rest().len());
        let s = self.rest()[..len].to_string();
        self.pos += len;
        s
    }

    fn number(&mut self) -> String {
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let mut len = digits(self.rest());
        let after = &self.rest()[len..];
        // `1.` followed by a non-digit is a path/function on an integer.
        if after.starts_with('.') && after[1..].starts_with(|c: char| c.is_ascii_digit()) {
            len += 1 + digits(&after[1..]);
        }
        let s = self.rest()[..len].to_string();
        self.pos += len;
        s
    }

    fn temporal(&mut self, start: usize) -> Result<(), FhirPathError> {
        let len = temporal_len(self.rest());
        let text = self.rest()[..len].to_string();
        self.pos += len;
        if let Some(t) = text.strip_prefix('T') {
            if super::temporal::parse_time(t).is_none() {
                return err(start, format!("invalid time literal @{text}"));
            }
            self.push(Tok::Time(t.to_string()), start);
        } else {
            if super::temporal::parse_datetime(&text).is_none() {
                return err(start, format!("invalid date/time literal @{text}"));
            }
            self.push(Tok::DateTime(text), start);
        }
        Ok(())
    }

    /// A `'...'` or `` `...` `` literal with FHIRPath escapes.
    fn quoted(&mut self, q: char) -> Result<String, FhirPathError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else { return err(start, "unterminated string") };
            self.pos += c.len_utf8();
            if c == q {
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some(e) = self.peek() else { return err(start, "unterminated string") };
            self.pos += e.len_utf8();
            match e {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'f' => out.push('\u{c}'),
                'u' => out.push(self.unicode_escape()?),
                '\'' | '"' | '`' | '\\' | '/' => out.push(e),
                _ => return err(self.pos - 2, format!("invalid escape '\\{e}'")),
            }
        }
    }

    fn unicode_escape(&mut self) -> Result<char, FhirPathError> {
        let at = self.pos;
        let hex = self.rest().get(..4).filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
        let code = hex.and_then(|h| u32::from_str_radix(h, 16).ok()).and_then(char::from_u32);
        match code {
            Some(c) => {
                self.pos += 4;
                Ok(c)
            }
            None => err(at, "invalid \\u escape"),
        }
    }
}

/// Length of the date/time literal at the start of `s`: digits and
/// separators, `T`/`Z`, and `.` only before a fraction digit (so
/// `@2024-01-01.toString()` stops before the dot).
fn temporal_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let ok = match b[i] {
            b'0'..=b'9' | b'-' | b':' | b'+' | b'T' | b'Z' => true,
            b'.' => b.get(i + 1).is_some_and(u8::is_ascii_digit),
            _ => false,
        };
        if !ok {
            break;
        }
        i += 1;
    }
    i
}
