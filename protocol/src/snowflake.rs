//! Snowflake ids: `0 | 44 bits Unix time in ms | 7 bits pid | 12 bits counter`.

use std::fmt;

/// A dumdum message id. `id >> 19` is the Unix time in milliseconds at
/// which the server created the message; ids grow with time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Snowflake(pub u64);

impl Snowflake {
    /// Milliseconds since the Unix epoch at which the message was created.
    pub const fn unix_millis(self) -> u64 {
        (self.0 & !(1 << 63)) >> 19
    }

    /// The process-id bits (0..128).
    pub const fn process(self) -> u8 {
        ((self.0 >> 12) & 0x7f) as u8
    }

    /// The per-process counter bits (0..4096).
    pub const fn counter(self) -> u16 {
        (self.0 & 0xfff) as u16
    }

    /// Builds an id from its parts, as the reference `create_snowflake` does.
    pub const fn from_parts(unix_millis: u64, process: u32, counter: u32) -> Self {
        Snowflake(
            ((unix_millis & ((1 << 44) - 1)) << 19)
                | (((process % 128) as u64) << 12)
                | ((counter % 4096) as u64),
        )
    }
}

impl fmt::Display for Snowflake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Makes snowflakes with the reference layout. Time is passed in (no clock):
/// ids are strictly increasing even when the clock stands still or steps
/// back, or more than 4096 ids are made in one millisecond.
#[derive(Debug, Clone)]
pub struct SnowflakeGenerator {
    process: u32,
    last: u64,
}

impl SnowflakeGenerator {
    /// A generator for the given process id (taken mod 128).
    pub fn new(process: u32) -> Self {
        SnowflakeGenerator {
            process: process % 128,
            last: 0,
        }
    }

    /// The next id at time `unix_millis`.
    pub fn next(&mut self, unix_millis: u64) -> Snowflake {
        let fresh = Snowflake::from_parts(unix_millis, self.process, 0).0;
        let id = if fresh > self.last {
            fresh
        } else {
            let next = self.last + 1;
            if next & 0xfff == 0 {
                // The counter wrapped: borrow the next millisecond.
                Snowflake::from_parts((self.last >> 19) + 1, self.process, 0).0
            } else {
                next
            }
        };
        self.last = id;
        Snowflake(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_reference() {
        // create_snowflake(t=1700000000000, pid=1234, increment=5)
        let s = Snowflake::from_parts(1_700_000_000_000, 1234, 5);
        assert_eq!(s.0, (1_700_000_000_000 << 19) + ((1234 % 128) << 12) + 5);
        assert_eq!(s.unix_millis(), 1_700_000_000_000);
        assert_eq!(s.process(), (1234 % 128) as u8);
        assert_eq!(s.counter(), 5);
    }

    #[test]
    fn generator_is_strictly_increasing() {
        let mut g = SnowflakeGenerator::new(7);
        let mut last = Snowflake(0);
        for i in 0..10_000u64 {
            // A clock that stands still, then jumps back.
            let now = if i < 5000 { 1000 } else { 900 };
            let id = g.next(now);
            assert!(id > last, "{id:?} after {last:?}");
            assert_eq!(id.process(), 7);
            last = id;
        }
        assert!(g.next(5000).unix_millis() == 5000);
    }
}
