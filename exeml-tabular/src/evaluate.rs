//! Evaluation of a tabular model on labelled data: SPEC metrics plus the worst rows.

use exeml_core::metrics::{ClassificationReport, RegressionReport};
use exeml_core::{ProblemType, Result};
use serde::{Deserialize, Serialize};

/// Most bad cases listed in a report.
pub const MAX_BAD_CASES: usize = 100;

/// The metrics of one evaluation, by problem type (flattened into the report's JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Metrics {
    /// Accuracy, precision/recall/F1, confusion matrix, ROC AUC, log loss.
    Classification(ClassificationReport),
    /// MAE, MSE, RMSE, R².
    Regression(RegressionReport),
}

/// A row the model got wrong (classification) or furthest off (regression).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BadCase {
    /// Row index in the evaluated data (0-based, as `id` in predictions).
    pub id: usize,
    /// The true label (or value).
    #[serde(rename = "true")]
    pub truth: String,
    /// What the model predicted.
    pub predicted: String,
    /// Confidence of the prediction (classification) or absolute error (regression).
    pub score: f64,
}

/// The result of `evaluate`: the JSON object of the CLI contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Always `tabular` here.
    pub task: String,
    /// Binary, multiclass or regression.
    pub problem: ProblemType,
    /// The metrics (their fields appear at the top level of the JSON, `n` among them).
    #[serde(flatten)]
    pub metrics: Metrics,
    /// The worst rows, most confidently wrong first.
    pub bad_cases: Vec<BadCase>,
}

impl Evaluation {
    /// Number of evaluated rows.
    pub fn n(&self) -> usize {
        match &self.metrics {
            Metrics::Classification(r) => r.n,
            Metrics::Regression(r) => r.n,
        }
    }

    /// The headline score: accuracy, or RMSE for regression.
    pub fn headline(&self) -> (&'static str, f64) {
        match &self.metrics {
            Metrics::Classification(r) => ("accuracy", r.accuracy),
            Metrics::Regression(r) => ("rmse", r.rmse),
        }
    }
}

/// Evaluate class probabilities (`n × classes`, row-major) against true class indices.
pub fn evaluate_classification(
    problem: ProblemType,
    classes: &[String],
    truth: &[usize],
    proba: &[f64],
) -> Result<Evaluation> {
    let k = classes.len();
    let predicted: Vec<usize> = proba.chunks(k).map(argmax).collect();
    let report = ClassificationReport::compute(classes, truth, &predicted, Some(proba))?;
    let mut bad: Vec<BadCase> = truth
        .iter()
        .zip(&predicted)
        .enumerate()
        .filter(|(_, (t, p))| t != p)
        .map(|(id, (&t, &p))| BadCase {
            id,
            truth: classes[t].clone(),
            predicted: classes[p].clone(),
            score: proba[id * k + p],
        })
        .collect();
    bad.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    bad.truncate(MAX_BAD_CASES);
    Ok(Evaluation {
        task: "tabular".into(),
        problem,
        metrics: Metrics::Classification(report),
        bad_cases: bad,
    })
}

/// Evaluate predicted values against true values.
pub fn evaluate_regression(truth: &[f64], predicted: &[f64]) -> Result<Evaluation> {
    let report = RegressionReport::compute(truth, predicted)?;
    let mut bad: Vec<BadCase> = truth
        .iter()
        .zip(predicted)
        .enumerate()
        .map(|(id, (&t, &p))| BadCase {
            id,
            truth: crate::table::format_number(t),
            predicted: format!("{p}"),
            score: (t - p).abs(),
        })
        .collect();
    bad.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    bad.truncate(MAX_BAD_CASES.min(truth.len() / 10 + 1));
    Ok(Evaluation {
        task: "tabular".into(),
        problem: ProblemType::Regression,
        metrics: Metrics::Regression(report),
        bad_cases: bad,
    })
}

/// Index of the largest value (the first on ties).
pub fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}
