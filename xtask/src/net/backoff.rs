//! How long to wait before asking again: exponential backoff with jitter, and a server's
//! `Retry-After`. Shared by `pull`'s attempts (seconds apart) and the pull relay's single
//! requests (fractions of a second apart), each with its own base and cap.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::time::parse_http_date;

/// The wait before attempt `attempt + 1` (`attempt` counts from 1): `base`, `2 * base`,
/// `4 * base`, ... capped at `cap`, of which the upper half is jitter (`jitter` in [0, 1)), so
/// concurrent workers do not retry in step.
pub fn exponential(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let full = base.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(cap);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// `Retry-After`: delta-seconds or an HTTP date, relative to `now_unix`. Capped at 10 minutes.
pub fn parse_retry_after(value: &str, now_unix: u64) -> Option<Duration> {
    let v = value.trim();
    let secs = match v.parse::<u64>() {
        Ok(s) => s,
        Err(_) => parse_http_date(v)?.saturating_sub(now_unix),
    };
    Some(Duration::from_secs(secs.min(600)))
}

/// Jitter in [0, 1): xorshift64*, seeded from the clock and a salt so that concurrent workers
/// (and the relay's requests) do not wait in step. Not for anything secret.
pub struct Jitter(u64);

impl Jitter {
    pub fn seeded(salt: u64) -> Jitter {
        let clock = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos() as u64).unwrap_or(7);
        Jitter((clock ^ salt.wrapping_mul(0x9E37_79B9)) | 1)
    }

    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_a_cap() {
        let (s, cap) = (Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(exponential(1, s, cap, 0.0), Duration::from_millis(500));
        assert_eq!(exponential(1, s, cap, 0.999_999).as_millis(), 999);
        assert_eq!(exponential(2, s, cap, 0.0), Duration::from_secs(1));
        assert_eq!(exponential(3, s, cap, 1.0), Duration::from_secs(4));
        assert_eq!(exponential(10, s, cap, 1.0), Duration::from_secs(30));
        assert_eq!(exponential(64, s, cap, 0.5), Duration::from_secs_f64(22.5));
        for a in 1..8 {
            assert!(exponential(a, s, cap, 0.3) <= exponential(a + 1, s, cap, 0.3));
        }
        let (ms, cap) = (Duration::from_millis(200), Duration::from_millis(3200));
        assert_eq!(exponential(1, ms, cap, 0.0), Duration::from_millis(100));
        assert_eq!(exponential(3, ms, cap, 1.0), Duration::from_millis(800));
        assert_eq!(exponential(30, ms, cap, 1.0), Duration::from_millis(3200));
    }

    #[test]
    fn retry_after_seconds_or_date() {
        assert_eq!(parse_retry_after("2", 0), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 120 ", 0), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("99999", 0), Some(Duration::from_secs(600)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", 784_111_777), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_999), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", 0), None);
    }

    #[test]
    fn jitter_stays_in_range_and_differs_by_salt() {
        let (mut a, mut b) = (Jitter(1), Jitter(3));
        let (xs, ys): (Vec<f64>, Vec<f64>) = (0..100).map(|_| (a.next(), b.next())).unzip();
        assert!(xs.iter().chain(&ys).all(|x| (0.0..1.0).contains(x)));
        assert_ne!(xs, ys);
    }
}
