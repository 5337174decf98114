//! Partial dates, date-times and times: parsing, precision-aware comparison,
//! calendar arithmetic and formatting. Values stay as ISO text in items and
//! are parsed on use; parsing is cheaper than carrying a second form around.

use std::cmp::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

/// Precision levels: 1 year .. 3 day, 4 hour, 5 minute, 6 second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Temporal {
    pub y: i64,
    pub mo: i64,
    pub d: i64,
    pub h: i64,
    pub mi: i64,
    pub s: f64,
    pub prec: u8,
    /// Offset from UTC in minutes.
    pub tz: Option<i64>,
    pub is_time: bool,
}

fn num(s: &str, len: usize) -> Option<(i64, &str)> {
    let head = s.get(..len)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, &s[len..]))
}

/// `YYYY[-MM[-DD[T[hh[:mm[:ss[.fff]]]][tz]]]]`.
pub fn parse_datetime(text: &str) -> Option<Temporal> {
    let mut t = Temporal { y: 0, mo: 1, d: 1, h: 0, mi: 0, s: 0.0, prec: 1, tz: None, is_time: false };
    let (y, mut rest) = num(text, 4)?;
    t.y = y;
    for (field, prec) in [(&mut t.mo, 2u8), (&mut t.d, 3)] {
        let Some(r) = rest.strip_prefix('-') else { break };
        let (v, r) = num(r, 2)?;
        *field = v;
        t.prec = prec;
        rest = r;
    }
    if !valid_date(&t) {
        return None;
    }
    if let Some(r) = rest.strip_prefix('T') {
        if t.prec < 3 {
            return None;
        }
        rest = r;
        if !rest.is_empty() && !rest.starts_with(['Z', '+', '-']) {
            rest = parse_clock(rest, &mut t)?;
        }
        rest = parse_tz(rest, &mut t)?;
    }
    rest.is_empty().then_some(t)
}

/// `hh[:mm[:ss[.fff]]]` (no time zone, as in FHIRPath time literals).
pub fn parse_time(text: &str) -> Option<Temporal> {
    let mut t = Temporal { y: 0, mo: 1, d: 1, h: 0, mi: 0, s: 0.0, prec: 4, tz: None, is_time: true };
    let rest = parse_clock(text, &mut t)?;
    rest.is_empty().then_some(t)
}

fn parse_clock<'s>(text: &'s str, t: &mut Temporal) -> Option<&'s str> {
    let (h, mut rest) = num(text, 2)?;
    t.h = h;
    t.prec = 4;
    if let Some(r) = rest.strip_prefix(':') {
        let (mi, r) = num(r, 2)?;
        t.mi = mi;
        t.prec = 5;
        rest = r;
        if let Some(r) = rest.strip_prefix(':') {
            let (s, r) = num(r, 2)?;
            t.prec = 6;
            rest = r;
            let mut secs = s as f64;
            if let Some(frac) = rest.strip_prefix('.') {
                let len = frac.find(|c: char| !c.is_ascii_digit()).unwrap_or(frac.len());
                if len == 0 {
                    return None;
                }
                secs += format!("0.{}", &frac[..len]).parse::<f64>().ok()?;
                rest = &frac[len..];
            }
            t.s = secs;
        }
    }
    (t.h < 24 && t.mi < 60 && t.s < 61.0).then_some(rest)
}

fn parse_tz<'s>(text: &'s str, t: &mut Temporal) -> Option<&'s str> {
    if let Some(r) = text.strip_prefix('Z') {
        t.tz = Some(0);
        return Some(r);
    }
    let sign = match text.chars().next() {
        Some('+') => 1,
        Some('-') => -1,
        _ => return Some(text),
    };
    let (h, r) = num(&text[1..], 2)?;
    let r = r.strip_prefix(':')?;
    let (m, r) = num(r, 2)?;
    t.tz = Some(sign * (h * 60 + m));
    Some(r)
}

