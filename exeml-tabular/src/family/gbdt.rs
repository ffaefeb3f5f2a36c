//! Gradient-boosted decision trees (forust-ml: pure Rust, histogram-based, LightGBM-like
//! leaf-wise growth), with early stopping on the validation part and a round cap derived from
//! the time budget. Multiclass problems use one booster per class (one-vs-rest), normalised.

use super::{sigmoid, Labelled, Problem};
use crate::features::Matrix;
use exeml_core::search::{ParamPoint, ParamRange, ParamValue, SearchSpace};
use exeml_core::{Error, FitContext, ProblemType, Result, Trainer};
use forust_ml::gradientbooster::{GrowPolicy, MissingNodeTreatment};
use forust_ml::objective::ObjectiveType;
use forust_ml::sampler::SampleMethod;
use forust_ml::GradientBooster;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// Batches at least this large are predicted on the thread pool.
const PARALLEL_PREDICT_ROWS: usize = 256;

/// The family's name in manifests and leaderboards.
pub const FAMILY: &str = "gbdt";
/// Rounds fitted first to measure the cost of one round.
const PROBE_ROUNDS: usize = 10;
/// A probe slower than this also times a one-round fit, to tell binning from rounds.
const SEPARATE_BINNING_ABOVE_SECS: f64 = 0.5;
/// Share of the remaining budget a fit may plan to use.
const BUDGET_SHARE: f64 = 0.8;

/// Hyper-parameters of the booster, read from a search point.
#[derive(Debug, Clone, PartialEq)]
pub struct GbdtParams {
    /// Shrinkage per round.
    pub learning_rate: f64,
    /// Most leaves per tree (leaf-wise growth).
    pub max_leaves: usize,
    /// Deepest a tree may grow.
    pub max_depth: usize,
    /// L2 penalty on leaf weights.
    pub l2: f64,
    /// Smallest hessian sum in a leaf.
    pub min_leaf_weight: f64,
    /// Share of rows sampled per round.
    pub subsample: f64,
    /// Share of features sampled per tree.
    pub colsample: f64,
    /// Most boosting rounds.
    pub max_rounds: usize,
    /// Rounds without validation improvement before stopping.
    pub early_stopping: usize,
}

impl Default for GbdtParams {
    /// Close to LightGBM's defaults, with more rounds and early stopping.
    fn default() -> Self {
        GbdtParams {
            learning_rate: 0.1,
            max_leaves: 31,
            max_depth: 12,
            l2: 1.0,
            min_leaf_weight: 1.0,
            subsample: 1.0,
            colsample: 1.0,
            max_rounds: 1000,
            early_stopping: 50,
        }
    }
}

impl GbdtParams {
    /// Read and validate the parameters of a search point (absent ones keep their defaults).
    pub fn from_point(point: &ParamPoint) -> Result<Self> {
        let d = GbdtParams::default();
        let f = |k: &str, v: f64| super::float_param(point, k, v);
        let i = |k: &str, v: usize| super::count_param(point, k, v);
        let p = GbdtParams {
            learning_rate: f("learning_rate", d.learning_rate),
            max_leaves: i("max_leaves", d.max_leaves),
            max_depth: i("max_depth", d.max_depth),
            l2: f("l2", d.l2),
            min_leaf_weight: f("min_leaf_weight", d.min_leaf_weight),
            subsample: f("subsample", d.subsample),
            colsample: f("colsample", d.colsample),
            max_rounds: i("max_rounds", d.max_rounds),
            early_stopping: i("early_stopping", d.early_stopping),
        };
        p.check()
    }

