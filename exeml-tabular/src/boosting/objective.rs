//! Losses the booster minimises: their derivatives, starting scores and validation loss.

use super::histogram::GradPair;
use rayon::prelude::*;

/// Rows at least this many compute their derivatives on the thread pool.
const PARALLEL_ROWS: usize = 16 * 1024;
/// Smallest hessian of a row (keeps leaf values finite where a prediction is certain).
const MIN_HESSIAN: f64 = 1e-16;

/// What is minimised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// Squared error (regression).
    Squared,
    /// Log loss of a sigmoid (binary classification, targets 0/1).
    Logistic,
    /// Log loss of a softmax over this many classes (targets are class indices).
    Softmax(usize),
}

impl Objective {
    /// Raw scores per row: one per class for softmax, else one.
    pub fn outputs(self) -> usize {
        match self {
            Objective::Softmax(k) => k,
            _ => 1,
        }
    }

    /// The best constant scores: the mean, the log-odds of the positive share, or the log of
    /// each class's share (so boosting starts from the prior, not from zero).
    pub fn initial_scores(self, y: &[f64]) -> Vec<f64> {
        let n = y.len().max(1) as f64;
        match self {
            Objective::Squared => vec![y.iter().sum::<f64>() / n],
            Objective::Logistic => {
                let p = (y.iter().sum::<f64>() / n).clamp(1e-6, 1.0 - 1e-6);
                vec![(p / (1.0 - p)).ln()]
            }
            Objective::Softmax(k) => {
                let mut counts = vec![0.0; k];
                for &c in y {
                    if let Some(slot) = counts.get_mut(c as usize) {
                        *slot += 1.0;
                    }
                }
                counts.iter().map(|c| (c / n).max(1e-6).ln()).collect()
            }
        }
    }

    /// Derivatives at the current `scores` (class-major: `scores[k * rows + r]`), into `grads`
    /// (same layout).
    pub fn gradients(self, y: &[f64], scores: &[f64], grads: &mut [GradPair]) {
        let rows = y.len();
        match self {
            Objective::Squared => for_rows(
                grads,
                |r, out| {
                    out[0] = GradPair {
                        g: scores[r] - y[r],
                        h: 1.0,
                    };
                },
                1,
                rows,
            ),
            Objective::Logistic => for_rows(
                grads,
                |r, out| {
                    let p = sigmoid(scores[r]);
                    out[0] = GradPair {
                        g: p - y[r],
                        h: (p * (1.0 - p)).max(MIN_HESSIAN),
                    };
                },
                1,
                rows,
            ),
            Objective::Softmax(k) => {
                // LightGBM's factor k / (k − 1) makes the diagonal hessian an upper bound.
                let factor = k as f64 / (k as f64 - 1.0).max(1.0);
                let mut probs = vec![0.0; rows * k];
                probabilities_into(self, scores, rows, &mut probs);
                for_rows(
                    grads,
                    |r, out| {
                        for (c, o) in out.iter_mut().enumerate() {
                            let p = probs[r * k + c];
                            let target = if y[r] as usize == c { 1.0 } else { 0.0 };
                            *o = GradPair {
                                g: p - target,
                                h: (factor * p * (1.0 - p)).max(MIN_HESSIAN),
                            };
                        }
                    },
                    k,
                    rows,
                );
            }
        }
    }

    /// Mean loss of `scores` (class-major) against `y`.
    pub fn loss(self, y: &[f64], scores: &[f64]) -> f64 {
        let rows = y.len();
        if rows == 0 {
            return 0.0;
        }
        let total: f64 = match self {
            Objective::Squared => y.iter().zip(scores).map(|(t, s)| (s - t).powi(2)).sum(),
            Objective::Logistic => y
                .iter()
                .zip(scores)
                .map(|(&t, &s)| {
                    let p = sigmoid(s).clamp(1e-15, 1.0 - 1e-15);
                    -(t * p.ln() + (1.0 - t) * (1.0 - p).ln())
                })
                .sum(),
            Objective::Softmax(k) => {
                let mut probs = vec![0.0; rows * k];
                probabilities_into(self, scores, rows, &mut probs);
                y.iter()
                    .enumerate()
                    .map(|(r, &c)| {
                        let p = probs.get(r * k + c as usize).copied().unwrap_or(0.0);
                        -p.clamp(1e-15, 1.0).ln()
                    })
                    .sum()
            }
        };
        total / rows as f64
    }

