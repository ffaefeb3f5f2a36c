//! The seeded, stratified train/validation split of a dataset version.

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Which part of a dataset version a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Usage {
    /// Used to fit the model.
    Train,
    /// Held out to choose and evaluate the model.
    Validation,
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Usage::Train => "train",
            Usage::Validation => "validation",
        })
    }
}

/// How to split: the training ratio in (0, 1) and the seed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    /// Share of samples used for training (SPEC default 0.8).
    pub train_ratio: f64,
    /// Seed of the shuffle.
    pub seed: u64,
}

impl Default for SplitSpec {
    fn default() -> Self {
        SplitSpec {
            train_ratio: 0.8,
            seed: 0,
        }
    }
}

impl SplitSpec {
    /// Validate the ratio once, so splitting never sees an invalid value.
    pub fn check(self) -> crate::Result<Self> {
        if self.train_ratio > 0.0 && self.train_ratio < 1.0 {
            Ok(self)
        } else {
            Err(crate::Error::invalid(
                "train ratio",
                format!("{} is not in (0, 1)", self.train_ratio),
            ))
        }
    }
}

/// Split samples by their stratum (the label; `None` for regression targets binned by the caller or
/// unlabelled data) so each stratum keeps the training ratio. Every stratum with at least two samples
/// gets at least one sample in each part. Deterministic for a given seed and input order.
pub fn stratified_split<S: Ord + Clone>(strata: &[S], spec: SplitSpec) -> Vec<Usage> {
    let mut by_stratum: BTreeMap<S, Vec<usize>> = BTreeMap::new();
    for (index, stratum) in strata.iter().enumerate() {
        by_stratum.entry(stratum.clone()).or_default().push(index);
    }
    let mut rng = crate::seed::rng(spec.seed, 1);
    let mut usage = vec![Usage::Train; strata.len()];
    for indices in by_stratum.values_mut() {
        indices.shuffle(&mut rng);
        let n = indices.len();
        if n < 2 {
            continue;
        }
        let n_valid = ((n as f64) * (1.0 - spec.train_ratio)).round() as usize;
        let n_valid = n_valid.clamp(1, n - 1);
        for &i in &indices[..n_valid] {
            usage[i] = Usage::Validation;
        }
    }
    usage
}

/// Strata for a continuous target: its quantile bin among `bins` equal-count bins, so that a
/// regression split also covers the whole range of the target.
pub fn quantile_strata(values: &[f64], bins: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut strata = vec![0; values.len()];
    let bins = bins.max(1);
    for (rank, &i) in order.iter().enumerate() {
        strata[i] = rank * bins / values.len().max(1);
    }
    strata
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_ratio_in_every_class() {
        let labels: Vec<&str> = (0..100)
            .map(|i| if i % 4 == 0 { "rare" } else { "common" })
            .collect();
        let usage = stratified_split(
            &labels,
            SplitSpec {
                train_ratio: 0.8,
                seed: 3,
            },
        );
        let valid = |l: &str| {
            labels
                .iter()
                .zip(&usage)
                .filter(|(x, u)| **x == l && **u == Usage::Validation)
                .count()
        };
        assert_eq!(valid("rare"), 5);
        assert_eq!(valid("common"), 15);
    }

    #[test]
    fn same_seed_same_split_other_seed_other_split() {
        let labels: Vec<u8> = (0..50).map(|i| i % 2).collect();
        let spec = SplitSpec {
            train_ratio: 0.7,
            seed: 1,
        };
        assert_eq!(
            stratified_split(&labels, spec),
            stratified_split(&labels, spec)
        );
        let other = SplitSpec { seed: 2, ..spec };
        assert_ne!(
            stratified_split(&labels, spec),
            stratified_split(&labels, other)
        );
    }

    #[test]
    fn tiny_classes_get_both_parts() {
        let labels = ["a", "a", "b", "b", "b"];
        let usage = stratified_split(
            &labels,
            SplitSpec {
                train_ratio: 0.9,
                seed: 0,
            },
        );
        for class in ["a", "b"] {
            let parts: Vec<_> = labels
                .iter()
                .zip(&usage)
                .filter(|(l, _)| **l == class)
                .map(|(_, u)| *u)
                .collect();
            assert!(parts.contains(&Usage::Train) && parts.contains(&Usage::Validation));
        }
    }

    #[test]
    fn rejects_ratio_outside_open_interval() {
        for ratio in [0.0, 1.0, -0.1, 1.5, f64::NAN] {
            assert!(SplitSpec {
                train_ratio: ratio,
                seed: 0
            }
            .check()
            .is_err());
        }
    }
}
