//! Wall-clock instants as plain numbers.

use std::time::Duration;

/// Microseconds since the Unix epoch (UTC).
///
/// Microseconds rather than milliseconds because revocation propagation is
/// measured as the difference of two timestamps and is routinely below one
/// millisecond. The value always comes from a `Clock` parameter.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The instant `d` later, saturating instead of overflowing.
    pub fn plus(self, d: Duration) -> Self {
        let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(micros))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        let delta = self.0.saturating_sub(earlier.0);
        Duration::from_micros(u64::try_from(delta).unwrap_or(0))
    }

    /// Whole seconds since the epoch (what JWT-style `exp`/`iat` carry).
    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// The instant `seconds` after the epoch (saturating).
    pub fn from_unix_seconds(seconds: i64) -> Self {
        Self(seconds.saturating_mul(1_000_000))
    }

    /// Microseconds since the epoch.
    pub fn micros(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_and_since_round_trip() {
        let t = Timestamp(1_000_000);
        let later = t.plus(Duration::from_millis(1500));
        assert_eq!(later.0, 2_500_000);
        assert_eq!(later.since(t), Duration::from_millis(1500));
        assert_eq!(t.since(later), Duration::ZERO);
        assert_eq!(later.unix_seconds(), 2);
        assert_eq!(Timestamp(-1).unix_seconds(), -1);
    }

    #[test]
    fn plus_saturates() {
        assert_eq!(Timestamp(i64::MAX - 1).plus(Duration::from_secs(10)).0, i64::MAX);
    }
}
