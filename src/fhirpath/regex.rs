//! A small backtracking regex engine for `matches()`: literals, `.`,
//! classes (`[a-z]`, `[^...]`, `\d \w \s` and negations), anchors `^ $`,
//! groups with `|` (`(...)`, `(?:...)`), quantifiers `* + ? {n} {n,} {n,m}`
//! (a trailing lazy `?` is accepted and treated as greedy). No
//! backreferences or lookaround. Matching is a search (N1 semantics), with
//! a step budget so pathological patterns fail instead of hanging.

use std::cell::Cell;

use super::{FhirPathError, eval_err};

const MAX_STEPS: usize = 1_000_000;
const MAX_INPUT: usize = 4096;
const MAX_REPEAT: usize = 1000;
const MAX_MATCH_DEPTH: usize = 1500;

#[derive(Debug)]
enum Node {
    Char(char),
    Any,
    Class { ranges: Vec<(char, char)>, negated: bool },
    Start,
    End,
    Group(Vec<Vec<Node>>),
    Repeat(Box<Node>, usize, usize),
}

pub struct Regex {
    alts: Vec<Vec<Node>>,
}

fn perl_class(c: char) -> Option<(Vec<(char, char)>, bool)> {
    let digit = vec![('0', '9')];
    let word = vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')];
    let space = vec![(' ', ' '), ('\t', '\r')];
    Some(match c {
        'd' => (digit, false),
        'D' => (digit, true),
        'w' => (word, false),
        'W' => (word, true),
        's' => (space, false),
        'S' => (space, true),
        _ => return None,
    })
}

fn escaped(c: char) -> char {
    match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        other => other,
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn alternatives(&mut self) -> Result<Vec<Vec<Node>>, FhirPathError> {
        self.depth += 1;
        if self.depth > 64 {
            return eval_err("regex nested too deeply");
        }
        let mut alts = vec![Vec::new()];
        while let Some(&c) = self.chars.get(self.at) {
            match c {
                ')' => break,
                '|' => {
                    self.at += 1;
                    alts.push(Vec::new());
                }
                _ => {
                    let atom = self.atom()?;
                    let node = self.quantified(atom)?;
                    if let Some(seq) = alts.last_mut() {
                        seq.push(node);
                    }
                }
            }
        }
        self.depth -= 1;
        Ok(alts)
    }

    fn atom(&mut self) -> Result<Node, FhirPathError> {
        let c = self.chars[self.at];
        self.at += 1;
        Ok(match c {
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '(' => {
                if self.chars.get(self.at..self.at + 2) == Some(&['?', ':']) {
                    self.at += 2;
                }
                let alts = self.alternatives()?;
                if self.chars.get(self.at) != Some(&')') {
                    return eval_err("regex: missing ')'");
                }
                self.at += 1;
                Node::Group(alts)
            }
            '[' => self.class()?,
            '\\' => {
                let Some(&e) = self.chars.get(self.at) else { return eval_err("regex: trailing '\\'") };
                self.at += 1;
                match perl_class(e) {
                    Some((ranges, negated)) => Node::Class { ranges, negated },
                    None => Node::Char(escaped(e)),
                }
            }
            '*' | '+' | '?' | '{' => return eval_err(format!("regex: nothing to repeat before '{c}'")),
            other => Node::Char(other),
        })
    }

    fn class(&mut self) -> Result<Node, FhirPathError> {
        let negated = self.chars.get(self.at) == Some(&'^');
        if negated {
            self.at += 1;
        }
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let Some(&c) = self.chars.get(self.at) else { return eval_err("regex: missing ']'") };
            self.at += 1;
            if c == ']' && !first {
                return Ok(Node::Class { ranges, negated });
            }
            first = false;
            let lo = if c == '\\' {
                let Some(&e) = self.chars.get(self.at) else { return eval_err("regex: missing ']'") };
                self.at += 1;
                if let Some((more, false)) = perl_class(e) {
                    ranges.extend(more);
                    continue;
                }
                escaped(e)
            } else {
                c
            };
            let is_range = self.chars.get(self.at) == Some(&'-')
                && self.chars.get(self.at + 1).is_some_and(|&n| n != ']');
            if is_range {
                let mut hi = self.chars[self.at + 1];
                self.at += 2;
                if hi == '\\' {
                    let Some(&e) = self.chars.get(self.at) else { return eval_err("regex: missing ']'") };
                    self.at += 1;
                    hi = escaped(e);
                }
                ranges.push((lo, hi));
            } else {
                ranges.push((lo, lo));
            }
        }
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, FhirPathError> {
        let (min, max) = match self.chars.get(self.at) {
            Some('*') => (0, usize::MAX),
            Some('+') => (1, usize::MAX),
            Some('?') => (0, 1),
            Some('{') => return self.braces(atom),
            _ => return Ok(atom),
        };
        self.at += 1;
        self.skip_lazy();
        Ok(Node::Repeat(Box::new(atom), min, max))
    }

    fn braces(&mut self, atom: Node) -> Result<Node, FhirPathError> {
        let close = self.chars[self.at..].iter().position(|&c| c == '}');
        let Some(close) = close else { return eval_err("regex: missing '}'") };
        let body: String = self.chars[self.at + 1..self.at + close].iter().collect();
        self.at += close + 1;
        let parse = |s: &str| s.trim().parse::<usize>().ok().filter(|n| *n <= MAX_REPEAT);
        let (min, max) = match body.split_once(',') {
            None => (parse(&body), parse(&body)),
            Some((lo, "")) => (parse(lo), Some(usize::MAX)),
            Some((lo, hi)) => (parse(lo), parse(hi)),
        };
        let (Some(min), Some(max)) = (min, max) else {
            return eval_err(format!("regex: bad repeat {{{body}}}"));
        };
        self.skip_lazy();
        Ok(Node::Repeat(Box::new(atom), min, max))
    }

    fn skip_lazy(&mut self) {
        if self.chars.get(self.at) == Some(&'?') {
            self.at += 1;
        }
    }
}

