//! One stacking layer over a bagged model (Wolpert's stacked generalisation, as scikit-learn's
//! `StackingClassifier` / `StackingRegressor`): a regularised linear model reads the
//! out-of-fold predictions of every bagged configuration and learns how far to trust each one,
//! per class — where the greedy weighted average ([`crate::ensemble`]) can only mix
//! probabilities with one weight per model — and recalibrates the result.
//!
//! The final model is a pooling of the inputs with learned weights: multiclass, softmax of
//! `b_c + Σ_j w_jc · ln p_jc` (a weight per input and class); binary, the sigmoid of
//! `b + Σ_j w_j · logit p_j`; regression, `b + Σ_j w_j · v_j` (on values scaled by the
//! target's spread). The L2 penalty pulls the weights towards those of the greedy weighted
//! average (chosen on the same rows), not towards zero, so a strongly regularised stacker is
//! that average pooled in log space, never a flat guess. scikit-learn's default (a full
//! logistic regression on every probability, shrunk towards zero) and a pull towards equal
//! weights both lost to the weighted average on the small tables tried here: the first's
//! `inputs × classes²` weights overfit, the second gives weak models a say.
//!
//! The strength is chosen by cross-validation on the out-of-fold predictions, and the same
//! folds score the weighted average: the caller ships the stacker only when it wins there
//! ([`Stacking::beats_blend`]). A stacker needs out-of-fold predictions of every row, so it is
//! only fitted over bagging. Written here because no crate fits this constrained model; the
//! solver is full-batch Adam over a few dozen weights.

use crate::bagging;
use crate::ensemble::{self, EnsembleLimits};
use crate::family::{load_weight_and_bias, save_weight_and_bias};
use crate::family::{sigmoid, softmax_in_place, Adam, Problem};
use exeml_core::{Error, FitContext, ProblemType, Result};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Most rows the stacker is fitted and cross-validated on (a seeded sample beyond it): a few
/// dozen weights are well determined by a few thousand rows, and the solver's cost grows
/// with them.
pub const STACK_ROWS: usize = 4_000;

/// Folds of the stacker's own cross-validation (on the out-of-fold predictions).
const STACK_FOLDS: usize = 3;

/// L2 penalties tried (on the mean loss, towards the weighted average's weights).
const PENALTIES: [f64; 4] = [10.0, 1.0, 1e-1, 1e-2];

/// The relative loss improvement over the weighted average a stacker must show in
/// cross-validation to be shipped (on a tie the simpler average stays).
pub const MIN_GAIN: f64 = 0.005;

/// Probabilities are clamped to [`PROBABILITY_FLOOR`, 1 − floor] before their log is taken.
const PROBABILITY_FLOOR: f64 = 1e-6;

/// Most solver steps of one fit (it stops earlier once the loss settles).
const MAX_STEPS: usize = 600;

/// The random stream of the stacker's row sample and folds (see `exeml_core::seed`).
const STACKING_STREAM: u64 = 0x57ac;

/// The weights file inside the stacker's folder.
const WEIGHTS_FILE: &str = "stacker.safetensors";

/// The file-level description of a stacker, kept in the model's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackerManifest {
    /// The final model: `log_linear_pooling` (classification) or `linear_pooling`
    /// (regression).
    pub final_model: String,
    /// Its L2 penalty towards equal weights, chosen by cross-validation.
    pub l2: f64,
    /// How many inputs it reads: the models whose predictions it stacks, each the average of
    /// the ensemble members that name it as their `input`.
    pub inputs: usize,
    /// The sub-folder holding its weights.
    pub folder: String,
    /// Regression: inputs and target are read as `(value − offset) / scale` (the target's
    /// mean and spread on the rows it was fitted on).
    #[serde(default)]
    pub offset: f64,
    /// See `offset`.
    #[serde(default = "one")]
    pub scale: f64,
    /// Its cross-validated loss on the out-of-fold predictions (log loss or squared error).
    pub cv_loss: f64,
    /// The cross-validated loss of the weighted average on the same folds.
    pub blend_cv_loss: f64,
}

