//! k-fold bagging of the chosen configurations, as AutoGluon's bagged models: every
//! configuration is trained k times, each time on all rows but one fold, and the final model
//! averages the k fits. Each row is then predicted by the fits that did not see it, so the
//! out-of-fold predictions of all rows choose the ensemble weights and give the validation
//! metrics — instead of one 20 % split, which on a few hundred rows moves by a point per row.

use crate::family::Problem;
use exeml_core::{Preference, ProblemType};
use rand::seq::SliceRandom;

/// The random stream of the fold assignment (see `exeml_core::seed`).
const BAGGING_STREAM: u64 = 0xba9;

/// Share of the time limit the search leaves for bagging when it is planned (the search on
/// small tables usually ends earlier by itself, leaving more).
pub const BUDGET_SHARE: f64 = 0.2;

/// Most training + validation rows bagged under `balance` (beyond it one split is large enough
/// to choose on, and k fits cost more than they return).
pub const BALANCE_MAX_ROWS: usize = 20_000;

/// Folds for a run: `asked` when the user set it (0 or 1: no bagging); else `None` (no
/// bagging) for `performance_first`, which keeps one fast model, and for `balance` on more than
/// [`BALANCE_MAX_ROWS`] rows, 5 otherwise. Never more folds than a tenth of the rows.
pub fn folds(preference: Preference, rows: usize, asked: Option<usize>) -> Option<usize> {
    match (asked, preference) {
        (Some(k), _) => (k >= 2).then_some(k),
        (None, Preference::PerformanceFirst) => None,
        (None, Preference::Balance) => (rows <= BALANCE_MAX_ROWS).then_some(5),
        (None, Preference::AccuracyFirst) => Some(5),
    }
    .filter(|&k| rows >= 10 * k)
}

/// Whether a bagged model is refitted on all rows by default (see `refit_full` in
/// `TabularPredictor`): under `performance_first`, whose bagging the user asked for, and
/// under `balance`; `accuracy_first` keeps the k fits of each configuration.
pub fn refit_full_by_default(preference: Preference) -> bool {
    preference != Preference::AccuracyFirst
}

/// Whether a stacking layer is tried over a bagged model by default (see `stack` in
/// `TabularPredictor`): under `accuracy_first`, which prefers the larger model.
pub fn stack_by_default(preference: Preference) -> bool {
    preference == Preference::AccuracyFirst
}

/// The fold (`0..folds`) of each row, seeded: each class's rows (regression: rows in order of
/// their value) are shuffled and dealt round-robin, so every fold has the class mix (or the
/// spread of values) of the whole.
pub fn fold_ids(y: &[f64], problem: Problem, folds: usize, seed: u64) -> Vec<usize> {
    let mut rng = exeml_core::seed::rng(seed, BAGGING_STREAM);
    let mut order: Vec<usize> = (0..y.len()).collect();
    order.shuffle(&mut rng);
    // A stable sort by class keeps the shuffle inside each class; by value, ties stay shuffled.
    order.sort_by(|&a, &b| y[a].total_cmp(&y[b]));
    let mut fold = vec![0; y.len()];
    if problem.kind == ProblemType::Regression {
        for (position, &row) in order.iter().enumerate() {
            fold[row] = position % folds;
        }
    } else {
        // Deal each class from a rotating start so that small classes do not all land in fold 0.
        let mut start = 0;
        let mut position = 0;
        while position < order.len() {
            let class = y[order[position]];
            let mut i = 0;
            while position < order.len() && y[order[position]] == class {
                fold[order[position]] = (start + i) % folds;
                i += 1;
                position += 1;
            }
            start = (start + i) % folds;
        }
    }
    fold
}

/// Seconds k fits of the chosen configurations should take: each fit sees `(k − 1) / k` of
/// `rows`, and the search's fit of each took `fit_secs` on `searched_rows` (fit time grows
/// about linearly with rows), with a third more for the features and predictions.
pub fn estimated_secs(fit_secs: &[f64], folds: usize, rows: usize, searched_rows: usize) -> f64 {
    let per_fold_rows = rows as f64 * (folds - 1) as f64 / folds as f64;
    let scale = per_fold_rows / searched_rows.max(1) as f64;
    fit_secs.iter().sum::<f64>() * scale * folds as f64 * 1.33
}

