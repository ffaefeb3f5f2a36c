//! Feature binning: each feature's values are cut into at most [`MAX_VALUE_BINS`] bins of
//! about equal row counts, so that a split search scans a small histogram instead of sorting
//! rows. Bin 0 holds missing values; a value `v` falls in bin `1 + #{cuts < v}`, so a split
//! "bins `1..=b` go left" is the raw test `v <= cuts[b - 1]`.

use crate::features::Matrix;
use rayon::prelude::*;

/// Most bins for present values (one more, bin 0, holds the missing ones), as LightGBM's
/// default `max_bin`.
pub const MAX_VALUE_BINS: usize = 255;
/// The bin of a missing value.
pub const MISSING_BIN: u8 = 0;
/// Rows read to place the cuts of a feature (evenly spaced through the column).
const CUT_SAMPLE_ROWS: usize = 200_000;

/// Where each feature's bins end.
#[derive(Debug, Clone, PartialEq)]
pub struct BinCuts {
    /// Per feature, ascending thresholds: a value belongs to bin `1 + #{cuts < value}`.
    pub cuts: Vec<Vec<f64>>,
    /// Per feature, whether it holds category codes binned one code per bin, so that trees
    /// split it into sets of categories (see [`BinCuts::fit_with_categories`]).
    pub categorical: Vec<bool>,
}

/// Category codes a set split can name: `0..MAX_CODES` (the tree encoding keeps at most 254
/// levels, another level and missing values).
pub const MAX_CODES: usize = 256;

/// A matrix of bin indices in column-major order.
#[derive(Debug, Clone)]
pub struct Binned {
    /// `bins[c * rows + r]` is the bin of feature `c` in row `r`.
    pub bins: Vec<u8>,
    /// Number of rows.
    pub rows: usize,
    /// Number of features.
    pub cols: usize,
}

impl Binned {
    /// Feature `c`'s bins.
    pub fn column(&self, c: usize) -> &[u8] {
        &self.bins[c * self.rows..(c + 1) * self.rows]
    }
}

impl BinCuts {
    /// Place the cuts of every feature of `x`: at most `max_value_bins` (≤ 255) per feature,
    /// each holding at least `min_rows_in_bin` rows where the values allow (LightGBM's
    /// `min_data_in_bin`: fewer, fuller bins on small data, where a bin per distinct value
    /// would make small leaves search mostly empty bins).
    pub fn fit(x: &Matrix, max_value_bins: usize, min_rows_in_bin: usize) -> Self {
        Self::fit_with_categories(x, max_value_bins, min_rows_in_bin, &[])
    }

    /// As [`BinCuts::fit`], but the features marked in `categories` (category codes: whole
    /// numbers in `0..MAX_CODES`) get one bin per code, however few rows it has, so that a
    /// split can send any set of them left. A marked feature whose values are not such codes
    /// is binned as a number.
    pub fn fit_with_categories(
        x: &Matrix,
        max_value_bins: usize,
        min_rows_in_bin: usize,
        categories: &[bool],
    ) -> Self {
        let max_value_bins = max_value_bins.clamp(2, MAX_VALUE_BINS);
        let (cuts, categorical) = (0..x.cols)
            .into_par_iter()
            .map(|c| {
                let column = x.column(c);
                if categories.get(c).copied().unwrap_or(false) {
                    if let Some(cuts) = code_cuts(column) {
                        return (cuts, true);
                    }
                }
                (column_cuts(column, max_value_bins, min_rows_in_bin), false)
            })
            .unzip();
        BinCuts { cuts, categorical }
    }

    /// Whether feature `f` is split into sets of categories.
    pub fn is_categorical(&self, f: usize) -> bool {
        self.categorical.get(f).copied().unwrap_or(false)
    }

    /// The category codes in value bin `bin` of a categorical feature `f`: the whole numbers
    /// in `(cuts[bin - 2], cuts[bin - 1]]`, within `0..MAX_CODES` (one code for a code seen in
    /// training; codes never seen fall in the bin of a neighbour, as the raw values would).
    pub fn codes_of_bin(&self, f: usize, bin: usize) -> std::ops::Range<usize> {
        let cuts = &self.cuts[f];
        // Bin b holds v with cuts[b - 2] < v <= cuts[b - 1]; for whole numbers v that is
        // floor(cuts[b - 2]) + 1 ..= floor(cuts[b - 1]).
        let low = match bin {
            0 | 1 => 0,
            b => (cuts[b - 2].floor() + 1.0).max(0.0) as usize,
        };
        let high = match bin.checked_sub(1).and_then(|i| cuts.get(i)) {
            Some(&c) => (c.floor() + 1.0).max(0.0) as usize,
            None => MAX_CODES,
        };
        low.min(MAX_CODES)..high.min(MAX_CODES)
    }

