//! The classification head trained on backbone features: standardise, then one linear layer
//! with softmax (single-label) or per-label sigmoids (multi-label), with balanced class weights
//! and an L2 penalty, solved to convergence by L-BFGS (like scikit-learn's `LogisticRegression`):
//! the search chooses the penalty on the validation part.

use crate::nn::{candle_error, on_workers};
use candle_core::{Device, Tensor, Var, D};
use exeml_core::Result;
use serde::{Deserialize, Serialize};

/// Hyper-parameters of the head.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeadParams {
    /// L2 penalty on the weights: the mean loss plus `weight_decay / 2 · ‖W‖²` is minimised
    /// (scikit-learn's `C` is `1 / (weight_decay · rows)`).
    pub weight_decay: f64,
    /// Unused since the head is solved by L-BFGS (kept so older manifests read the same).
    pub learning_rate: f64,
    /// Most L-BFGS iterations.
    pub max_steps: usize,
    /// Label smoothing of single-label targets, in `[0, 0.5)`.
    pub label_smoothing: f64,
    /// Weight classes inversely to their frequency.
    pub balanced: bool,
}

impl Default for HeadParams {
    fn default() -> Self {
        HeadParams {
            weight_decay: 1e-3,
            learning_rate: 1e-2,
            max_steps: 500,
            label_smoothing: 0.0,
            balanced: true,
        }
    }
}

/// Training data of the head: features `n×d` and each row's class indices.
#[derive(Debug)]
pub struct HeadData<'a> {
    /// Features, one row per sample (or augmented view).
    pub x: &'a Tensor,
    /// Each row's classes (one for single-label data).
    pub labels: &'a [Vec<usize>],
}

/// A fitted linear head.
#[derive(Debug, Clone)]
pub struct LinearHead {
    /// `classes×d`.
    pub weight: Tensor,
    /// `classes`.
    pub bias: Tensor,
    /// Feature means of the training data (`d`).
    pub mean: Tensor,
    /// Inverse feature standard deviations (`d`).
    pub inv_std: Tensor,
    /// Sigmoid per label instead of one softmax.
    pub multilabel: bool,
}

impl LinearHead {
    /// Class scores of features `n×d`: softmax rows, or independent sigmoids (multi-label).
    pub fn proba(&self, x: &Tensor) -> Result<Tensor> {
        let logits = self.logits(x).map_err(candle_error)?;
        let p = if self.multilabel {
            candle_nn::ops::sigmoid(&logits)
        } else {
            candle_nn::ops::softmax_last_dim(&logits)
        };
        p.map_err(candle_error)
    }

    pub(crate) fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let z = x.broadcast_sub(&self.mean)?.broadcast_mul(&self.inv_std)?;
        z.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)
    }

    /// The tensors to save, by name.
    pub fn tensors(&self) -> Vec<(&'static str, &Tensor)> {
        vec![
            ("weight", &self.weight),
            ("bias", &self.bias),
            ("mean", &self.mean),
            ("inv_std", &self.inv_std),
        ]
    }
}

/// Target matrix `n×k`: smoothed one-hot rows, or 0/1 label indicators (multi-label).
pub(crate) fn targets(
    labels: &[Vec<usize>],
    k: usize,
    multilabel: bool,
    smoothing: f64,
) -> Vec<f32> {
    let mut t = vec![0f32; labels.len() * k];
    for (row, classes) in labels.iter().enumerate() {
        let row = &mut t[row * k..(row + 1) * k];
        if multilabel {
            for &c in classes {
                row[c] = 1.0;
            }
        } else {
            let off = (smoothing / k as f64) as f32;
            row.iter_mut().for_each(|v| *v = off);
            if let Some(&c) = classes.first() {
                row[c] += (1.0 - smoothing) as f32;
            }
        }
    }
    t
}

/// Per-row weights `n×1` that make every class count the same in total.
pub(crate) fn balanced_weights(labels: &[Vec<usize>], k: usize) -> Vec<f32> {
    let mut counts = vec![0usize; k];
    for classes in labels {
        for &c in classes {
            counts[c] += 1;
        }
    }
    let n = labels.len().max(1) as f32;
    labels
        .iter()
        .map(|classes| {
            let w: f32 = classes
                .iter()
                .map(|&c| n / (k as f32 * counts[c].max(1) as f32))
                .sum();
            w / classes.len().max(1) as f32
        })
        .collect()
}