    fn check(self) -> Result<Self> {
        let bad = |name: &str, msg: &str| Err(Error::invalid(format!("gbdt.{name}"), msg));
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad("learning_rate", "must be in (0, 1]");
        }
        if self.max_leaves < 2 || self.max_depth < 1 || self.max_rounds < 1 {
            return bad(
                "max_leaves",
                "trees need at least 2 leaves, depth 1 and 1 round",
            );
        }
        let share = |v: f64| v > 0.0 && v <= 1.0;
        if !share(self.subsample) || !share(self.colsample) {
            return bad("subsample", "sampling shares must be in (0, 1]");
        }
        if self.l2 < 0.0 || self.min_leaf_weight < 0.0 {
            return bad("l2", "penalties must be non-negative");
        }
        Ok(self)
    }

    /// The parameters as a search point (for manifests).
    pub fn to_point(&self) -> ParamPoint {
        let mut p = ParamPoint::new();
        p.insert(
            "learning_rate".into(),
            ParamValue::Float(self.learning_rate),
        );
        p.insert("max_leaves".into(), ParamValue::Int(self.max_leaves as i64));
        p.insert("max_depth".into(), ParamValue::Int(self.max_depth as i64));
        p.insert("l2".into(), ParamValue::Float(self.l2));
        p.insert(
            "min_leaf_weight".into(),
            ParamValue::Float(self.min_leaf_weight),
        );
        p.insert("subsample".into(), ParamValue::Float(self.subsample));
        p.insert("colsample".into(), ParamValue::Float(self.colsample));
        p.insert("max_rounds".into(), ParamValue::Int(self.max_rounds as i64));
        p.insert(
            "early_stopping".into(),
            ParamValue::Int(self.early_stopping as i64),
        );
        p
    }
}

/// Boosters of a fit: one per class for multiclass, else one.
fn boosters(problem: Problem) -> usize {
    if problem.kind == ProblemType::Multiclass {
        problem.n_classes.max(1)
    } else {
        1
    }
}

/// The family's search space; the default point is LightGBM-like.
pub fn search_space(problem: Problem) -> SearchSpace {
    let float = |low, high, log| ParamRange::Float { low, high, log };
    let int = |low, high, log| ParamRange::Int { low, high, log };
    let params = BTreeMap::from([
        ("learning_rate".to_string(), float(0.01, 0.3, true)),
        ("max_leaves".to_string(), int(4, 255, true)),
        ("max_depth".to_string(), int(3, 16, false)),
        ("l2".to_string(), float(1e-3, 10.0, true)),
        ("min_leaf_weight".to_string(), float(1e-3, 20.0, true)),
        ("subsample".to_string(), float(0.5, 1.0, false)),
        ("colsample".to_string(), float(0.4, 1.0, false)),
    ]);
    SearchSpace {
        family: FAMILY.into(),
        params,
        defaults: vec![GbdtParams::default().to_point()],
        // Right after the quick linear and k-NN defaults on binary and regression tables:
        // boosted trees are the strongest family on most tables (FLAML and AutoGluon start
        // with them too). One booster per class makes multiclass fits dearer.
        cost_hint: 4.0 * (boosters(problem) as f64).sqrt(),
    }
}

/// A fitted booster per output (one for binary and regression, one per class otherwise).
pub struct GbdtModel {
    boosters: Vec<GradientBooster>,
    problem: Problem,
}

impl std::fmt::Debug for GbdtModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GbdtModel")
            .field("problem", &self.problem)
            .field("rounds", &self.rounds())
            .finish()
    }
}

/// Fits [`GbdtModel`]s.
#[derive(Debug, Clone, Copy)]
pub struct GbdtTrainer {
    /// The problem to fit.
    pub problem: Problem,
}

impl Trainer for GbdtTrainer {
    type Data = Labelled;
    type Model = GbdtModel;

