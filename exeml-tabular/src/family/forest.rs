//! Random forests and extremely randomised trees (Breiman 2001; Geurts et al. 2006): many deep
//! trees grown independently on the tree encoding, their leaf distributions (or means) averaged.
//! `splitter = best` is a random forest (bootstrap rows, best split among quantile-binned
//! thresholds of a random feature subset); `splitter = random` is extra trees (all rows, one
//! uniformly drawn threshold per candidate feature). Missing values go to the side that scores
//! better at each split.
//!
//! Written here rather than taken from a crate: smartcore's forests sort every node exactly and
//! take their own matrix type, linfa has single trees only; this file is a few hundred lines
//! over the column-major matrix the other families read, trees grown in parallel with rayon,
//! each from its own seeded generator (so a seed gives the same forest on any thread count).

use super::packed_forest::{self, Link, PackedForest};
use super::{read_f64_tensor, Labelled, Problem, TensorFile};
use crate::features::Matrix;
use exeml_core::search::{ParamPoint, ParamRange, ParamValue, SearchSpace};
use exeml_core::seed::{rng, Rng};
use exeml_core::{Error, FitContext, ProblemType, Result, Trainer};
use rand::seq::index::sample;
use rand::Rng as _;
use rayon::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

/// The family's name in manifests and leaderboards.
pub const FAMILY: &str = "forest";
const FOREST_FILE: &str = "forest.safetensors";
/// Thresholds a random forest considers per feature (quantile bins of the training values).
const BINS: usize = 64;
/// Deepest a tree grows (deep enough for any data set here; bounds the work of a hostile file).
const MAX_DEPTH: usize = 40;
/// Leaves hold at least this share of the rows on large data (bounds memory: ~20k leaves).
const MAX_LEAVES_HINT: usize = 20_000;
/// Trees grown between budget checks.
const BATCH: usize = 16;
/// Share of the remaining budget a fit may plan to use.
const BUDGET_SHARE: f64 = 0.8;
/// Share of a uniform distribution mixed into classification outputs: fully grown trees that
/// all agree give a probability of exactly 0 to the other classes, and one such confident
/// mistake would dominate the log loss the ensemble selection minimises. The order of the
/// classes (so the predicted label) never changes.
const UNIFORM_SHARE: f64 = 1e-3;
/// Batches at least this large are predicted on the thread pool.
const PARALLEL_PREDICT_ROWS: usize = 256;
/// Rows that walk the trees together, tree by tree, when predicting a batch.
const PREDICT_BLOCK_ROWS: usize = 64;

/// How a node's split threshold is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Splitter {
    /// Random forest: the best of the binned thresholds, on bootstrap samples.
    Best,
    /// Extra trees: one uniformly drawn threshold per candidate feature, on all rows.
    Random,
}

/// Hyper-parameters of a forest, read from a search point.
#[derive(Debug, Clone, PartialEq)]
pub struct ForestParams {
    /// Most trees (fewer when the budget is short).
    pub trees: usize,
    /// Random forest or extra trees.
    pub splitter: Splitter,
    /// Share of the features tried at each split; `None`: √features for classification, all
    /// for regression (scikit-learn's defaults).
    pub max_features: Option<f64>,
    /// Fewest rows in a leaf.
    pub min_samples_leaf: usize,
}

impl ForestParams {
    /// Read and validate the parameters of a search point.
    pub fn from_point(point: &ParamPoint) -> Result<Self> {
        let splitter = match point.get("splitter").and_then(ParamValue::as_str) {
            None | Some("best") => Splitter::Best,
            Some("random") => Splitter::Random,
            Some(other) => {
                return Err(Error::invalid(
                    "forest.splitter",
                    format!("`{other}`: expected best or random"),
                ))
            }
        };
        let trees = point
            .get("trees")
            .and_then(ParamValue::as_i64)
            .unwrap_or(100);
        let leaf = point
            .get("min_samples_leaf")
            .and_then(ParamValue::as_i64)
            .unwrap_or(1);
        let max_features = point.get("max_features").and_then(ParamValue::as_f64);
        if trees < 1 || leaf < 1 {
            return Err(Error::invalid(
                "forest.trees",
                "trees and min_samples_leaf must be at least 1",
            ));
        }
        if max_features.is_some_and(|m| !(m > 0.0 && m <= 1.0)) {
            return Err(Error::invalid("forest.max_features", "must be in (0, 1]"));
        }
        Ok(ForestParams {
            trees: trees as usize,
            splitter,
            max_features,
            min_samples_leaf: leaf as usize,
        })
    }

