//! The classification head trained on backbone features: standardise, then one linear layer
//! with softmax (single-label) or per-label sigmoids (multi-label), fitted full-batch with AdamW,
//! label smoothing, balanced class weights and early stopping on the validation part.

use crate::nn::candle_error;
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use exeml_core::Result;
use serde::{Deserialize, Serialize};

/// Hyper-parameters of the head.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeadParams {
    /// AdamW's decoupled weight decay (the regularisation strength).
    pub weight_decay: f64,
    /// Learning rate.
    pub learning_rate: f64,
    /// Most full-batch steps.
    pub max_steps: usize,
    /// Label smoothing of single-label targets, in `[0, 0.5)`.
    pub label_smoothing: f64,
    /// Weight classes inversely to their frequency.
    pub balanced: bool,
}

impl Default for HeadParams {
    fn default() -> Self {
        HeadParams {
            weight_decay: 1e-2,
            learning_rate: 1e-2,
            max_steps: 300,
            label_smoothing: 0.1,
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

/// Fit a head on `train`, keeping the weights with the lowest `valid` loss (checked every 10 steps).
pub fn fit_head(
    train: &HeadData<'_>,
    valid: Option<&HeadData<'_>>,
    classes: usize,
    multilabel: bool,
    params: &HeadParams,
) -> Result<LinearHead> {
    fit_head_counted(train, valid, classes, multilabel, params).map(|(head, _)| head)
}

/// [`fit_head`], also returning how many steps the kept weights had trained (to refit on more
/// data for as long, without a validation set to stop on).
pub fn fit_head_counted(
    train: &HeadData<'_>,
    valid: Option<&HeadData<'_>>,
    classes: usize,
    multilabel: bool,
    params: &HeadParams,
) -> Result<(LinearHead, usize)> {
    fit(train, valid, classes, multilabel, params).map_err(candle_error)
}

fn fit(
    train: &HeadData<'_>,
    valid: Option<&HeadData<'_>>,
    k: usize,
    multilabel: bool,
    params: &HeadParams,
) -> candle_core::Result<(LinearHead, usize)> {
    let device = train.x.device().clone();
    let (n, d) = train.x.dims2()?;
    let mean = train.x.mean(0)?;
    let var = train.x.broadcast_sub(&mean)?.sqr()?.mean(0)?;
    let inv_std = (var + 1e-6)?.sqrt()?.recip()?;
    let weight = Var::zeros((k, d), DType::F32, &device)?;
    let bias = Var::zeros(k, DType::F32, &device)?;
    let head = |w: &Tensor, b: &Tensor| LinearHead {
        weight: w.clone(),
        bias: b.clone(),
        mean: mean.clone(),
        inv_std: inv_std.clone(),
        multilabel,
    };
    let tensors = |data: &HeadData<'_>, balanced: bool| -> candle_core::Result<(Tensor, Tensor)> {
        let rows = data.labels.len();
        let t = Tensor::from_vec(
            targets(data.labels, k, multilabel, params.label_smoothing),
            (rows, k),
            &device,
        )?;
        let w = if balanced && !multilabel {
            balanced_weights(data.labels, k)
        } else {
            vec![1f32; rows]
        };
        Ok((t, Tensor::from_vec(w, (rows, 1), &device)?))
    };
    let (t_train, w_train) = tensors(train, params.balanced)?;
    let valid = valid
        .map(|v| tensors(v, false).map(|(t, w)| (v.x, t, w)))
        .transpose()?;
    let mut optimizer = AdamW::new(
        vec![weight.clone(), bias.clone()],
        ParamsAdamW {
            lr: params.learning_rate,
            weight_decay: params.weight_decay,
            ..Default::default()
        },
    )?;
    let mut best = (f32::INFINITY, head(weight.as_tensor(), bias.as_tensor()), 0);
    let mut since_best = 0;
    for step in 0..params.max_steps.max(1) {
        let current = head(weight.as_tensor(), bias.as_tensor());
        let l = loss(&current.logits(train.x)?, &t_train, &w_train, multilabel)?;
        optimizer.backward_step(&l)?;
        if step % 10 == 9 || step + 1 == params.max_steps {
            let current = head(&weight.as_tensor().copy()?, &bias.as_tensor().copy()?);
            let score = match &valid {
                Some((x, t, w)) => loss(&current.logits(x)?, t, w, multilabel)?,
                None => loss(&current.logits(train.x)?, &t_train, &w_train, multilabel)?,
            }
            .to_scalar::<f32>()?;
            if score < best.0 - 1e-5 {
                best = (score, current, step + 1);
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= 5 {
                    break;
                }
            }
        }
    }
    let _ = n;
    Ok((best.1, best.2))
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
            Some(&HeadData {
                x: &vx,
                labels: &vy,
            }),
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
            None,
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
