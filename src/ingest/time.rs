//! Timestamps as monitors write them.

use jiff::Timestamp;
use jiff::civil::DateTime;
use serde_json::Value;

/// Reads RFC 3339 (any fraction digits, any offset), `YYYY-MM-DD HH:MM:SS[.fff]` in UTC (Uptime
/// Kuma), and epoch seconds, milliseconds, microseconds or nanoseconds as a number or numeric
/// text. Go's zero time (`0001-01-01T00:00:00Z`), empty text and `0` mean "no time".
pub fn parse_time(v: &Value) -> Result<Option<Timestamp>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_i64() {
            Some(i) => epoch(i),
            None => n
                .as_f64()
                .map(epoch_float)
                .unwrap_or_else(|| Err(format!("`{n}` is not a time"))),
        },
        Value::String(s) => parse_text(s),
        other => Err(format!(
            "expected a time, found {}",
            super::json::kind(other)
        )),
    }
}

fn parse_text(raw: &str) -> Result<Option<Timestamp>, String> {
    let s = raw.trim();
    if s.is_empty() || s.starts_with("0001-01-01") {
        return Ok(None);
    }
    if let Ok(i) = s.parse::<i64>() {
        return epoch(i);
    }
    if let Ok(f) = s.parse::<f64>() {
        return epoch_float(f);
    }
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(Some(t));
    }
    // No offset: Uptime Kuma writes UTC this way.
    if let Ok(dt) = s.replacen(' ', "T", 1).parse::<DateTime>()
        && let Ok(z) = dt.to_zoned_datetime(jiff::tz::TimeZone::UTC)
    {
        return Ok(Some(z.timestamp()));
    }
    Err(format!(
        "`{raw}` is not a time (expected RFC 3339, `YYYY-MM-DD HH:MM:SS` in UTC, or epoch seconds/milliseconds)"
    ))
}

/// Epoch in seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude.
fn epoch(i: i64) -> Result<Option<Timestamp>, String> {
    if i == 0 {
        return Ok(None);
    }
    let abs = i.unsigned_abs();
    let result = if abs < 100_000_000_000 {
        Timestamp::from_second(i)
    } else if abs < 100_000_000_000_000 {
        Timestamp::from_millisecond(i)
    } else if abs < 100_000_000_000_000_000 {
        Timestamp::from_microsecond(i)
    } else {
        Timestamp::from_nanosecond(i128::from(i))
    };
    result
        .map(Some)
        .map_err(|e| format!("`{i}` is out of range: {e}"))
}

fn epoch_float(f: f64) -> Result<Option<Timestamp>, String> {
    if !f.is_finite() {
        return Err(format!("`{f}` is not a time"));
    }
    if f.abs() < 100_000_000_000.0 {
        let ms = (f * 1000.0).round() as i64;
        return Timestamp::from_millisecond(ms)
            .map(Some)
            .map_err(|e| e.to_string());
    }
    epoch(f.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(v: Value) -> Option<String> {
        parse_time(&v).unwrap().map(|t| t.to_string())
    }

    #[test]
    fn rfc3339_with_any_fraction_and_offset() {
        assert_eq!(
            t(json!("2026-11-26T09:14:03.123456789Z")).as_deref(),
            Some("2026-11-26T09:14:03.123456789Z")
        );
        assert_eq!(
            t(json!("2026-11-26T17:14:03.5+08:00")).as_deref(),
            Some("2026-11-26T09:14:03.5Z")
        );
        assert_eq!(
            t(json!("2026-11-26T09:14:03Z")).as_deref(),
            Some("2026-11-26T09:14:03Z")
        );
    }

    #[test]
    fn go_zero_time_and_empty_mean_none() {
        assert_eq!(t(json!("0001-01-01T00:00:00Z")), None);
        assert_eq!(t(json!("")), None);
        assert_eq!(t(json!(0)), None);
        assert_eq!(t(Value::Null), None);
    }

    #[test]
    fn uptime_kuma_utc_without_zone() {
        assert_eq!(
            t(json!("2026-11-26 09:14:03.512")).as_deref(),
            Some("2026-11-26T09:14:03.512Z")
        );
        assert_eq!(
            t(json!("2026-11-26 09:14:03")).as_deref(),
            Some("2026-11-26T09:14:03Z")
        );
    }

    #[test]
    fn epochs_by_magnitude_as_numbers_or_text() {
        let expected = Some("2026-11-26T09:14:03Z".to_owned());
        assert_eq!(t(json!(1795684443)), expected);
        assert_eq!(t(json!("1795684443")), expected);
        assert_eq!(t(json!(1795684443000i64)), expected);
        assert_eq!(t(json!("1795684443000")), expected);
        assert_eq!(t(json!(1795684443000000i64)), expected);
        assert_eq!(
            t(json!(1795684443.5)).as_deref(),
            Some("2026-11-26T09:14:03.5Z")
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(
            parse_time(&json!("yesterday"))
                .unwrap_err()
                .contains("yesterday")
        );
        assert!(parse_time(&json!({"a": 1})).is_err());
    }
}
