//! Fine-tuning of a backbone's top blocks together with the head ("linear probe, then fine-tune"):
//! the activations entering the first trained block are computed once (with their augmented
//! views), then the top blocks and the head are trained on mini-batches with AdamW (or SGD with
//! Nesterov momentum), a warm-up +
//! cosine learning-rate schedule, label smoothing, class-balanced weights and mixup or cutmix on
//! the cached activations (manifold mixup). Batch norm stays folded (frozen statistics, the usual
//! choice for small data). The weights with the best validation loss are kept; training stops
//! early when it stops improving, and cleanly when the budget runs out.

use crate::backbone::{Backbone, Block};
use crate::head::{balanced_weights, loss, targets, LinearHead};
use crate::nn::{candle_error, on_workers};
use crate::optim::{OptimizerKind, Stepper};
use candle_core::{DType, Tensor, Var};
use exeml_core::{Budget, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// How training examples are mixed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Mixing {
    /// No mixing.
    None,
    /// Convex combinations of two examples and their targets, weight ~ Beta(α, α).
    Mixup {
        /// The Beta distribution's α.
        alpha: f64,
    },
    /// A box of one example pasted into another, targets weighted by area; size ~ Beta(α, α).
    Cutmix {
        /// The Beta distribution's α.
        alpha: f64,
    },
}

/// Hyper-parameters of a fine-tuning run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FineTuneParams {
    /// How many of the backbone's last blocks are trained.
    pub unfrozen_blocks: usize,
    /// Peak learning rate (after warm-up; cosine decay to zero at `max_epochs`).
    pub learning_rate: f64,
    /// Decoupled weight decay (each step shrinks the weights by `learning_rate × weight_decay`).
    pub weight_decay: f64,
    /// AdamW (the default) or SGD with Nesterov momentum.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Most epochs.
    pub max_epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Mixup, cutmix or neither.
    pub mixing: Mixing,
    /// Label smoothing of single-label targets.
    pub label_smoothing: f64,
    /// Epochs without a better validation loss before stopping.
    pub patience: usize,
}

impl std::fmt::Display for Mixing {
    /// `mixup 0.2`, `cutmix 1`, or `no mixing`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mixing::None => f.write_str("no mixing"),
            Mixing::Mixup { alpha } => write!(f, "mixup {alpha}"),
            Mixing::Cutmix { alpha } => write!(f, "cutmix {alpha}"),
        }
    }
}

impl FineTuneParams {
    /// The arm in a few words, for progress lines and the leaderboard: `5 blocks, lr 3e-4`,
    /// then the mixing and a non-default optimiser when there is one (`, mixup 0.2, sgd 0.9`).
    pub fn short_description(&self) -> String {
        let mut out = format!(
            "{} blocks, lr {:.0e}",
            self.unfrozen_blocks, self.learning_rate
        );
        if self.mixing != Mixing::None {
            out.push_str(&format!(", {}", self.mixing));
        }
        if let OptimizerKind::Sgd { momentum } = self.optimizer {
            out.push_str(&format!(", sgd {momentum}"));
        }
        out
    }
}

impl Default for FineTuneParams {
    fn default() -> Self {
        FineTuneParams {
            unfrozen_blocks: 2,
            learning_rate: 1e-3,
            weight_decay: 1e-2,
            optimizer: OptimizerKind::Adamw,
            max_epochs: 8,
            batch_size: 32,
            mixing: Mixing::None,
            label_smoothing: 0.1,
            patience: 2,
        }
    }
}

impl FineTuneParams {
    /// Arms from JSON: a list of objects with the fields of [`FineTuneParams`], as in a model
    /// leaderboard's `fine_tune` entries (`mixing` is `{"kind": "none"}`, `{"kind": "mixup",
    /// "alpha": 0.2}` or `{"kind": "cutmix", "alpha": 1.0}`). A field left out takes its
    /// default, an unknown one is refused (a misspelt name would otherwise be ignored), and
    /// each arm is checked.
    pub fn list_from_json(json: &str) -> Result<Vec<FineTuneParams>> {
        let invalid = |message: String| exeml_core::Error::invalid("fine-tuning arms", message);
        let list: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(json)
            .map_err(|e| invalid(format!("expected a JSON list of objects: {e}")))?;
        let serde_json::Value::Object(defaults) =
            serde_json::to_value(Self::default()).map_err(|e| invalid(e.to_string()))?
        else {
            return Err(invalid("the defaults are not an object".into()));
        };
        list.into_iter()
            .enumerate()
            .map(|(i, given)| {
                let mut fields = defaults.clone();
                for (name, value) in given {
                    if !fields.contains_key(&name) {
                        let known: Vec<&str> = defaults.keys().map(String::as_str).collect();
                        return Err(invalid(format!(
                            "arm {i}: unknown field `{name}` (known: {})",
                            known.join(", ")
                        )));
                    }
                    fields.insert(name, value);
                }
                let arm: FineTuneParams = serde_json::from_value(fields.into())
                    .map_err(|e| invalid(format!("arm {i}: {e}")))?;
                arm.check()?;
                Ok(arm)
            })
            .collect()
    }

