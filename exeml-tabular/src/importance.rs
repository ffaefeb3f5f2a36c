//! Permutation feature importance: how much the model's score drops when one input column is
//! shuffled. Model-agnostic, so every family (and later ensembles) gets it, like AutoGluon's
//! `feature_importance` and scikit-learn's `permutation_importance`.

use crate::model::TabularModel;
use crate::table::Table;
use exeml_core::seed::rng;
use exeml_core::{Error, Result};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// The importance of one input column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureImportance {
    /// The column's name.
    pub column: String,
    /// Mean drop of the score (accuracy, or RMSE increase for regression) when it is shuffled.
    pub importance: f64,
    /// Standard deviation of the drop over the shuffles.
    pub stddev: f64,
    /// How many shuffles were averaged.
    pub shuffles: usize,
}

/// Permutation importance of every column the model uses, measured on labelled `table`,
/// most important first. `shuffles` ≥ 1 repetitions per column, seeded by `seed`.
pub fn permutation_importance(
    model: &TabularModel,
    table: &Table,
    shuffles: usize,
    seed: u64,
) -> Result<Vec<FeatureImportance>> {
    if shuffles == 0 {
        return Err(Error::invalid("shuffles", "must be at least 1"));
    }
    if table.n_rows() < 2 {
        return Err(Error::data(
            &table.source,
            "feature importance needs at least 2 labelled rows",
        ));
    }
    // Higher is better for the loss we report: accuracy as is, RMSE negated.
    let score = |t: &Table| -> Result<f64> {
        let (metric, value) = model.evaluate(t)?.headline();
        Ok(if metric == "rmse" { -value } else { value })
    };
    let base = score(table)?;
    let used: Vec<&str> = model
        .manifest
        .columns
        .iter()
        .filter(|c| c.dropped.is_none())
        .map(|c| c.name.as_str())
        .collect();
    let mut out = Vec::with_capacity(used.len());
    for (stream, name) in used.iter().enumerate() {
        let position = table
            .columns
            .iter()
            .position(|c| c.name == *name)
            .ok_or_else(|| Error::data(&table.source, format!("no column `{name}`")))?;
        let mut generator = rng(seed, 1_000 + stream as u64);
        let mut drops = Vec::with_capacity(shuffles);
        for _ in 0..shuffles {
            let mut order: Vec<usize> = (0..table.n_rows()).collect();
            order.shuffle(&mut generator);
            let mut permuted = table.clone();
            permuted.columns[position].values = table.columns[position].values.take(&order);
            drops.push(base - score(&permuted)?);
        }
        let mean = drops.iter().sum::<f64>() / shuffles as f64;
        let var = drops.iter().map(|d| (d - mean).powi(2)).sum::<f64>()
            / (shuffles.saturating_sub(1).max(1)) as f64;
        out.push(FeatureImportance {
            column: (*name).to_string(),
            importance: mean,
            stddev: var.sqrt(),
            shuffles,
        });
    }
    out.sort_by(|a, b| b.importance.total_cmp(&a.importance));
    Ok(out)
}