fn one() -> f64 {
    1.0
}

/// A fitted stacker: reads one prediction vector per input model and predicts the target.
#[derive(Debug, Clone, PartialEq)]
pub struct Stacker {
    problem: Problem,
    inputs: usize,
    offset: f64,
    scale: f64,
    /// `weights[j * width + c]`: input `j`, output `c` (`width` = classes for multiclass,
    /// else 1).
    weights: Vec<f64>,
    /// One bias per output.
    bias: Vec<f64>,
}

/// Outputs of the pooling per row: one score per class (multiclass), else one.
fn pooled_width(problem: Problem) -> usize {
    match problem.kind {
        ProblemType::Multiclass => problem.n_classes,
        _ => 1,
    }
}

impl Stacker {
    /// The pooling of the inputs with weights `prior` (one per input), which the penalty
    /// pulls towards.
    fn pooling(problem: Problem, prior: &[f64], offset: f64, scale: f64) -> Self {
        let width = pooled_width(problem);
        Stacker {
            problem,
            inputs: prior.len(),
            offset,
            scale,
            weights: prior
                .iter()
                .flat_map(|&w| std::iter::repeat_n(w, width))
                .collect(),
            bias: vec![0.0; width],
        }
    }

    /// How many input models it reads.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// The weight of input `j` for output `c` (class `c` for multiclass; `c` = 0 otherwise).
    pub fn weight(&self, j: usize, c: usize) -> f64 {
        self.weights[j * pooled_width(self.problem) + c]
    }

    /// Predict from the inputs' predictions (each row-major, as [`crate::family::Estimator`]
    /// predicts): probabilities `rows × classes`, or values.
    pub fn predict(&self, inputs: &[&[f64]]) -> Vec<f64> {
        let features = pooled_features(self.problem, inputs, self.offset, self.scale);
        self.predict_features(&features)
    }

    /// Raw pooled scores, row-major `rows × pooled width`.
    fn scores(&self, features: &[Vec<f64>]) -> Vec<f64> {
        let width = pooled_width(self.problem);
        let rows = features.first().map_or(0, |f| f.len() / width);
        let mut out: Vec<f64> = (0..rows).flat_map(|_| self.bias.iter().copied()).collect();
        for (j, feature) in features.iter().enumerate() {
            let w = &self.weights[j * width..(j + 1) * width];
            for (o, (v, w)) in out.iter_mut().zip(feature.iter().zip(w.iter().cycle())) {
                *o += w * v;
            }
        }
        out
    }

    fn predict_features(&self, features: &[Vec<f64>]) -> Vec<f64> {
        let scores = self.scores(features);
        match self.problem.kind {
            ProblemType::Regression => scores
                .iter()
                .map(|z| self.offset + self.scale * z)
                .collect(),
            ProblemType::Binary => scores
                .iter()
                .flat_map(|&z| [1.0 - sigmoid(z), sigmoid(z)])
                .collect(),
            _ => {
                let mut out = scores;
                for row in out.chunks_mut(self.problem.n_classes) {
                    softmax_in_place(row);
                }
                out
            }
        }
    }

