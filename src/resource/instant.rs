//! FHIR date, dateTime and instant values as millisecond ranges, and instant formatting.

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Milliseconds since the Unix epoch, the store's clock.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// `2026-11-23T21:30:00.123Z`, the form of `meta.lastUpdated`.
pub fn format_ms(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// HTTP-date (RFC 9110) of an instant, for `Last-Modified`.
pub fn http_date(ms: i64) -> String {
    let secs = u64::try_from(ms.div_euclid(1000)).unwrap_or(0);
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// Parses an HTTP-date into milliseconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(s).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// The half-open range [low, high) in ms that a FHIR date/dateTime/instant denotes at its
/// precision: `2024` is all of 2024, `2024-03-01T10:00:00Z` is one second. Values without a
/// time zone are taken as UTC.
pub fn parse_range(s: &str) -> Option<(i64, i64)> {
    let s = s.trim();
    if s.len() > 10 {
        return parse_date_time(s);
    }
    let mut parts = s.split('-');
    let year: i32 = parse_digits(parts.next()?, 4)?;
    let month = match parts.next() {
        Some(m) => Some(parse_digits::<u8>(m, 2)?),
        None => None,
    };
    let day = match parts.next() {
        Some(d) => Some(parse_digits::<u8>(d, 2)?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    let (start, end) = match (month, day) {
        (None, _) => (date(year, 1, 1)?, date(year + 1, 1, 1)?),
        (Some(m), None) => {
            let next = if m == 12 { date(year + 1, 1, 1)? } else { date(year, m + 1, 1)? };
            (date(year, m, 1)?, next)
        }
        (Some(m), Some(d)) => {
            let start = date(year, m, d)?;
            (start, start.next_day()?)
        }
    };
    Some((day_ms(start), day_ms(end)))
}

fn parse_date_time(s: &str) -> Option<(i64, i64)> {
    let (t, precision_ms) = match OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => (t, if s.contains('.') { 1 } else { 1000 }),
        // dateTime without seconds or without a zone: complete it, then parse.
        Err(_) => {
            let (body, zone) = split_zone(s);
            let body = if body.len() == 16 { format!("{body}:00") } else { body.to_string() };
            let full = format!("{body}{}", zone.unwrap_or("Z"));
            let precision = if s.len() <= 16 + zone.map_or(0, str::len) { 60_000 } else { 1000 };
            (OffsetDateTime::parse(&full, &Rfc3339).ok()?, if full.contains('.') { 1 } else { precision })
        }
    };
    let low = (t.unix_timestamp_nanos() / 1_000_000) as i64;
    Some((low, low + precision_ms))
}

fn split_zone(s: &str) -> (&str, Option<&str>) {
    if let Some(body) = s.strip_suffix('Z') {
        return (body, Some("Z"));
    }
    match s.get(19..).and_then(|tail| tail.find(['+', '-'])).map(|i| i + 19) {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    }
}

fn parse_digits<T: std::str::FromStr>(s: &str, len: usize) -> Option<T> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

fn date(year: i32, month: u8, day: u8) -> Option<Date> {
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

fn day_ms(d: Date) -> i64 {
    let t = PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_offset(UtcOffset::UTC);
    t.unix_timestamp() * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let (lo, hi) = parse_range("2024").unwrap();
        assert_eq!(format_ms(lo), "2024-01-01T00:00:00.000Z");
        assert_eq!(format_ms(hi), "2025-01-01T00:00:00.000Z");
        let (lo, hi) = parse_range("2024-02").unwrap();
        assert_eq!(
            (format_ms(lo).as_str(), format_ms(hi).as_str()),
            ("2024-02-01T00:00:00.000Z", "2024-03-01T00:00:00.000Z")
        );
        let (lo, hi) = parse_range("2024-12-31").unwrap();
        assert_eq!(hi - lo, 86_400_000);
        let (lo, hi) = parse_range("2024-03-01T10:00:00+02:00").unwrap();
        assert_eq!((format_ms(lo).as_str(), hi - lo), ("2024-03-01T08:00:00.000Z", 1000));
        let (lo, hi) = parse_range("2024-03-01T10:00:00.250Z").unwrap();
        assert_eq!((format_ms(lo).as_str(), hi - lo), ("2024-03-01T10:00:00.250Z", 1));
        let (lo, hi) = parse_range("2024-03-01T10:00").unwrap();
        assert_eq!((format_ms(lo).as_str(), hi - lo), ("2024-03-01T10:00:00.000Z", 60_000));
        assert!(parse_range("2024-13").is_none());
        assert!(parse_range("2023-02-29").is_none());
        assert!(parse_range("yesterday").is_none());
    }

    #[test]
    fn http_dates() {
        let ms = 1_700_000_000_123;
        assert_eq!(parse_http_date(&http_date(ms)), Some(1_700_000_000_000));
    }
}