/// Mean cross-entropy (softmax) or binary cross-entropy (sigmoids), weighted per row.
pub(crate) fn loss(
    logits: &Tensor,
    t: &Tensor,
    w: &Tensor,
    multilabel: bool,
) -> candle_core::Result<Tensor> {
    let per_row = if multilabel {
        // softplus(z) − t·z, written to stay finite for large |z|.
        let softplus = (logits.relu()? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
        (softplus - (logits * t)?)?.sum_keepdim(D::Minus1)?
    } else {
        let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
        (log_p * t)?.sum_keepdim(D::Minus1)?.neg()?
    };
    (per_row * w)?.sum_all()? / w.sum_all()?.to_scalar::<f32>()? as f64
}

/// Fit a head on `train` (to convergence; the caller chooses `weight_decay` on held-out data).
pub fn fit_head(
    train: &HeadData<'_>,
    classes: usize,
    multilabel: bool,
    params: &HeadParams,
) -> Result<LinearHead> {
    fit_head_counted(train, classes, multilabel, params).map(|(head, _)| head)
}

/// [`fit_head`], also returning how many L-BFGS iterations it took.
pub fn fit_head_counted(
    train: &HeadData<'_>,
    classes: usize,
    multilabel: bool,
    params: &HeadParams,
) -> Result<(LinearHead, usize)> {
    // Hundreds of small tensor ops: on the pool's workers, each does not hand off on its own.
    on_workers(|| fit(train, classes, multilabel, params)).map_err(candle_error)
}

/// Past gradient and step pairs L-BFGS keeps.
const HISTORY: usize = 10;
/// Converged when no gradient component exceeds this (the loss is a mean, so it is scale-free).
const GRADIENT_TOLERANCE: f32 = 1e-5;

/// The penalised training loss and its gradient at flat parameters `theta` (weights then bias).
struct Objective<'a> {
    z: Tensor,
    t: Tensor,
    w: Tensor,
    k: usize,
    d: usize,
    multilabel: bool,
    l2: f64,
    device: &'a Device,
}

impl Objective<'_> {
    fn eval(&self, theta: &[f32]) -> candle_core::Result<(f32, Vec<f32>)> {
        let (k, d) = (self.k, self.d);
        let weight = Var::from_tensor(&Tensor::from_slice(&theta[..k * d], (k, d), self.device)?)?;
        let bias = Var::from_tensor(&Tensor::from_slice(&theta[k * d..], k, self.device)?)?;
        let logits = self
            .z
            .matmul(&weight.as_tensor().t()?)?
            .broadcast_add(bias.as_tensor())?;
        let penalty = (weight.as_tensor().sqr()?.sum_all()? * (0.5 * self.l2))?;
        let total = (loss(&logits, &self.t, &self.w, self.multilabel)? + penalty)?;
        let grads = total.backward()?;
        let mut gradient = Vec::with_capacity(theta.len());
        for var in [&weight, &bias] {
            match grads.get(var) {
                Some(g) => gradient.extend(g.flatten_all()?.to_vec1::<f32>()?),
                None => gradient.extend(std::iter::repeat_n(0.0, var.elem_count())),
            }
        }
        Ok((total.to_scalar::<f32>()?, gradient))
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimise the objective from zero with L-BFGS (two-loop recursion, backtracking Armijo line
/// search); returns the parameters and the iterations taken. Written here because the problem
/// is a few thousand parameters on tensors that may live on a GPU, where a general optimisation
/// crate would copy them to host types on every evaluation anyway.
fn lbfgs(
    objective: &Objective<'_>,
    len: usize,
    max_iter: usize,
) -> candle_core::Result<(Vec<f32>, usize)> {
    let mut theta = vec![0f32; len];
    let (mut f, mut g) = objective.eval(&theta)?;
    let mut history: std::collections::VecDeque<(Vec<f32>, Vec<f32>, f32)> = Default::default();
    let mut iterations = 0;
    while iterations < max_iter.max(1) {
        if g.iter().all(|v| v.abs() <= GRADIENT_TOLERANCE) {
            break;
        }
        iterations += 1;
        // Two-loop recursion: direction = −H·g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let alpha = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(q, y)| *q -= alpha * y);
            alphas.push(alpha);
        }
        let gamma = history.back().map_or(
            1.0 / g.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12),
            |(s, y, _)| dot(s, y) / dot(y, y).max(1e-20),
        );
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y, rho), alpha) in history.iter().zip(alphas.iter().rev()) {
            let beta = rho * dot(y, &q);
            q.iter_mut()
                .zip(s)
                .for_each(|(q, s)| *q += (alpha - beta) * s);
        }
        let mut direction: Vec<f32> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &direction);
        if slope >= 0.0 {
            // Not a descent direction (rounding): restart from steepest descent.
            history.clear();
            direction = g.iter().map(|v| -v).collect();
            slope = -dot(&g, &g);
        }
        let mut step = 1f32;
        let (next, f_next, g_next) = loop {
            let candidate: Vec<f32> = theta
                .iter()
                .zip(&direction)
                .map(|(t, d)| t + step * d)
                .collect();
            let (fc, gc) = objective.eval(&candidate)?;
            if fc <= f + 1e-4 * step * slope || step < 1e-10 {
                break (candidate, fc, gc);
            }
            step *= 0.5;
        };
        let s: Vec<f32> = next.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let y: Vec<f32> = g_next.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-10 {
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back((s, y, 1.0 / sy));
        }
        let converged = (f - f_next).abs() <= 1e-9 * f.abs().max(1.0);
        (theta, f, g) = (next, f_next, g_next);
        if converged || step < 1e-10 {
            break;
        }
    }
    Ok((theta, iterations))
}

