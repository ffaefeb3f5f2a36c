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
/// Call [`MedianStopping::begin`] before a trial and [`MedianStopping::end`] after it; the
/// trainer calls [`TrialMonitor::report`] in between.
#[derive(Debug)]
pub struct MedianStopping {
    /// Steps always allowed before a trial can be stopped.
    grace_steps: usize,
    /// Finished trials needed before any trial is stopped.
    min_trials: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Running best loss per step of each finished trial.
    finished: Vec<Vec<f64>>,
    /// Running best loss per step of the trial in progress.
    current: Vec<f64>,
    /// The step at which the current trial was stopped, if it was.
    stopped_at: Option<usize>,
}

impl MedianStopping {
    /// A rule that lets every trial run `grace_steps` steps, and stops none until `min_trials`
    /// trials have finished.
    pub fn new(grace_steps: usize, min_trials: usize) -> Self {
        MedianStopping {
            grace_steps,
            min_trials,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the curves half-written (each update is
        // one push), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new trial starts.
    pub fn begin(&self) {
        let mut state = self.state();
        state.current.clear();
        state.stopped_at = None;
    }

    /// The trial ended: its curve joins the comparison (a trial that reported nothing, e.g. one
    /// that failed, does not). Returns the step it was stopped at, if it was.
    pub fn end(&self) -> Option<usize> {
        let mut state = self.state();
        let curve = std::mem::take(&mut state.current);
        if !curve.is_empty() {
            state.finished.push(curve);
        }
        state.stopped_at.take()
    }
}

impl TrialMonitor for MedianStopping {
    fn report(&self, step: usize, loss: f64) -> bool {
        let mut state = self.state();
        let best = state
            .current
            .last()
            .map_or(loss, |&b| if loss < b { loss } else { b });
        // Steps are 1, 2, …: a gap (never expected) repeats the last best.
        while state.current.len() < step {
            state.current.push(best);
        }
        if let Some(slot) = state.current.get_mut(step.saturating_sub(1)) {
            *slot = best;
        }
        if !best.is_finite() {
            // A loss that never became a number: nothing to gain from more steps.
            let go_on = step <= self.grace_steps;
            if !go_on {
                state.stopped_at = Some(step);
            }
            return go_on;
        }
        if step <= self.grace_steps || state.finished.len() < self.min_trials {
            return true;
        }
        let mut at_step: Vec<f64> = state
            .finished
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
        let go_on = best <= median;
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
        rule.begin();
        for step in 1..=steps {
            if !rule.report(step, curve(step)) {
                break;
            }
        }
        rule.end()
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
        rule.begin();
        assert!(rule.report(1, f64::NAN), "within the grace steps");
        assert!(!rule.report(2, f64::NAN));
    }
}