    /// Refuse a configuration that cannot train: no block, a learning rate, weight decay or
    /// mixing α that is not a positive (or, for weight decay, non-negative) finite number, no
    /// epoch, an empty batch, or label smoothing outside `[0, 1)`.
    pub fn check(&self) -> Result<()> {
        let invalid = |name: &str, message: &str| {
            Err(exeml_core::Error::invalid(
                format!("fine-tuning {name}"),
                message,
            ))
        };
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if self.unfrozen_blocks == 0 {
            return invalid("unfrozen_blocks", "expected at least 1 block");
        }
        if !positive(self.learning_rate) {
            return invalid("learning_rate", "expected a positive number");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return invalid("weight_decay", "expected 0 or a positive number");
        }
        if self.max_epochs == 0 {
            return invalid("max_epochs", "expected at least 1 epoch");
        }
        if self.batch_size == 0 {
            return invalid("batch_size", "expected at least 1 example");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return invalid("label_smoothing", "expected a number in [0, 1)");
        }
        if let OptimizerKind::Sgd { momentum } = self.optimizer {
            if !(0.0..1.0).contains(&momentum) {
                return invalid("optimizer momentum", "expected a number in [0, 1)");
            }
        }
        match self.mixing {
            Mixing::Mixup { alpha } | Mixing::Cutmix { alpha } if !positive(alpha) => {
                invalid("mixing alpha", "expected a positive number")
            }
            _ => Ok(()),
        }
    }
}

/// Cached activations entering the first trained block, with each row's classes.
#[derive(Debug, Clone)]
pub struct Activations {
    /// `rows×c×h×w`.
    pub x: Tensor,
    /// Each row's classes.
    pub labels: Vec<Vec<usize>>,
}

impl Activations {
    /// Rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The activations entering a later block: the blocks `from..to` of `backbone` applied.
    pub fn advance(&self, backbone: &Backbone, from: usize, to: usize) -> Result<Activations> {
        if from == to {
            return Ok(self.clone());
        }
        let x = on_workers(|| {
            let mut chunks = Vec::new();
            for start in (0..self.len()).step_by(64) {
                let n = 64.min(self.len() - start);
                let mut y = self.x.narrow(0, start, n)?;
                for block in &backbone.blocks()[from..to] {
                    y = block.forward(&y)?;
                }
                chunks.push(y);
            }
            Tensor::cat(&chunks, 0)
        })
        .map_err(candle_error)?;
        Ok(Activations {
            x,
            labels: self.labels.clone(),
        })
    }
}

/// The state at the best validation loss so far.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The trained blocks (copies, not variables).
    pub blocks: Vec<Block>,
    /// The trained head.
    pub head: LinearHead,
    /// Validation accuracy (or macro F1 for multi-label).
    pub score: f64,
    /// Validation loss.
    pub loss: f64,
    /// Class probabilities of the validation rows (for ensemble selection).
    pub valid_proba: Vec<Vec<f32>>,
    /// Epochs trained when it was taken.
    pub epoch: usize,
}

/// A fine-tuning run that advances one epoch at a time (so a search can compare runs after
/// each epoch and stop the weak ones: successive halving).
pub struct FineTuner<'a> {
    params: FineTuneParams,
    first: usize,
    blocks: Vec<Block>,
    head: LinearHead,
    optimizer: Stepper,
    train: &'a Activations,
    valid: &'a Activations,
    classes: usize,
    multilabel: bool,
    row_weights: Vec<f32>,
    rng: ChaCha8Rng,
    steps: usize,
    epochs: usize,
    best: Option<Snapshot>,
    since_best: usize,
    seconds_per_epoch: Option<f64>,
    /// The epochs whose steps the warm-up is a share of: the plan's, or fewer once shortened (a
    /// lengthened run keeps its warm-up, so that its learning rate does not drop mid-run).
    warmup_epochs: usize,
    /// Validate after each epoch (`false` for a refit, which has no held-out rows).
    validating: bool,
}

impl std::fmt::Debug for FineTuner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FineTuner")
            .field("params", &self.params)
            .field("first", &self.first)
            .field("epochs", &self.epochs)
            .finish_non_exhaustive()
    }
}