fn valid_date(t: &Temporal) -> bool {
    (1..=12).contains(&t.mo) && t.d >= 1 && t.d <= days_in_month(t.y, t.mo)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// Shifts the clock fields by `minutes`, carrying into the date.
fn shift_minutes(t: &mut Temporal, minutes: i64) {
    let total = days_from_civil(t.y, t.mo, t.d) * 1440 + t.h * 60 + t.mi + minutes;
    let (y, mo, d) = civil_from_days(total.div_euclid(1440));
    let rem = total.rem_euclid(1440);
    (t.y, t.mo, t.d, t.h, t.mi) = (y, mo, d, rem / 60, rem % 60);
}

fn to_utc(t: &Temporal) -> Temporal {
    let mut u = *t;
    if let Some(tz) = t.tz.filter(|_| t.prec >= 4 && !t.is_time) {
        shift_minutes(&mut u, -tz);
        u.tz = Some(0);
    }
    u
}

/// Compares at the common precision; `None` when the values agree as far as
/// the less precise one goes but the precisions differ (spec: "unknown").
pub fn compare(a: &Temporal, b: &Temporal) -> Option<Ordering> {
    if a.is_time != b.is_time {
        return None;
    }
    let (a, b) = (to_utc(a), to_utc(b));
    let p = a.prec.min(b.prec);
    let fa = [a.y, a.mo, a.d, a.h, a.mi];
    let fb = [b.y, b.mo, b.d, b.h, b.mi];
    let first = if a.is_time { 3 } else { 0 };
    for i in first..usize::from(p.min(5)) {
        match fa[i].cmp(&fb[i]) {
            Ordering::Equal => {}
            other => return Some(other),
        }
    }
    if p >= 6 {
        match a.s.partial_cmp(&b.s)? {
            Ordering::Equal => {}
            other => return Some(other),
        }
    }
    (a.prec == b.prec).then_some(Ordering::Equal)
}

/// Adds a calendar/UCUM duration; `None` for non-time units or fractional
/// years/months.
pub fn add(t: &Temporal, amount: f64, unit: &str) -> Option<Temporal> {
    // Bounded so the calendar arithmetic below cannot overflow.
    if !amount.is_finite() || amount.abs() >= 1e12 {
        return None;
    }
    let mut r = *t;
    let whole = amount.trunc() as i64;
    if matches!(unit, "ms" | "millisecond" | "milliseconds") {
        return add(t, amount / 1000.0, "second");
    }
    match unit.trim_end_matches('s') {
        "year" | "a" => r.y += whole,
        "month" | "mo" => {
            let months = r.y * 12 + (r.mo - 1) + whole;
            (r.y, r.mo) = (months.div_euclid(12), months.rem_euclid(12) + 1);
        }
        "week" | "wk" => return add(t, amount * 7.0, "day"),
        "day" | "d" => {
            let (y, mo, d) = civil_from_days(days_from_civil(r.y, r.mo, r.d) + whole);
            (r.y, r.mo, r.d) = (y, mo, d);
        }
        "hour" | "h" => shift_minutes(&mut r, whole * 60),
        "minute" | "min" => shift_minutes(&mut r, whole),
        "second" | "" => {
            let total = r.s + amount;
            let carry = total.div_euclid(60.0);
            r.s = total.rem_euclid(60.0);
            shift_minutes(&mut r, carry as i64);
        }
        _ => return None,
    }
    r.d = r.d.min(days_in_month(r.y, r.mo));
    (r.y.abs() < 1_000_000).then_some(r)
}

pub fn format(t: &Temporal) -> String {
    let mut out = if t.is_time { String::new() } else { format!("{:04}", t.y) };
    if !t.is_time {
        if t.prec >= 2 {
            out += &format!("-{:02}", t.mo);
        }
        if t.prec >= 3 {
            out += &format!("-{:02}", t.d);
        }
        if t.prec >= 4 {
            out.push('T');
        }
    }
    if t.prec >= 4 {
        out += &format!("{:02}", t.h);
    }
    if t.prec >= 5 {
        out += &format!(":{:02}", t.mi);
    }
    if t.prec >= 6 {
        let whole = t.s.trunc();
        out += &format!(":{:02}", whole as i64);
        let ms = ((t.s - whole) * 1000.0).round() as i64;
        if ms > 0 {
            out += &format!(".{ms:03}");
        }
    }
    match t.tz {
        Some(0) if !t.is_time && t.prec >= 4 => out.push('Z'),
        Some(tz) if !t.is_time && t.prec >= 4 => {
            let sign = if tz < 0 { '-' } else { '+' };
            out += &format!("{sign}{:02}:{:02}", tz.abs() / 60, tz.abs() % 60);
        }
        _ => {}
    }
    out
}

/// The current instant in UTC at millisecond precision.
pub fn now() -> Temporal {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let s = (rem % 60) as f64 + f64::from(since.subsec_millis()) / 1000.0;
    Temporal { y, mo, d, h: rem / 3600, mi: rem % 3600 / 60, s, prec: 6, tz: Some(0), is_time: false }
}
