//! RFC 3339 timestamps (SCIM `meta`, admin API).

use lockstep_domain::Timestamp;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Formats a timestamp as RFC 3339 UTC with microseconds, e.g.
/// `2026-11-28T09:30:00.123456Z`.
pub fn format_rfc3339(t: Timestamp) -> String {
    let nanos = i128::from(t.micros()) * 1_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|dt| dt.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// Parses an RFC 3339 timestamp.
pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let dt = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(dt.unix_timestamp_nanos() / 1_000).ok().map(Timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = Timestamp(1_764_322_200_123_456);
        let s = format_rfc3339(t);
        assert_eq!(s, "2025-11-28T09:30:00.123456Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