impl<'a> FineTuner<'a> {
    /// Start from `backbone`'s blocks `first..` and the linear-probe `head`, on activations
    /// entering block `first`.
    pub fn new(
        backbone: &Backbone,
        head: &LinearHead,
        params: FineTuneParams,
        train: &'a Activations,
        valid: &'a Activations,
        classes: usize,
        seed: u64,
    ) -> Result<Self> {
        let first = backbone
            .blocks()
            .len()
            .saturating_sub(params.unfrozen_blocks);
        let (blocks, mut vars) = trainable_copy(&backbone.blocks()[first..])?;
        let mut head = head.clone();
        for t in [&mut head.weight, &mut head.bias] {
            let var = Var::from_tensor(t).map_err(candle_error)?;
            *t = var.as_tensor().clone();
            vars.push(var);
        }
        let optimizer = Stepper::new(
            params.optimizer,
            vars,
            params.learning_rate,
            params.weight_decay,
        )
        .map_err(candle_error)?;
        let multilabel = head.multilabel;
        let row_weights = if multilabel {
            vec![1.0; train.len()]
        } else {
            balanced_weights(&train.labels, classes)
        };
        Ok(FineTuner {
            params,
            first,
            blocks,
            head,
            optimizer,
            train,
            valid,
            classes,
            multilabel,
            row_weights,
            rng: ChaCha8Rng::seed_from_u64(seed),
            steps: 0,
            epochs: 0,
            best: None,
            since_best: 0,
            seconds_per_epoch: None,
            warmup_epochs: params.max_epochs,
            validating: true,
        })
    }

    /// A run on `rows` (training and validation images together) for exactly
    /// `params.max_epochs` epochs, with nothing held out to validate or stop early on: the refit
    /// of a configuration the search chose, for the epochs its validation chose. Its result is
    /// [`FineTuner::state`] once [`FineTuner::finished`].
    pub fn for_refit(
        backbone: &Backbone,
        head: &LinearHead,
        params: FineTuneParams,
        rows: &'a Activations,
        classes: usize,
        seed: u64,
    ) -> Result<Self> {
        let mut tuner = FineTuner::new(backbone, head, params, rows, rows, classes, seed)?;
        tuner.validating = false;
        Ok(tuner)
    }

    /// Copies of the trained blocks and head as they are now.
    pub fn state(&self) -> Result<(Vec<Block>, LinearHead)> {
        let blocks = self.copy_blocks().map_err(candle_error)?;
        Ok((blocks, self.copy_head().map_err(candle_error)?))
    }

    /// The first trained block of the backbone.
    pub fn first_block(&self) -> usize {
        self.first
    }

    /// The run's hyper-parameters.
    pub fn params(&self) -> &FineTuneParams {
        &self.params
    }

    /// Epochs completed.
    pub fn epochs(&self) -> usize {
        self.epochs
    }

    /// The best state so far.
    pub fn best(&self) -> Option<&Snapshot> {
        self.best.as_ref()
    }

    /// Seconds the last epoch took (training and validation).
    pub fn seconds_per_epoch(&self) -> Option<f64> {
        self.seconds_per_epoch
    }

    /// End the run after `max_epochs` (at least the epochs already trained) instead of the
    /// planned number, when the budget affords no more: the cosine schedule then decays to
    /// zero by the new end, as a schedule fitted to the budget should, instead of being cut
    /// off at a high learning rate. Never lengthens the run.
    pub fn shorten(&mut self, max_epochs: usize) {
        self.params.max_epochs = self.params.max_epochs.min(max_epochs.max(self.epochs));
        self.warmup_epochs = self.warmup_epochs.min(self.params.max_epochs);
    }

    /// End the run after `max_epochs` instead of the planned number, when the budget affords
    /// more: the cosine schedule is stretched over the new end (a higher learning rate from
    /// here on, decaying to zero by then; the warm-up already done is not repeated) and the
    /// patience grows in proportion, so that a longer plateau does not stop it early. Never
    /// shortens the run, nor restarts one that has finished.
    pub fn lengthen(&mut self, max_epochs: usize) {
        let planned = self.params.max_epochs;
        if self.finished() || max_epochs <= planned {
            return;
        }
        self.params.patience = (self.params.patience * max_epochs).div_ceil(planned.max(1));
        self.params.max_epochs = max_epochs;
    }

    /// True when the run reached its epochs or stopped improving.
    pub fn finished(&self) -> bool {
        self.epochs >= self.params.max_epochs || self.since_best > self.params.patience
    }

