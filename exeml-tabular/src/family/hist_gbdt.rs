//! Histogram gradient boosting on exeml's own booster ([`crate::boosting`]): LightGBM's
//! algorithm and default point, a true softmax objective for multiclass problems, early
//! stopping on the validation part and a stop before the time budget runs out. It is biased
//! differently from the `gbdt` family (forust-ml): larger leaves by default (at least 20 rows),
//! no L2 penalty at the default point, and one joint loss over the classes instead of one
//! booster per class.

use super::{Labelled, Problem};
use crate::boosting::{BoostParams, Booster, GrowRules, Objective, SplitRules, Validation};
use crate::features::Matrix;
use exeml_core::search::{ParamPoint, ParamRange, ParamValue, SearchSpace};
use exeml_core::{Error, FitContext, ProblemType, Result, Trainer};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The family's name in manifests and leaderboards.
pub const FAMILY: &str = "hist_gbdt";
const MODEL_FILE: &str = "hist_gbdt.safetensors";
/// Share of the remaining budget a fit may plan to use.
const BUDGET_SHARE: f64 = 0.8;
/// Fewest rows in a feature bin (LightGBM's `min_data_in_bin`).
const MIN_ROWS_IN_BIN: usize = 3;
/// Rounds per step reported to the trial monitor.
const ROUNDS_PER_STEP: usize = 10;

/// Hyper-parameters of the booster, read from a search point.
#[derive(Debug, Clone, PartialEq)]
pub struct HistGbdtParams {
    /// Shrinkage per round.
    pub learning_rate: f64,
    /// Most leaves per tree.
    pub max_leaves: usize,
    /// Deepest a leaf may be.
    pub max_depth: usize,
    /// Fewest rows in a leaf.
    pub min_rows: usize,
    /// L2 penalty on leaf values.
    pub l2: f64,
    /// Share of features each tree may split on.
    pub feature_fraction: f64,
    /// Share of rows each round sees.
    pub row_fraction: f64,
    /// Most boosting rounds.
    pub max_rounds: usize,
    /// Rounds without validation improvement before stopping.
    pub early_stopping: usize,
    /// Split category codes into sets of categories (LightGBM's `categorical_feature`);
    /// `false` splits them at thresholds, as numbers.
    pub category_sets: bool,
}

/// The values of the `category_splits` parameter: sets of categories, or thresholds on codes.
const CATEGORY_SPLITS: [&str; 2] = ["sets", "thresholds"];

impl Default for HistGbdtParams {
    /// LightGBM's defaults, with more rounds and early stopping.
    fn default() -> Self {
        HistGbdtParams {
            learning_rate: 0.1,
            max_leaves: 31,
            max_depth: 64,
            min_rows: 20,
            l2: 0.0,
            feature_fraction: 1.0,
            row_fraction: 1.0,
            max_rounds: 1000,
            early_stopping: 50,
            category_sets: true,
        }
    }
}

impl HistGbdtParams {
    /// Read and validate the parameters of a search point (absent ones keep their defaults).
    pub fn from_point(point: &ParamPoint) -> Result<Self> {
        let d = HistGbdtParams::default();
        let f = |k: &str, v: f64| super::float_param(point, k, v);
        let i = |k: &str, v: usize| super::count_param(point, k, v);
        // Points saved before the parameter existed split codes at thresholds.
        let category_sets = match point.get("category_splits").and_then(ParamValue::as_str) {
            Some("sets") => true,
            None | Some("thresholds") => false,
            Some(other) => {
                return Err(Error::invalid(
                    format!("{FAMILY}.category_splits"),
                    format!("`{other}`: expected sets or thresholds"),
                ))
            }
        };
        let p = HistGbdtParams {
            category_sets,
            learning_rate: f("learning_rate", d.learning_rate),
            max_leaves: i("max_leaves", d.max_leaves),
            max_depth: i("max_depth", d.max_depth),
            min_rows: i("min_rows", d.min_rows),
            l2: f("l2", d.l2),
            feature_fraction: f("feature_fraction", d.feature_fraction),
            row_fraction: f("row_fraction", d.row_fraction),
            max_rounds: i("max_rounds", d.max_rounds),
            early_stopping: i("early_stopping", d.early_stopping),
        };
        p.check()
    }

