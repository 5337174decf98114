//! Pratt parser producing the [`Expr`] AST. Function names and arities are
//! checked here so a typo fails at parse time with a position, not on the
//! first resource that happens to reach it.

use super::FhirPathError;
use super::functions::Func;
use super::lexer::{Tok, Token, tokenize};

/// Nesting bound: deeper expressions are rejected instead of risking the
/// stack on hostile input. Every level of parentheses, function arguments,
/// unary operators and every link of an operator or path chain costs one
/// unit (argument lists two). 128 keeps the worst shapes (nested
/// `iif(...)`, `where(...)`) within half of a 2 MiB thread stack in debug
/// builds; real expressions stay below 20.
pub const MAX_DEPTH: usize = 128;

/// A parsed FHIRPath expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// `{}`
    Empty,
    Lit(Lit),
    This,
    Index,
    Total,
    /// `%name`
    Var(String),
    /// `recv.name`, or `name` applied to the input when `recv` is `None`.
    Member {
        recv: Option<Box<Expr>>,
        name: String,
    },
    Call {
        recv: Option<Box<Expr>>,
        func: Func,
        args: Vec<Expr>,
    },
    /// `x is T`, `x as T`, `x.is(T)`, `x.as(T)`, `x.ofType(T)`.
    TypeTest {
        recv: Option<Box<Expr>>,
        op: TypeOp,
        ty: TypeSpec,
    },
    Indexer(Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Bool(bool),
    Int(i64),
    Dec(f64),
    Str(String),
    Date(String),
    DateTime(String),
    Time(String),
    Quantity(f64, String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeOp {
    Is,
    As,
    OfType,
}

/// A type name, optionally qualified (`FHIR.Patient`, `System.String`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeSpec {
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Mul,
    Div,
    IntDiv,
    Mod,
    Add,
    Sub,
    Concat,
    Union,
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    Ne,
    Equiv,
    NotEquiv,
    In,
    Contains,
    And,
    Or,
    Xor,
    Implies,
}

enum Infix {
    Bin(BinOp),
    Type(TypeOp),
}

pub fn parse(src: &str) -> Result<Expr, FhirPathError> {
    let tokens = tokenize(src)?;
    let mut p = Parser { tokens, at: 0, depth: 0 };
    let expr = p.expr(0)?;
    match p.peek() {
        Tok::Eof => Ok(expr),
        other => p.fail(format!("unexpected {}", describe(other))),
    }
}

#[cold]
fn unknown_function(pos: usize, name: &str) -> FhirPathError {
    FhirPathError::Parse { pos, msg: format!("unknown function {name}()") }
}

#[cold]
fn bad_arity(pos: usize, name: &str, (min, max): (usize, usize), got: usize) -> FhirPathError {
    FhirPathError::Parse { pos, msg: format!("{name}() takes {min}..={max} arguments, got {got}") }
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Eof => "end of expression".into(),
        Tok::Punct(p) => format!("'{p}'"),
        Tok::Ident(s) | Tok::Quoted(s) => format!("identifier '{s}'"),
        other => format!("{other:?}"),
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

const CALENDAR_UNITS: [&str; 16] = [
    "year",
    "years",
    "month",
    "months",
    "week",
    "weeks",
    "day",
    "days",
    "hour",
    "hours",
    "minute",
    "minutes",
    "second",
    "seconds",
    "millisecond",
    "milliseconds",
];

impl Parser {
    fn peek(&self) -> &Tok {
        self.tokens.get(self.at).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn pos(&self) -> usize {
        self.tokens.get(self.at).or(self.tokens.last()).map_or(0, |t| t.pos)
    }

    fn next(&mut self) -> Tok {
        let tok = self.peek().clone();
        self.at += 1;
        tok
    }

    fn fail<T>(&self, msg: impl Into<String>) -> Result<T, FhirPathError> {
        Err(FhirPathError::Parse { pos: self.pos(), msg: msg.into() })
    }

    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::Punct(q) if *q == p)
    }

    fn expect(&mut self, p: &str) -> Result<(), FhirPathError> {
        if self.is_punct(p) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{p}'"), self.peek()))
        }
    }

    fn enter(&mut self) -> Result<(), FhirPathError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.fail(format!("expression nested deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    fn infix(&self) -> Option<(Infix, u8)> {
        use BinOp::*;
        let op = match self.peek() {
            Tok::Punct(p) => match *p {
                "*" => (Infix::Bin(Mul), 10),
                "/" => (Infix::Bin(Div), 10),
                "+" => (Infix::Bin(Add), 9),
                "-" => (Infix::Bin(Sub), 9),
                "&" => (Infix::Bin(Concat), 9),
                "|" => (Infix::Bin(Union), 7),
                "<" => (Infix::Bin(Lt), 6),
                ">" => (Infix::Bin(Gt), 6),
                "<=" => (Infix::Bin(Le), 6),
                ">=" => (Infix::Bin(Ge), 6),
                "=" => (Infix::Bin(Eq), 5),
                "!=" => (Infix::Bin(Ne), 5),
                "~" => (Infix::Bin(Equiv), 5),
                "!~" => (Infix::Bin(NotEquiv), 5),
                _ => return None,
            },
            Tok::Ident(word) => match word.as_str() {
                "div" => (Infix::Bin(IntDiv), 10),
                "mod" => (Infix::Bin(Mod), 10),
                "is" => (Infix::Type(TypeOp::Is), 8),
                "as" => (Infix::Type(TypeOp::As), 8),
                "in" => (Infix::Bin(In), 4),
                "contains" => (Infix::Bin(Contains), 4),
                "and" => (Infix::Bin(And), 3),
                "or" => (Infix::Bin(Or), 2),
                "xor" => (Infix::Bin(Xor), 2),
                "implies" => (Infix::Bin(Implies), 1),
                _ => return None,
            },
            _ => return None,
        };
        Some(op)
    }

    fn expr(&mut self, min_bp: u8) -> Result<Expr, FhirPathError> {
        self.enter()?;
        let outer = self.depth;
        let mut lhs = self.unary()?;
        while let Some((op, bp)) = self.infix() {
            if bp < min_bp {
                break;
            }
            // Each link of `a + b + c ...` nests the tree one level deeper.
            self.enter()?;
            self.at += 1;
            lhs = match op {
                Infix::Type(op) => {
                    let ty = self.type_spec()?;
                    Expr::TypeTest { recv: Some(Box::new(lhs)), op, ty }
                }
                // Left-associative: the right side binds tighter.
                Infix::Bin(op) => Expr::Binary(op, Box::new(lhs), Box::new(self.expr(bp + 1)?)),
            };
        }
        self.depth = outer - 1;
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, FhirPathError> {
        if self.is_punct("-") || self.is_punct("+") {
            let neg = self.is_punct("-");
            self.at += 1;
            self.enter()?;
            let operand = self.unary()?;
            self.depth -= 1;
            return Ok(if neg { Expr::Neg(Box::new(operand)) } else { operand });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, FhirPathError> {
        let outer = self.depth;
        let mut expr = self.term()?;
        loop {
            if self.is_punct(".") || self.is_punct("[") {
                self.enter()?;
            }
            if self.is_punct(".") {
                self.at += 1;
                expr = self.invocation(Some(Box::new(expr)))?;
            } else if self.is_punct("[") {
                self.at += 1;
                let index = self.expr(0)?;
                self.expect("]")?;
                expr = Expr::Indexer(Box::new(expr), Box::new(index));
            } else {
                self.depth = outer;
                return Ok(expr);
            }
        }
    }

    /// The recursive cases are kept out of `atom` so the frame that stays on
    /// the stack per nesting level is small (debug builds do not share
    /// stack slots between match arms).
    fn term(&mut self) -> Result<Expr, FhirPathError> {
        if self.is_punct("(") {
            self.at += 1;
            let inner = self.expr(0)?;
            self.expect(")")?;
            return Ok(inner);
        }
        let path_start = match self.peek() {
            Tok::Ident(word) => word != "true" && word != "false",
            Tok::Quoted(_) => true,
            _ => false,
        };
        if path_start { self.invocation(None) } else { self.atom() }
    }

    fn atom(&mut self) -> Result<Expr, FhirPathError> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Number(text) => {
                self.at += 1;
                self.number(&text, pos)
            }
            Tok::Str(s) => {
                self.at += 1;
                Ok(Expr::Lit(Lit::Str(s)))
            }
            Tok::DateTime(s) if s.contains('T') => {
                self.at += 1;
                Ok(Expr::Lit(Lit::DateTime(s)))
            }
            Tok::DateTime(s) => {
                self.at += 1;
                Ok(Expr::Lit(Lit::Date(s)))
            }
            Tok::Time(s) => {
                self.at += 1;
                Ok(Expr::Lit(Lit::Time(s)))
            }
            Tok::Ext(name) => {
                self.at += 1;
                Ok(Expr::Var(name))
            }
            Tok::Special(name) => {
                self.at += 1;
                match name.as_str() {
                    "this" => Ok(Expr::This),
                    "index" => Ok(Expr::Index),
                    "total" => Ok(Expr::Total),
                    _ => Err(FhirPathError::Parse { pos, msg: format!("unknown variable ${name}") }),
                }
            }
            Tok::Punct("{") => {
                self.at += 1;
                self.expect("}")?;
                Ok(Expr::Empty)
            }
            Tok::Ident(word) if word == "true" || word == "false" => {
                self.at += 1;
                Ok(Expr::Lit(Lit::Bool(word == "true")))
            }
            other => self.fail(format!("expected an expression, found {}", describe(&other))),
        }
    }

    fn number(&mut self, text: &str, pos: usize) -> Result<Expr, FhirPathError> {
        let bad = || FhirPathError::Parse { pos, msg: format!("invalid number {text}") };
        let unit = match self.peek() {
            Tok::Str(unit) => Some(unit.clone()),
            Tok::Ident(unit) if CALENDAR_UNITS.contains(&unit.as_str()) => Some(unit.clone()),
            _ => None,
        };
        if let Some(unit) = unit {
            self.at += 1;
            return Ok(Expr::Lit(Lit::Quantity(text.parse().map_err(|_| bad())?, unit)));
        }
        if text.contains('.') {
            return Ok(Expr::Lit(Lit::Dec(text.parse().map_err(|_| bad())?)));
        }
        Ok(Expr::Lit(Lit::Int(text.parse().map_err(|_| bad())?)))
    }

    /// An identifier or function call, applied to `recv` (or the input).
    fn invocation(&mut self, recv: Option<Box<Expr>>) -> Result<Expr, FhirPathError> {
        let pos = self.pos();
        let (name, quoted) = match self.next() {
            Tok::Ident(s) => (s, false),
            Tok::Quoted(s) => (s, true),
            other => {
                self.at -= 1;
                return Err(self.unexpected("an identifier", &other));
            }
        };
        if quoted || !self.is_punct("(") {
            return Ok(Expr::Member { recv, name });
        }
        self.at += 1;
        let type_op = match name.as_str() {
            "is" => Some(TypeOp::Is),
            "as" => Some(TypeOp::As),
            "ofType" => Some(TypeOp::OfType),
            _ => None,
        };
        if let Some(op) = type_op {
            let ty = self.type_spec()?;
            self.expect(")")?;
            return Ok(Expr::TypeTest { recv, op, ty });
        }
        let Some((func, min, max)) = Func::lookup(&name) else { return Err(unknown_function(pos, &name)) };
        let args = self.args()?;
        if args.len() < min || args.len() > max {
            return Err(bad_arity(pos, &name, (min, max), args.len()));
        }
        Ok(Expr::Call { recv, func, args })
    }

    #[cold]
    fn unexpected(&self, wanted: &str, found: &Tok) -> FhirPathError {
        FhirPathError::Parse { pos: self.pos(), msg: format!("expected {wanted}, found {}", describe(found)) }
    }

    fn args(&mut self) -> Result<Vec<Expr>, FhirPathError> {
        // An argument list costs an extra unit: a nested call puts the most
        // frames on the stack per level, both here and in the evaluator.
        self.enter()?;
        let outer = self.depth - 1;
        let args = self.arg_list();
        self.depth = outer;
        args
    }

    fn arg_list(&mut self) -> Result<Vec<Expr>, FhirPathError> {
        let mut args = Vec::new();
        if self.is_punct(")") {
            self.at += 1;
            return Ok(args);
        }
        loop {
            args.push(self.expr(0)?);
            if self.is_punct(",") {
                self.at += 1;
            } else {
                self.expect(")")?;
                return Ok(args);
            }
        }
    }

    fn type_spec(&mut self) -> Result<TypeSpec, FhirPathError> {
        let mut name = self.type_name()?;
        let mut namespace = None;
        if self.is_punct(".") {
            self.at += 1;
            namespace = Some(name);
            name = self.type_name()?;
        }
        Ok(TypeSpec { namespace, name })
    }

    fn type_name(&mut self) -> Result<String, FhirPathError> {
        match self.next() {
            Tok::Ident(s) | Tok::Quoted(s) => Ok(s),
            other => {
                self.at -= 1;
                self.fail(format!("expected a type name, found {}", describe(&other)))
            }
        }
    }
}