    /// Candidate features per split for `cols` features.
    fn features_per_split(&self, cols: usize, problem: Problem) -> usize {
        let share = self.max_features.unwrap_or(match problem.kind {
            ProblemType::Regression => 1.0,
            _ => 1.0 / (cols.max(1) as f64).sqrt(),
        });
        ((share * cols as f64).round() as usize).clamp(1, cols.max(1))
    }
}

/// The family's search space; the defaults are scikit-learn's random forest and extra trees.
pub fn search_space(_problem: Problem) -> SearchSpace {
    let params = BTreeMap::from([
        (
            "trees".to_string(),
            ParamRange::Int {
                low: 50,
                high: 400,
                log: true,
            },
        ),
        (
            "splitter".to_string(),
            ParamRange::Choice {
                options: vec!["best".into(), "random".into()],
            },
        ),
        (
            "max_features".to_string(),
            ParamRange::Float {
                low: 0.05,
                high: 1.0,
                log: true,
            },
        ),
        (
            "min_samples_leaf".to_string(),
            ParamRange::Int {
                low: 1,
                high: 20,
                log: true,
            },
        ),
    ]);
    let default = |splitter: &str| {
        ParamPoint::from([
            ("trees".to_string(), ParamValue::Int(100)),
            ("splitter".to_string(), ParamValue::Text(splitter.into())),
            ("min_samples_leaf".to_string(), ParamValue::Int(1)),
        ])
    };
    SearchSpace {
        family: FAMILY.into(),
        params,
        defaults: vec![default("random"), default("best")],
        cost_hint: 6.0,
    }
}

/// A tree node: a split, or a leaf whose values start at `value` in the tree's values.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Node {
    /// The split feature; [`LEAF`] for a leaf.
    feature: u32,
    threshold: f64,
    left: u32,
    right: u32,
    missing_left: bool,
    value: u32,
}

const LEAF: u32 = u32::MAX;

impl Node {
    /// A leaf whose values start at `value`.
    fn leaf(value: u32) -> Node {
        Node {
            feature: LEAF,
            threshold: 0.0,
            left: 0,
            right: 0,
            missing_left: false,
            value,
        }
    }
}

/// One tree: nodes (root first, children after their parent) and leaf values (`width` each).
#[derive(Debug, Clone, PartialEq)]
struct Tree {
    nodes: Vec<Node>,
    values: Vec<f64>,
}

impl Tree {
    /// Add this tree to `packed`: its split nodes in order, leaves as links to their values.
    fn pack_into(&self, packed: &mut PackedForest) {
        let mut split_index = vec![0; self.nodes.len()];
        let mut splits = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            if node.feature != LEAF {
                split_index[i] = splits;
                splits += 1;
            }
        }
        let link = |i: usize| match self.nodes[i] {
            Node {
                feature: LEAF,
                value,
                ..
            } => Link::Leaf(value as usize),
            _ => Link::Split(split_index[i]),
        };
        let splits: Vec<packed_forest::Split> = self
            .nodes
            .iter()
            .filter(|n| n.feature != LEAF)
            .map(|n| packed_forest::Split {
                feature: n.feature,
                threshold: n.threshold,
                missing_left: n.missing_left,
                left: link(n.left as usize),
                right: link(n.right as usize),
            })
            .collect();
        packed.push_tree(link(0), &splits, &self.values);
    }
}

/// A fitted forest.
#[derive(Debug, Clone, PartialEq)]
pub struct ForestModel {
    trees: Vec<Tree>,
    /// The same trees packed for prediction.
    packed: PackedForest,
    n_features: usize,
    problem: Problem,
}