    fn fit(
        &self,
        point: &ParamPoint,
        train: &Labelled,
        valid: &Labelled,
        ctx: &FitContext<'_>,
    ) -> Result<GbdtModel> {
        let params = GbdtParams::from_point(point)?;
        let problem = self.problem;
        let targets: Vec<Vec<f64>> = match problem.kind {
            ProblemType::Regression => vec![train.y.clone()],
            ProblemType::Binary => vec![train.y.clone()],
            _ => (0..problem.n_classes)
                .map(|c| one_vs_rest(&train.y, c))
                .collect(),
        };
        let valid_targets: Vec<Vec<f64>> = match problem.kind {
            ProblemType::Regression | ProblemType::Binary => vec![valid.y.clone()],
            _ => (0..problem.n_classes)
                .map(|c| one_vs_rest(&valid.y, c))
                .collect(),
        };
        // ObjectiveType is neither Copy nor Clone: make one per booster.
        let objective = || {
            if problem.kind == ProblemType::Regression {
                ObjectiveType::SquaredLoss
            } else {
                ObjectiveType::LogLoss
            }
        };
        let x = forust_ml::Matrix::new(&train.x.data, train.x.rows, train.x.cols);
        let weights = vec![1.0; train.x.rows];
        let valid_weights = vec![1.0; valid.x.rows];

        // Measure one round on the first output, then cap the rounds to fit the budget.
        let started = Instant::now();
        let probe_rounds = PROBE_ROUNDS.min(params.max_rounds);
        let mut probe = booster(&params, objective(), probe_rounds, None, ctx.seed)?;
        probe
            .fit(&x, &targets[0], &weights, None)
            .map_err(backend)?;
        let probe_secs = started.elapsed().as_secs_f64();
        let mut per_round = probe_secs / probe_rounds as f64;
        let outputs = targets.len();
        let affordable = |per_round: f64| {
            ctx.budget.remaining().as_secs_f64() * BUDGET_SHARE
                / (per_round * outputs as f64).max(1e-9)
        };
        // The probe's time includes binning the data once, which on a large table costs many
        // rounds: when the cap would bind, time a one-round fit too and count only the rounds.
        if affordable(per_round) < params.max_rounds as f64
            && probe_secs > SEPARATE_BINNING_ABOVE_SECS
            && probe_rounds > 1
        {
            let one_started = Instant::now();
            booster(&params, objective(), 1, None, ctx.seed)?
                .fit(&x, &targets[0], &weights, None)
                .map_err(backend)?;
            let one_round = one_started.elapsed().as_secs_f64();
            let marginal = (probe_secs - one_round) / (probe_rounds - 1) as f64;
            per_round = marginal.clamp(per_round / 20.0, per_round);
        }
        let affordable = affordable(per_round);
        let rounds = (affordable as usize).clamp(1, params.max_rounds);
        if rounds <= probe_rounds && outputs == 1 {
            return Ok(GbdtModel {
                boosters: vec![probe],
                problem,
            });
        }
        let mut boosters = Vec::with_capacity(outputs);
        for (y, yv) in targets.iter().zip(&valid_targets) {
            let mut b = booster(
                &params,
                objective(),
                rounds,
                Some(params.early_stopping),
                ctx.seed,
            )?;
            let xv = forust_ml::Matrix::new(&valid.x.data, valid.x.rows, valid.x.cols);
            let eval = vec![(xv, yv.as_slice(), valid_weights.as_slice())];
            b.fit(&x, y, &weights, Some(eval)).map_err(backend)?;
            boosters.push(b);
        }
        Ok(GbdtModel { boosters, problem })
    }
}

/// Refit on `data` (the training and validation rows together) with the parameters of `point`
/// and, per booster, the number of rounds `fitted` kept after early stopping: there is no
/// validation part left to stop on.
pub fn refit(
    point: &ParamPoint,
    fitted: &GbdtModel,
    data: &Labelled,
    seed: u64,
) -> Result<GbdtModel> {
    let params = GbdtParams::from_point(point)?;
    let problem = fitted.problem;
    let rounds = fitted.rounds();
    let targets: Vec<Vec<f64>> = if problem.kind == ProblemType::Multiclass {
        (0..problem.n_classes)
            .map(|c| one_vs_rest(&data.y, c))
            .collect()
    } else {
        vec![data.y.clone()]
    };
    if targets.len() != rounds.len() {
        return Err(Error::invalid(
            "gbdt",
            format!(
                "{} boosters cannot be refitted for {} outputs",
                rounds.len(),
                targets.len()
            ),
        ));
    }
    let x = forust_ml::Matrix::new(&data.x.data, data.x.rows, data.x.cols);
    let weights = vec![1.0; data.x.rows];
    let mut boosters = Vec::with_capacity(targets.len());
    for (y, &rounds) in targets.iter().zip(&rounds) {
        let objective = if problem.kind == ProblemType::Regression {
            ObjectiveType::SquaredLoss
        } else {
            ObjectiveType::LogLoss
        };
        let mut b = booster(&params, objective, rounds.max(1), None, seed)?;
        b.fit(&x, y, &weights, None).map_err(backend)?;
        boosters.push(b);
    }
    Ok(GbdtModel { boosters, problem })
}

