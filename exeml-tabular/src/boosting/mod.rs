//! exeml's own histogram gradient boosting (the LightGBM algorithm: binned features, gradient
//! histograms with the subtraction trick, leaf-wise trees, second-order leaf values), with a
//! true softmax objective for multiclass problems: one tree per class per round on the
//! gradients of the joint softmax loss.
//!
//! Written here rather than taken from a crate: forust-ml (the other GBDT family) has no
//! multiclass objective, so it needs one booster per class; `perpetual` needs a nightly
//! compiler; `lightgbm3` builds LightGBM's C++ with cmake and libclang. This module is a few
//! hundred lines of safe Rust over the column-major matrix the other families read.

mod bins;
mod histogram;
mod objective;
mod packed;
mod store;
mod tree;

pub use bins::{BinCuts, MAX_VALUE_BINS};
pub use histogram::SplitRules;
pub use objective::Objective;
pub use tree::{CategorySet, GrowRules, Tree};

use crate::features::Matrix;
use exeml_core::parallel::on_workers;
use exeml_core::seed::rng;
use exeml_core::{Error, Result};
use histogram::GradPair;
use rand::seq::index::sample;
use rayon::prelude::*;
use tree::{Grower, PoolStash};

/// Rows at least this many are predicted on the thread pool.
const PARALLEL_PREDICT_ROWS: usize = 256;
/// Random stream of the row and feature sampling (see [`exeml_core::seed::rng`]).
const SAMPLING_STREAM: u64 = 0x0B00_57ED;

/// Everything a boosting run needs besides the data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoostParams {
    /// How each tree grows.
    pub grow: GrowRules,
    /// Most rounds (one tree per output each).
    pub max_rounds: usize,
    /// Rounds without a better validation loss before stopping (0: never stop early).
    pub early_stopping: usize,
    /// Share of the rows each round's trees see (sampled without replacement, per round).
    pub row_fraction: f64,
    /// Share of the features each tree may split on.
    pub feature_fraction: f64,
    /// Most bins per feature.
    pub max_value_bins: usize,
    /// Fewest rows in a bin, where the values allow.
    pub min_rows_in_bin: usize,
    /// Seed of the row and feature sampling.
    pub seed: u64,
}

/// A fitted booster.
#[derive(Debug, Clone, PartialEq)]
pub struct Booster {
    /// The loss it minimised (decides how scores become predictions).
    pub objective: Objective,
    /// Starting score per output.
    pub initial: Vec<f64>,
    /// Trees, round-major: tree `round * outputs + output`.
    trees: Vec<Tree>,
    /// The same trees packed for prediction.
    packed: packed::PackedTrees,
    /// Features of the rows it predicts.
    pub n_features: usize,
}

/// The validation rows a fit stops early on.
#[derive(Debug, Clone, Copy)]
pub struct Validation<'a> {
    /// Their features.
    pub x: &'a Matrix,
    /// Their targets.
    pub y: &'a [f64],
}

impl Booster {
    /// Boost on `x`, `y` (targets: values, 0/1, or class indices for softmax). After every
    /// round `go_on(round, validation loss)` is asked whether to continue; with validation
    /// rows the booster keeps the rounds up to the best validation loss. The features listed
    /// in `categories` hold category codes: trees split them into sets of categories, as
    /// LightGBM does with `categorical_feature`.
    pub fn fit(
        (x, categories): (&Matrix, &[usize]),
        y: &[f64],
        valid: Option<Validation<'_>>,
        objective: Objective,
        params: &BoostParams,
        go_on: &mut (dyn FnMut(usize, Option<f64>) -> bool + Send),
    ) -> Result<Booster> {
        // On the pool's workers: the rounds' parallel steps then do not each hand off.
        on_workers(|| boost((x, categories), y, valid, objective, params, None, go_on))
    }