    /// Predictions from row-major raw scores (`rows × outputs`), row-major: the value for
    /// squared error, else the probability of every class.
    pub fn predictions(self, mut raw: Vec<f64>) -> Vec<f64> {
        match self {
            Objective::Squared => raw,
            Objective::Logistic => raw
                .iter()
                .flat_map(|&s| {
                    let p = sigmoid(s);
                    [1.0 - p, p]
                })
                .collect(),
            Objective::Softmax(k) => {
                for row in raw.chunks_mut(k) {
                    crate::family::softmax_in_place(row);
                }
                raw
            }
        }
    }
}

/// Row-major softmax probabilities of class-major scores.
fn probabilities_into(objective: Objective, scores: &[f64], rows: usize, probs: &mut [f64]) {
    let k = objective.outputs();
    let fill = |(r, row): (usize, &mut [f64])| {
        for (c, p) in row.iter_mut().enumerate() {
            *p = scores[c * rows + r];
        }
        crate::family::softmax_in_place(row);
    };
    if rows >= PARALLEL_ROWS {
        probs.par_chunks_mut(k).enumerate().for_each(fill);
    } else {
        probs.chunks_mut(k).enumerate().for_each(fill);
    }
}

/// Run `f(row, derivatives of that row per output)` for every row, writing class-major
/// `grads` (gathered per row through a row-major buffer when there are several outputs).
fn for_rows(
    grads: &mut [GradPair],
    f: impl Fn(usize, &mut [GradPair]) + Sync,
    outputs: usize,
    rows: usize,
) {
    if outputs == 1 {
        let one = |(r, g): (usize, &mut GradPair)| f(r, std::slice::from_mut(g));
        if rows >= PARALLEL_ROWS {
            grads.par_iter_mut().enumerate().for_each(one);
        } else {
            grads.iter_mut().enumerate().for_each(one);
        }
        return;
    }
    let mut by_row = vec![GradPair::default(); rows * outputs];
    if rows >= PARALLEL_ROWS {
        by_row
            .par_chunks_mut(outputs)
            .enumerate()
            .for_each(|(r, o)| f(r, o));
    } else {
        by_row
            .chunks_mut(outputs)
            .enumerate()
            .for_each(|(r, o)| f(r, o));
    }
    for (r, row) in by_row.chunks(outputs).enumerate() {
        for (c, &g) in row.iter().enumerate() {
            grads[c * rows + r] = g;
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_finite_differences_of_the_loss() {
        let y = [0.0, 2.0, 1.0];
        let scores = [0.3, -0.2, 1.1, 0.5, 0.0, -0.7, -1.0, 0.4, 0.9];
        let objective = Objective::Softmax(3);
        let mut grads = vec![GradPair::default(); 9];
        objective.gradients(&y, &scores, &mut grads);
        let eps = 1e-6;
        for i in 0..9 {
            let mut up = scores;
            up[i] += eps;
            let mut down = scores;
            down[i] -= eps;
            // loss() is a mean over 3 rows.
            let numeric = (objective.loss(&y, &up) - objective.loss(&y, &down)) / (2.0 * eps) * 3.0;
            assert!(
                (numeric - grads[i].g).abs() < 1e-6,
                "{i}: {numeric} vs {}",
                grads[i].g
            );
        }
        let logistic = Objective::Logistic;
        let (y, s) = ([1.0, 0.0], [0.4, -2.0]);
        let mut grads = vec![GradPair::default(); 2];
        logistic.gradients(&y, &s, &mut grads);
        for i in 0..2 {
            let mut up = s;
            up[i] += eps;
            let mut down = s;
            down[i] -= eps;
            let numeric = (logistic.loss(&y, &up) - logistic.loss(&y, &down)) / (2.0 * eps) * 2.0;
            assert!((numeric - grads[i].g).abs() < 1e-6);
        }
    }

    #[test]
    fn initial_scores_are_the_best_constants() {
        assert_eq!(
            Objective::Squared.initial_scores(&[1.0, 2.0, 6.0]),
            vec![3.0]
        );
        let logit = Objective::Logistic.initial_scores(&[1.0, 0.0, 0.0, 0.0])[0];
        assert!((logit - (1.0f64 / 3.0).ln()).abs() < 1e-12);
        let prior = Objective::Softmax(3).initial_scores(&[0.0, 0.0, 1.0, 2.0]);
        let probs = Objective::Softmax(3).predictions(prior);
        for (p, want) in probs.iter().zip([0.5, 0.25, 0.25]) {
            assert!((p - want).abs() < 1e-9);
        }
    }
}
