//! Early stopping of bad trials: a trial that reports its validation loss as it trains (epochs
//! of a network, rounds) is stopped once it is clearly worse than the trials before it, so the
//! budget goes to configurations that can win.
//!
//! The rule is the median stopping rule of Google Vizier (Golovin et al. 2017), also in Optuna's
//! `MedianPruner` and Ray Tune: at step `t`, a trial whose best loss so far is worse than the
//! median of the earlier trials' best losses at step `t` is stopped. A curve that ended before
//! `t` counts with its final best. Written here because it is a few lines over the search's own
//! records; the pruners of Optuna and Ray are Python.

use std::sync::Mutex;

/// Told a trial's validation loss as it trains; says whether to go on.
pub trait TrialMonitor: Send + Sync {
    /// The validation loss (lower is better) after `step` (1, 2, …); `false` means stop now and
    /// keep the best model so far.
    fn report(&self, step: usize, loss: f64) -> bool;
}

/// A monitor that never stops a trial (refits, unit tests, searches without pruning).
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverStop;

impl TrialMonitor for NeverStop {
    fn report(&self, _step: usize, _loss: f64) -> bool {
        true
    }
}

/// The median stopping rule over the trials of one family (see the module docs).
///
/// Each trial gets its own monitor from [`MedianStopping::trial`], which the trainer reports
/// to and [`StoppingTrial::end`] closes; trials of a family may run at the same time (each is
/// compared with the curves of the trials that finished before it reported).
#[derive(Debug)]
pub struct MedianStopping {
    /// Steps always allowed before a trial can be stopped.
    grace_steps: usize,
    /// Finished trials needed before any trial is stopped.
    min_trials: usize,
    /// Running best loss per step of each finished trial.
    finished: Mutex<Vec<Vec<f64>>>,
}

/// One trial's monitor under a [`MedianStopping`] rule.
#[derive(Debug)]
pub struct StoppingTrial<'a> {
    rule: &'a MedianStopping,
    state: Mutex<Curve>,
}

#[derive(Debug, Default)]
struct Curve {
    /// Running best loss per step of this trial.
    best: Vec<f64>,
    /// The step at which this trial was stopped, if it was.
    stopped_at: Option<usize>,
}

/// A lock that a panic elsewhere cannot make unusable: every update under these locks is one
/// push or store, so a poisoned lock still holds consistent data.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MedianStopping {
    /// A rule that lets every trial run `grace_steps` steps, and stops none until `min_trials`
    /// trials have finished.
    pub fn new(grace_steps: usize, min_trials: usize) -> Self {
        MedianStopping {
            grace_steps,
            min_trials,
            finished: Mutex::new(Vec::new()),
        }
    }

    /// The monitor of a new trial.
    pub fn trial(&self) -> StoppingTrial<'_> {
        StoppingTrial {
            rule: self,
            state: Mutex::new(Curve::default()),
        }
    }

    /// Whether a trial whose best loss after `step` is `best` goes on.
    fn goes_on(&self, step: usize, best: f64) -> bool {
        if !best.is_finite() {
            // A loss that never became a number: nothing to gain from more steps.
            return step <= self.grace_steps;
        }
        let finished = lock(&self.finished);
        if step <= self.grace_steps || finished.len() < self.min_trials {
            return true;
        }
        let mut at_step: Vec<f64> = finished
            .iter()
            .filter_map(|curve| curve.get(step - 1).or(curve.last()).copied())
            .filter(|v| v.is_finite())
            .collect();
        if at_step.is_empty() {
            return true;
        }
        at_step.sort_by(f64::total_cmp);
        let median = if at_step.len() % 2 == 1 {
            at_step[at_step.len() / 2]
        } else {
            (at_step[at_step.len() / 2 - 1] + at_step[at_step.len() / 2]) / 2.0
        };
        best <= median
    }
}

impl StoppingTrial<'_> {
    /// The trial ended: its curve joins the comparison (a trial that reported nothing, e.g. one
    /// that failed, does not). Returns the step it was stopped at, if it was.
    pub fn end(self) -> Option<usize> {
        let curve = self
            .state
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !curve.best.is_empty() {
            lock(&self.rule.finished).push(curve.best);
        }
        curve.stopped_at
    }
}