/// Fits [`ForestModel`]s.
#[derive(Debug, Clone, Copy)]
pub struct ForestTrainer {
    /// The problem to fit.
    pub problem: Problem,
}

impl Trainer for ForestTrainer {
    type Data = Labelled;
    type Model = ForestModel;

    fn fit(
        &self,
        point: &ParamPoint,
        train: &Labelled,
        _valid: &Labelled,
        ctx: &FitContext<'_>,
    ) -> Result<ForestModel> {
        let params = ForestParams::from_point(point)?;
        if train.x.rows == 0 || train.y.len() != train.x.rows {
            return Err(Error::invalid("forest", "no training rows"));
        }
        let grower = Grower::new(&params, train, self.problem);
        let started = Instant::now();
        let mut trees: Vec<Tree> = Vec::with_capacity(params.trees);
        let mut planned = params.trees;
        while trees.len() < planned {
            let from = trees.len();
            let to = (from + BATCH).min(planned);
            let batch: Vec<Tree> = (from..to)
                .into_par_iter()
                .map(|t| grower.grow(&mut rng(ctx.seed, 0x0f0e_0000 + t as u64)))
                .collect();
            trees.extend(batch);
            if ctx.budget.is_cancelled() {
                break;
            }
            // Cap the trees to what the remaining budget affords at the pace so far.
            let per_tree = started.elapsed().as_secs_f64() / trees.len() as f64;
            let affordable =
                ctx.budget.remaining().as_secs_f64() * BUDGET_SHARE / per_tree.max(1e-9);
            planned = planned.min(trees.len().saturating_add(affordable as usize));
        }
        Ok(ForestModel::new(trees, train.x.cols, self.problem))
    }
}

/// What growing a tree reads: the data, binned columns for the best splitter, the settings.
struct Grower<'a> {
    x: &'a Matrix,
    y: &'a [f64],
    /// Per feature: the bin upper edges and each row's bin (`u8::MAX` for missing).
    bins: Vec<(Vec<f64>, Vec<u8>)>,
    splitter: Splitter,
    per_split: usize,
    min_leaf: usize,
    problem: Problem,
    width: usize,
}

/// The split score of a set of rows from its statistics `[count, s_1 … s_width]`, where `s_c`
/// counts class `c`, or `s_1` sums the target for regression. Both impurities (Gini, squared
/// error) are minimised by maximising Σ_c s_c² / count summed over the children.
fn score(stats: &[f64]) -> f64 {
    let n = stats[0];
    if n <= 0.0 {
        return 0.0;
    }
    stats[1..].iter().map(|s| s * s).sum::<f64>() / n
}

fn add(into: &mut [f64], other: &[f64]) {
    for (a, b) in into.iter_mut().zip(other) {
        *a += b;
    }
}

/// The best split found at a node.
struct Split {
    feature: usize,
    threshold: f64,
    missing_left: bool,
    gain: f64,
}

impl<'a> Grower<'a> {
    fn new(params: &ForestParams, data: &'a Labelled, problem: Problem) -> Self {
        let x = &data.x;
        let bins = if params.splitter == Splitter::Best {
            (0..x.cols).map(|c| bin_column(x.column(c))).collect()
        } else {
            Vec::new()
        };
        let min_leaf = params
            .min_samples_leaf
            .max(x.rows.div_ceil(MAX_LEAVES_HINT));
        Grower {
            x,
            y: &data.y,
            bins,
            splitter: params.splitter,
            per_split: params.features_per_split(x.cols, problem),
            min_leaf,
            problem,
            width: problem.output_width(),
        }
    }

    fn row_stats(&self, stats: &mut [f64], r: usize) {
        stats[0] += 1.0;
        if self.problem.kind == ProblemType::Regression {
            stats[1] += self.y[r];
        } else if let Some(s) = stats.get_mut(1 + self.y[r] as usize) {
            *s += 1.0;
        }
    }