    /// Continue boosting `earlier` on `x`, `y` (incremental training on new data): its trees
    /// stay, new rounds start from its predictions, and `params.max_rounds` counts only the new
    /// rounds. With validation rows, no new round is kept unless it improves on `earlier`'s
    /// validation loss. `x` must have `earlier`'s features in the same order.
    pub fn fit_from(
        earlier: &Booster,
        (x, categories): (&Matrix, &[usize]),
        y: &[f64],
        valid: Option<Validation<'_>>,
        params: &BoostParams,
        go_on: &mut (dyn FnMut(usize, Option<f64>) -> bool + Send),
    ) -> Result<Booster> {
        if earlier.n_features != x.cols {
            return Err(Error::invalid(
                "boosting",
                format!(
                    "cannot continue a booster of {} features on rows of {}",
                    earlier.n_features, x.cols
                ),
            ));
        }
        on_workers(|| {
            boost(
                (x, categories),
                y,
                valid,
                earlier.objective,
                params,
                Some(earlier),
                go_on,
            )
        })
    }

    /// Its trees, round-major: tree `round * outputs + output`.
    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }

    /// Rounds kept.
    pub fn rounds(&self) -> usize {
        self.trees.len() / self.objective.outputs()
    }

    /// Raw scores, row-major (`rows × outputs`).
    pub fn raw_scores(&self, x: &Matrix) -> Vec<f64> {
        let outputs = self.objective.outputs();
        let mut out = vec![0.0; x.rows * outputs];
        let fill = |(r, row): (usize, &mut [f64])| {
            row.copy_from_slice(&self.initial);
            for t in 0..self.packed.tree_count() {
                row[t % outputs] += self.packed.predict(t, x, r);
            }
        };
        // Fanning a few rows out to the thread pool costs more than predicting them here (a
        // served request is usually one row).
        if x.rows >= PARALLEL_PREDICT_ROWS {
            out.par_chunks_mut(outputs)
                .enumerate()
                .with_min_len(64)
                .for_each(fill);
        } else {
            out.chunks_mut(outputs).enumerate().for_each(fill);
        }
        out
    }

    /// Predictions, row-major: values for squared error, else every class's probability.
    pub fn predict(&self, x: &Matrix) -> Vec<f64> {
        self.objective.predictions(self.raw_scores(x))
    }
}