fn booster(
    params: &GbdtParams,
    objective: ObjectiveType,
    rounds: usize,
    early_stopping: Option<usize>,
    seed: u64,
) -> Result<GradientBooster> {
    let sample_method = if params.subsample < 1.0 {
        SampleMethod::Random
    } else {
        SampleMethod::None
    };
    let b = GradientBooster::default()
        .set_objective_type(objective)
        .set_iterations(rounds)
        .set_learning_rate(params.learning_rate as f32)
        .set_max_depth(params.max_depth)
        .set_max_leaves(params.max_leaves)
        .set_l2(params.l2 as f32)
        .set_min_leaf_weight(params.min_leaf_weight as f32)
        .set_sample_method(sample_method)
        .set_subsample(params.subsample as f32)
        .set_colsample_bytree(params.colsample)
        .set_seed(seed)
        .set_early_stopping_rounds(early_stopping)
        .set_initialize_base_score(true);
    let mut b = b;
    b.grow_policy = GrowPolicy::LossGuide;
    b.missing_node_treatment = MissingNodeTreatment::AssignToParent;
    Ok(b)
}

fn one_vs_rest(y: &[f64], class: usize) -> Vec<f64> {
    y.iter()
        .map(|&v| if v as usize == class { 1.0 } else { 0.0 })
        .collect()
}

/// Refuse a booster whose trees link outside themselves or backwards: forust walks the links
/// unchecked, so a damaged file would panic or loop at prediction time.
fn check_tree_links(booster: &GradientBooster, path: &Path) -> Result<()> {
    for (t, tree) in booster.trees.iter().enumerate() {
        if tree.nodes.is_empty() {
            return Err(Error::data(path, format!("tree {t} has no nodes")));
        }
        for (i, node) in tree.nodes.iter().enumerate() {
            let links = [node.left_child, node.right_child, node.missing_node];
            if !node.is_leaf && links.iter().any(|&c| c <= i || c >= tree.nodes.len()) {
                return Err(Error::data(
                    path,
                    format!("tree {t} node {i} links outside the tree or backwards"),
                ));
            }
        }
    }
    Ok(())
}

fn backend(e: forust_ml::errors::ForustError) -> Error {
    Error::Backend {
        backend: "gbdt",
        message: e.to_string(),
    }
}

impl GbdtModel {
    /// Predictions, row-major: probabilities per class, or values for regression.
    pub fn predict(&self, x: &Matrix) -> Vec<f64> {
        let m = forust_ml::Matrix::new(&x.data, x.rows, x.cols);
        // Fanning a few rows out to the thread pool costs more than predicting them here (a
        // served request is usually one row).
        let parallel = x.rows >= PARALLEL_PREDICT_ROWS;
        let raw: Vec<Vec<f64>> = self
            .boosters
            .iter()
            .map(|b| b.predict(&m, parallel))
            .collect();
        match self.problem.kind {
            ProblemType::Regression => raw.into_iter().next().unwrap_or_default(),
            ProblemType::Binary => raw
                .first()
                .map(|r| {
                    r.iter()
                        .flat_map(|&z| [1.0 - sigmoid(z), sigmoid(z)])
                        .collect()
                })
                .unwrap_or_default(),
            _ => {
                let k = raw.len();
                let mut out = Vec::with_capacity(x.rows * k);
                for r in 0..x.rows {
                    let row: Vec<f64> = raw.iter().map(|c| sigmoid(c[r])).collect();
                    let sum: f64 = row.iter().sum::<f64>().max(1e-12);
                    out.extend(row.iter().map(|p| p / sum));
                }
                out
            }
        }
    }