    fn grow(&self, rng: &mut Rng) -> Tree {
        let n = self.x.rows;
        let mut rows: Vec<u32> = match self.splitter {
            Splitter::Best => (0..n).map(|_| rng.random_range(0..n) as u32).collect(),
            Splitter::Random => (0..n as u32).collect(),
        };
        let mut tree = Tree {
            nodes: Vec::new(),
            values: Vec::new(),
        };
        tree.nodes.push(Node::leaf(0));
        let mut stack = vec![(0usize, 0usize, rows.len(), 0usize)];
        while let Some((node, start, end, depth)) = stack.pop() {
            let mut stats = vec![0.0; self.width + 1];
            for &r in &rows[start..end] {
                self.row_stats(&mut stats, r as usize);
            }
            let count = end - start;
            let split = if depth < MAX_DEPTH && count >= 2 * self.min_leaf && !pure(&stats) {
                self.find_split(&rows[start..end], &stats, rng)
            } else {
                None
            };
            let Some(split) = split else {
                tree.nodes[node] = self.leaf(&mut tree.values, &stats);
                continue;
            };
            // Partition the rows in place: left ones first.
            let column = self.x.column(split.feature);
            let goes_left = |r: u32| {
                let v = column[r as usize];
                if v.is_nan() {
                    split.missing_left
                } else {
                    v <= split.threshold
                }
            };
            let mut middle = start;
            for i in start..end {
                if goes_left(rows[i]) {
                    rows.swap(i, middle);
                    middle += 1;
                }
            }
            let left = tree.nodes.len();
            tree.nodes.push(Node::leaf(0));
            tree.nodes.push(Node::leaf(0));
            tree.nodes[node] = Node {
                feature: split.feature as u32,
                threshold: split.threshold,
                left: left as u32,
                right: left as u32 + 1,
                missing_left: split.missing_left,
                value: 0,
            };
            stack.push((left + 1, middle, end, depth + 1));
            stack.push((left, start, middle, depth + 1));
        }
        tree
    }

    /// A leaf holding the class shares (or the mean) of `stats`.
    fn leaf(&self, values: &mut Vec<f64>, stats: &[f64]) -> Node {
        let offset = values.len() as u32;
        let n = stats[0].max(1.0);
        if self.problem.kind == ProblemType::Regression {
            values.push(stats[1] / n);
        } else {
            values.extend(stats[1..].iter().map(|c| c / n));
        }
        Node::leaf(offset)
    }

    fn find_split(&self, rows: &[u32], parent: &[f64], rng: &mut Rng) -> Option<Split> {
        let cols = self.x.cols;
        let parent_score = score(parent);
        let mut best: Option<Split> = None;
        // Candidate features in random order; like scikit-learn, constant ones do not count
        // towards `per_split`, so keep drawing until enough were usable or all were tried.
        let order = sample(rng, cols, cols).into_vec();
        let mut usable = 0;
        for f in order {
            if usable >= self.per_split {
                break;
            }
            let found = match self.splitter {
                Splitter::Random => self.random_split(f, rows, parent, rng),
                Splitter::Best => self.best_split(f, rows, parent),
            };
            let Some((threshold, missing_left, children_score)) = found else {
                continue;
            };
            usable += 1;
            let gain = children_score - parent_score;
            if gain > 1e-12 * parent[0] && best.as_ref().is_none_or(|b| gain > b.gain) {
                best = Some(Split {
                    feature: f,
                    threshold,
                    missing_left,
                    gain,
                });
            }
        }
        best
    }

    /// Extra trees: one threshold drawn between the node's min and max of feature `f`.
    /// Returns the threshold, the side of missing values and the children's score.
    fn random_split(
        &self,
        f: usize,
        rows: &[u32],
        parent: &[f64],
        rng: &mut Rng,
    ) -> Option<(f64, bool, f64)> {
        let column = self.x.column(f);
        let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
        for &r in rows {
            let v = column[r as usize];
            if !v.is_nan() {
                low = low.min(v);
                high = high.max(v);
            }
        }
        if low >= high {
            return None;
        }
        let mut threshold = rng.random_range(low..high);
        if threshold >= high {
            threshold = low;
        }
        let mut left = vec![0.0; parent.len()];
        let mut missing = vec![0.0; parent.len()];
        for &r in rows {
            let v = column[r as usize];
            if v.is_nan() {
                self.row_stats(&mut missing, r as usize);
            } else if v <= threshold {
                self.row_stats(&mut left, r as usize);
            }
        }
        self.best_side(parent, &left, &missing)
            .map(|(missing_left, s)| (threshold, missing_left, s))
    }