/// The boosting loop of [`Booster::fit`] and [`Booster::fit_from`].
fn boost(
    (x, categories): (&Matrix, &[usize]),
    y: &[f64],
    valid: Option<Validation<'_>>,
    objective: Objective,
    params: &BoostParams,
    earlier: Option<&Booster>,
    go_on: &mut (dyn FnMut(usize, Option<f64>) -> bool + Send),
) -> Result<Booster> {
    check_targets(y, x.rows, objective, "training")?;
    let valid = valid.filter(|v| v.x.rows > 0);
    if let Some(v) = valid {
        check_targets(v.y, v.x.rows, objective, "validation")?;
        if v.x.cols != x.cols {
            return Err(Error::invalid(
                "boosting",
                format!(
                    "validation rows have {} features, training rows {}",
                    v.x.cols, x.cols
                ),
            ));
        }
    }
    let (rows, outputs) = (x.rows, objective.outputs());
    let mut categorical = vec![false; x.cols];
    for &f in categories.iter().filter(|&&f| f < x.cols) {
        categorical[f] = true;
    }
    let cuts = BinCuts::fit_with_categories(
        x,
        params.max_value_bins,
        params.min_rows_in_bin,
        &categorical,
    );
    let binned = cuts.apply(x);
    let valid_binned = valid.map(|v| cuts.apply(v.x));
    // A continued booster starts from the earlier one's predictions, a new one from the best
    // constant.
    let (initial, mut scores, mut valid_scores, mut trees) = match earlier {
        Some(e) => (
            e.initial.clone(),
            transposed(&e.raw_scores(x), outputs),
            valid.map_or_else(Vec::new, |v| transposed(&e.raw_scores(v.x), outputs)),
            e.trees.clone(),
        ),
        None => {
            let initial = objective.initial_scores(y);
            let scores = class_major(&initial, rows);
            let valid_scores = valid.map_or_else(Vec::new, |v| class_major(&initial, v.x.rows));
            (initial, scores, valid_scores, Vec::new())
        }
    };
    let kept_before = trees.len();
    let mut grads = vec![GradPair::default(); rows * outputs];
    // Several outputs (classes) grow their trees side by side, one thread each; a single
    // output spreads its tree's work over the threads instead.
    let trees_in_parallel = outputs > 1;
    // At most one tree per thread grows at a time; only those hold a histogram pool.
    let stash = PoolStash::default();
    let at_once = outputs.min(rayon::current_num_threads());
    let mut growers: Vec<Grower<'_>> = (0..outputs)
        .map(|_| {
            Grower::new(&binned, &cuts, params.grow, !trees_in_parallel)
                .sharing_memory_with(at_once)
                .drawing_pools_from(&stash)
        })
        .collect();
    let mut random = rng(params.seed, SAMPLING_STREAM);
    let all_rows: Vec<u32> = (0..rows as u32).collect();
    let bag_size = ((rows as f64 * params.row_fraction).ceil() as usize).clamp(1, rows);
    let tree_features =
        ((x.cols as f64 * params.feature_fraction).ceil() as usize).clamp(1, x.cols.max(1));
    // (best validation loss, new rounds that reached it): a continued booster must beat the
    // earlier one's loss with its new rounds.
    let mut best = match (earlier, valid) {
        (Some(_), Some(v)) => (objective.loss(v.y, &valid_scores), 0usize),
        _ => (f64::INFINITY, 0usize),
    };

    for round in 1..=params.max_rounds {
        objective.gradients(y, &scores, &mut grads);
        let bag = if bag_size < rows {
            let mut bag: Vec<u32> = sample(&mut random, rows, bag_size)
                .into_iter()
                .map(|r| r as u32)
                .collect();
            bag.sort_unstable();
            Some(bag)
        } else {
            None
        };
        let bag_rows = bag.as_deref().unwrap_or(&all_rows);
        // Drawn in output order before any tree grows, so threads do not change them.
        let actives: Vec<Vec<bool>> = (0..outputs)
            .map(|_| {
                if tree_features < x.cols {
                    let mut active = vec![false; x.cols];
                    for f in sample(&mut random, x.cols, tree_features) {
                        active[f] = true;
                    }
                    active
                } else {
                    vec![true; x.cols]
                }
            })
            .collect();
        let grow = |((grower, grads), active): ((&mut Grower<'_>, &[GradPair]), &Vec<bool>)| {
            grower.grow(grads, bag_rows, active)
        };
        let round_trees: Vec<Tree> = if trees_in_parallel {
            growers
                .par_iter_mut()
                .zip(grads.par_chunks(rows))
                .zip(actives.par_iter())
                .map(grow)
                .collect()
        } else {
            growers
                .iter_mut()
                .zip(grads.chunks(rows))
                .zip(actives.iter())
                .map(grow)
                .collect()
        };
        let grew = round_trees.iter().any(|t| t.leaves() > 1);
        let update = |((own, grower), tree): ((&mut [f64], &Grower<'_>), &Tree)| {
            if bag.is_some() {
                // Rows outside the bag are in no leaf's range: walk the tree for all.
                for (r, s) in own.iter_mut().enumerate() {
                    *s += tree.predict_binned(&binned, r);
                }
            } else {
                for (rows_of_leaf, &value) in grower.leaf_rows().zip(&tree.leaf_value) {
                    for &r in rows_of_leaf {
                        own[r as usize] += value;
                    }
                }
            }
        };
        scores
            .par_chunks_mut(rows)
            .zip(growers.par_iter())
            .zip(round_trees.par_iter())
            .for_each(update);
        if let Some(vb) = &valid_binned {
            valid_scores
                .par_chunks_mut(vb.rows)
                .zip(round_trees.par_iter())
                .for_each(|(own, tree)| {
                    for (r, s) in own.iter_mut().enumerate() {
                        *s += tree.predict_binned(vb, r);
                    }
                });
        }
        trees.extend(round_trees);
        let loss = valid.map(|v| objective.loss(v.y, &valid_scores));
        if let Some(l) = loss {
            if l < best.0 {
                best = (l, round);
            } else if params.early_stopping > 0 && round - best.1 >= params.early_stopping {
                break;
            }
        }
        if !grew || !go_on(round, loss) {
            break;
        }
    }
    if valid.is_some() {
        // A new booster keeps at least one round; a continued one may keep none of its new ones.
        let least = usize::from(earlier.is_none());
        trees.truncate(kept_before + best.1.max(least) * outputs);
    }
    Ok(Booster {
        objective,
        initial,
        packed: packed::PackedTrees::new(&trees),
        trees,
        n_features: x.cols,
    })
}

/// Row-major scores (`rows × outputs`) in class-major order.
fn transposed(row_major: &[f64], outputs: usize) -> Vec<f64> {
    let rows = row_major.len() / outputs.max(1);
    let mut out = vec![0.0; row_major.len()];
    for (r, row) in row_major.chunks(outputs).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
}

/// `initial[c]` repeated `rows` times per output, class-major.
fn class_major(initial: &[f64], rows: usize) -> Vec<f64> {
    initial
        .iter()
        .flat_map(|&s| std::iter::repeat_n(s, rows))
        .collect()
}

fn check_targets(y: &[f64], rows: usize, objective: Objective, part: &str) -> Result<()> {
    let bad = |msg: String| Err(Error::invalid("boosting", format!("{part} targets: {msg}")));
    if rows == 0 {
        return bad("no rows".into());
    }
    if y.len() != rows {
        return bad(format!("{} targets for {rows} rows", y.len()));
    }
    if let Some(v) = y.iter().find(|v| !v.is_finite()) {
        return bad(format!("{v} is not a finite number"));
    }
    let valid_class = |v: f64, k: usize| v >= 0.0 && v.fract() == 0.0 && (v as usize) < k;
    match objective {
        Objective::Logistic => {
            if let Some(v) = y.iter().find(|&&v| !valid_class(v, 2)) {
                return bad(format!("{v} is not 0 or 1"));
            }
        }
        Objective::Softmax(k) => {
            if k < 2 {
                return bad(format!("softmax needs at least 2 classes, not {k}"));
            }
            if let Some(v) = y.iter().find(|&&v| !valid_class(v, k)) {
                return bad(format!("{v} is not a class index below {k}"));
            }
        }
        Objective::Squared => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn params() -> BoostParams {
        BoostParams {
            grow: GrowRules {
                max_leaves: 15,
                max_depth: 12,
                learning_rate: 0.1,
                split: SplitRules {
                    lambda: 0.0,
                    min_rows: 5.0,
                    min_hessian: 1e-3,
                    min_gain: 0.0,
                },
            },
            max_rounds: 200,
            early_stopping: 20,
            row_fraction: 1.0,
            feature_fraction: 1.0,
            max_value_bins: 255,
            min_rows_in_bin: 1,
            seed: 7,
        }
    }

    /// Three classes in rings around the origin (not linearly separable), plus a noise feature
    /// with missing values.
    pub(super) fn rings(n: usize, offset: usize) -> (Matrix, Vec<f64>) {
        let mut data = vec![0.0; 3 * n];
        let mut y = vec![0.0; n];
        for r in 0..n {
            let i = r + offset;
            let a = ((i * 7919) % 1000) as f64 / 500.0 - 1.0;
            let b = ((i * 104_729) % 997) as f64 / 498.5 - 1.0;
            let radius = (a * a + b * b).sqrt();
            data[r] = a;
            data[n + r] = b;
            data[2 * n + r] = if i % 5 == 0 {
                f64::NAN
            } else {
                (i % 13) as f64
            };
            y[r] = if radius < 0.5 {
                0.0
            } else if radius < 0.9 {
                1.0
            } else {
                2.0
            };
        }
        (
            Matrix {
                data,
                rows: n,
                cols: 3,
            },
            y,
        )
    }

    /// A binary label set by which of twelve categories (codes, feature 0) a row is in,
    /// interleaved so that no threshold on the codes separates them; a missing code is
    /// negative. Feature 1 is noise.
    pub(super) fn coded(n: usize) -> (Matrix, Vec<f64>) {
        let positive = [1, 4, 6, 7, 10];
        let mut data = vec![0.0; 2 * n];
        let mut y = vec![0.0; n];
        for r in 0..n {
            let code = r % 13;
            data[r] = if code == 12 { f64::NAN } else { code as f64 };
            data[n + r] = ((r * 7919) % 1000) as f64;
            y[r] = f64::from(u8::from(positive.contains(&code)));
        }
        (
            Matrix {
                data,
                rows: n,
                cols: 2,
            },
            y,
        )
    }

    #[test]
    fn category_codes_are_split_into_sets_in_one_tree() {
        let (x, y) = coded(1300);
        let one_round = BoostParams {
            max_rounds: 1,
            grow: GrowRules {
                max_leaves: 2,
                learning_rate: 1.0,
                ..params().grow
            },
            ..params()
        };
        let fit = |categories: &[usize]| {
            Booster::fit(
                (&x, categories),
                &y,
                None,
                Objective::Logistic,
                &one_round,
                &mut |_, _| true,
            )
            .expect("fit")
        };
        let sets = fit(&[0]);
        let tree = &sets.trees[0];
        assert_eq!(tree.category_sets.len(), 1, "{tree:?}");
        assert_eq!(tree.category_set, [Some(0)]);
        let probs = sets.predict(&x);
        let right = probs
            .chunks(2)
            .zip(&y)
            .filter(|(p, &t)| (p[1] > 0.5) == (t == 1.0))
            .count();
        assert_eq!(right, 1300, "one set split separates the classes");
        // Codes never seen in training and values that are not codes go with missing ones.
        let unseen = Matrix {
            data: vec![200.0, 2.5, 5.0, 5.0],
            rows: 2,
            cols: 2,
        };
        let p = sets.predict(&unseen);
        assert!(p[1] < 0.5 && p[3] < 0.5, "{p:?}");
        // On thresholds one split cannot.
        let thresholds = fit(&[]);
        assert!(thresholds.trees[0].category_sets.is_empty());
        let right = thresholds
            .predict(&x)
            .chunks(2)
            .zip(&y)
            .filter(|(p, &t)| (p[1] > 0.5) == (t == 1.0))
            .count();
        assert!(right < 1200, "{right}");
    }

    fn accuracy(probs: &[f64], y: &[f64], k: usize) -> f64 {
        let right = probs
            .chunks(k)
            .zip(y)
            .filter(|(p, &t)| {
                let best = p
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(i, _)| i);
                best == Some(t as usize)
            })
            .count();
        right as f64 / y.len() as f64
    }

    #[test]
    fn softmax_boosting_learns_rings_and_stops_early() {
        let (x, y) = rings(1500, 0);
        let (vx, vy) = rings(500, 1500);
        let valid = Validation { x: &vx, y: &vy };
        let mut seen = Vec::new();
        let booster = Booster::fit(
            (&x, &[]),
            &y,
            Some(valid),
            Objective::Softmax(3),
            &params(),
            &mut |r, l| {
                seen.push((r, l.expect("validation loss")));
                true
            },
        )
        .expect("fit");
        let probs = booster.predict(&vx);
        assert_eq!(probs.len(), 500 * 3);
        for row in probs.chunks(3) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
        let acc = accuracy(&probs, &vy, 3);
        assert!(acc > 0.9, "validation accuracy {acc}");
        // The kept rounds end at the best validation loss.
        let best = seen
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("rounds ran");
        assert_eq!(booster.rounds(), best.0);
        assert_eq!(booster.trees.len(), 3 * best.0);
        // The last validation loss reported is the loss of what predict gives.
        let at_best = Objective::Softmax(3).loss(&vy, &{
            let raw = booster.raw_scores(&vx);
            (0..3)
                .flat_map(|c| raw.iter().skip(c).step_by(3).copied().collect::<Vec<_>>())
                .collect::<Vec<_>>()
        });
        assert!((at_best - best.1).abs() < 1e-9, "{at_best} vs {}", best.1);
    }

    #[test]
    fn logistic_and_squared_boosting_fit_their_targets() {
        let (x, classes) = rings(1000, 0);
        let y: Vec<f64> = classes
            .iter()
            .map(|&c| f64::from(u8::from(c == 1.0)))
            .collect();
        let sampled = BoostParams {
            row_fraction: 0.7,
            feature_fraction: 0.67,
            ..params()
        };
        let binary = Booster::fit(
            (&x, &[]),
            &y,
            None,
            Objective::Logistic,
            &sampled,
            &mut |_, _| true,
        )
        .expect("binary fit");
        assert_eq!(
            binary.rounds(),
            200,
            "no validation part: every round is kept"
        );
        let acc = accuracy(&binary.predict(&x), &y, 2);
        assert!(acc > 0.95, "training accuracy {acc}");

        let target: Vec<f64> = (0..1000)
            .map(|r| x.get(r, 0) * 3.0 - x.get(r, 1).powi(2))
            .collect();
        let regression = Booster::fit(
            (&x, &[]),
            &target,
            None,
            Objective::Squared,
            &params(),
            &mut |_, _| true,
        )
        .expect("regression fit");
        let pred = regression.predict(&x);
        let mse = pred
            .iter()
            .zip(&target)
            .map(|(p, t)| (p - t).powi(2))
            .sum::<f64>()
            / 1000.0;
        let variance = {
            let mean = target.iter().sum::<f64>() / 1000.0;
            target.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / 1000.0
        };
        assert!(mse < 0.02 * variance, "mse {mse}, variance {variance}");
    }

    #[test]
    fn the_same_seed_gives_the_same_booster_and_the_callback_can_stop() {
        let (x, y) = rings(600, 0);
        let sampled = BoostParams {
            row_fraction: 0.5,
            feature_fraction: 0.5,
            max_rounds: 30,
            ..params()
        };
        let fit = || {
            Booster::fit(
                (&x, &[]),
                &y,
                None,
                Objective::Softmax(3),
                &sampled,
                &mut |_, _| true,
            )
            .expect("fit")
        };
        assert_eq!(fit(), fit());
        let stopped = Booster::fit(
            (&x, &[]),
            &y,
            None,
            Objective::Softmax(3),
            &sampled,
            &mut |r, _| r < 4,
        )
        .expect("fit");
        assert_eq!(stopped.rounds(), 4);
    }

    #[test]
    fn a_booster_continues_on_new_rows_keeping_its_trees() {
        let (x, y) = rings(600, 0);
        let (more, more_y) = rings(1200, 600);
        let (vx, vy) = rings(400, 1800);
        let valid = Validation { x: &vx, y: &vy };
        let short = BoostParams {
            max_rounds: 15,
            ..params()
        };
        let earlier = Booster::fit(
            (&x, &[]),
            &y,
            None,
            Objective::Softmax(3),
            &short,
            &mut |_, _| true,
        )
        .expect("earlier fit");
        let loss_of = |b: &Booster| {
            let raw = b.raw_scores(&vx);
            Objective::Softmax(3).loss(&vy, &transposed(&raw, 3))
        };
        let continued = Booster::fit_from(
            &earlier,
            (&more, &[]),
            &more_y,
            Some(valid),
            &params(),
            &mut |_, _| true,
        )
        .expect("continued fit");
        assert!(continued.rounds() > earlier.rounds());
        assert_eq!(continued.trees[..earlier.trees.len()], earlier.trees[..]);
        assert_eq!(continued.initial, earlier.initial);
        assert!(loss_of(&continued) < loss_of(&earlier));

        let narrow = Matrix {
            data: more.data[..2 * more.rows].to_vec(),
            rows: more.rows,
            cols: 2,
        };
        let err = Booster::fit_from(
            &earlier,
            (&narrow, &[]),
            &more_y,
            None,
            &params(),
            &mut |_, _| true,
        )
        .expect_err("fewer features");
        assert!(err.to_string().contains("3 features"), "{err}");
    }

    #[test]
    fn bad_targets_are_refused() {
        let (x, _) = rings(10, 0);
        let p = params();
        let fit = |y: &[f64], o| Booster::fit((&x, &[]), y, None, o, &p, &mut |_, _| true);
        assert!(fit(&[0.0; 9], Objective::Squared).is_err());
        assert!(fit(&[2.0; 10], Objective::Logistic).is_err());
        assert!(fit(&[3.0; 10], Objective::Softmax(3)).is_err());
        assert!(fit(&[f64::NAN; 10], Objective::Squared).is_err());
        assert!(fit(&[0.5; 10], Objective::Softmax(3)).is_err());
    }
}
