//! Regularised linear models on standardised features: ridge regression (closed form) and
//! logistic / softmax regression (full-batch Adam with L2, stopped on convergence or budget).
//!
//! Written here rather than taken from linfa: linfa pins an ndarray version that conflicts with
//! the rest of the workspace (see ASSETS.md), and both solvers are short.

use super::{load_weight_and_bias, save_weight_and_bias, sigmoid, softmax_in_place, Adam};
use super::{Labelled, Problem};
use crate::features::Matrix;
use exeml_core::search::{ParamPoint, ParamRange, ParamValue, SearchSpace};
use exeml_core::{Error, FitContext, ProblemType, Result, Trainer};
use std::collections::BTreeMap;
use std::path::Path;

/// The family's name in manifests and leaderboards.
pub const FAMILY: &str = "linear";
const WEIGHTS_FILE: &str = "linear.safetensors";
const MAX_EPOCHS: usize = 500;

/// The family's search space: the inverse regularisation strength `c` (sklearn's `C`).
pub fn search_space(_problem: Problem) -> SearchSpace {
    let params = BTreeMap::from([(
        "c".to_string(),
        ParamRange::Float {
            low: 1e-3,
            high: 1e3,
            log: true,
        },
    )]);
    let mut default = ParamPoint::new();
    default.insert("c".into(), ParamValue::Float(1.0));
    SearchSpace {
        family: FAMILY.into(),
        params,
        defaults: vec![default],
        cost_hint: 1.0,
    }
}

/// A fitted linear model: `scores = x · weights + bias`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearModel {
    /// `weights[f * width + j]`: feature `f`, output `j`.
    pub weights: Vec<f64>,
    /// One bias per output.
    pub bias: Vec<f64>,
    problem: Problem,
}

/// Fits [`LinearModel`]s.
#[derive(Debug, Clone, Copy)]
pub struct LinearTrainer {
    /// The problem to fit.
    pub problem: Problem,
}

fn regularisation(point: &ParamPoint) -> Result<f64> {
    let c = point.get("c").and_then(ParamValue::as_f64).unwrap_or(1.0);
    if c.is_finite() && c > 0.0 {
        Ok(c)
    } else {
        Err(Error::invalid(
            "linear.c",
            format!("{c} must be a positive number"),
        ))
    }
}

impl Trainer for LinearTrainer {
    type Data = Labelled;
    type Model = LinearModel;

    fn fit(
        &self,
        point: &ParamPoint,
        train: &Labelled,
        _valid: &Labelled,
        ctx: &FitContext<'_>,
    ) -> Result<LinearModel> {
        let c = regularisation(point)?;
        match self.problem.kind {
            ProblemType::Regression => Ok(fit_ridge(&train.x, &train.y, 1.0 / c, self.problem)),
            _ => Ok(fit_logistic(train, c, self.problem, ctx)),
        }
    }
}

/// Ridge: solve `(XᵀX + αI) w = Xᵀ(y − ȳ)` on centred data by Cholesky.
fn fit_ridge(x: &Matrix, y: &[f64], alpha: f64, problem: Problem) -> LinearModel {
    let (n, d) = (x.rows, x.cols);
    let y_mean = y.iter().sum::<f64>() / n.max(1) as f64;
    let means: Vec<f64> = (0..d)
        .map(|c| x.column(c).iter().sum::<f64>() / n as f64)
        .collect();
    let mut gram = vec![0.0; d * d];
    let mut rhs = vec![0.0; d];
    for a in 0..d {
        let xa = x.column(a);
        rhs[a] = xa
            .iter()
            .zip(y)
            .map(|(v, t)| (v - means[a]) * (t - y_mean))
            .sum();
        for b in a..d {
            let xb = x.column(b);
            let dot: f64 = xa
                .iter()
                .zip(xb)
                .map(|(u, v)| (u - means[a]) * (v - means[b]))
                .sum();
            gram[a * d + b] = dot;
            gram[b * d + a] = dot;
        }
        gram[a * d + a] += alpha;
    }
    let weights = cholesky_solve(&mut gram, &rhs, d);
    let bias = y_mean - weights.iter().zip(&means).map(|(w, m)| w * m).sum::<f64>();
    LinearModel {
        weights,
        bias: vec![bias],
        problem,
    }
}