    /// Random forest: the best threshold among the bin edges of feature `f`.
    fn best_split(&self, f: usize, rows: &[u32], parent: &[f64]) -> Option<(f64, bool, f64)> {
        let (edges, binned) = &self.bins[f];
        if edges.len() < 2 {
            return None;
        }
        let stride = self.width + 1;
        let mut histogram = vec![0.0; edges.len() * stride];
        let mut missing = vec![0.0; stride];
        for &r in rows {
            let r = r as usize;
            let bin = binned[r];
            if bin == u8::MAX {
                self.row_stats(&mut missing, r);
            } else {
                let b = bin as usize;
                self.row_stats(&mut histogram[b * stride..(b + 1) * stride], r);
            }
        }
        let mut left = vec![0.0; stride];
        let mut best: Option<(f64, bool, f64)> = None;
        for b in 0..edges.len() - 1 {
            add(&mut left, &histogram[b * stride..(b + 1) * stride]);
            if let Some((missing_left, s)) = self.best_side(parent, &left, &missing) {
                if best.as_ref().is_none_or(|(_, _, bs)| s > *bs) {
                    best = Some((edges[b], missing_left, s));
                }
            }
        }
        best
    }

    /// The children's score of a split whose non-missing left rows have `left` statistics,
    /// with the missing rows sent to the better side; `None` if a child is smaller than the
    /// leaf minimum.
    fn best_side(&self, parent: &[f64], left: &[f64], missing: &[f64]) -> Option<(bool, f64)> {
        let min = self.min_leaf as f64;
        let mut best: Option<(bool, f64)> = None;
        for missing_left in [true, false] {
            let mut l = left.to_vec();
            if missing_left {
                add(&mut l, missing);
            }
            let r: Vec<f64> = parent.iter().zip(&l).map(|(p, l)| p - l).collect();
            if l[0] < min || r[0] < min {
                continue;
            }
            let s = score(&l) + score(&r);
            if best.is_none_or(|(_, bs)| s > bs) {
                best = Some((missing_left, s));
            }
            if missing[0] == 0.0 {
                break;
            }
        }
        best
    }
}

/// True when a node's rows are all one class (never for regression: variance is checked by
/// the gain instead).
fn pure(stats: &[f64]) -> bool {
    stats.len() > 2 && stats[1..].iter().filter(|&&c| c > 0.0).count() <= 1
}

/// Quantile bin edges of a column (at most [`BINS`], the last one +∞) and each row's bin.
fn bin_column(column: &[f64]) -> (Vec<f64>, Vec<u8>) {
    let mut sorted: Vec<f64> = column.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    let mut edges: Vec<f64> = if sorted.len() <= BINS {
        sorted
    } else {
        (1..BINS)
            .map(|i| sorted[i * sorted.len() / BINS - 1])
            .collect()
    };
    edges.dedup();
    if let Some(last) = edges.last_mut() {
        *last = f64::INFINITY;
    }
    let binned = column
        .iter()
        .map(|&v| {
            if v.is_nan() {
                u8::MAX
            } else {
                edges.partition_point(|&e| e < v) as u8
            }
        })
        .collect();
    (edges, binned)
}

