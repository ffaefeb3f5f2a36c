//! Quantile transform of a numeric column (scikit-learn's `QuantileTransformer` with a uniform
//! output): each value becomes its share of training values below it, rescaled to unit
//! variance. Skewed columns and outliers then no longer dominate linear models, k-NN distances
//! or a network's first layer.

use serde::{Deserialize, Serialize};

/// Most knots kept per column.
const KNOTS: usize = 101;

/// Sorted knot values and the share of training values at or below each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileMap {
    /// Increasing knot values.
    pub knots: Vec<f64>,
    /// The quantile level (0..1) of each knot, non-decreasing.
    pub levels: Vec<f64>,
}

impl QuantileMap {
    /// Fit on a column's training values (`NaN` ignored); `None` when it has none.
    pub fn fit(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let last = sorted.len() - 1;
        let mut knots: Vec<f64> = Vec::with_capacity(KNOTS);
        let mut levels: Vec<f64> = Vec::with_capacity(KNOTS);
        let mut repeats = 0.0;
        for k in 0..KNOTS {
            let level = k as f64 / (KNOTS - 1) as f64;
            let value = sorted[(level * last as f64).round() as usize];
            // A value repeated over several knots (a discrete column) gets their mean level,
            // as scikit-learn does by interpolating both ways.
            if knots.last() == Some(&value) {
                repeats += 1.0;
                if let Some(l) = levels.last_mut() {
                    *l += (level - *l) / repeats;
                }
            } else {
                knots.push(value);
                levels.push(level);
                repeats = 1.0;
            }
        }
        Some(QuantileMap { knots, levels })
    }

    /// The transformed value: uniform on `[-√3, √3]` for training-like data; `NaN` stays `NaN`.
    pub fn apply(&self, x: f64) -> f64 {
        if x.is_nan() {
            return x;
        }
        let level = match self.knots.partition_point(|&k| k <= x) {
            0 => self.levels[0],
            i if i == self.knots.len() => self.levels[i - 1],
            i => {
                let (k0, k1) = (self.knots[i - 1], self.knots[i]);
                let (l0, l1) = (self.levels[i - 1], self.levels[i]);
                l0 + (l1 - l0) * (x - k0) / (k1 - k0)
            }
        };
        (level - 0.5) * 12f64.sqrt()
    }

    /// Whether the stored knots can be used (checked when a saved pipeline is loaded).
    pub fn is_consistent(&self) -> bool {
        !self.knots.is_empty()
            && self.knots.len() == self.levels.len()
            && self.knots.windows(2).all(|w| w[0] < w[1])
            && self.levels.windows(2).all(|w| w[0] <= w[1])
            && self.knots.iter().chain(&self.levels).all(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skewed_values_become_evenly_spread_and_order_is_kept() {
        let values: Vec<f64> = (0..1000).map(|i| (i as f64 / 50.0).exp()).collect();
        let map = QuantileMap::fit(&values).expect("fit");
        assert!(map.is_consistent());
        let out: Vec<f64> = values.iter().map(|&v| map.apply(v)).collect();
        assert!(out.windows(2).all(|w| w[0] <= w[1]));
        let mean = out.iter().sum::<f64>() / out.len() as f64;
        let var = out.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / out.len() as f64;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
        assert_eq!(map.apply(-1e9), -(3f64.sqrt()), "below the range clamps");
        assert_eq!(map.apply(1e300), 3f64.sqrt(), "above the range clamps");
        assert!(map.apply(f64::NAN).is_nan());
    }

    #[test]
    fn repeated_values_share_one_knot() {
        let values = [0.0, 0.0, 0.0, 1.0];
        let map = QuantileMap::fit(&values).expect("fit");
        assert_eq!(map.knots, vec![0.0, 1.0]);
        assert!(map.is_consistent());
        assert!(map.apply(0.0) < map.apply(1.0));
        assert!(QuantileMap::fit(&[f64::NAN]).is_none());
    }
}