    /// Write its weights into `dir` (created if missing); returns the written file names.
    pub fn save(&self, dir: &Path) -> Result<Vec<String>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        save_weight_and_bias(&dir.join(WEIGHTS_FILE), &self.weights, &self.bias)?;
        Ok(vec![WEIGHTS_FILE.to_string()])
    }

    /// Read the stacker `manifest` describes from `dir`, checking its shape.
    pub fn load(dir: &Path, problem: Problem, manifest: &StackerManifest) -> Result<Self> {
        let path = dir.join(WEIGHTS_FILE);
        let (weights, bias) = load_weight_and_bias(&path)?;
        let width = pooled_width(problem);
        if manifest.inputs == 0 || weights.len() != manifest.inputs * width || bias.len() != width {
            return Err(Error::Format {
                path,
                message: format!(
                    "the stacker holds {} weights and {} biases, but {} inputs of {width} outputs need {} and {width}",
                    weights.len(),
                    bias.len(),
                    manifest.inputs,
                    manifest.inputs * width
                ),
            });
        }
        let finite = manifest.scale.is_finite()
            && manifest.scale > 0.0
            && manifest.offset.is_finite()
            && weights.iter().chain(&bias).all(|v| v.is_finite());
        if !finite {
            return Err(Error::Format {
                path,
                message: "the stacker's weights, scale or offset are not finite numbers".into(),
            });
        }
        Ok(Stacker {
            problem,
            inputs: manifest.inputs,
            offset: manifest.offset,
            scale: manifest.scale,
            weights,
            bias,
        })
    }
}

/// A stacker fitted over out-of-fold predictions, with what it was compared against.
#[derive(Debug, Clone)]
pub struct Stacking {
    /// The fitted stacker.
    pub stacker: Stacker,
    /// Its description for the manifest.
    pub manifest: StackerManifest,
    /// A prediction of every row by a stacker that did not see it (cross-validated on the
    /// sampled rows, the final stacker on the others): row-major, as the inputs.
    pub out: Vec<f64>,
}

impl Stacking {
    /// True when its cross-validated loss beats the weighted average's by [`MIN_GAIN`].
    pub fn beats_blend(&self) -> bool {
        self.manifest.cv_loss < self.manifest.blend_cv_loss * (1.0 - MIN_GAIN)
    }

    /// A one-line account for the leaderboard.
    pub fn summary(&self) -> String {
        format!(
            "{} (l2={}) on {} models: cross-validated loss {:.5} against {:.5} for the weighted average{}",
            self.manifest.final_model,
            self.manifest.l2,
            self.manifest.inputs,
            self.manifest.cv_loss,
            self.manifest.blend_cv_loss,
            if self.beats_blend() { "" } else { "; not used" }
        )
    }
}

/// The stacker's features, one vector per input, laid out as the pooled scores (row-major
/// `rows × pooled width`): log-probabilities (multiclass), the positive class's logit (binary),
/// or the value scaled as the target (regression).
fn pooled_features(problem: Problem, inputs: &[&[f64]], offset: f64, scale: f64) -> Vec<Vec<f64>> {
    inputs
        .iter()
        .map(|predictions| match problem.kind {
            ProblemType::Regression => predictions.iter().map(|v| (v - offset) / scale).collect(),
            ProblemType::Binary => predictions
                .chunks_exact(2)
                .map(|row| {
                    let p = row[1].clamp(PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR);
                    (p / (1.0 - p)).ln()
                })
                .collect(),
            _ => predictions
                .iter()
                .map(|p| p.max(PROBABILITY_FLOOR).ln())
                .collect(),
        })
        .collect()
}

/// Rows `rows` of row-major predictions `width` wide.
fn take_rows(predictions: &[f64], width: usize, rows: &[usize]) -> Vec<f64> {
    rows.iter()
        .flat_map(|&r| predictions[r * width..(r + 1) * width].iter().copied())
        .collect()
}

/// What one stacker fit needs besides its rows.
struct StackProblem<'a> {
    problem: Problem,
    y: &'a [f64],
    inputs: &'a [&'a [f64]],
    offset: f64,
    scale: f64,
}