    fn check(self) -> Result<Self> {
        let bad = |name: &str, msg: &str| Err(Error::invalid(format!("{FAMILY}.{name}"), msg));
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad("learning_rate", "must be in (0, 1]");
        }
        if self.max_leaves < 2 || self.max_depth < 1 || self.max_rounds < 1 || self.min_rows < 1 {
            return bad(
                "max_leaves",
                "trees need at least 2 leaves, depth 1, 1 row per leaf and 1 round",
            );
        }
        let share = |v: f64| v > 0.0 && v <= 1.0;
        if !share(self.feature_fraction) || !share(self.row_fraction) {
            return bad("feature_fraction", "sampling shares must be in (0, 1]");
        }
        if !(self.l2 >= 0.0 && self.l2.is_finite()) {
            return bad("l2", "must be a non-negative number");
        }
        Ok(self)
    }

    /// The parameters as a search point (for manifests).
    pub fn to_point(&self) -> ParamPoint {
        let mut p = ParamPoint::new();
        let mut float = |k: &str, v: f64| p.insert(k.into(), ParamValue::Float(v));
        float("learning_rate", self.learning_rate);
        float("l2", self.l2);
        float("feature_fraction", self.feature_fraction);
        float("row_fraction", self.row_fraction);
        let splits = CATEGORY_SPLITS[usize::from(!self.category_sets)];
        p.insert("category_splits".into(), ParamValue::Text(splits.into()));
        for (k, v) in [
            ("max_leaves", self.max_leaves),
            ("max_depth", self.max_depth),
            ("min_rows", self.min_rows),
            ("max_rounds", self.max_rounds),
            ("early_stopping", self.early_stopping),
        ] {
            p.insert(k.into(), ParamValue::Int(v as i64));
        }
        p
    }

    fn boost_params(&self, rounds: usize, early_stopping: usize, seed: u64) -> BoostParams {
        BoostParams {
            grow: GrowRules {
                max_leaves: self.max_leaves,
                max_depth: self.max_depth,
                learning_rate: self.learning_rate,
                split: SplitRules {
                    lambda: self.l2,
                    min_rows: self.min_rows as f64,
                    min_hessian: 1e-3,
                    min_gain: 0.0,
                },
            },
            max_rounds: rounds,
            early_stopping,
            row_fraction: self.row_fraction,
            feature_fraction: self.feature_fraction,
            max_value_bins: crate::boosting::MAX_VALUE_BINS,
            min_rows_in_bin: MIN_ROWS_IN_BIN,
            seed,
        }
    }
}

/// The loss for a problem.
fn objective(problem: Problem) -> Objective {
    match problem.kind {
        ProblemType::Regression => Objective::Squared,
        ProblemType::Binary => Objective::Logistic,
        _ => Objective::Softmax(problem.n_classes),
    }
}

/// The family's search space; the default point is LightGBM's.
pub fn search_space(problem: Problem) -> SearchSpace {
    let float = |low, high, log| ParamRange::Float { low, high, log };
    let int = |low, high, log| ParamRange::Int { low, high, log };
    let params = BTreeMap::from([
        ("learning_rate".to_string(), float(0.01, 0.3, true)),
        ("max_leaves".to_string(), int(4, 255, true)),
        ("min_rows".to_string(), int(2, 100, true)),
        ("l2".to_string(), float(1e-3, 10.0, true)),
        ("feature_fraction".to_string(), float(0.4, 1.0, false)),
        ("row_fraction".to_string(), float(0.5, 1.0, false)),
        (
            "category_splits".to_string(),
            ParamRange::Choice {
                options: CATEGORY_SPLITS.iter().map(|s| s.to_string()).collect(),
            },
        ),
    ]);
    // A round costs one tree per class, like the `gbdt` family's one booster per class, but
    // the classes' trees grow side by side on the threads: its default point goes just before
    // the `gbdt` family's.
    let classes = objective(problem).outputs() as f64;
    SearchSpace {
        family: FAMILY.into(),
        params,
        defaults: vec![HistGbdtParams::default().to_point()],
        cost_hint: 3.5 * classes.sqrt(),
    }
}

/// A fitted booster and the problem it predicts.
#[derive(Debug)]
pub struct HistGbdtModel {
    booster: Booster,
    problem: Problem,
    /// The earlier booster it continues, if any (a refit continues it too).
    parent: Option<Arc<Booster>>,
}

