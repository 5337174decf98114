//! Functions on a single input value: strings, conversions, math, dates.
//! An empty input gives an empty result; more than one item is an error.

use super::eval::{Evaluator, Items, single, temporal_item, to_bool};
use super::functions::{Func, bools, one_int, one_str, opt, to_text};
use super::types::{self, Prim};
use super::{FhirPathError, Item, eval_err, regex, temporal};

type ArgFn<'f, 'a> = dyn Fn(usize) -> Result<Items<'a>, FhirPathError> + 'f;

impl<'a> Evaluator<'a, '_, '_> {
    pub(crate) fn scalar(
        &self,
        func: Func,
        base: Items<'a>,
        arg: &ArgFn<'_, 'a>,
    ) -> Result<Items<'a>, FhirPathError> {
        use Func::*;
        match func {
            Now => return Ok(vec![temporal_item(&temporal::now())]),
            Today => {
                let mut t = temporal::now();
                t.prec = 3;
                return Ok(vec![temporal_item(&t)]);
            }
            TimeOfDay => {
                let mut t = temporal::now();
                t.is_time = true;
                return Ok(vec![temporal_item(&t)]);
            }
            Not => return Ok(to_bool(&base, "not()")?.map(|b| Item::Bool(!b)).into_iter().collect()),
            HasValue => {
                let has = |i: &Item| match i {
                    Item::Node(n) => !n.value.is_null() && !n.value.is_object() && !n.value.is_array(),
                    _ => false,
                };
                return Ok(bools(matches!(base.as_slice(), [one] if has(one))));
            }
            Join => {
                let sep = one_str(&arg(0)?, "join()")?.unwrap_or("").to_string();
                let parts: Vec<String> = base.iter().filter_map(to_text).collect();
                return Ok(vec![Item::Str(parts.join(&sep))]);
            }
            _ => {}
        }
        let Some(item) = single(&base, &format!("{func:?}"))? else { return Ok(Vec::new()) };
        match func {
            ToString | ToInteger | ToDecimal | ToBoolean => Ok(opt(convert(func, item))),
            ConvertsToString => Ok(bools(convert(ToString, item).is_some())),
            ConvertsToInteger => Ok(bools(convert(ToInteger, item).is_some())),
            ConvertsToDecimal => Ok(bools(convert(ToDecimal, item).is_some())),
            ConvertsToBoolean => Ok(bools(convert(ToBoolean, item).is_some())),
            Abs | Ceiling | Floor | Truncate | Round => math(func, item, arg),
            _ => {
                let Some(text) = item.as_str() else {
                    return eval_err(format!("{func:?} expects a string, got {item:?}"));
                };
                self.string_fn(func, text, arg)
            }
        }
    }

    fn string_fn(&self, func: Func, s: &str, arg: &ArgFn<'_, 'a>) -> Result<Items<'a>, FhirPathError> {
        use Func::*;
        let text_arg = |i: usize| -> Result<Option<String>, FhirPathError> {
            Ok(one_str(&arg(i)?, &format!("{func:?}"))?.map(str::to_string))
        };
        let chars: Vec<char> = s.chars().collect();
        let out = match func {
            Upper => Item::Str(s.to_uppercase()),
            Lower => Item::Str(s.to_lowercase()),
            Trim => Item::Str(s.trim().to_string()),
            Length => Item::Int(chars.len() as i64),
            ToChars => return Ok(chars.iter().map(|c| Item::Str(c.to_string())).collect()),
            Split => {
                let Some(sep) = text_arg(0)? else { return Ok(Vec::new()) };
                return Ok(s.split(sep.as_str()).map(|p| Item::Str(p.to_string())).collect());
            }
            Substring => {
                let Some(start) = one_int(&arg(0)?, "substring()")? else { return Ok(Vec::new()) };
                let len = one_int(&arg(1)?, "substring()")?;
                if start < 0 || start as usize >= chars.len() {
                    return Ok(Vec::new());
                }
                let rest = chars.iter().skip(start as usize);
                Item::Str(rest.take(len.map_or(usize::MAX, |l| l.max(0) as usize)).collect())
            }
            IndexOf => {
                let Some(needle) = text_arg(0)? else { return Ok(Vec::new()) };
                Item::Int(s.find(&needle).map_or(-1, |b| s[..b].chars().count() as i64))
            }
            StartsWith | EndsWith | Contains => {
                let Some(needle) = text_arg(0)? else { return Ok(Vec::new()) };
                Item::Bool(match func {
                    StartsWith => s.starts_with(&needle),
                    EndsWith => s.ends_with(&needle),
                    _ => s.contains(&needle),
                })
            }
            Replace => {
                let (Some(from), Some(to)) = (text_arg(0)?, text_arg(1)?) else { return Ok(Vec::new()) };
                Item::Str(s.replace(&from, &to))
            }
            ReplaceMatches => {
                let (Some(pattern), Some(to)) = (text_arg(0)?, text_arg(1)?) else { return Ok(Vec::new()) };
                Item::Str(regex::Regex::new(&pattern)?.replace_all(s, &to)?)
            }
            Matches => {
                let Some(pattern) = text_arg(0)? else { return Ok(Vec::new()) };
                Item::Bool(regex::Regex::new(&pattern)?.is_match(s)?)
            }
            _ => return eval_err(format!("{func:?} cannot be applied here")),
        };
        Ok(vec![out])
    }
}