impl StackProblem<'_> {
    /// Fit a stacker with L2 penalty `l2` (on the mean loss) towards the input weights `prior`
    /// on `rows`, by full-batch Adam from the prior's pooling; `None` when the budget runs out.
    fn fit(&self, rows: &[usize], l2: f64, prior: &[f64], ctx: &FitContext<'_>) -> Option<Stacker> {
        let problem = self.problem;
        let width = problem.output_width();
        let pooled = pooled_width(problem);
        let inputs: Vec<Vec<f64>> = self
            .inputs
            .iter()
            .map(|p| take_rows(p, width, rows))
            .collect();
        let refs: Vec<&[f64]> = inputs.iter().map(Vec::as_slice).collect();
        let features = pooled_features(problem, &refs, self.offset, self.scale);
        let y: Vec<f64> = rows.iter().map(|&r| self.y[r]).collect();
        let mut stacker = Stacker::pooling(problem, prior, self.offset, self.scale);
        let prior_of = |p: usize| prior[p / pooled];
        let n = rows.len().max(1) as f64;
        let params = stacker.weights.len() + pooled;
        let mut adam = Adam::new(params, 0.05);
        let mut last = f64::INFINITY;
        for _ in 0..MAX_STEPS {
            if ctx.budget.exhausted() {
                return None;
            }
            // The loss's gradient with respect to each pooled score, and the loss.
            let scores = stacker.scores(&features);
            let mut residual = vec![0.0; scores.len()];
            let mut loss = 0.0;
            match problem.kind {
                ProblemType::Regression => {
                    for (r, (&z, &t)) in scores.iter().zip(&y).enumerate() {
                        let target = (t - self.offset) / self.scale;
                        residual[r] = z - target;
                        loss += 0.5 * (z - target) * (z - target);
                    }
                }
                ProblemType::Binary => {
                    for (r, (&z, &t)) in scores.iter().zip(&y).enumerate() {
                        let p = sigmoid(z);
                        residual[r] = p - t;
                        loss -= if t == 1.0 { p } else { 1.0 - p }.max(1e-15).ln();
                    }
                }
                _ => {
                    for (r, &t) in y.iter().enumerate() {
                        let row = &mut residual[r * pooled..(r + 1) * pooled];
                        row.copy_from_slice(&scores[r * pooled..(r + 1) * pooled]);
                        softmax_in_place(row);
                        loss -= row[t as usize].max(1e-15).ln();
                        row[t as usize] -= 1.0;
                    }
                }
            }
            let penalty: f64 = stacker
                .weights
                .iter()
                .enumerate()
                .map(|(p, w)| (w - prior_of(p)) * (w - prior_of(p)))
                .sum();
            let total = loss / n + 0.5 * l2 * penalty;
            let mut grad = vec![0.0; params];
            for (j, feature) in features.iter().enumerate() {
                for (i, (g, v)) in residual.iter().zip(feature).enumerate() {
                    grad[j * pooled + i % pooled] += g * v;
                }
            }
            for (i, g) in residual.iter().enumerate() {
                grad[stacker.weights.len() + i % pooled] += g;
            }
            for (p, g) in grad.iter_mut().enumerate() {
                *g /= n;
                if p < stacker.weights.len() {
                    *g += l2 * (stacker.weights[p] - prior_of(p));
                }
            }
            for (p, update) in adam.steps(&grad).into_iter().enumerate() {
                match p.checked_sub(stacker.weights.len()) {
                    None => stacker.weights[p] -= update,
                    Some(b) => stacker.bias[b] -= update,
                }
            }
            if (last - total).abs() < 1e-9 * total.abs().max(1e-12) {
                break;
            }
            last = total;
        }
        Some(stacker)
    }
}

/// The weight of each input in the weighted average chosen on `inputs` for `y` (greedy
/// selection under `limits`, or the best single input without them).
fn blend_weights(
    problem: Problem,
    y: &[f64],
    inputs: &[&[f64]],
    limits: Option<EnsembleLimits>,
) -> Vec<f64> {
    // Ranked best first by their own loss, as the selection expects.
    let mut order: Vec<(usize, f64)> = inputs
        .iter()
        .map(|p| ensemble::loss(problem, y, p))
        .enumerate()
        .collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let ranked: Vec<&[f64]> = order.iter().map(|&(i, _)| inputs[i]).collect();
    let mut weights = vec![0.0; inputs.len()];
    match limits.and_then(|limits| ensemble::select(problem, y, &ranked, limits)) {
        Some(selection) => {
            for (rank, w) in selection.weights {
                weights[order[rank].0] = w;
            }
        }
        None => weights[order[0].0] = 1.0,
    }
    weights
}

