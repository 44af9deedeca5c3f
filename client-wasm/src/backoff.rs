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
    jittered(MIN_DELAY_MS, JITTER, MIN_DELAY_MS, attempt, random)
}

/// A delay that doubles from `first` up to [`MAX_DELAY_MS`] with `attempt`,
/// spread by `±jitter` of itself with `random` (uniform in `[0, 1)`;
/// clamped, and 0.5 when not finite), and kept within `floor..=MAX_DELAY_MS`.
fn jittered(first: u64, jitter: f64, floor: u64, attempt: u32, random: f64) -> u64 {
    let nominal = first
        .saturating_mul(1u64 << attempt.min(16))
        .min(MAX_DELAY_MS);
    let r = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let factor = 1.0 - jitter + 2.0 * jitter * r;
    let delay = (nominal as f64 * factor).round() as u64;
    delay.clamp(floor, MAX_DELAY_MS)
}

/// The first delay after the bridge said it is busy (1013).
pub const BUSY_MIN_DELAY_MS: u64 = 5_000;
/// Jitter of the busy delays: ±50% of the nominal value. Wider than after
/// a lost connection: a full bridge refuses many pages at once, and they
/// should not come back together.
const BUSY_JITTER: f64 = 0.5;

/// The delay before reconnect attempt `attempt` after a busy bridge (close
/// 1013): the nominal delay doubles from [`BUSY_MIN_DELAY_MS`] up to
/// [`MAX_DELAY_MS`], spread by ±50% with `random` (uniform in `[0, 1)`),
/// and never below half the first delay or above a minute.
pub fn busy_delay_ms(attempt: u32, random: f64) -> u64 {
    jittered(
        BUSY_MIN_DELAY_MS,
        BUSY_JITTER,
        BUSY_MIN_DELAY_MS / 2,
        attempt,
        random,
    )
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

    /// The delay before the next attempt after a busy bridge (see
    /// [`busy_delay_ms`]); advances the same schedule.
    pub fn next_busy_delay_ms(&mut self, random: f64) -> u64 {
        let d = busy_delay_ms(self.attempt, random);
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
    fn a_busy_bridge_is_left_alone_longer_and_with_wider_jitter() {
        let nominal: Vec<u64> = (0..6).map(|a| busy_delay_ms(a, 0.5)).collect();
        assert_eq!(nominal, [5_000, 10_000, 20_000, 40_000, 60_000, 60_000]);
        assert_eq!(busy_delay_ms(0, 0.0), 2_500);
        assert_eq!(busy_delay_ms(1, 0.0), 5_000);
        assert_eq!(busy_delay_ms(1, 0.999_999), 15_000);
        for a in 0..20 {
            for r in [0.0, 0.3, 0.999, -1.0, 9.0, f64::NAN] {
                let d = busy_delay_ms(a, r);
                assert!((2_500..=MAX_DELAY_MS).contains(&d), "{a} {r} {d}");
            }
        }
        // The same schedule as other retries: a busy answer after a lost
        // connection waits longer, and a stable connection resets both.
        let mut b = Backoff::default();
        assert_eq!(b.next_delay_ms(0.5), 1_000);
        assert_eq!(b.next_busy_delay_ms(0.5), 10_000);
        assert_eq!(b.attempt(), 2);
        b.reset();
        assert_eq!(b.next_busy_delay_ms(0.5), 5_000);
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