    fn steps_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.params.batch_size.max(1))
    }

    /// Linear warm-up ([`warmup_steps`]), then cosine decay to zero.
    fn learning_rate(&self) -> f64 {
        let total = (self.steps_per_epoch() * self.params.max_epochs).max(1) as f64;
        let warmup = warmup_steps(self.steps_per_epoch() * self.warmup_epochs);
        let t = self.steps as f64;
        let lr = self.params.learning_rate;
        if t < warmup {
            lr * (t + 1.0) / warmup
        } else {
            let progress = ((t - warmup) / (total - warmup).max(1.0)).min(1.0);
            lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = x.clone();
        for block in &self.blocks {
            y = block.forward(&y)?;
        }
        self.head.logits(&y.mean((2, 3))?)
    }

    /// Train one epoch, then validate. Returns `false` (without validating) when the budget ran
    /// out during the epoch; the best state so far is kept either way.
    pub fn epoch(&mut self, budget: &Budget) -> Result<bool> {
        on_workers(|| self.run_epoch(budget)).map_err(candle_error)
    }

    fn run_epoch(&mut self, budget: &Budget) -> candle_core::Result<bool> {
        let started = Instant::now();
        let device = self.train.x.device().clone();
        let mut order: Vec<u32> = (0..self.train.len() as u32).collect();
        order.shuffle(&mut self.rng);
        let k = self.classes;
        for batch in order.chunks(self.params.batch_size.max(1)) {
            if budget.exhausted() {
                return Ok(false);
            }
            let n = batch.len();
            let index = Tensor::from_slice(batch, n, &device)?;
            let x = self.train.x.index_select(&index, 0)?;
            let labels: Vec<Vec<usize>> = batch
                .iter()
                .map(|&i| self.train.labels[i as usize].clone())
                .collect();
            let t = targets(&labels, k, self.multilabel, self.params.label_smoothing);
            let w: Vec<f32> = batch
                .iter()
                .map(|&i| self.row_weights[i as usize])
                .collect();
            let (x, t, w) = self.mix(x, t, w, n)?;
            let t = Tensor::from_vec(t, (n, k), &device)?;
            let w = Tensor::from_vec(w, (n, 1), &device)?;
            let l = loss(&self.forward(&x)?, &t, &w, self.multilabel)?;
            self.optimizer.set_learning_rate(self.learning_rate());
            self.optimizer.backward_step(&l)?;
            self.steps += 1;
        }
        self.epochs += 1;
        if self.validating {
            self.validate()?;
        }
        self.seconds_per_epoch = Some(started.elapsed().as_secs_f64());
        Ok(true)
    }

    /// Mix a batch with a shuffled copy of itself (targets and row weights alike).
    fn mix(
        &mut self,
        x: Tensor,
        t: Vec<f32>,
        w: Vec<f32>,
        n: usize,
    ) -> candle_core::Result<(Tensor, Vec<f32>, Vec<f32>)> {
        let alpha = match self.params.mixing {
            Mixing::None => return Ok((x, t, w)),
            Mixing::Mixup { alpha } | Mixing::Cutmix { alpha } => alpha,
        };
        if n < 2 || alpha <= 0.0 {
            return Ok((x, t, w));
        }
        let beta = Beta::new(alpha, alpha).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let mut lambda: f64 = beta.sample(&mut self.rng);
        let mut perm: Vec<u32> = (0..n as u32).collect();
        perm.shuffle(&mut self.rng);
        let index = Tensor::from_slice(&perm, n, x.device())?;
        let other = x.index_select(&index, 0)?;
        let mixed = match self.params.mixing {
            Mixing::Cutmix { .. } => {
                let (_, _, h, wd) = x.dims4()?;
                let (y0, y1, x0, x1) = cut_box(h, wd, lambda, &mut self.rng);
                let mut mask = vec![0f32; h * wd];
                for row in y0..y1 {
                    mask[row * wd + x0..row * wd + x1].fill(1.0);
                }
                lambda = 1.0 - ((y1 - y0) * (x1 - x0)) as f64 / (h * wd) as f64;
                let mask = Tensor::from_vec(mask, (1, 1, h, wd), x.device())?;
                (x.broadcast_mul(&(1.0 - &mask)?)? + other.broadcast_mul(&mask)?)?
            }
            _ => ((&x * lambda)? + (other * (1.0 - lambda))?)?,
        };
        let k = t.len() / n;
        let l = lambda as f32;
        let mut t2 = vec![0f32; t.len()];
        let mut w2 = vec![0f32; n];
        for (i, &j) in perm.iter().enumerate() {
            let j = j as usize;
            for c in 0..k {
                t2[i * k + c] = l * t[i * k + c] + (1.0 - l) * t[j * k + c];
            }
            w2[i] = l * w[i] + (1.0 - l) * w[j];
        }
        Ok((mixed, t2, w2))
    }

    /// Validation score and loss of the current weights; keeps a snapshot when the loss improved.
    fn validate(&mut self) -> candle_core::Result<()> {
        let pooled = self.pooled(&self.valid.x)?;
        let proba: Vec<Vec<f32>> = self
            .head
            .proba(&pooled)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?
            .to_vec2()?;
        let (score, loss) =
            crate::evaluate::proba_score(&proba, &self.valid.labels, self.multilabel);
        let improved = self.best.as_ref().is_none_or(|b| loss < b.loss - 1e-5);
        if improved {
            self.best = Some(Snapshot {
                blocks: self.copy_blocks()?,
                head: self.copy_head()?,
                score,
                loss,
                valid_proba: proba,
                epoch: self.epochs,
            });
            self.since_best = 0;
        } else {
            self.since_best += 1;
        }
        Ok(())
    }

    fn pooled(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        pooled_through(&self.blocks, x, self.head.mean.dim(0)?)
    }

    fn copy_blocks(&self) -> candle_core::Result<Vec<Block>> {
        let mut out = self.blocks.clone();
        for block in &mut out {
            for (_, tensor) in block.tensors_mut() {
                *tensor = tensor.copy()?;
            }
        }
        Ok(out)
    }

    /// A copy of the head whose trained tensors no later step can change.
    fn copy_head(&self) -> candle_core::Result<LinearHead> {
        Ok(LinearHead {
            weight: self.head.weight.copy()?,
            bias: self.head.bias.copy()?,
            ..self.head.clone()
        })
    }
}

