//! Durations as people write and read them: `30d`, `12h`, `90s` in; `11months 26days 1h 13m 20s` out.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, SpanRelativeTo, Timestamp, Unit};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{input:?} is not a duration; write it like 30d, 12h, 90s or 1d 12h ({detail})")]
    Invalid { input: String, detail: String },
    #[error("{input:?} is negative; a duration here must be zero or more")]
    Negative { input: String },
}

/// Parses a fixed-length duration; a day is 24 hours. Calendar units (months, years) are refused
/// because their length depends on a date.
pub fn parse_duration(input: &str) -> Result<SignedDuration, DurationError> {
    let invalid = |detail: String| DurationError::Invalid {
        input: input.to_string(),
        detail,
    };
    let span: Span = input.trim().parse().map_err(|e: jiff::Error| invalid(e.to_string()))?;
    let duration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|e| invalid(e.to_string()))?;
    if duration.is_negative() {
        return Err(DurationError::Negative {
            input: input.to_string(),
        });
    }
    Ok(duration)
}

/// Parses a validity period that may use calendar units (`1y`, `6mo`, `30d`), added to `from` in UTC.
pub fn add_validity(from: Timestamp, input: &str) -> Result<Timestamp, DurationError> {
    let invalid = |detail: String| DurationError::Invalid {
        input: input.to_string(),
        detail,
    };
    let span: Span = input.trim().parse().map_err(|e: jiff::Error| invalid(e.to_string()))?;
    if span.is_negative() {
        return Err(DurationError::Negative {
            input: input.to_string(),
        });
    }
    let end = from
        .to_zoned(TimeZone::UTC)
        .checked_add(span)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(end.timestamp())
}

/// The time from `from` to `to` in calendar terms, like Zizq's log: `11months 26days 1h 13m 20s`.
/// Negative when `to` is earlier, e.g. `-2days 3h`. Sub-second parts are dropped.
pub fn friendly_between(from: Timestamp, to: Timestamp) -> String {
    let (start, end, sign) = if to >= from { (from, to, "") } else { (to, from, "-") };
    let start = start.to_zoned(TimeZone::UTC);
    let end = end.to_zoned(TimeZone::UTC);
    let Ok(span) = start.until((Unit::Year, &end)) else {
        return format!("{sign}{}s", end.timestamp().duration_since(start.timestamp()).as_secs());
    };
    let parts = [
        (i64::from(span.get_years()), "year", "years"),
        (i64::from(span.get_months()), "month", "months"),
        (
            i64::from(span.get_weeks()) * 7 + i64::from(span.get_days()),
            "day",
            "days",
        ),
        (i64::from(span.get_hours()), "h", "h"),
        (span.get_minutes(), "m", "m"),
        (span.get_seconds(), "s", "s"),
    ];
    let words: Vec<String> = parts
        .iter()
        .filter(|(n, _, _)| *n != 0)
        .map(|(n, one, many)| format!("{n}{}", if *n == 1 { one } else { many }))
        .collect();
    if words.is_empty() {
        "0s".to_string()
    } else {
        format!("{sign}{}", words.join(" "))
    }
}

/// `at` as seen from `now`: `in 3days`, `2h ago`.
pub fn relative(now: Timestamp, at: Timestamp) -> String {
    if at >= now {
        format!("in {}", friendly_between(now, at))
    } else {
        format!("{} ago", friendly_between(at, now))
    }
}

/// A fixed duration in the same style, for policy windows: `30days`, `1day 12h`, `1m 30s`.
pub fn friendly_duration(d: SignedDuration) -> String {
    friendly_between(
        Timestamp::UNIX_EPOCH,
        Timestamp::UNIX_EPOCH.checked_add(d).unwrap_or(Timestamp::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_friendly_forms() {
        assert_eq!(parse_duration("30d").unwrap(), SignedDuration::from_hours(720));
        assert_eq!(parse_duration("12h").unwrap(), SignedDuration::from_hours(12));
        assert_eq!(parse_duration("90s").unwrap(), SignedDuration::from_secs(90));
        assert_eq!(parse_duration("1d 12h").unwrap(), SignedDuration::from_hours(36));
        assert_eq!(parse_duration("PT5M").unwrap(), SignedDuration::from_mins(5));
    }

    #[test]
    fn refuses_bad_durations() {
        assert!(matches!(parse_duration("soon"), Err(DurationError::Invalid { .. })));
        assert!(matches!(parse_duration("1y"), Err(DurationError::Invalid { .. })));
        assert!(matches!(parse_duration("-5s"), Err(DurationError::Negative { .. })));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn validity_with_calendar_units() {
        let from: Timestamp = "2026-01-31T00:00:00Z".parse().unwrap();
        assert_eq!(add_validity(from, "1mo").unwrap().to_string(), "2026-02-28T00:00:00Z");
        assert_eq!(add_validity(from, "1y").unwrap().to_string(), "2027-01-31T00:00:00Z");
        assert!(add_validity(from, "-1d").is_err());
    }

    #[test]
    fn friendly_like_zizq() {
        let from: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let to: Timestamp = "2026-12-27T01:13:20Z".parse().unwrap();
        assert_eq!(friendly_between(from, to), "11months 26days 1h 13m 20s");
        assert_eq!(friendly_between(to, from), "-11months 26days 1h 13m 20s");
        assert_eq!(friendly_between(from, from), "0s");
        let one = "2027-02-02T01:01:01Z".parse().unwrap();
        assert_eq!(friendly_between(from, one), "1year 1month 1day 1h 1m 1s");
        assert_eq!(friendly_duration(SignedDuration::from_secs(90)), "1m 30s");
        assert_eq!(friendly_duration(SignedDuration::from_hours(720)), "30days");
    }

    #[test]
    fn friendly_never_panics_at_the_ends_of_time() {
        let _ = friendly_between(Timestamp::MIN, Timestamp::MAX);
        let _ = friendly_duration(SignedDuration::MAX);
    }
}