/// Solve `A w = b` for symmetric positive definite `A` (row-major, overwritten).
fn cholesky_solve(a: &mut [f64], b: &[f64], d: usize) -> Vec<f64> {
    for j in 0..d {
        let mut diag = a[j * d + j];
        for k in 0..j {
            diag -= a[j * d + k] * a[j * d + k];
        }
        let diag = diag.max(1e-12).sqrt();
        a[j * d + j] = diag;
        for i in j + 1..d {
            let mut v = a[i * d + j];
            for k in 0..j {
                v -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = v / diag;
        }
    }
    let mut z = b.to_vec();
    for i in 0..d {
        for k in 0..i {
            z[i] -= a[i * d + k] * z[k];
        }
        z[i] /= a[i * d + i];
    }
    for i in (0..d).rev() {
        for k in i + 1..d {
            z[i] -= a[k * d + i] * z[k];
        }
        z[i] /= a[i * d + i];
    }
    z
}

/// Logistic (binary, one output) or softmax (multiclass) regression with L2 penalty
/// `‖w‖² / (2·C·n)` on the mean log loss, as scikit-learn's `LogisticRegression(C)`.
fn fit_logistic(train: &Labelled, c: f64, problem: Problem, ctx: &FitContext<'_>) -> LinearModel {
    let (n, d) = (train.x.rows, train.x.cols);
    let width = if problem.kind == ProblemType::Binary {
        1
    } else {
        problem.n_classes
    };
    let lambda = 1.0 / (c * n.max(1) as f64);
    let mut model = LinearModel {
        weights: vec![0.0; d * width],
        bias: vec![0.0; width],
        problem,
    };
    let params = d * width + width;
    let mut adam = Adam::new(params, 0.05);
    let mut last_loss = f64::INFINITY;
    for _ in 0..MAX_EPOCHS {
        if ctx.budget.exhausted() {
            break;
        }
        let scores = model.scores(&train.x);
        // Residuals: predicted probability minus the one-hot target.
        let mut residual = vec![0.0; n * width];
        let mut loss = 0.0;
        for r in 0..n {
            let y = train.y[r] as usize;
            let row = &scores[r * width..(r + 1) * width];
            if width == 1 {
                let p = sigmoid(row[0]);
                let t = if y == 1 { 1.0 } else { 0.0 };
                residual[r] = p - t;
                loss -= if y == 1 {
                    p.max(1e-15).ln()
                } else {
                    (1.0 - p).max(1e-15).ln()
                };
            } else {
                let mut probs = row.to_vec();
                softmax_in_place(&mut probs);
                loss -= probs[y].max(1e-15).ln();
                for j in 0..width {
                    residual[r * width + j] = probs[j] - if j == y { 1.0 } else { 0.0 };
                }
            }
        }
        loss /= n as f64;
        let penalty: f64 = model.weights.iter().map(|w| w * w).sum::<f64>() * lambda / 2.0;
        let total = loss + penalty;
        let mut grad = vec![0.0; params];
        for f in 0..d {
            let column = train.x.column(f);
            for j in 0..width {
                let g: f64 = column
                    .iter()
                    .enumerate()
                    .map(|(r, v)| v * residual[r * width + j])
                    .sum();
                grad[f * width + j] = g / n as f64 + lambda * model.weights[f * width + j];
            }
        }
        for j in 0..width {
            grad[d * width + j] = (0..n).map(|r| residual[r * width + j]).sum::<f64>() / n as f64;
        }
        for (p, step) in adam.steps(&grad).into_iter().enumerate() {
            if p < d * width {
                model.weights[p] -= step;
            } else {
                model.bias[p - d * width] -= step;
            }
        }
        if (last_loss - total).abs() < 1e-7 * total.max(1e-12) {
            break;
        }
        last_loss = total;
    }
    model
}

impl LinearModel {
    fn width(&self) -> usize {
        self.bias.len()
    }

    /// Number of input features (rows of the weight matrix).
    pub fn n_features(&self) -> usize {
        self.weights.len() / self.width().max(1)
    }

    /// Raw scores, row-major `rows × width`.
    fn scores(&self, x: &Matrix) -> Vec<f64> {
        let width = self.width();
        let mut out = vec![0.0; x.rows * width];
        for r in 0..x.rows {
            out[r * width..(r + 1) * width].copy_from_slice(&self.bias);
        }
        for f in 0..x.cols.min(self.weights.len() / width.max(1)) {
            let column = x.column(f);
            let w = &self.weights[f * width..(f + 1) * width];
            for (r, v) in column.iter().enumerate() {
                for j in 0..width {
                    out[r * width + j] += v * w[j];
                }
            }
        }
        out
    }

    /// Predictions, row-major: probabilities per class, or values for regression.
    pub fn predict(&self, x: &Matrix) -> Vec<f64> {
        let scores = self.scores(x);
        match self.problem.kind {
            ProblemType::Regression => scores,
            ProblemType::Binary => scores
                .iter()
                .flat_map(|&z| [1.0 - sigmoid(z), sigmoid(z)])
                .collect(),
            _ => {
                let width = self.width();
                let mut out = scores;
                for row in out.chunks_mut(width) {
                    softmax_in_place(row);
                }
                out
            }
        }
    }

    /// Write the weights as safetensors (`weight`: features × outputs, `bias`: outputs).
    pub fn save(&self, dir: &Path) -> Result<Vec<String>> {
        save_weight_and_bias(&dir.join(WEIGHTS_FILE), &self.weights, &self.bias)?;
        Ok(vec![WEIGHTS_FILE.to_string()])
    }

    /// Read the weights written by [`LinearModel::save`].
    pub fn load(dir: &Path, problem: Problem) -> Result<Self> {
        let path = dir.join(WEIGHTS_FILE);
        let (weights, bias) = load_weight_and_bias(&path)?;
        if bias.is_empty() || weights.len() % bias.len() != 0 {
            return Err(Error::data(&path, "weight and bias shapes do not match"));
        }
        // Binary models keep one score (the positive class's).
        let outputs = match problem.kind {
            ProblemType::Binary => 1,
            _ => problem.output_width(),
        };
        if bias.len() != outputs {
            return Err(Error::data(
                &path,
                format!("{} outputs, but the problem has {outputs}", bias.len()),
            ));
        }
        Ok(LinearModel {
            weights,
            bias,
            problem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_recovers_a_linear_function() {
        let n = 200;
        let xs: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
        let zs: Vec<f64> = (0..n).map(|i| (i as f64 * 0.11).cos()).collect();
        let y: Vec<f64> = xs
            .iter()
            .zip(&zs)
            .map(|(a, b)| 3.0 * a - 2.0 * b + 1.0)
            .collect();
        let x = Matrix {
            data: [xs, zs].concat(),
            rows: n,
            cols: 2,
        };
        let problem = Problem {
            kind: ProblemType::Regression,
            n_classes: 1,
        };
        let m = fit_ridge(&x, &y, 1e-9, problem);
        assert!((m.weights[0] - 3.0).abs() < 1e-6 && (m.weights[1] + 2.0).abs() < 1e-6);
        assert!((m.bias[0] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn saves_and_loads_identical_weights() {
        let dir = tempfile::tempdir().expect("tempdir");
        let problem = Problem {
            kind: ProblemType::Multiclass,
            n_classes: 3,
        };
        let m = LinearModel {
            weights: vec![0.5, -1.0, 2.0, 0.25, 0.0, 1.5],
            bias: vec![0.1, 0.2, 0.3],
            problem,
        };
        m.save(dir.path()).expect("save");
        assert_eq!(LinearModel::load(dir.path(), problem).expect("load"), m);
    }
}