impl TrialMonitor for StoppingTrial<'_> {
    fn report(&self, step: usize, loss: f64) -> bool {
        let mut state = lock(&self.state);
        let best = state
            .best
            .last()
            .map_or(loss, |&b| if loss < b { loss } else { b });
        // Steps are 1, 2, …: a gap (never expected) repeats the last best.
        while state.best.len() < step {
            state.best.push(best);
        }
        if let Some(slot) = state.best.get_mut(step.saturating_sub(1)) {
            *slot = best;
        }
        let go_on = self.rule.goes_on(step, best);
        if !go_on {
            state.stopped_at = Some(step);
        }
        go_on
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run a trial whose loss after step `s` is `curve(s)`; returns where it was stopped.
    fn run(rule: &MedianStopping, steps: usize, curve: impl Fn(usize) -> f64) -> Option<usize> {
        let trial = rule.trial();
        for step in 1..=steps {
            if !trial.report(step, curve(step)) {
                break;
            }
        }
        trial.end()
    }

    #[test]
    fn a_trial_worse_than_the_median_is_stopped_after_the_grace_steps() {
        let rule = MedianStopping::new(3, 2);
        // Two good trials, then a clearly worse one.
        assert_eq!(run(&rule, 20, |s| 1.0 / s as f64), None);
        assert_eq!(run(&rule, 20, |s| 0.9 / s as f64), None);
        assert_eq!(run(&rule, 20, |s| 5.0 / s as f64), Some(4));
        // A better one runs to the end.
        assert_eq!(run(&rule, 20, |s| 0.5 / s as f64), None);
    }

    #[test]
    fn nothing_is_stopped_before_enough_trials_have_finished() {
        let rule = MedianStopping::new(1, 3);
        assert_eq!(run(&rule, 10, |_| 1.0), None);
        assert_eq!(run(&rule, 10, |_| 9.0), None);
        assert_eq!(run(&rule, 10, |_| 9.0), None);
        // Now three curves (1, 9, 9): the median is 9, so 9.5 is stopped, 2 is not.
        assert_eq!(run(&rule, 10, |_| 9.5), Some(2));
        assert_eq!(run(&rule, 10, |_| 2.0), None);
    }

    #[test]
    fn short_curves_count_with_their_final_best_and_the_best_so_far_is_compared() {
        let rule = MedianStopping::new(0, 1);
        // A finished trial that stopped at step 2 with loss 1.0.
        assert_eq!(run(&rule, 2, |s| if s == 1 { 3.0 } else { 1.0 }), None);
        // At step 5 the median is still 1.0: a trial that reached 0.8 earlier and wobbles up
        // to 1.2 keeps its best 0.8 and goes on.
        assert_eq!(run(&rule, 6, |s| if s == 1 { 0.8 } else { 1.2 }), None);
        let never = NeverStop;
        assert!(never.report(1_000, f64::INFINITY));
    }

    #[test]
    fn a_non_finite_loss_stops_the_trial_after_the_grace_steps() {
        let rule = MedianStopping::new(1, 5);
        let trial = rule.trial();
        assert!(trial.report(1, f64::NAN), "within the grace steps");
        assert!(!trial.report(2, f64::NAN));
        assert_eq!(trial.end(), Some(2));
    }

    #[test]
    fn trials_running_at_once_keep_their_own_curves() {
        let rule = MedianStopping::new(0, 2);
        assert_eq!(run(&rule, 4, |_| 1.0), None);
        assert_eq!(run(&rule, 4, |_| 2.0), None);
        // Two trials at once: a bad one and a good one report in turn.
        let (bad, good) = (rule.trial(), rule.trial());
        assert!(good.report(1, 0.5));
        assert!(!bad.report(1, 9.0), "9 is worse than the median 1.5");
        assert!(good.report(2, 0.4));
        assert_eq!(bad.end(), Some(1));
        assert_eq!(good.end(), None);
        // Both curves joined the comparison: the median at step 1 is now 1.5 of (0.5, 1, 2, 9).
        assert_eq!(run(&rule, 2, |_| 1.6), Some(1));
        assert_eq!(run(&rule, 2, |_| 1.4), None);
    }
}