/// Fit a stacker over `inputs` (each the out-of-fold predictions of one bagged configuration
/// for every row, row-major) for the targets `y`. Its penalty pulls towards the weighted
/// average's weights (greedy selection under `limits`), pooled in log space. The penalty's
/// strength is chosen by cross-validation, and the weighted average is scored on the same
/// folds, its weights chosen on each fold's other rows as the stacker's prior is. `None` with
/// fewer than two inputs, too few rows, or when the budget runs out.
pub fn fit(
    problem: Problem,
    y: &[f64],
    inputs: &[&[f64]],
    limits: Option<EnsembleLimits>,
    ctx: &FitContext<'_>,
) -> Option<Stacking> {
    let width = problem.output_width();
    if inputs.len() < 2
        || y.len() < 10 * STACK_FOLDS
        || inputs.iter().any(|p| p.len() != y.len() * width)
    {
        return None;
    }
    // The sampled rows, in a seeded order (all of them on small tables).
    let mut sampled: Vec<usize> = (0..y.len()).collect();
    if sampled.len() > STACK_ROWS {
        let mut rng = exeml_core::seed::rng(ctx.seed, STACKING_STREAM);
        sampled.shuffle(&mut rng);
        sampled.truncate(STACK_ROWS);
        sampled.sort_unstable();
    }
    let y_sampled: Vec<f64> = sampled.iter().map(|&r| y[r]).collect();
    let fold_of = bagging::fold_ids(&y_sampled, problem, STACK_FOLDS, ctx.seed ^ STACKING_STREAM);
    let (offset, scale) = if problem.kind == ProblemType::Regression {
        let n = y_sampled.len() as f64;
        let mean = y_sampled.iter().sum::<f64>() / n;
        let var = y_sampled
            .iter()
            .map(|v| (v - mean) * (v - mean))
            .sum::<f64>()
            / n;
        (mean, var.sqrt().max(1e-12))
    } else {
        (0.0, 1.0)
    };
    let sampled_inputs: Vec<Vec<f64>> = inputs
        .iter()
        .map(|p| take_rows(p, width, &sampled))
        .collect();
    let sampled_refs: Vec<&[f64]> = sampled_inputs.iter().map(Vec::as_slice).collect();
    let stack = StackProblem {
        problem,
        y: &y_sampled,
        inputs: &sampled_refs,
        offset,
        scale,
    };
    // Out-of-fold predictions of the weighted average and of the stacker at each penalty.
    let mut blend_out = vec![0.0; sampled.len() * width];
    let mut stacked_out = vec![vec![0.0; sampled.len() * width]; PENALTIES.len()];
    for f in 0..STACK_FOLDS {
        let (held, fit_rows): (Vec<usize>, Vec<usize>) =
            (0..sampled.len()).partition(|&i| fold_of[i] == f);
        let y_fit: Vec<f64> = fit_rows.iter().map(|&i| y_sampled[i]).collect();
        let fit_inputs: Vec<Vec<f64>> = sampled_refs
            .iter()
            .map(|p| take_rows(p, width, &fit_rows))
            .collect();
        let fit_refs: Vec<&[f64]> = fit_inputs.iter().map(Vec::as_slice).collect();
        let prior = blend_weights(problem, &y_fit, &fit_refs, limits);
        let held_inputs: Vec<Vec<f64>> = sampled_refs
            .iter()
            .map(|p| take_rows(p, width, &held))
            .collect();
        let held_refs: Vec<&[f64]> = held_inputs.iter().map(Vec::as_slice).collect();
        let pairs: Vec<(usize, f64)> = prior.iter().copied().enumerate().collect();
        let mut predicted = vec![ensemble::blend(problem, &held_refs, &pairs)];
        for &l2 in &PENALTIES {
            predicted.push(stack.fit(&fit_rows, l2, &prior, ctx)?.predict(&held_refs));
        }
        let outs = std::iter::once(&mut blend_out).chain(stacked_out.iter_mut());
        for (out, predicted) in outs.zip(&predicted) {
            for (j, &i) in held.iter().enumerate() {
                out[i * width..(i + 1) * width]
                    .copy_from_slice(&predicted[j * width..(j + 1) * width]);
            }
        }
    }
    let blend_cv_loss = ensemble::loss(problem, &y_sampled, &blend_out);
    let (best, cv_loss) = stacked_out
        .iter()
        .map(|out| ensemble::loss(problem, &y_sampled, out))
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    let l2 = PENALTIES[best];
    let all_sampled: Vec<usize> = (0..sampled.len()).collect();
    let prior = blend_weights(problem, &y_sampled, &sampled_refs, limits);
    let stacker = stack.fit(&all_sampled, l2, &prior, ctx)?;
    // Rows outside the sample were not seen by the final stacker: its predictions of them are
    // honest; the sampled rows take their cross-validated predictions.
    let mut out = stacker.predict(inputs);
    let cv_out = &stacked_out[best];
    for (i, &r) in sampled.iter().enumerate() {
        out[r * width..(r + 1) * width].copy_from_slice(&cv_out[i * width..(i + 1) * width]);
    }
    let final_model = match problem.kind {
        ProblemType::Regression => "linear_pooling",
        _ => "log_linear_pooling",
    };
    Some(Stacking {
        manifest: StackerManifest {
            final_model: final_model.into(),
            l2,
            inputs: inputs.len(),
            folder: STACKER_FOLDER.into(),
            offset,
            scale,
            cv_loss,
            blend_cv_loss,
        },
        stacker,
        out,
    })
}