impl ForestModel {
    /// A forest of `trees` over `n_features` inputs, packed for prediction.
    fn new(trees: Vec<Tree>, n_features: usize, problem: Problem) -> Self {
        let mut packed = PackedForest::default();
        for tree in &trees {
            tree.pack_into(&mut packed);
        }
        ForestModel {
            trees,
            packed,
            n_features,
            problem,
        }
    }

    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Predictions, row-major: the trees' averaged class shares, or their mean for regression.
    pub fn predict(&self, x: &Matrix) -> Vec<f64> {
        let width = self.problem.output_width();
        let trees = self.packed.tree_count().max(1) as f64;
        let classification = self.problem.kind != ProblemType::Regression;
        let block = |b: usize| {
            let rows = b * PREDICT_BLOCK_ROWS..((b + 1) * PREDICT_BLOCK_ROWS).min(x.rows);
            let mut out = vec![0.0; rows.len() * width];
            self.packed.accumulate_rows(x, rows, width, trees, &mut out);
            if classification {
                for o in out.iter_mut() {
                    *o = (1.0 - UNIFORM_SHARE) * *o + UNIFORM_SHARE / width as f64;
                }
            }
            out
        };
        let blocks = x.rows.div_ceil(PREDICT_BLOCK_ROWS);
        let mut out: Vec<f64> = if x.rows >= PARALLEL_PREDICT_ROWS {
            (0..blocks).into_par_iter().flat_map_iter(block).collect()
        } else {
            (0..blocks).flat_map(block).collect()
        };
        super::clamp_probabilities(self.problem, &mut out);
        out
    }

    /// Number of trees grown.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// Write the trees as (compressed) safetensors: per node (feature, threshold, left, right, missing
    /// side, value offset), the leaf values, and where each tree starts.
    pub fn save(&self, dir: &Path) -> Result<Vec<String>> {
        let path = dir.join(FOREST_FILE);
        let mut nodes: Vec<f64> = Vec::new();
        let mut values: Vec<f64> = Vec::new();
        let mut starts: Vec<f64> = Vec::new();
        for tree in &self.trees {
            starts.push((nodes.len() / 6) as f64);
            starts.push(values.len() as f64);
            for n in &tree.nodes {
                let feature = if n.feature == LEAF {
                    -1.0
                } else {
                    n.feature as f64
                };
                nodes.extend([
                    feature,
                    n.threshold,
                    n.left as f64,
                    n.right as f64,
                    f64::from(u8::from(n.missing_left)),
                    n.value as f64,
                ]);
            }
            values.extend(&tree.values);
        }
        let bytes = |v: &[f64]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let (node_bytes, value_bytes, start_bytes) =
            (bytes(&nodes), bytes(&values), bytes(&starts));
        let tensor_err = |e: safetensors::SafeTensorError| Error::data(&path, e.to_string());
        let tensors = [
            (
                "nodes",
                TensorView::new(Dtype::F64, vec![nodes.len() / 6, 6], &node_bytes)
                    .map_err(tensor_err)?,
            ),
            (
                "values",
                TensorView::new(Dtype::F64, vec![values.len()], &value_bytes)
                    .map_err(tensor_err)?,
            ),
            (
                "starts",
                TensorView::new(Dtype::F64, vec![self.trees.len(), 2], &start_bytes)
                    .map_err(tensor_err)?,
            ),
        ];
        let metadata = HashMap::from([("features".to_string(), self.n_features.to_string())]);
        let serialized = safetensors::serialize(tensors, Some(metadata)).map_err(tensor_err)?;
        Ok(vec![super::compressed::write(&path, &serialized)?])
    }

