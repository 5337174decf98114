//! Parsing a search query string (GET query or POST `_search` form) into criteria and result
//! controls. Only syntax here; meaning is the planner's business.

use crate::error::{Error, IssueCode, Result};

/// One `name[:modifier]=v1,v2` criterion. Values are split on unescaped commas (OR).
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    pub code: String,
    pub modifier: Option<String>,
    pub values: Vec<String>,
    /// The parameter as written, for messages.
    pub raw_name: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchQuery {
    pub criteria: Vec<Criterion>,
    pub count: Option<usize>,
    pub cursor: Option<String>,
    pub total: Option<String>,
    /// `_summary`: `true`, `text`, `data`, `count` or `false`.
    pub summary: Option<String>,
    /// `_elements`: the top-level elements to return.
    pub elements: Vec<String>,
    /// Result parameters this server does not implement yet, reported back as warnings.
    pub unsupported: Vec<String>,
    /// `_include` / `_revinclude` values, in order.
    pub includes: Vec<Include>,
    /// `_type`: the types a system-level or compartment-wide search is limited to.
    pub types: Vec<String>,
    /// `_sort` keys as (parameter code, descending).
    pub sort: Vec<(String, bool)>,
}

/// One `_include` or `_revinclude`: `source:param[:target]`, `*` for every reference parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub reverse: bool,
    pub iterate: bool,
    pub source: String,
    pub param: String,
    pub target: Option<String>,
}

/// Parameters about the response format, handled by the api layer, never criteria.
const FORMAT_PARAMS: &[&str] = &["_format", "_pretty"];
/// Result parameters defined by the specification that are not implemented yet.
const LATER: &[&str] = &["_contained", "_containedType"];

impl SearchQuery {
    pub fn parse(query: &str) -> Result<SearchQuery> {
        let mut q = SearchQuery::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let name = name.trim();
            match name {
                "" => continue,
                "_count" => q.count = Some(parse_count(&value)?),
                "_cursor" => q.cursor = Some(value.into_owned()),
                "_type" => q
                    .types
                    .extend(value.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string)),
                "_sort" => q.sort = super::sort::parse(&value)?,
                "_total" => q.total = Some(value.into_owned()),
                "_summary" => match value.as_ref() {
                    "true" | "text" | "count" | "data" | "false" => q.summary = Some(value.into_owned()),
                    other => {
                        return Err(Error::invalid_at(
                            IssueCode::Value,
                            format!("_summary must be true, text, data, count or false, got '{other}'"),
                            "_summary",
                        ));
                    }
                },
                "_elements" => q
                    .elements
                    .extend(value.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string)),
                n if FORMAT_PARAMS.contains(&n) => {}
                n if n.starts_with("_include") || n.starts_with("_revinclude") => {
                    q.includes.push(parse_include(n, &value)?);
                }
                n if LATER.contains(&n.split(':').next().unwrap_or(n)) => q.unsupported.push(n.to_string()),
                _ => {
                    if value.is_empty() {
                        // The specification says empty parameters are ignored.
                        continue;
                    }
                    let (code, modifier) = match name.split_once(':') {
                        Some((c, m)) => (c.to_string(), Some(m.to_string())),
                        None => (name.to_string(), None),
                    };
                    q.criteria.push(Criterion {
                        code,
                        modifier,
                        values: split_values(&value),
                        raw_name: name.to_string(),
                    });
                }
            }
        }
        Ok(q)
    }
}

fn parse_include(name: &str, value: &str) -> Result<Include> {
    let (base, modifier) = name.split_once(':').unwrap_or((name, ""));
    let iterate = matches!(modifier, "iterate" | "recurse");
    if !modifier.is_empty() && !iterate {
        return Err(Error::invalid_at(IssueCode::Value, format!("unknown modifier in '{name}'"), name));
    }
    let mut parts = value.split(':');
    let (source, param) = match (parts.next(), parts.next()) {
        (Some("*"), None) => ("*", "*"),
        (Some(s), Some(p)) if !s.is_empty() && !p.is_empty() => (s, p),
        _ => {
            return Err(Error::invalid_at(
                IssueCode::Value,
                format!("{name} must be Type:parameter[:targetType], got '{value}'"),
                name,
            ));
        }
    };
    Ok(Include {
        reverse: base == "_revinclude",
        iterate,
        source: source.to_string(),
        param: param.to_string(),
        target: parts.next().map(str::to_string),
    })
}

/// `_count`: a non-negative integer (search and history share it).
pub fn parse_count(value: &str) -> Result<usize> {
    value.trim().parse::<usize>().map_err(|_| {
        Error::invalid_at(
            IssueCode::Value,
            format!("_count must be a non-negative integer, got '{value}'"),
            "_count",
        )
    })
}

/// Splits on commas not escaped with `\` and unescapes `\,` `\|` `\$` `\\` (search.html#escaping)
/// — except `\|`, which stays escaped so token parsing can tell it from the system separator.
pub fn split_values(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('|') => cur.push_str("\\|"),
                Some(n) => cur.push(n),
                None => cur.push('\\'),
            },
            ',' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Splits a token value into (system, code) on the first unescaped `|`.
/// `None` system means "any system"; `Some("")` means "no system".
pub fn split_token(value: &str) -> (Option<String>, String) {
    let mut prev_backslash = false;
    for (i, c) in value.char_indices() {
        if c == '|' && !prev_backslash {
            return (Some(unescape_bar(&value[..i])), unescape_bar(&value[i + 1..]));
        }
        prev_backslash = c == '\\';
    }
    (None, unescape_bar(value))
}

fn unescape_bar(s: &str) -> String {
    s.replace("\\|", "|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_criteria_and_controls() {
        let q =
            SearchQuery::parse("identifier=a%7Cb,c&_count=5&gender:not=male&_contained=true&empty=").unwrap();
        assert_eq!(q.count, Some(5));
        assert_eq!(q.unsupported, vec!["_contained"]);
        assert_eq!(q.criteria.len(), 2);
        assert_eq!(q.criteria[0].values, vec!["a|b", "c"]);
        assert_eq!(q.criteria[1].modifier.as_deref(), Some("not"));
        assert!(SearchQuery::parse("_count=x").is_err());
    }

    #[test]
    fn escaping() {
        assert_eq!(split_values(r"a\,b,c"), vec!["a,b", "c"]);
        assert_eq!(split_token(r"sys|co\|de"), (Some("sys".into()), "co|de".into()));
        assert_eq!(split_token("|x"), (Some("".into()), "x".into()));
        assert_eq!(split_token("x"), (None, "x".into()));
    }
}