    /// Bins for present values of feature `f` (a feature with one bin cannot be split).
    pub fn value_bins(&self, f: usize) -> usize {
        self.cuts[f].len() + 1
    }

    /// The raw threshold of the split "value bins `1..=bin` go left" on feature `f`.
    pub fn threshold(&self, f: usize, bin: usize) -> f64 {
        self.cuts[f][bin - 1]
    }

    /// The bin of value `v` of feature `f`.
    pub fn bin(&self, f: usize, v: f64) -> u8 {
        if v.is_nan() {
            MISSING_BIN
        } else {
            // At most 254 cuts, so the bin fits a u8.
            (1 + self.cuts[f].partition_point(|&c| c < v)) as u8
        }
    }

    /// Every value of `x` replaced by its bin.
    pub fn apply(&self, x: &Matrix) -> Binned {
        let mut bins = vec![0u8; x.rows * x.cols];
        if x.rows > 0 {
            bins.par_chunks_mut(x.rows)
                .enumerate()
                .for_each(|(c, out)| {
                    for (b, &v) in out.iter_mut().zip(x.column(c)) {
                        *b = self.bin(c, v);
                    }
                });
        }
        Binned {
            bins,
            rows: x.rows,
            cols: x.cols,
        }
    }
}

/// Cuts of one column: between neighbouring distinct values when there are few (merging
/// values until a bin has `min_rows_in_bin` rows),
/// else greedily so that each bin holds about the same number of rows (a value too frequent
/// for one bin gets a bin of its own).
fn column_cuts(column: &[f64], max_value_bins: usize, min_rows_in_bin: usize) -> Vec<f64> {
    let step = column.len().div_ceil(CUT_SAMPLE_ROWS).max(1);
    let mut values: Vec<f64> = column
        .iter()
        .step_by(step)
        .copied()
        .filter(|v| !v.is_nan())
        .collect();
    values.sort_by(f64::total_cmp);
    let mut distinct: Vec<(f64, usize)> = Vec::new();
    for v in values {
        match distinct.last_mut() {
            // -0.0 and 0.0 are one value for the comparisons of a split.
            Some((last, count)) if *last == v => *count += 1,
            _ => distinct.push((v, 1)),
        }
    }
    if distinct.len() <= 1 {
        return Vec::new();
    }
    // Rows of the sample a bin needs.
    let min_in_bin = min_rows_in_bin.div_ceil(step).max(1);
    if distinct.len() <= max_value_bins {
        let mut cuts = Vec::new();
        let mut in_bin = 0;
        for w in distinct.windows(2) {
            in_bin += w[0].1;
            if in_bin >= min_in_bin {
                cuts.push(between(w[0].0, w[1].0));
                in_bin = 0;
            }
        }
        return cuts;
    }
    let mut remaining: usize = distinct.iter().map(|d| d.1).sum();
    let mut cuts = Vec::with_capacity(max_value_bins - 1);
    let mut in_bin = 0;
    for (i, &(v, count)) in distinct.iter().enumerate() {
        let bins_left = max_value_bins - cuts.len();
        if bins_left <= 1 || i + 1 == distinct.len() {
            break;
        }
        let target = (remaining as f64 / bins_left as f64).max(min_in_bin as f64);
        in_bin += count;
        let next = distinct[i + 1].1;
        // Close the bin when it is full, or when adding the next value would overfill it more
        // than leaving it short does.
        if in_bin as f64 >= target || (in_bin + next) as f64 > target * 1.5 {
            cuts.push(between(v, distinct[i + 1].0));
            remaining -= in_bin;
            in_bin = 0;
        }
    }
    cuts
}

/// Cuts of a column of category codes: one bin per distinct code (a cut halfway between
/// neighbouring codes); `None` when the values are not whole numbers in `0..MAX_CODES` or there
/// are more distinct codes than value bins.
fn code_cuts(column: &[f64]) -> Option<Vec<f64>> {
    let mut seen = [false; MAX_CODES];
    for &v in column {
        if v.is_nan() {
            continue;
        }
        if !(v >= 0.0 && v < MAX_CODES as f64 && v.fract() == 0.0) {
            return None;
        }
        seen[v as usize] = true;
    }
    let codes: Vec<usize> = (0..MAX_CODES).filter(|&c| seen[c]).collect();
    if codes.len() > MAX_VALUE_BINS {
        return None;
    }
    Some(codes.windows(2).map(|w| w[0] as f64 + 0.5).collect())
}