fn fit(
    train: &HeadData<'_>,
    k: usize,
    multilabel: bool,
    params: &HeadParams,
) -> candle_core::Result<(LinearHead, usize)> {
    let device = train.x.device().clone();
    let (n, d) = train.x.dims2()?;
    let mean = train.x.mean(0)?;
    let var = train.x.broadcast_sub(&mean)?.sqr()?.mean(0)?;
    let inv_std = (var + 1e-6)?.sqrt()?.recip()?;
    let t = Tensor::from_vec(
        targets(train.labels, k, multilabel, params.label_smoothing),
        (n, k),
        &device,
    )?;
    let w = if params.balanced && !multilabel {
        balanced_weights(train.labels, k)
    } else {
        vec![1f32; n]
    };
    let objective = Objective {
        z: train.x.broadcast_sub(&mean)?.broadcast_mul(&inv_std)?,
        t,
        w: Tensor::from_vec(w, (n, 1), &device)?,
        k,
        d,
        multilabel,
        l2: params.weight_decay,
        device: &device,
    };
    let (theta, iterations) = lbfgs(&objective, k * d + k, params.max_steps)?;
    let head = LinearHead {
        weight: Tensor::from_slice(&theta[..k * d], (k, d), &device)?,
        bias: Tensor::from_slice(&theta[k * d..], k, &device)?,
        mean,
        inv_std,
        multilabel,
    };
    Ok((head, iterations))
}

/// Features of CPU rows as a tensor (for tests and small callers).
pub fn tensor_of_rows(rows: &[Vec<f32>], device: &Device) -> Result<Tensor> {
    let d = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (rows.len(), d), device).map_err(candle_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(n: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<Vec<usize>>) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let centres = [[3.0f32, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]];
        (0..n)
            .map(|i| {
                let c = i % 3;
                let x = centres[c]
                    .iter()
                    .map(|v| v + rng.random_range(-1.0f32..1.0))
                    .collect();
                (x, vec![c])
            })
            .unzip()
    }

    #[test]
    fn softmax_head_separates_three_blobs() {
        let (x, y) = blobs(90, 1);
        let (vx, vy) = blobs(30, 2);
        let x = tensor_of_rows(&x, &Device::Cpu).expect("x");
        let vx = tensor_of_rows(&vx, &Device::Cpu).expect("vx");
        let head = fit_head(
            &HeadData { x: &x, labels: &y },
            3,
            false,
            &HeadParams::default(),
        )
        .expect("fit");
        let p: Vec<Vec<f32>> = head.proba(&vx).expect("proba").to_vec2().expect("rows");
        let correct = p
            .iter()
            .zip(&vy)
            .filter(|(row, y)| {
                let best = row
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(i, _)| i);
                best == Some(y[0])
            })
            .count();
        assert!(correct >= 28, "{correct}/30");
        for row in p {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        }
    }

    #[test]
    fn sigmoid_head_learns_two_independent_labels() {
        // Label 0 iff x0 > 0, label 1 iff x1 > 0: four combinations, each label independent.
        let rows: Vec<Vec<f32>> = (0..80)
            .map(|i| {
                vec![
                    if i % 2 == 0 { 1.0 } else { -1.0 },
                    if i % 4 < 2 { 1.0 } else { -1.0 },
                    0.1 * (i % 7) as f32,
                ]
            })
            .collect();
        let labels: Vec<Vec<usize>> = rows
            .iter()
            .map(|r| (0..2).filter(|&j| r[j] > 0.0).collect())
            .collect();
        let x = tensor_of_rows(&rows, &Device::Cpu).expect("x");
        let head = fit_head(
            &HeadData {
                x: &x,
                labels: &labels,
            },
            2,
            true,
            &HeadParams::default(),
        )
        .expect("fit");
        let p: Vec<Vec<f32>> = head.proba(&x).expect("proba").to_vec2().expect("rows");
        for (row, want) in p.iter().zip(&labels) {
            for (j, &pj) in row.iter().enumerate() {
                assert_eq!(pj > 0.5, want.contains(&j), "{row:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn balanced_weights_equalise_class_totals() {
        let labels = vec![vec![0], vec![0], vec![0], vec![1]];
        let w = balanced_weights(&labels, 2);
        assert!((w[0] * 3.0 - w[3]).abs() < 1e-6);
    }
}