/// The sub-folder of a model that holds its stacker's weights.
pub const STACKER_FOLDER: &str = "stacker";

#[cfg(test)]
mod tests {
    use super::*;
    use exeml_core::Budget;
    use rand::Rng;

    fn context(budget: Budget) -> FitContext<'static> {
        FitContext {
            budget,
            ..crate::family::test_context(3)
        }
    }

    const MULTICLASS: Problem = Problem {
        kind: ProblemType::Multiclass,
        n_classes: 3,
    };

    /// Two models, each sure and right on a different class and guessing on the others: no
    /// single weight per model can use both, a per-class stacker can.
    fn specialists(rows: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut rng = exeml_core::seed::rng(1, 2);
        let (mut y, mut a, mut b) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rows {
            let class = rng.random_range(0..3usize);
            y.push(class as f64);
            let guess = |sure: usize, rng: &mut exeml_core::seed::Rng| -> [f64; 3] {
                if class == sure {
                    let mut p = [0.02; 3];
                    p[sure] = 0.96;
                    p
                } else {
                    // Right class slightly favoured among the other two.
                    let mut p = [0.0; 3];
                    let noise: f64 = rng.random_range(-0.15..0.15);
                    p[sure] = 0.3;
                    for (j, v) in p.iter_mut().enumerate() {
                        if j != sure {
                            *v = if j == class { 0.4 + noise } else { 0.3 - noise };
                        }
                    }
                    p
                }
            };
            a.extend(guess(0, &mut rng));
            b.extend(guess(1, &mut rng));
        }
        (y, a, b)
    }

    #[test]
    fn a_per_class_stacker_beats_the_weighted_average_of_specialists() {
        let (y, a, b) = specialists(600);
        let limits = EnsembleLimits {
            rounds: 25,
            max_members: 4,
        };
        let stacking = fit(
            MULTICLASS,
            &y,
            &[&a, &b],
            Some(limits),
            &context(Budget::unlimited()),
        )
        .expect("stacked");
        assert!(stacking.beats_blend(), "{}", stacking.summary());
        assert_eq!(stacking.out.len(), y.len() * 3);
        // The honest predictions score what the manifest says.
        let honest = ensemble::loss(MULTICLASS, &y, &stacking.out);
        assert!((honest - stacking.manifest.cv_loss).abs() < 1e-9);
        let stacked = stacking.stacker.predict(&[&a, &b]);
        assert!(ensemble::loss(MULTICLASS, &y, &stacked) < stacking.manifest.blend_cv_loss);
    }

    #[test]
    fn copies_of_a_calibrated_model_are_not_stacked() {
        // Each row's class is drawn from the model's own probabilities: nothing to correct.
        let mut rng = exeml_core::seed::rng(7, 8);
        let (mut y, mut p) = (Vec::new(), Vec::new());
        for _ in 0..600 {
            let raw: Vec<f64> = (0..3)
                .map(|_| rng.random_range(0.05..1.0f64).powi(2))
                .collect();
            let total: f64 = raw.iter().sum();
            let row: Vec<f64> = raw.iter().map(|v| v / total).collect();
            let draw: f64 = rng.random_range(0.0..1.0);
            let class = if draw < row[0] {
                0
            } else if draw < row[0] + row[1] {
                1
            } else {
                2
            };
            y.push(class as f64);
            p.extend(row);
        }
        let stacking = fit(
            MULTICLASS,
            &y,
            &[&p, &p],
            None,
            &context(Budget::unlimited()),
        )
        .expect("stacked");
        assert!(!stacking.beats_blend(), "{}", stacking.summary());
    }

    #[test]
    fn a_regression_stacker_undoes_a_biased_input() {
        let problem = Problem {
            kind: ProblemType::Regression,
            n_classes: 1,
        };
        let mut rng = exeml_core::seed::rng(5, 6);
        let y: Vec<f64> = (0..500).map(|_| rng.random_range(0.0..100.0)).collect();
        // One input is right but noisy; the other is exact up to scale and shift.
        let noisy: Vec<f64> = y
            .iter()
            .map(|v| v + rng.random_range(-10.0..10.0))
            .collect();
        let scaled: Vec<f64> = y.iter().map(|v| 0.5 * v + 20.0).collect();
        let stacking = fit(
            problem,
            &y,
            &[&noisy, &scaled],
            None,
            &context(Budget::unlimited()),
        )
        .expect("stacked");
        assert!(stacking.beats_blend(), "{}", stacking.summary());
        // The noisy input alone has a squared error of about 33; the stacker rescales the other.
        let mse = ensemble::loss(problem, &y, &stacking.out);
        assert!(
            mse < stacking.manifest.blend_cv_loss / 2.0,
            "mse {mse}, {}",
            stacking.summary()
        );
    }

    #[test]
    fn saves_and_loads_the_same_stacker() {
        let (y, a, b) = specialists(200);
        let stacking = fit(
            MULTICLASS,
            &y,
            &[&a, &b],
            None,
            &context(Budget::unlimited()),
        )
        .expect("stacked");
        let dir = tempfile::tempdir().expect("tempdir");
        stacking.stacker.save(dir.path()).expect("save");
        let loaded = Stacker::load(dir.path(), MULTICLASS, &stacking.manifest).expect("load");
        assert_eq!(loaded, stacking.stacker);
        let mut wrong = stacking.manifest.clone();
        wrong.inputs = 3;
        let err = Stacker::load(dir.path(), MULTICLASS, &wrong).expect_err("width");
        assert!(err.to_string().contains("3 inputs"), "{err}");
    }

    #[test]
    fn nothing_is_stacked_without_two_inputs_or_time() {
        let (y, a, b) = specialists(200);
        assert!(fit(MULTICLASS, &y, &[&a], None, &context(Budget::unlimited())).is_none());
        let spent = Budget::new(std::time::Duration::ZERO);
        assert!(fit(MULTICLASS, &y, &[&a, &b], None, &context(spent)).is_none());
    }
}