/// Fits [`HistGbdtModel`]s.
#[derive(Debug, Clone)]
pub struct HistGbdtTrainer {
    /// The problem to fit.
    pub problem: Problem,
    /// An earlier booster to continue instead of starting from scratch (incremental training
    /// with `--from`); the rows must have its features.
    pub parent: Option<Arc<Booster>>,
}

impl Trainer for HistGbdtTrainer {
    type Data = Labelled;
    type Model = HistGbdtModel;

    fn fit(
        &self,
        point: &ParamPoint,
        train: &Labelled,
        valid: &Labelled,
        ctx: &FitContext<'_>,
    ) -> Result<HistGbdtModel> {
        let params = HistGbdtParams::from_point(point)?;
        let started = Instant::now();
        let allowed = ctx.budget.remaining().mul_f64(BUDGET_SHARE);
        let validation = (valid.x.rows > 0).then_some(Validation {
            x: &valid.x,
            y: &valid.y,
        });
        let mut go_on = |round: usize, loss: Option<f64>| {
            // Stop when another round (at the mean pace so far) would pass the planned share.
            let elapsed = started.elapsed();
            let pace = elapsed / round.max(1) as u32;
            if ctx.budget.is_cancelled() || elapsed + pace > allowed {
                return false;
            }
            match loss {
                Some(l) if round % ROUNDS_PER_STEP == 0 => {
                    ctx.monitor.report(round / ROUNDS_PER_STEP, l)
                }
                _ => true,
            }
        };
        let boost = params.boost_params(params.max_rounds, params.early_stopping, ctx.seed);
        let booster = boost_from(
            self.parent.as_deref(),
            self.problem,
            (train, validation),
            (&boost, params.category_sets),
            &mut go_on,
        )?;
        Ok(HistGbdtModel {
            booster,
            problem: self.problem,
            parent: self.parent.clone(),
        })
    }
}

/// Refit on `data` (the training and validation rows together) with the parameters of `point`
/// and the rounds `fitted` kept after early stopping: there is no validation part left to stop
/// on. A fit that continued an earlier booster continues it again, with as many new rounds.
pub fn refit(
    point: &ParamPoint,
    fitted: &HistGbdtModel,
    data: &Labelled,
    ctx: &FitContext<'_>,
) -> Result<HistGbdtModel> {
    let params = HistGbdtParams::from_point(point)?;
    let mut go_on =
        |_: usize, _: Option<f64>| !ctx.budget.is_cancelled() && !ctx.budget.exhausted();
    let rounds = match &fitted.parent {
        Some(parent) => fitted.booster.rounds().saturating_sub(parent.rounds()),
        None => fitted.booster.rounds().max(1),
    };
    let booster = boost_from(
        fitted.parent.as_deref(),
        fitted.problem,
        (data, None),
        (
            &params.boost_params(rounds, 0, ctx.seed),
            params.category_sets,
        ),
        &mut go_on,
    )?;
    Ok(HistGbdtModel {
        booster,
        problem: fitted.problem,
        parent: fitted.parent.clone(),
    })
}

