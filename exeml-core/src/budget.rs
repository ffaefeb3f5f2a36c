//! The wall-clock time budget of a training run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The limit of a budget that never runs out.
const UNLIMITED: Duration = Duration::from_secs(u64::MAX / 4);

/// A wall-clock budget that starts when it is created, plus a cancel flag (Ctrl-C, a caller).
///
/// Trainers ask [`Budget::exhausted`] between steps and stop cleanly, keeping the best model so far.
///
/// ```
/// use exeml_core::Budget;
/// use std::time::Duration;
/// let budget = Budget::new(Duration::from_secs(60));
/// assert!(!budget.exhausted());
/// assert!(budget.remaining() <= Duration::from_secs(60));
/// ```
#[derive(Debug, Clone)]
pub struct Budget {
    start: Instant,
    limit: Duration,
    cancelled: Arc<AtomicBool>,
}

impl Budget {
    /// A budget of `limit` starting now.
    pub fn new(limit: Duration) -> Self {
        Budget {
            start: Instant::now(),
            limit,
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A budget that never runs out (for tests and for refits of a chosen configuration).
    pub fn unlimited() -> Self {
        Self::new(UNLIMITED)
    }

    /// True for a budget without a time limit ([`Budget::unlimited`], [`Budget::uncapped`]):
    /// there is no time to fit a schedule to, only a cancel flag. A part of one reserved for
    /// finishing ([`Budget::reserving`]) is still one.
    pub fn is_unlimited(&self) -> bool {
        self.limit >= UNLIMITED / 2
    }

    /// The total limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Time spent since the budget started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Time left (zero once exhausted or cancelled).
    pub fn remaining(&self) -> Duration {
        if self.is_cancelled() {
            return Duration::ZERO;
        }
        self.limit.saturating_sub(self.start.elapsed())
    }

    /// Fraction of the budget used, in `[0, 1]`.
    pub fn fraction_used(&self) -> f64 {
        (self.elapsed().as_secs_f64() / self.limit.as_secs_f64().max(1e-9)).min(1.0)
    }

    /// True once the limit has passed or the run was cancelled.
    pub fn exhausted(&self) -> bool {
        self.remaining().is_zero()
    }

    /// True if there is at least `needed` time left.
    pub fn allows(&self, needed: Duration) -> bool {
        self.remaining() >= needed
    }

    /// A budget sharing this one's cancel flag, limited to `share` of the remaining time.
    pub fn slice(&self, share: f64) -> Budget {
        Budget {
            start: Instant::now(),
            limit: self.remaining().mul_f64(share.clamp(0.0, 1.0)),
            cancelled: Arc::clone(&self.cancelled),
        }
    }

    /// The same budget ending `margin` earlier (same start, same cancel flag): the part of
    /// the time a search may use when the rest is kept for finishing (evaluation, saving).
    pub fn reserving(&self, margin: Duration) -> Budget {
        Budget {
            start: self.start,
            limit: self.limit.saturating_sub(margin),
            cancelled: Arc::clone(&self.cancelled),
        }
    }

    /// A budget sharing this one's cancel flag but without a time limit: for work whose size
    /// must not depend on the clock (deterministic runs), which still stops when cancelled.
    pub fn uncapped(&self) -> Budget {
        Budget {
            start: Instant::now(),
            limit: UNLIMITED,
            cancelled: Arc::clone(&self.cancelled),
        }
    }

    /// Ask every holder of this budget to stop at its next check.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// True if [`Budget::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Why work under this budget stopped, for leaderboards and logs: `"cancelled"` after
    /// [`Budget::cancel`] (Ctrl-C), otherwise `"budget ran out"`.
    pub fn stop_reason(&self) -> &'static str {
        if self.is_cancelled() {
            "cancelled"
        } else {
            "budget ran out"
        }
    }

    /// The shared cancel flag, for signal handlers and other threads.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancelled)
    }
}

/// Parse a duration such as `60s`, `10m`, `1h`, `1h30m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> crate::Result<Duration> {
    let text = text.trim();
    let invalid = || {
        crate::Error::invalid(
            "duration",
            format!("`{text}`: expected a positive duration such as 90s, 10m, 1h or 1h30m"),
        )
    };
    if text.is_empty() {
        return Err(invalid());
    }
    if let Ok(secs) = text.parse::<f64>() {
        return if secs.is_finite() && secs > 0.0 {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(invalid())
        };
    }
    let mut total = 0.0_f64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86400.0,
            _ => return Err(invalid()),
        };
        let value: f64 = number.parse().map_err(|_| invalid())?;
        total += value * unit;
        number.clear();
    }
    if !number.is_empty() || total <= 0.0 || !total.is_finite() {
        return Err(invalid());
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse_duration("60s").ok(), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("10m").ok(), Some(Duration::from_secs(600)));
        assert_eq!(
            parse_duration("1h30m").ok(),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration("2.5").ok(),
            Some(Duration::from_millis(2500))
        );
    }

    #[test]
    fn rejects_zero_negative_and_garbage() {
        for bad in ["", "0", "-5", "5x", "m", "10m5", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_reserving_budget_ends_earlier_on_the_same_clock() {
        let budget = Budget::new(Duration::from_secs(10));
        let search = budget.reserving(Duration::from_secs(4));
        assert_eq!(search.limit(), Duration::from_secs(6));
        assert!(search.remaining() <= Duration::from_secs(6));
        assert!(budget.remaining() > Duration::from_secs(9));
        assert!(Budget::new(Duration::from_secs(1))
            .reserving(Duration::from_secs(5))
            .exhausted());
    }

    #[test]
    fn an_uncapped_budget_has_time_but_shares_the_cancel_flag() {
        let budget = Budget::new(Duration::ZERO);
        let uncapped = budget.uncapped();
        assert!(budget.exhausted() && !uncapped.exhausted());
        assert!(uncapped.is_unlimited() && !budget.is_unlimited());
        assert!(Budget::unlimited()
            .reserving(Duration::from_secs(60))
            .is_unlimited());
        budget.cancel();
        assert!(uncapped.is_cancelled() && uncapped.exhausted());
    }

    #[test]
    fn cancel_exhausts_every_slice() {
        let budget = Budget::new(Duration::from_secs(100));
        let slice = budget.slice(0.5);
        assert!(!slice.exhausted());
        budget.cancel();
        assert!(slice.exhausted());
        assert_eq!(budget.remaining(), Duration::ZERO);
    }
}