/// The fewest steps of learning-rate warm-up, unless that is more than a quarter of the run.
/// Adam's first steps move every weight by about the learning rate, whatever its gradient, and
/// with batch norm folded nothing renormalises the activations they shift: on 200 images (10 steps
/// an epoch, so 5 % of 8 epochs is 4 steps) the last five blocks of MobileNetV2 at 1e-3 doubled
/// their loss in one step and ended at validation accuracy 0.46 (loss 1.45); with 20 steps of
/// warm-up at 0.82 (loss 0.51, below the 0.63 of the linear probe they started from).
const MIN_WARMUP_STEPS: f64 = 20.0;

/// Warm-up steps of a run of `planned_steps`: 5 % of it, at least [`MIN_WARMUP_STEPS`], at most
/// a quarter of it (and at least one step).
fn warmup_steps(planned_steps: usize) -> f64 {
    let planned = planned_steps as f64;
    (planned * 0.05)
        .max(MIN_WARMUP_STEPS)
        .min(planned * 0.25)
        .max(1.0)
}

/// Copies of `blocks` whose weights and biases are fresh variables (the originals are not
/// touched), and those variables for an optimiser.
pub fn trainable_copy(blocks: &[Block]) -> Result<(Vec<Block>, Vec<Var>)> {
    let mut vars = Vec::new();
    let mut out = blocks.to_vec();
    for block in &mut out {
        for (_, t) in block.tensors_mut() {
            let var = Var::from_tensor(t).map_err(candle_error)?;
            *t = var.as_tensor().clone();
            vars.push(var);
        }
    }
    Ok((out, vars))
}

/// Pooled features (`rows×dim`) of activations `x` through `blocks`, in batches, without
/// gradients.
pub fn pooled_through(blocks: &[Block], x: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    on_workers(|| {
        let rows = x.dim(0)?;
        let mut chunks = Vec::new();
        for start in (0..rows).step_by(64) {
            let mut y = x.narrow(0, start, 64.min(rows - start))?.detach();
            for block in blocks {
                y = block.forward(&y)?;
            }
            chunks.push(y.mean((2, 3))?.detach());
        }
        if chunks.is_empty() {
            return Tensor::zeros((0, dim), DType::F32, x.device());
        }
        Tensor::cat(&chunks, 0)
    })
}

/// A box covering about `1 − lambda` of an `h×w` map at a random centre, clipped to the map:
/// `(y0, y1, x0, x1)`.
fn cut_box(h: usize, w: usize, lambda: f64, rng: &mut impl Rng) -> (usize, usize, usize, usize) {
    let ratio = (1.0 - lambda).clamp(0.0, 1.0).sqrt();
    let (bh, bw) = (
        (h as f64 * ratio).round() as usize,
        (w as f64 * ratio).round() as usize,
    );
    let (cy, cx) = (rng.random_range(0..h.max(1)), rng.random_range(0..w.max(1)));
    let y0 = cy.saturating_sub(bh / 2);
    let x0 = cx.saturating_sub(bw / 2);
    ((y0), (y0 + bh).min(h), (x0), (x0 + bw).min(w))
}