/// Boost on `train`, continuing `parent` when there is one, else from scratch; its category
/// code features are split into sets when `category_sets`.
fn boost_from(
    parent: Option<&Booster>,
    problem: Problem,
    (train, valid): (&Labelled, Option<Validation<'_>>),
    (boost, category_sets): (&BoostParams, bool),
    go_on: &mut (dyn FnMut(usize, Option<f64>) -> bool + Send),
) -> Result<Booster> {
    let categories: &[usize] = if category_sets {
        &train.categorical
    } else {
        &[]
    };
    let x = (&train.x, categories);
    match parent {
        Some(p) => Booster::fit_from(p, x, &train.y, valid, boost, go_on),
        None => Booster::fit(x, &train.y, valid, objective(problem), boost, go_on),
    }
}

impl HistGbdtModel {
    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.booster.n_features
    }

    /// Predictions, row-major: probabilities per class, or values for regression.
    pub fn predict(&self, x: &Matrix) -> Vec<f64> {
        self.booster.predict(x)
    }

    /// Boosting rounds kept.
    pub fn rounds(&self) -> usize {
        self.booster.rounds()
    }

    /// The fitted booster.
    pub fn booster(&self) -> &Booster {
        &self.booster
    }

    /// Rounds of the earlier booster this fit continues (`None`: it started from scratch).
    pub fn continued_rounds(&self) -> Option<usize> {
        self.parent.as_ref().map(|p| p.rounds())
    }

    /// Write the booster into `dir`.
    pub fn save(&self, dir: &Path) -> Result<Vec<String>> {
        Ok(vec![self.booster.save(&dir.join(MODEL_FILE))?])
    }

    /// Read the booster written by [`HistGbdtModel::save`], checking it fits `problem`.
    pub fn load(dir: &Path, problem: Problem) -> Result<Self> {
        let path = dir.join(MODEL_FILE);
        let booster = Booster::load(&path)?;
        if booster.objective != objective(problem) {
            return Err(Error::data(
                &path,
                format!(
                    "the booster minimises {:?}, the model is {:?} with {} classes",
                    booster.objective, problem.kind, problem.n_classes
                ),
            ));
        }
        Ok(HistGbdtModel {
            booster,
            problem,
            parent: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::test_context;

    fn blobs(n: usize, classes: usize, offset: usize) -> Labelled {
        let mut data = vec![0.0; 2 * n];
        let mut y = vec![0.0; n];
        for r in 0..n {
            let i = r + offset;
            let c = i % classes;
            let jitter = ((i * 7919) % 100) as f64 / 100.0 - 0.5;
            data[r] = c as f64 + jitter;
            data[n + r] = ((i * 104_729) % 50) as f64;
            y[r] = c as f64;
        }
        Labelled::new(
            Matrix {
                data,
                rows: n,
                cols: 2,
            },
            y,
        )
    }

    #[test]
    fn multiclass_fits_saves_loads_and_refits() {
        let problem = Problem {
            kind: ProblemType::Multiclass,
            n_classes: 4,
        };
        let (train, valid) = (blobs(400, 4, 0), blobs(100, 4, 400));
        let trainer = HistGbdtTrainer {
            problem,
            parent: None,
        };
        let point = HistGbdtParams::default().to_point();
        let model = trainer
            .fit(&point, &train, &valid, &test_context(1))
            .expect("fit");
        let probs = model.predict(&valid.x);
        let right = probs
            .chunks(4)
            .zip(&valid.y)
            .filter(|(p, &t)| p[t as usize] > 0.5)
            .count();
        assert!(right >= 95, "{right} of 100");

        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            model.save(dir.path()).expect("save"),
            vec![format!("{MODEL_FILE}.zst")]
        );
        let loaded = HistGbdtModel::load(dir.path(), problem).expect("load");
        assert_eq!(loaded.predict(&valid.x), probs);
        let binary = Problem {
            kind: ProblemType::Binary,
            n_classes: 2,
        };
        let err = HistGbdtModel::load(dir.path(), binary).expect_err("wrong problem");
        assert!(err.to_string().contains(MODEL_FILE), "{err}");

        let refitted = refit(&point, &model, &train, &test_context(1)).expect("refit");
        assert_eq!(refitted.rounds(), model.rounds());
        assert_eq!(refitted.continued_rounds(), None);

        // A fit from an earlier booster keeps its trees and adds rounds; its refit continues
        // it again with as many new rounds.
        let parent = Arc::new(model.booster().clone());
        let child = HistGbdtTrainer {
            problem,
            parent: Some(Arc::clone(&parent)),
        }
        .fit(&point, &blobs(400, 4, 1000), &valid, &test_context(1))
        .expect("continued fit");
        assert_eq!(child.continued_rounds(), Some(model.rounds()));
        assert!(child.rounds() >= model.rounds());
        let child_refit = refit(&point, &child, &train, &test_context(1)).expect("refit");
        assert_eq!(child_refit.rounds(), child.rounds());
        assert_eq!(
            child_refit.booster().trees()[..parent.trees().len()],
            parent.trees()[..]
        );
    }

    #[test]
    fn points_round_trip_and_bad_ones_are_refused() {
        let p = HistGbdtParams {
            learning_rate: 0.05,
            max_leaves: 63,
            min_rows: 5,
            ..HistGbdtParams::default()
        };
        assert_eq!(HistGbdtParams::from_point(&p.to_point()).expect("valid"), p);
        let mut bad = p.to_point();
        bad.insert("row_fraction".into(), ParamValue::Float(0.0));
        assert!(HistGbdtParams::from_point(&bad).is_err());
        let space = search_space(Problem {
            kind: ProblemType::Regression,
            n_classes: 1,
        });
        assert_eq!(space.family, FAMILY);
        assert!(space
            .defaults
            .iter()
            .all(|d| HistGbdtParams::from_point(d).is_ok()));
    }
}