    /// Read a forest written by [`ForestModel::save`], checking every index so that a damaged
    /// file is an error, not a crash or an endless walk.
    pub fn load(dir: &Path, problem: Problem) -> Result<Self> {
        let file = TensorFile::read(&dir.join(FOREST_FILE))?;
        let path = &file.path;
        let bad = |message: String| Error::data(path, message);
        let tensors = file.tensors()?;
        let (nodes, _) = read_f64_tensor(&tensors, "nodes", path)?;
        let (values, _) = read_f64_tensor(&tensors, "values", path)?;
        let (starts, _) = read_f64_tensor(&tensors, "starts", path)?;
        let n_features: usize = file
            .metadata
            .get("features")
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| bad("metadata `features` is missing or not a number".into()))?;
        let width = problem.output_width();
        let node_count = nodes.len() / 6;
        if nodes.len() % 6 != 0 || starts.len() % 2 != 0 || starts.is_empty() {
            return Err(bad("the node and tree tables have the wrong shape".into()));
        }
        let index = |v: f64| (v >= 0.0 && v.fract() == 0.0).then_some(v as usize);
        let mut trees = Vec::with_capacity(starts.len() / 2);
        for t in 0..starts.len() / 2 {
            let (Some(node_start), Some(value_start)) =
                (index(starts[2 * t]), index(starts[2 * t + 1]))
            else {
                return Err(bad(format!("tree {t}: invalid start")));
            };
            let node_end = match starts.get(2 * t + 2) {
                Some(&s) => index(s).unwrap_or(usize::MAX),
                None => node_count,
            };
            let value_end = match starts.get(2 * t + 3) {
                Some(&s) => index(s).unwrap_or(usize::MAX),
                None => values.len(),
            };
            if node_start >= node_end
                || node_end > node_count
                || value_start > value_end
                || value_end > values.len()
            {
                return Err(bad(format!("tree {t}: node or value range out of bounds")));
            }
            let tree_values = values[value_start..value_end].to_vec();
            let mut tree_nodes = Vec::with_capacity(node_end - node_start);
            for (i, n) in nodes[node_start * 6..node_end * 6]
                .chunks_exact(6)
                .enumerate()
            {
                let size = node_end - node_start;
                let node = if n[0] == -1.0 {
                    let value = index(n[5]).filter(|&v| v + width <= tree_values.len());
                    let Some(value) = value else {
                        return Err(bad(format!("tree {t} node {i}: leaf value out of bounds")));
                    };
                    Node::leaf(value as u32)
                } else {
                    // Children come after their parent: walking a tree always ends.
                    let child = |v: f64| index(v).filter(|&c| c > i && c < size);
                    let (Some(feature), Some(left), Some(right)) = (
                        index(n[0]).filter(|&f| f < n_features),
                        child(n[2]),
                        child(n[3]),
                    ) else {
                        return Err(bad(format!("tree {t} node {i}: invalid split")));
                    };
                    Node {
                        feature: feature as u32,
                        threshold: n[1],
                        left: left as u32,
                        right: right as u32,
                        missing_left: n[4] != 0.0,
                        value: 0,
                    }
                };
                tree_nodes.push(node);
            }
            trees.push(Tree {
                nodes: tree_nodes,
                values: tree_values,
            });
        }
        Ok(ForestModel::new(trees, n_features, problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> FitContext<'static> {
        crate::family::test_context(3)
    }

    /// Class 1 when x0 + x1 > 1 (a diagonal boundary no single split gets right), a missing
    /// value in every tenth row of x1, and a useless third feature.
    fn diagonal(n: usize) -> Labelled {
        let mut generator = rng(11, 0);
        let mut cols = [Vec::new(), Vec::new(), Vec::new()];
        let mut y = Vec::new();
        for r in 0..n {
            let (a, b): (f64, f64) = (generator.random(), generator.random());
            y.push(if a + b > 1.0 { 1.0 } else { 0.0 });
            cols[0].push(a);
            cols[1].push(if r % 10 == 0 { f64::NAN } else { b });
            cols[2].push(generator.random());
        }
        Labelled::new(
            Matrix {
                data: cols.concat(),
                rows: n,
                cols: 3,
            },
            y,
        )
    }

    /// A binary forest with `splitter` fitted (and validated) on `data`.
    fn fit_binary(splitter: &str, data: &Labelled) -> ForestModel {
        ForestTrainer { problem: BINARY }
            .fit(&point(splitter), data, data, &ctx())
            .expect("fit")
    }

    fn point(splitter: &str) -> ParamPoint {
        ParamPoint::from([
            ("trees".to_string(), ParamValue::Int(40)),
            ("splitter".to_string(), ParamValue::Text(splitter.into())),
        ])
    }

    const BINARY: Problem = Problem {
        kind: ProblemType::Binary,
        n_classes: 2,
    };

    fn accuracy(model: &ForestModel, data: &Labelled) -> f64 {
        let proba = model.predict(&data.x);
        let correct = data
            .y
            .iter()
            .enumerate()
            .filter(|(r, &t)| (proba[2 * r + 1] > 0.5) == (t == 1.0))
            .count();
        correct as f64 / data.y.len() as f64
    }

    #[test]
    fn both_splitters_learn_a_diagonal_boundary_and_round_trip() {
        let (train, test) = (diagonal(600), diagonal(300));
        for splitter in ["best", "random"] {
            let model = fit_binary(splitter, &train);
            assert_eq!(model.n_trees(), 40);
            let acc = accuracy(&model, &test);
            assert!(acc > 0.9, "{splitter}: accuracy {acc}");
            let proba = model.predict(&test.x);
            for row in proba.chunks(2) {
                assert!((row[0] + row[1] - 1.0).abs() < 1e-9, "{row:?}");
            }
            let dir = tempfile::tempdir().expect("tempdir");
            model.save(dir.path()).expect("save");
            let loaded = ForestModel::load(dir.path(), BINARY).expect("load");
            assert_eq!(loaded, model, "{splitter}");
        }
    }

    /// Where row `r` ends in `tree`, walked node by node as grown (the reference for the
    /// packed walk).
    fn walk(tree: &Tree, x: &Matrix, r: usize) -> usize {
        let mut i = 0;
        loop {
            let node = &tree.nodes[i];
            if node.feature == LEAF {
                return node.value as usize;
            }
            let v = x.get(r, node.feature as usize);
            let left = if v.is_nan() {
                node.missing_left
            } else {
                v <= node.threshold
            };
            i = if left { node.left } else { node.right } as usize;
        }
    }

    #[test]
    fn the_packed_trees_predict_what_the_grown_trees_do() {
        let (train, test) = (diagonal(500), diagonal(200));
        for splitter in ["best", "random"] {
            let model = fit_binary(splitter, &train);
            let proba = model.predict(&test.x);
            let trees = model.trees.len() as f64;
            for r in 0..test.x.rows {
                let mut want = [0.0; 2];
                for tree in &model.trees {
                    let at = walk(tree, &test.x, r);
                    for (w, v) in want.iter_mut().zip(&tree.values[at..at + 2]) {
                        *w += v / trees;
                    }
                }
                for (c, w) in want.iter().enumerate() {
                    let expected =
                        ((1.0 - UNIFORM_SHARE) * w + UNIFORM_SHARE / 2.0).clamp(0.0, 1.0);
                    assert_eq!(proba[2 * r + c], expected, "{splitter} row {r}");
                }
            }
        }
    }

    #[test]
    fn the_same_seed_grows_the_same_forest() {
        let data = diagonal(200);
        let fit = || fit_binary("random", &data);
        assert_eq!(fit(), fit());
    }

    #[test]
    fn regression_averages_leaf_means() {
        let problem = Problem {
            kind: ProblemType::Regression,
            n_classes: 1,
        };
        let mut data = diagonal(400);
        data.y = (0..400).map(|r| 3.0 * data.x.get(r, 0)).collect();
        let model = ForestTrainer { problem }
            .fit(&point("best"), &data, &data, &ctx())
            .expect("fit");
        let out = model.predict(&data.x);
        let mse = out
            .iter()
            .zip(&data.y)
            .map(|(p, t)| (p - t) * (p - t))
            .sum::<f64>()
            / 400.0;
        assert!(mse < 0.01, "mse {mse}");
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_crash() {
        let data = diagonal(100);
        let model = fit_binary("random", &data);
        let dir = tempfile::tempdir().expect("tempdir");
        model.save(dir.path()).expect("save");
        // A child pointing back at the root would loop forever.
        let mut broken = model.clone();
        if let Some(node) = broken.trees[0].nodes.iter_mut().find(|n| n.feature != LEAF) {
            node.left = 0;
        }
        broken.save(dir.path()).expect("save");
        let err = ForestModel::load(dir.path(), BINARY).expect_err("cycle");
        assert!(err.to_string().contains("invalid split"), "{err}");
        std::fs::write(dir.path().join(FOREST_FILE), b"junk").expect("write");
        assert!(ForestModel::load(dir.path(), BINARY).is_err());
        assert!(ForestParams::from_point(&ParamPoint::from([(
            "splitter".to_string(),
            ParamValue::Text("greedy".into())
        )]))
        .is_err());
    }
}