/// A tiny random network and a learnable problem on its input activations, for tests.
#[cfg(test)]
pub(crate) mod toy {
    use super::*;
    use crate::backbone::{BackboneKind, InvertedResidual};
    use crate::head::{fit_head, HeadData, HeadParams};
    use crate::nn::{Activation, ConvBn, ConvKind};
    use candle_core::Device;

    fn conv(
        out: usize,
        inputs: usize,
        kind: ConvKind,
        activation: Activation,
        rng: &mut ChaCha8Rng,
    ) -> ConvBn {
        let dims: Vec<usize> = match kind {
            ConvKind::Pointwise => vec![out, inputs],
            _ => vec![out, inputs, 3, 3],
        };
        let n: usize = dims.iter().product();
        let scale = (2.0 / (n / out) as f32).sqrt();
        let w: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
        ConvBn {
            weight: Tensor::from_vec(w, dims, &Device::Cpu).expect("weight"),
            bias: Tensor::zeros(out, DType::F32, &Device::Cpu).expect("bias"),
            kind,
            activation,
        }
    }

    /// A 2-block backbone on 8-channel 4×4 activations, train/valid activations whose class
    /// (of 3) is the channel group with the largest mean, and a linear probe on them.
    pub fn problem(seed: u64) -> (Backbone, LinearHead, Activations, Activations) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let blocks = vec![
            Block::Inverted(InvertedResidual {
                expand: Some(conv(
                    16,
                    8,
                    ConvKind::Pointwise,
                    Activation::Relu6,
                    &mut rng,
                )),
                depthwise: conv(
                    16,
                    1,
                    ConvKind::Depthwise { stride: 1 },
                    Activation::Relu6,
                    &mut rng,
                ),
                project: conv(8, 16, ConvKind::Pointwise, Activation::Identity, &mut rng),
                residual: true,
            }),
            Block::Conv(conv(
                12,
                8,
                ConvKind::Pointwise,
                Activation::Relu6,
                &mut rng,
            )),
        ];
        let backbone = Backbone::from_blocks(BackboneKind::MobilenetV2, blocks, &Device::Cpu);
        let mut sample = |n: usize| {
            let mut x = Vec::with_capacity(n * 8 * 16);
            let mut labels = Vec::with_capacity(n);
            for i in 0..n {
                let class = i % 3;
                for c in 0..8 {
                    let shift = if c / 2 == class { 0.8 } else { 0.0 };
                    for _ in 0..16 {
                        x.push(rng.random_range(-1.0f32..1.0) + shift);
                    }
                }
                labels.push(vec![class]);
            }
            Activations {
                x: Tensor::from_vec(x, (n, 8, 4, 4), &Device::Cpu).expect("x"),
                labels,
            }
        };
        let (train, valid) = (sample(120), sample(60));
        let pooled = |a: &Activations| pooled_through(backbone.blocks(), &a.x, 12).expect("pooled");
        let tx = pooled(&train);
        // A weak probe (two L-BFGS iterations, a strong penalty) for fine-tuning to improve on.
        let head = crate::head::fit_head(
            &HeadData {
                x: &tx,
                labels: &train.labels,
            },
            3,
            false,
            &HeadParams {
                max_steps: 2,
                weight_decay: 0.3,
                ..HeadParams::default()
            },
        )
        .expect("probe");
        let _ = fit_head;
        (backbone, head, train, valid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_that_cannot_train_is_refused_by_name() {
        assert!(FineTuneParams::default().check().is_ok());
        for preference in [
            exeml_core::Preference::PerformanceFirst,
            exeml_core::Preference::Balance,
            exeml_core::Preference::AccuracyFirst,
        ] {
            for arm in crate::search::fine_tune_arms(preference, true) {
                assert!(arm.check().is_ok(), "{arm:?}");
            }
        }
        let default = FineTuneParams::default;
        let bad = [
            (
                FineTuneParams {
                    unfrozen_blocks: 0,
                    ..default()
                },
                "unfrozen_blocks",
            ),
            (
                FineTuneParams {
                    learning_rate: 0.0,
                    ..default()
                },
                "learning_rate",
            ),
            (
                FineTuneParams {
                    learning_rate: f64::NAN,
                    ..default()
                },
                "learning_rate",
            ),
            (
                FineTuneParams {
                    weight_decay: -1.0,
                    ..default()
                },
                "weight_decay",
            ),
            (
                FineTuneParams {
                    max_epochs: 0,
                    ..default()
                },
                "max_epochs",
            ),
            (
                FineTuneParams {
                    batch_size: 0,
                    ..default()
                },
                "batch_size",
            ),
            (
                FineTuneParams {
                    label_smoothing: 1.0,
                    ..default()
                },
                "label_smoothing",
            ),
            (
                FineTuneParams {
                    mixing: Mixing::Cutmix { alpha: 0.0 },
                    ..default()
                },
                "alpha",
            ),
            (
                FineTuneParams {
                    optimizer: OptimizerKind::Sgd { momentum: 1.0 },
                    ..default()
                },
                "momentum",
            ),
        ];
        for (params, name) in bad {
            let err = params.check().expect_err(name).to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn arms_are_read_from_json_with_defaults_for_what_is_left_out() {
        let arms = FineTuneParams::list_from_json(
            r#"[{"unfrozen_blocks": 5, "mixing": {"kind": "mixup", "alpha": 0.2}}, {}]"#,
        )
        .expect("arms");
        let expected = FineTuneParams {
            unfrozen_blocks: 5,
            mixing: Mixing::Mixup { alpha: 0.2 },
            ..FineTuneParams::default()
        };
        assert_eq!(arms, vec![expected, FineTuneParams::default()]);
        let sgd = FineTuneParams::list_from_json(
            r#"[{"optimizer": {"kind": "sgd", "momentum": 0.9}, "learning_rate": 0.01}]"#,
        )
        .expect("sgd arm");
        assert_eq!(sgd[0].optimizer, OptimizerKind::Sgd { momentum: 0.9 });
        // An entry written before the optimiser was a field reads as AdamW.
        let mut old = serde_json::to_value(expected).expect("json");
        old.as_object_mut().expect("object").remove("optimizer");
        let old: FineTuneParams = serde_json::from_value(old).expect("old entry");
        assert_eq!(old.optimizer, OptimizerKind::Adamw);
        // A leaderboard's entry, written whole, reads back as it was.
        let written = serde_json::to_string(&vec![expected]).expect("json");
        assert_eq!(
            FineTuneParams::list_from_json(&written).expect("read"),
            vec![expected]
        );
        for (json, says) in [
            (r#"[{"learnig_rate": 0.1}]"#, "unknown field `learnig_rate`"),
            (r#"[{"max_epochs": "many"}]"#, "arm 0"),
            (r#"[{}, {"batch_size": 0}]"#, "batch_size"),
            (r#"{"unfrozen_blocks": 2}"#, "expected a JSON list"),
            (r#"[{"mixing": {"kind": "shuffle"}}]"#, "arm 0"),
            (r#"[{"optimizer": {"kind": "lbfgs"}}]"#, "arm 0"),
            (
                r#"[{"optimizer": {"kind": "sgd", "momentum": -0.5}}]"#,
                "momentum",
            ),
        ] {
            let err = FineTuneParams::list_from_json(json)
                .expect_err(json)
                .to_string();
            assert!(err.contains(says), "{json}: {err}");
        }
    }

    #[test]
    fn an_arm_is_described_in_the_words_of_the_leaderboard() {
        let plain = FineTuneParams {
            unfrozen_blocks: 5,
            learning_rate: 3e-4,
            ..FineTuneParams::default()
        };
        assert_eq!(plain.short_description(), "5 blocks, lr 3e-4");
        let mixed_sgd = FineTuneParams {
            mixing: Mixing::Cutmix { alpha: 1.0 },
            optimizer: OptimizerKind::Sgd { momentum: 0.9 },
            ..plain
        };
        assert_eq!(
            mixed_sgd.short_description(),
            "5 blocks, lr 3e-4, cutmix 1, sgd 0.9"
        );
        assert_eq!(Mixing::None.to_string(), "no mixing");
    }

    fn probe_loss(backbone: &Backbone, head: &LinearHead, valid: &Activations) -> f64 {
        let x = pooled_through(backbone.blocks(), &valid.x, 12).expect("pooled");
        crate::evaluate::validation_score(head, &x, &valid.labels, false)
            .expect("score")
            .1
    }

    #[test]
    fn fine_tuning_the_blocks_lowers_the_validation_loss_of_a_weak_probe() {
        let (backbone, head, train, valid) = toy::problem(1);
        let before = probe_loss(&backbone, &head, &valid);
        let sgd = OptimizerKind::Sgd { momentum: 0.9 };
        for (mixing, optimizer, learning_rate) in [
            (Mixing::None, OptimizerKind::Adamw, 1e-2),
            (Mixing::Mixup { alpha: 0.2 }, OptimizerKind::Adamw, 1e-2),
            (Mixing::Cutmix { alpha: 1.0 }, OptimizerKind::Adamw, 1e-2),
            (Mixing::None, sgd, 5e-2),
        ] {
            let params = FineTuneParams {
                unfrozen_blocks: 2,
                learning_rate,
                optimizer,
                max_epochs: 12,
                batch_size: 16,
                mixing,
                patience: 12,
                ..FineTuneParams::default()
            };
            let mut tuner =
                FineTuner::new(&backbone, &head, params, &train, &valid, 3, 7).expect("tuner");
            while !tuner.finished() {
                assert!(tuner.epoch(&Budget::unlimited()).expect("epoch"));
            }
            let best = tuner.best().expect("a snapshot");
            assert!(
                best.loss < before,
                "{mixing:?} {optimizer:?}: {} vs probe {before}",
                best.loss
            );
            assert!(best.score > 0.6, "{mixing:?}: accuracy {}", best.score);
            // The snapshot's blocks reproduce its loss (they are copies, not live variables).
            let x = pooled_through(&best.blocks, &valid.x, 12).expect("pooled");
            let (_, loss) = crate::evaluate::validation_score(&best.head, &x, &valid.labels, false)
                .expect("score");
            assert!((loss - best.loss).abs() < 1e-4, "{loss} vs {}", best.loss);
        }
        // The backbone the tuners started from is untouched.
        assert!((probe_loss(&backbone, &head, &valid) - before).abs() < 1e-9);
    }

    #[test]
    fn an_exhausted_budget_stops_before_the_first_step() {
        let (backbone, head, train, valid) = toy::problem(2);
        let budget = Budget::new(std::time::Duration::ZERO);
        let mut tuner = FineTuner::new(
            &backbone,
            &head,
            FineTuneParams::default(),
            &train,
            &valid,
            3,
            0,
        )
        .expect("tuner");
        assert!(!tuner.epoch(&budget).expect("epoch"));
        assert!(tuner.best().is_none());
        assert_eq!(tuner.epochs(), 0);
    }

    #[test]
    fn a_lengthened_run_stretches_its_cosine_and_patience_but_keeps_its_warm_up() {
        let (backbone, head, train, valid) = toy::problem(4);
        let params = FineTuneParams {
            max_epochs: 4,
            batch_size: 16,
            patience: 2,
            ..FineTuneParams::default()
        };
        let mut tuner =
            FineTuner::new(&backbone, &head, params, &train, &valid, 3, 0).expect("tuner");
        // 120 rows / 16 = 8 steps an epoch; 32 planned, so 8 steps of warm-up (a quarter).
        assert_eq!(warmup_steps(32), 8.0);
        let lr = params.learning_rate;
        for _ in 0..2 {
            assert!(tuner.epoch(&Budget::unlimited()).expect("epoch"));
        }
        let before = tuner.learning_rate();
        tuner.lengthen(16);
        assert_eq!(
            (tuner.params().max_epochs, tuner.params().patience),
            (16, 8)
        );
        let after = tuner.learning_rate();
        // Past the warm-up either way: the stretched cosine is higher at the same step.
        assert!(after > before && after < lr, "{before} -> {after}");
        let progress = (16.0 - 8.0) / (128.0 - 8.0);
        let expected = lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        assert!((after - expected).abs() < 1e-12, "{after} vs {expected}");
        // Never shorter, and shortening still works after it.
        tuner.lengthen(10);
        assert_eq!(tuner.params().max_epochs, 16);
        tuner.shorten(3);
        assert_eq!(tuner.params().max_epochs, 3);
        assert_eq!(tuner.params().patience, 8);
    }

    #[test]
    fn warm_up_is_five_percent_of_a_long_run_and_at_least_twenty_steps_of_a_short_one() {
        assert_eq!(warmup_steps(800), 40.0);
        assert_eq!(warmup_steps(200), 20.0);
        assert_eq!(warmup_steps(80), 20.0);
        assert_eq!(warmup_steps(40), 10.0);
        assert_eq!(warmup_steps(2), 1.0);
        assert_eq!(warmup_steps(0), 1.0);
    }

    #[test]
    fn cut_boxes_stay_inside_the_map() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for i in 0..200 {
            let lambda = f64::from(i) / 200.0;
            let (y0, y1, x0, x1) = cut_box(7, 5, lambda, &mut rng);
            assert!(y0 <= y1 && y1 <= 7 && x0 <= x1 && x1 <= 5, "{i}");
        }
        // λ = 0 asks for the whole map: centred boxes get clipped, never overflow.
        let (y0, y1, x0, x1) = cut_box(4, 4, 0.0, &mut rng);
        assert!(y1 - y0 <= 4 && x1 - x0 <= 4);
    }
}