    /// The highest feature column any tree splits on, plus one (forust does not record the
    /// width it was fitted on).
    pub fn features_read(&self) -> usize {
        self.boosters
            .iter()
            .flat_map(|b| &b.trees)
            .flat_map(|t| &t.nodes)
            .filter(|n| !n.is_leaf)
            .map(|n| n.split_feature + 1)
            .max()
            .unwrap_or(0)
    }

    /// Rounds actually used by each booster (after early stopping).
    pub fn rounds(&self) -> Vec<usize> {
        self.boosters
            .iter()
            .map(|b| b.prediction_iteration.unwrap_or(b.trees.len()))
            .collect()
    }

    /// Write one (compressed) JSON file per booster.
    pub fn save(&self, dir: &Path) -> Result<Vec<String>> {
        let mut files = Vec::new();
        for (i, b) in self.boosters.iter().enumerate() {
            let json = b.json_dump().map_err(backend)?;
            let path = dir.join(format!("gbdt_{i}.json"));
            files.push(super::compressed::write(&path, json.as_bytes())?);
        }
        Ok(files)
    }

    /// Read the boosters written by [`GbdtModel::save`].
    pub fn load(dir: &Path, problem: Problem) -> Result<Self> {
        let outputs = if problem.kind == ProblemType::Multiclass {
            problem.n_classes
        } else {
            1
        };
        let mut boosters = Vec::with_capacity(outputs);
        for i in 0..outputs {
            let (path, bytes) = super::compressed::read(&dir.join(format!("gbdt_{i}.json")))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| Error::data(&path, "the booster is not UTF-8 text"))?;
            let b = GradientBooster::from_json(&text)
                .map_err(|e| Error::data(&path, format!("invalid booster: {e}")))?;
            check_tree_links(&b, &path)?;
            boosters.push(b);
        }
        Ok(GbdtModel { boosters, problem })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// y = 2·x1 on three features (x0 and x2 are noise): the trees split on column 1 only.
    fn linear_in_column_one(n: usize) -> Labelled {
        let x1: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
        let noise: Vec<f64> = (0..n).map(|i| ((i * 7919) % 101) as f64).collect();
        let y = x1.iter().map(|v| 2.0 * v).collect();
        Labelled::new(
            Matrix {
                data: [noise.clone(), x1, noise].concat(),
                rows: n,
                cols: 3,
            },
            y,
        )
    }

    #[test]
    fn a_round_trip_keeps_predictions_and_a_damaged_tree_is_refused() {
        let problem = Problem {
            kind: ProblemType::Regression,
            n_classes: 1,
        };
        let data = linear_in_column_one(200);
        let point = ParamPoint::from([("max_rounds".to_string(), ParamValue::Int(20))]);
        let model = GbdtTrainer { problem }
            .fit(&point, &data, &data, &super::super::test_context(1))
            .expect("fit");
        assert!(model.features_read() >= 2 && model.features_read() <= 3);

        let dir = tempfile::tempdir().expect("tempdir");
        let files = model.save(dir.path()).expect("save");
        assert_eq!(files, ["gbdt_0.json.zst"]);
        let loaded = GbdtModel::load(dir.path(), problem).expect("load");
        assert_eq!(model.predict(&data.x), loaded.predict(&data.x));

        // A root that links back to itself would loop forever at prediction time.
        let path = dir.path().join("gbdt_0.json");
        let (_, bytes) = super::super::compressed::read(&path).expect("read");
        let mut json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        json["trees"][0]["nodes"][0]["left_child"] = serde_json::json!(0);
        super::super::compressed::write(&path, json.to_string().as_bytes()).expect("write");
        let err = GbdtModel::load(dir.path(), problem).expect_err("damaged tree");
        assert!(
            err.to_string()
                .contains("tree 0 node 0 links outside the tree or backwards"),
            "{err}"
        );
    }
}