/// A threshold between two neighbouring values `low < high` (the midpoint when it is finite
/// and strictly between them, else `low`).
fn between(low: f64, high: f64) -> f64 {
    let mid = low + (high - low) / 2.0;
    if mid.is_finite() && mid >= low && mid < high {
        mid
    } else {
        low
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(columns: &[&[f64]]) -> Matrix {
        Matrix {
            data: columns.iter().flat_map(|c| c.iter().copied()).collect(),
            rows: columns[0].len(),
            cols: columns.len(),
        }
    }

    #[test]
    fn few_values_get_a_bin_each_and_missing_values_bin_zero() {
        let x = matrix(&[&[3.0, 1.0, f64::NAN, 2.0, 1.0, f64::INFINITY]]);
        let cuts = BinCuts::fit(&x, 255, 1);
        assert_eq!(cuts.cuts[0], vec![1.5, 2.5, 3.0]);
        let binned = cuts.apply(&x);
        assert_eq!(binned.column(0), &[3, 1, 0, 2, 1, 4]);
        // The split "bins 1..=2 go left" is the raw test v <= 2.5.
        assert_eq!(cuts.threshold(0, 2), 2.5);
        assert_eq!(cuts.value_bins(0), 4);
        // With at least three rows per bin, 1, 1 and 2 share the first bin.
        assert_eq!(BinCuts::fit(&x, 255, 3).cuts[0], vec![2.5]);
    }

    #[test]
    fn category_codes_get_a_bin_each_whatever_their_counts() {
        let codes = [0.0, 0.0, 0.0, 0.0, 3.0, 7.0, f64::NAN, 3.0];
        let x = matrix(&[&codes, &codes, &[0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]);
        // Ten rows per bin merge numbers, never codes; a column that is not codes stays numeric.
        let cuts = BinCuts::fit_with_categories(&x, 255, 10, &[true, false, true]);
        assert_eq!(cuts.categorical, [true, false, false]);
        assert_eq!(cuts.cuts[0], vec![0.5, 3.5]);
        assert_eq!(cuts.apply(&x).column(0), &[1, 1, 1, 1, 2, 3, 0, 2]);
        // The codes each bin holds: unseen codes 1..=3 with 3, 4.. with 7.
        assert_eq!(cuts.codes_of_bin(0, 1), 0..1);
        assert_eq!(cuts.codes_of_bin(0, 2), 1..4);
        assert_eq!(cuts.codes_of_bin(0, 3), 4..MAX_CODES);
        assert!(cuts.is_categorical(0) && !cuts.is_categorical(1));
    }

    #[test]
    fn a_constant_or_empty_column_has_one_bin() {
        let x = matrix(&[&[7.0, 7.0, 7.0], &[f64::NAN, f64::NAN, f64::NAN]]);
        let cuts = BinCuts::fit(&x, 255, 1);
        assert_eq!(cuts.value_bins(0), 1);
        assert_eq!(cuts.value_bins(1), 1);
        assert_eq!(cuts.apply(&x).bins, vec![1, 1, 1, 0, 0, 0]);
    }

    #[test]
    fn many_values_are_cut_into_about_equal_bins() {
        let column: Vec<f64> = (0..10_000).map(|i| f64::from(i % 1000)).collect();
        let x = matrix(&[&column]);
        let cuts = BinCuts::fit(&x, 10, 1);
        assert_eq!(cuts.value_bins(0), 10);
        let binned = cuts.apply(&x);
        let mut counts = [0usize; 11];
        for &b in binned.column(0) {
            counts[b as usize] += 1;
        }
        assert_eq!(counts[0], 0);
        for &c in &counts[1..] {
            assert!((900..=1100).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn a_dominant_value_gets_a_bin_of_its_own() {
        let mut column = vec![0.0; 5000];
        column.extend((1..=5000).map(f64::from));
        let x = matrix(&[&column]);
        let cuts = BinCuts::fit(&x, 8, 1);
        let binned = cuts.apply(&x);
        let zeros = binned.column(0)[0];
        assert!(binned.column(0)[5000..].iter().all(|&b| b != zeros));
    }
}