struct Matcher<'t> {
    text: &'t [char],
    steps: Cell<usize>,
    depth: Cell<usize>,
}

type Cont<'k> = &'k mut dyn FnMut(usize) -> bool;

impl Matcher<'_> {
    fn exhausted(&self) -> bool {
        self.steps.get() > MAX_STEPS
    }

    fn seq(&self, nodes: &[Node], pos: usize, k: Cont) -> bool {
        self.steps.set(self.steps.get() + 1);
        // Matching recurses per consumed repetition; past the bound we give
        // up (reported as an error) rather than risk the stack.
        if self.exhausted() || self.depth.get() > MAX_MATCH_DEPTH {
            self.steps.set(MAX_STEPS + 1);
            return false;
        }
        self.depth.set(self.depth.get() + 1);
        let found = self.step(nodes, pos, k);
        self.depth.set(self.depth.get() - 1);
        found
    }

    fn step(&self, nodes: &[Node], pos: usize, k: Cont) -> bool {
        let Some((first, rest)) = nodes.split_first() else { return k(pos) };
        match first {
            Node::Repeat(node, min, max) if is_atom(node) => {
                self.repeat_atom(node, (*min, *max), pos, rest, k)
            }
            Node::Repeat(node, min, max) => self.repeat(node, (*min, *max), 0, pos, rest, k),
            Node::Group(alts) => alts.iter().any(|alt| self.seq(alt, pos, &mut |p| self.seq(rest, p, k))),
            Node::Start => pos == 0 && self.seq(rest, pos, k),
            Node::End => pos == self.text.len() && self.seq(rest, pos, k),
            atom => self.text.get(pos).is_some_and(|&c| atom_matches(atom, c)) && self.seq(rest, pos + 1, k),
        }
    }

    fn repeat(
        &self,
        node: &Node,
        bounds: (usize, usize),
        count: usize,
        pos: usize,
        rest: &[Node],
        k: Cont,
    ) -> bool {
        let (min, max) = bounds;
        if count < max {
            let mut more = |p: usize| {
                (p != pos || count < min) && self.repeat(node, bounds, count + 1, p, rest, &mut *k)
            };
            if self.seq(std::slice::from_ref(node), pos, &mut more) {
                return true;
            }
        }
        count >= min && self.seq(rest, pos, k)
    }

    /// Greedy repetition of a single-character atom, iteratively: the common
    /// case (`[a-z]*`, `.+`, `\\d{4}`) then needs no recursion per char.
    fn repeat_atom(
        &self,
        node: &Node,
        (min, max): (usize, usize),
        pos: usize,
        rest: &[Node],
        k: Cont,
    ) -> bool {
        let avail = self.text.get(pos..).unwrap_or_default();
        let n = avail.iter().take(max).take_while(|&&c| atom_matches(node, c)).count();
        if n < min {
            return false;
        }
        (min..=n).rev().any(|count| !self.exhausted() && self.seq(rest, pos + count, k))
    }
}

fn is_atom(node: &Node) -> bool {
    matches!(node, Node::Char(_) | Node::Any | Node::Class { .. })
}

fn atom_matches(node: &Node, c: char) -> bool {
    match node {
        Node::Char(x) => *x == c,
        Node::Any => c != '\n',
        Node::Class { ranges, negated } => ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated,
        _ => false,
    }
}

impl Regex {
    pub fn new(pattern: &str) -> Result<Regex, FhirPathError> {
        let mut p = Parser { chars: pattern.chars().collect(), at: 0, depth: 0 };
        let alts = p.alternatives()?;
        if p.at < p.chars.len() {
            return eval_err("regex: unbalanced ')'");
        }
        Ok(Regex { alts })
    }

    /// True if the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> Result<bool, FhirPathError> {
        let chars: Vec<char> = text.chars().collect();
        Ok(self.find(&chars, 0)?.is_some())
    }

    /// Replaces every non-overlapping match (leftmost, greedy) by `with`;
    /// `$n` group references are not supported.
    pub fn replace_all(&self, text: &str, with: &str) -> Result<String, FhirPathError> {
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::new();
        let mut at = 0;
        while at <= chars.len() {
            let Some((start, end)) = self.find(&chars, at)? else { break };
            out.extend(&chars[at..start]);
            out.push_str(with);
            if end == start {
                // An empty match: copy one char so the scan moves on.
                out.extend(chars.get(start));
                at = start + 1;
            } else {
                at = end;
            }
        }
        if at < chars.len() {
            out.extend(&chars[at..]);
        }
        Ok(out)
    }

    /// The first match at or after `from`, as char offsets.
    fn find(&self, chars: &[char], from: usize) -> Result<Option<(usize, usize)>, FhirPathError> {
        if chars.len() > MAX_INPUT {
            return eval_err("regex: input too long");
        }
        let m = Matcher { text: chars, steps: Cell::new(0), depth: Cell::new(0) };
        for start in from..=chars.len() {
            let mut end = None;
            let found = self.alts.iter().any(|alt| {
                m.seq(alt, start, &mut |p| {
                    end = Some(p);
                    true
                })
            });
            if found {
                return Ok(end.map(|e| (start, e)));
            }
            if m.exhausted() {
                return eval_err("regex: pattern too expensive for this input");
            }
        }
        Ok(None)
    }
}
