//! The reconnect schedule: exponential backoff from 1 s to 60 s with jitter,
//! reset once a connection has stayed up long enough. Pure: the caller
//! passes the time and the random number.

/// The first delay.
pub const MIN_DELAY_MS: u64 = 1_000;
/// The longest delay.
pub const MAX_DELAY_MS: u64 = 60_000;
/// A connection that stayed up this long resets the schedule.
pub const STABLE_AFTER_MS: u64 = 30_000;
/// Jitter spreads each delay over ±20% of its nominal value.
const JITTER: f64 = 0.2;

/// The delay before reconnect attempt `attempt` (0 = the first retry).
/// `random` is uniform in `[0, 1)` (values outside are clamped). The nominal
/// delay doubles from [`MIN_DELAY_MS`] up to [`MAX_DELAY_MS`]; jitter keeps
/// many clients that lost the same bridge from coming back in lockstep, and
/// never takes a delay outside the 1 s to 60 s range.
pub fn backoff_delay_ms(attempt: u32, random: f64) -> u64 {
    let nominal = MIN_DELAY_MS
        .saturating_mul(1u64 << attempt.min(16))
        .min(MAX_DELAY_MS);
    let r = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let factor = 1.0 - JITTER + 2.0 * JITTER * r;
    let jittered = (nominal as f64 * factor).round() as u64;
    jittered.clamp(MIN_DELAY_MS, MAX_DELAY_MS)
}

/// Reconnect bookkeeping for one chat session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    attempt: u32,
    up_since: Option<u64>,
}

impl Backoff {
    /// How many retries have been scheduled since the last stable connection.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The connection is fully up (authenticated) at `now_ms`.
    pub fn connected(&mut self, now_ms: u64) {
        self.up_since = Some(now_ms);
    }

    /// The connection ended at `now_ms`: a connection that was up for
    /// [`STABLE_AFTER_MS`] resets the schedule.
    pub fn disconnected(&mut self, now_ms: u64) {
        if let Some(since) = self.up_since.take()
            && now_ms.saturating_sub(since) >= STABLE_AFTER_MS
        {
            self.attempt = 0;
        }
    }

    /// The delay before the next attempt; advances the schedule.
    pub fn next_delay_ms(&mut self, random: f64) -> u64 {
        let d = backoff_delay_ms(self.attempt, random);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Starts over (the user asked to connect, or the browser came online).
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.up_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nominal_schedule_doubles_up_to_a_minute() {
        let nominal: Vec<u64> = (0..9).map(|a| backoff_delay_ms(a, 0.5)).collect();
        assert_eq!(
            nominal,
            [
                1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000
            ]
        );
        assert_eq!(backoff_delay_ms(u32::MAX, 0.5), 60_000);
    }

    #[test]
    fn jitter_spreads_but_stays_in_range() {
        assert_eq!(backoff_delay_ms(3, 0.0), 6_400);
        assert_eq!(backoff_delay_ms(3, 0.999_999), 9_600);
        // Never below 1 s or above 60 s, whatever the random number.
        for a in 0..20 {
            for r in [0.0, 0.1, 0.5, 0.9, 1.0, -3.0, 7.0, f64::NAN] {
                let d = backoff_delay_ms(a, r);
                assert!((MIN_DELAY_MS..=MAX_DELAY_MS).contains(&d), "{a} {r} {d}");
            }
        }
        assert_ne!(backoff_delay_ms(2, 0.1), backoff_delay_ms(2, 0.9));
    }

    #[test]
    fn stable_connection_resets_the_schedule() {
        let mut b = Backoff::default();
        assert_eq!(b.next_delay_ms(0.5), 1_000);
        assert_eq!(b.next_delay_ms(0.5), 2_000);
        // Up briefly: keeps backing off.
        b.connected(10_000);
        b.disconnected(15_000);
        assert_eq!(b.next_delay_ms(0.5), 4_000);
        // Up for long enough: starts over.
        b.connected(20_000);
        b.disconnected(20_000 + STABLE_AFTER_MS);
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.next_delay_ms(0.5), 1_000);
        // A disconnect without a connection does not reset.
        b.disconnected(1_000_000);
        assert_eq!(b.next_delay_ms(0.5), 2_000);
        b.reset();
        assert_eq!(b.next_delay_ms(0.5), 1_000);
    }
}