/// Share of the time left that bagging the chosen configurations and the extra ones may take
/// together (the rest is slack for estimation error and the refit that replaces a failed bag).
pub const WIDENED_SHARE: f64 = 0.9;

/// Which `extra_secs` (search fit times of further configurations, in order of preference) can
/// be bagged besides the chosen ones (`chosen_secs`) in `allowed_secs`: taken greedily in order,
/// each while the estimate of all taken so far stays within the time (see [`estimated_secs`]).
pub fn affordable_extras(
    chosen_secs: &[f64],
    extra_secs: &[f64],
    (folds, rows, searched_rows): (usize, usize, usize),
    allowed_secs: f64,
) -> Vec<usize> {
    let mut taken_secs = chosen_secs.to_vec();
    let mut taken = Vec::new();
    for (i, &secs) in extra_secs.iter().enumerate() {
        taken_secs.push(secs);
        if estimated_secs(&taken_secs, folds, rows, searched_rows) <= allowed_secs {
            taken.push(i);
        } else {
            taken_secs.pop();
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTICLASS: Problem = Problem {
        kind: ProblemType::Multiclass,
        n_classes: 3,
    };

    #[test]
    fn folds_keep_each_class_mix_and_are_seeded() {
        let y: Vec<f64> = (0..103).map(|i| (i % 3) as f64).collect();
        let folds = fold_ids(&y, MULTICLASS, 5, 7);
        assert_eq!(folds, fold_ids(&y, MULTICLASS, 5, 7));
        assert_ne!(folds, fold_ids(&y, MULTICLASS, 5, 8));
        for f in 0..5 {
            let members: Vec<usize> = (0..y.len()).filter(|&r| folds[r] == f).collect();
            assert!(
                (20..=21).contains(&members.len()),
                "fold {f}: {}",
                members.len()
            );
            for class in 0..3 {
                let n = members.iter().filter(|&&r| y[r] == class as f64).count();
                assert!((6..=8).contains(&n), "fold {f} class {class}: {n}");
            }
        }
    }

    #[test]
    fn regression_folds_spread_the_values() {
        let y: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let problem = Problem {
            kind: ProblemType::Regression,
            n_classes: 1,
        };
        let folds = fold_ids(&y, problem, 5, 1);
        for f in 0..5 {
            let values: Vec<f64> = (0..100).filter(|&r| folds[r] == f).map(|r| y[r]).collect();
            assert_eq!(values.len(), 20);
            let mean = values.iter().sum::<f64>() / 20.0;
            assert!((mean - 49.5).abs() < 3.0, "fold {f} mean {mean}");
        }
    }

    #[test]
    fn bagging_depends_on_the_preference_and_the_rows() {
        assert_eq!(folds(Preference::PerformanceFirst, 500, None), None);
        assert_eq!(folds(Preference::Balance, 500, None), Some(5));
        assert_eq!(folds(Preference::Balance, BALANCE_MAX_ROWS + 1, None), None);
        assert_eq!(folds(Preference::AccuracyFirst, 1_000_000, None), Some(5));
        assert_eq!(folds(Preference::AccuracyFirst, 40, None), None);
        assert_eq!(folds(Preference::AccuracyFirst, 500, Some(0)), None);
        assert_eq!(folds(Preference::PerformanceFirst, 500, Some(8)), Some(8));
        assert_eq!(folds(Preference::Balance, 50, Some(8)), None);
        let secs = estimated_secs(&[1.0, 2.0], 5, 1000, 800);
        assert!((secs - 3.0 * 5.0 * 1.33).abs() < 1e-9);
    }

    #[test]
    fn extras_are_bagged_only_while_the_time_covers_them() {
        // 5 folds of 1,000 rows after a search on 800: each search second costs 6.65 s.
        let shape = (5, 1000, 800);
        assert_eq!(
            affordable_extras(&[1.0], &[0.5, 2.0, 0.5], shape, 14.0),
            [0, 2]
        );
        assert_eq!(affordable_extras(&[1.0], &[0.5, 2.0], shape, 30.0), [0, 1]);
        assert!(affordable_extras(&[2.0], &[0.5], shape, 10.0).is_empty());
    }
}
