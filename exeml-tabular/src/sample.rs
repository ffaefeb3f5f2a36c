//! The rows the search fits on for a large table: a seeded, stratified sample, so that many
//! configurations can be tried in the budget; the chosen model is then refitted on every row
//! (FLAML and AutoGluon also search on samples of large data).

use crate::family::Problem;
use exeml_core::split::{quantile_strata, stratified_split};
use exeml_core::{ProblemType, SplitSpec, Usage};

/// Feature cells (rows × used columns) a trial's training part holds at most by default:
/// 200,000 rows of 100 columns, 2 million of 10.
pub const SEARCH_CELLS: usize = 20_000_000;
/// Fewest training rows the default sample keeps, however wide the table.
pub const MIN_SEARCH_ROWS: usize = 20_000;
/// Fewest training rows a caller may ask the search to use.
pub const MIN_SEARCH_ROWS_ASKED: usize = 100;
/// Most validation rows the search scores on (the accuracy of a 50,000-row estimate is
/// within ±0.5 % at 95 % confidence).
pub const SEARCH_VALID_ROWS: usize = 50_000;

/// Training rows the search fits on by default for a table with `used_columns` features.
pub fn default_search_rows(used_columns: usize) -> usize {
    (SEARCH_CELLS / used_columns.max(1)).max(MIN_SEARCH_ROWS)
}

/// At most `cap` of `rows` (indices into `y`), stratified by class (by target decile for
/// regression) and seeded; all of them, in order, when there are no more than `cap`.
pub fn stratified_sample(
    rows: &[usize],
    y: &[f64],
    problem: Problem,
    cap: usize,
    seed: u64,
) -> Vec<usize> {
    if rows.len() <= cap || cap == 0 {
        return rows.to_vec();
    }
    let targets: Vec<f64> = rows.iter().map(|&r| y[r]).collect();
    let strata: Vec<usize> = if problem.kind == ProblemType::Regression {
        quantile_strata(&targets, 10)
    } else {
        // Class indices; a missing label (never trained on) gets its own stratum.
        targets
            .iter()
            .map(|&t| if t.is_nan() { usize::MAX } else { t as usize })
            .collect()
    };
    let spec = SplitSpec {
        train_ratio: cap as f64 / rows.len() as f64,
        seed,
    };
    stratified_split(&strata, spec)
        .iter()
        .zip(rows)
        .filter(|(usage, _)| **usage == Usage::Train)
        .map(|(_, &r)| r)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_parts_are_kept_whole_and_large_ones_sampled_by_class() {
        let problem = Problem {
            kind: ProblemType::Binary,
            n_classes: 2,
        };
        // 10 % positives.
        let y: Vec<f64> = (0..10_000)
            .map(|i| f64::from(u8::from(i % 10 == 0)))
            .collect();
        let rows: Vec<usize> = (0..10_000).collect();
        assert_eq!(stratified_sample(&rows, &y, problem, 10_000, 0), rows);
        let sample = stratified_sample(&rows, &y, problem, 2_000, 0);
        assert!((1_990..=2_010).contains(&sample.len()), "{}", sample.len());
        let positives = sample.iter().filter(|&&r| y[r] > 0.0).count();
        assert!(
            (195..=205).contains(&positives),
            "class shares kept: {positives}"
        );
        assert!(sample.windows(2).all(|w| w[0] < w[1]), "row order kept");
        assert_eq!(sample, stratified_sample(&rows, &y, problem, 2_000, 0));
        assert_ne!(sample, stratified_sample(&rows, &y, problem, 2_000, 1));
    }

    #[test]
    fn regression_samples_cover_the_target_range() {
        let problem = Problem {
            kind: ProblemType::Regression,
            n_classes: 1,
        };
        let y: Vec<f64> = (0..5_000).map(f64::from).collect();
        let rows: Vec<usize> = (0..5_000).collect();
        let sample = stratified_sample(&rows, &y, problem, 500, 3);
        let top = sample.iter().filter(|&&r| y[r] >= 4_500.0).count();
        assert!((45..=55).contains(&top), "{top}");
    }

    #[test]
    fn the_default_sample_scales_with_the_width() {
        assert_eq!(default_search_rows(100), 200_000);
        assert_eq!(default_search_rows(10), 2_000_000);
        assert_eq!(default_search_rows(5_000), MIN_SEARCH_ROWS);
        assert_eq!(default_search_rows(0), SEARCH_CELLS);
    }
}