fn convert<'a>(func: Func, item: &Item) -> Option<Item<'a>> {
    let p = types::prim(item)?;
    match func {
        Func::ToString => to_text(item).map(Item::Str),
        Func::ToInteger => match p {
            Prim::Int(i) => Some(Item::Int(i)),
            Prim::Bool(b) => Some(Item::Int(i64::from(b))),
            Prim::Str(s) => s.parse().ok().map(Item::Int),
            _ => None,
        },
        Func::ToDecimal => match p {
            Prim::Int(i) => Some(Item::Dec(i as f64)),
            Prim::Dec(d) => Some(Item::Dec(d)),
            Prim::Bool(b) => Some(Item::Dec(if b { 1.0 } else { 0.0 })),
            Prim::Str(s) => s.parse::<f64>().ok().filter(|d| d.is_finite()).map(Item::Dec),
            _ => None,
        },
        _ => match p {
            Prim::Bool(b) => Some(Item::Bool(b)),
            Prim::Int(i @ (0 | 1)) => Some(Item::Bool(i == 1)),
            Prim::Dec(d) if d == 0.0 || d == 1.0 => Some(Item::Bool(d == 1.0)),
            Prim::Str(s) => match s.to_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(Item::Bool(true)),
                "false" | "f" | "no" | "n" | "0" | "0.0" => Some(Item::Bool(false)),
                _ => None,
            },
            _ => None,
        },
    }
}

fn math<'a>(func: Func, item: &Item, arg: &ArgFn<'_, 'a>) -> Result<Items<'a>, FhirPathError> {
    let value = match types::prim(item) {
        Some(Prim::Int(i)) if func != Func::Round => {
            return Ok(vec![Item::Int(if func == Func::Abs { i.saturating_abs() } else { i })]);
        }
        Some(Prim::Int(i)) => i as f64,
        Some(Prim::Dec(d)) => d,
        Some(Prim::Quantity(v, u)) if func == Func::Abs => {
            return Ok(vec![Item::Quantity { value: v.abs(), unit: u.to_string() }]);
        }
        _ => return eval_err(format!("{func:?} expects a number")),
    };
    Ok(vec![match func {
        Func::Abs => Item::Dec(value.abs()),
        Func::Ceiling => Item::Int(value.ceil() as i64),
        Func::Floor => Item::Int(value.floor() as i64),
        Func::Truncate => Item::Int(value.trunc() as i64),
        _ => {
            let digits = one_int(&arg(0)?, "round()")?.unwrap_or(0).clamp(0, 15) as i32;
            let scale = 10f64.powi(digits);
            Item::Dec((value * scale).round() / scale)
        }
    }])
}
