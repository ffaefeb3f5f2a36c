//! Model families. Each declares its search space, its default points and a cost hint, and
//! implements [`exeml_core::Trainer`] on a feature matrix; adding a family touches one file here
//! plus one line in [`Estimator`] and [`spaces`].

pub mod compressed;
pub mod forest;
pub mod gbdt;
pub mod hist_gbdt;
pub mod knn;
pub mod linear;
pub mod mlp;
mod mlp_rows;
mod packed_forest;

use crate::features::{Encoding, Matrix};
use exeml_core::search::{ParamPoint, ParamValue, SearchSpace};
use exeml_core::{Error, ProblemType, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Training data for a family: features and targets (class index, or the value for regression).
#[derive(Debug, Clone)]
pub struct Labelled {
    /// The features.
    pub x: Matrix,
    /// One target per row.
    pub y: Vec<f64>,
    /// Features that hold category codes for an embedding (read by the MLP; others ignore it).
    pub embedded: Vec<crate::features::EmbeddedFeature>,
    /// Features that hold category codes in the tree encoding (split into sets of categories
    /// by `hist_gbdt`; others read them as numbers).
    pub categorical: Vec<usize>,
}

impl Labelled {
    /// Features and targets without code features.
    pub fn new(x: Matrix, y: Vec<f64>) -> Self {
        Labelled {
            x,
            y,
            embedded: Vec::new(),
            categorical: Vec::new(),
        }
    }
}

/// The problem a family is fitted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Binary, multiclass or regression.
    pub kind: ProblemType,
    /// Number of classes (1 for regression).
    pub n_classes: usize,
}

impl Problem {
    /// Width of a prediction row: the classes, or 1 for regression.
    pub fn output_width(self) -> usize {
        if self.kind == ProblemType::Regression {
            1
        } else {
            self.n_classes
        }
    }
}

/// The search spaces of every family, for a problem.
pub fn spaces(problem: Problem) -> Vec<SearchSpace> {
    vec![
        linear::search_space(problem),
        knn::search_space(problem),
        gbdt::search_space(problem),
        hist_gbdt::search_space(problem),
        forest::search_space(problem),
        mlp::search_space(problem),
    ]
}

/// The encoding a family needs.
pub fn encoding_of(family: &str) -> Result<Encoding> {
    match family {
        gbdt::FAMILY | hist_gbdt::FAMILY | forest::FAMILY => Ok(Encoding::Trees),
        linear::FAMILY | knn::FAMILY | mlp::FAMILY => Ok(Encoding::Linear),
        other => Err(Error::invalid(
            "model family",
            format!("unknown family `{other}`"),
        )),
    }
}

/// How many feature columns a fitted model needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputWidth {
    /// Exactly this many (the model was fitted on them all).
    Exactly(usize),
    /// At least this many (the highest column its trees split on, plus one).
    AtLeast(usize),
}

impl InputWidth {
    /// Whether a feature matrix of `cols` columns can be read.
    pub fn accepts(self, cols: usize) -> bool {
        match self {
            InputWidth::Exactly(n) => cols == n,
            InputWidth::AtLeast(n) => cols >= n,
        }
    }
}

impl std::fmt::Display for InputWidth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputWidth::Exactly(n) => write!(f, "{n}"),
            InputWidth::AtLeast(n) => write!(f, "at least {n}"),
        }
    }
}

/// A fitted model of any family.
#[derive(Debug)]
pub enum Estimator {
    /// Gradient-boosted trees.
    Gbdt(gbdt::GbdtModel),
    /// Histogram gradient boosting on exeml's own booster.
    HistGbdt(hist_gbdt::HistGbdtModel),
    /// A regularised linear or logistic model.
    Linear(linear::LinearModel),
    /// k-nearest neighbours.
    Knn(knn::KnnModel),
    /// A random forest or extra trees.
    Forest(forest::ForestModel),
    /// A multi-layer perceptron.
    Mlp(mlp::MlpModel),
}

impl Estimator {
    /// The family's name.
    pub fn family(&self) -> &'static str {
        match self {
            Estimator::Gbdt(_) => gbdt::FAMILY,
            Estimator::HistGbdt(_) => hist_gbdt::FAMILY,
            Estimator::Linear(_) => linear::FAMILY,
            Estimator::Knn(_) => knn::FAMILY,
            Estimator::Forest(_) => forest::FAMILY,
            Estimator::Mlp(_) => mlp::FAMILY,
        }
    }

    /// Predictions, row-major: class probabilities (`rows × n_classes`) or values (`rows`).
    pub fn predict(&self, x: &Matrix) -> Vec<f64> {
        match self {
            Estimator::Gbdt(m) => m.predict(x),
            Estimator::HistGbdt(m) => m.predict(x),
            Estimator::Linear(m) => m.predict(x),
            Estimator::Knn(m) => m.predict(x),
            Estimator::Forest(m) => m.predict(x),
            Estimator::Mlp(m) => m.predict(x),
        }
    }

    /// The feature columns the model reads: checked against its pipeline when a model folder
    /// is loaded, so that edited or mismatched files are refused instead of misread.
    pub fn input_width(&self) -> InputWidth {
        match self {
            Estimator::Gbdt(m) => InputWidth::AtLeast(m.features_read()),
            Estimator::HistGbdt(m) => InputWidth::Exactly(m.n_features()),
            Estimator::Linear(m) => InputWidth::Exactly(m.n_features()),
            Estimator::Knn(m) => InputWidth::Exactly(m.n_features()),
            Estimator::Forest(m) => InputWidth::Exactly(m.n_features()),
            Estimator::Mlp(m) => InputWidth::Exactly(m.n_features()),
        }
    }

    /// Write the fitted parameters into `dir`; returns the files written (relative names).
    pub fn save(&self, dir: &Path) -> Result<Vec<String>> {
        match self {
            Estimator::Gbdt(m) => m.save(dir),
            Estimator::HistGbdt(m) => m.save(dir),
            Estimator::Linear(m) => m.save(dir),
            Estimator::Knn(m) => m.save(dir),
            Estimator::Forest(m) => m.save(dir),
            Estimator::Mlp(m) => m.save(dir),
        }
    }

    /// Read the fitted parameters of `family` from `dir`.
    pub fn load(family: &str, dir: &Path, problem: Problem) -> Result<Self> {
        match family {
            gbdt::FAMILY => Ok(Estimator::Gbdt(gbdt::GbdtModel::load(dir, problem)?)),
            hist_gbdt::FAMILY => Ok(Estimator::HistGbdt(hist_gbdt::HistGbdtModel::load(
                dir, problem,
            )?)),
            linear::FAMILY => Ok(Estimator::Linear(linear::LinearModel::load(dir, problem)?)),
            knn::FAMILY => Ok(Estimator::Knn(knn::KnnModel::load(dir, problem)?)),
            forest::FAMILY => Ok(Estimator::Forest(forest::ForestModel::load(dir, problem)?)),
            mlp::FAMILY => Ok(Estimator::Mlp(mlp::MlpModel::load(dir, problem)?)),
            other => Err(Error::Format {
                path: dir.to_path_buf(),
                message: format!("unknown model family `{other}`"),
            }),
        }
    }
}

/// A safetensors file read whole, for the families that store their weights in one: its bytes
/// and metadata, errors naming the file.
pub(crate) struct TensorFile {
    /// Where it was read from (named in errors).
    pub path: std::path::PathBuf,
    bytes: Vec<u8>,
    /// The header's metadata (empty when it has none).
    pub metadata: std::collections::HashMap<String, String>,
}

impl TensorFile {
    /// Read and check the header of the safetensors file at `path` (or its compressed copy,
    /// see [`compressed`]).
    pub fn read(path: &Path) -> Result<Self> {
        let (path, bytes) = compressed::read(path)?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::data(&path, format!("invalid safetensors: {e}")))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        Ok(TensorFile {
            path,
            bytes,
            metadata,
        })
    }

    /// The tensors of the file.
    pub fn tensors(&self) -> Result<safetensors::SafeTensors<'_>> {
        safetensors::SafeTensors::deserialize(&self.bytes)
            .map_err(|e| Error::data(&self.path, format!("invalid safetensors: {e}")))
    }
}

/// Full-batch Adam (Kingma & Ba) over a flat parameter vector, with the usual betas: the
/// optimiser of the linear models and the stacker.
pub(crate) struct Adam {
    lr: f64,
    m1: Vec<f64>,
    m2: Vec<f64>,
    t: i32,
}

impl Adam {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    /// An optimiser of `params` parameters with learning rate `lr`.
    pub(crate) fn new(params: usize, lr: f64) -> Self {
        Adam {
            lr,
            m1: vec![0.0; params],
            m2: vec![0.0; params],
            t: 0,
        }
    }

    /// The next step, to subtract from each parameter, for the gradient `grad`.
    pub(crate) fn steps(&mut self, grad: &[f64]) -> Vec<f64> {
        self.t += 1;
        let (b1, b2) = (Self::BETA1, Self::BETA2);
        grad.iter()
            .enumerate()
            .map(|(p, g)| {
                self.m1[p] = b1 * self.m1[p] + (1.0 - b1) * g;
                self.m2[p] = b2 * self.m2[p] + (1.0 - b2) * g * g;
                self.lr * (self.m1[p] / (1.0 - b1.powi(self.t)))
                    / ((self.m2[p] / (1.0 - b2.powi(self.t))).sqrt() + Self::EPS)
            })
            .collect()
    }
}

/// Write `weights` (`rows × width`, row-major) and `bias` (`width`) as the f64 tensors `weight`
/// and `bias` of the safetensors file `path`, atomically; shared by the linear models and the
/// stacker.
pub(crate) fn save_weight_and_bias(path: &Path, weights: &[f64], bias: &[f64]) -> Result<()> {
    use safetensors::tensor::{Dtype, TensorView};
    let tensor_err = |e: safetensors::SafeTensorError| Error::data(path, e.to_string());
    let width = bias.len();
    let weight_bytes: Vec<u8> = weights.iter().flat_map(|v| v.to_le_bytes()).collect();
    let bias_bytes: Vec<u8> = bias.iter().flat_map(|v| v.to_le_bytes()).collect();
    let weight = TensorView::new(
        Dtype::F64,
        vec![weights.len() / width.max(1), width],
        &weight_bytes,
    )
    .map_err(tensor_err)?;
    let bias = TensorView::new(Dtype::F64, vec![width], &bias_bytes).map_err(tensor_err)?;
    let bytes =
        safetensors::serialize([("weight", weight), ("bias", bias)], None).map_err(tensor_err)?;
    exeml_core::fsio::write_atomic(path, &bytes)
}

/// Read the `weight` and `bias` tensors written by [`save_weight_and_bias`].
pub(crate) fn load_weight_and_bias(path: &Path) -> Result<(Vec<f64>, Vec<f64>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::data(path, format!("invalid safetensors: {e}")))?;
    let (weights, _) = read_f64_tensor(&tensors, "weight", path)?;
    let (bias, _) = read_f64_tensor(&tensors, "bias", path)?;
    Ok((weights, bias))
}

/// The values and shape of the f64 tensor `name` of a safetensors file (`path` names it in
/// errors); shared by the families that store weights in safetensors.
pub(crate) fn read_f64_tensor(
    tensors: &safetensors::SafeTensors<'_>,
    name: &str,
    path: &Path,
) -> Result<(Vec<f64>, Vec<usize>)> {
    let tensor = tensors
        .tensor(name)
        .map_err(|e| Error::data(path, format!("tensor `{name}`: {e}")))?;
    if tensor.dtype() != safetensors::tensor::Dtype::F64 {
        return Err(Error::data(path, format!("tensor `{name}` is not f64")));
    }
    let values = tensor
        .data()
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    Ok((values, tensor.shape().to_vec()))
}

/// A float parameter of a search point, or `default` when it is absent.
pub(crate) fn float_param(point: &ParamPoint, key: &str, default: f64) -> f64 {
    point
        .get(key)
        .and_then(ParamValue::as_f64)
        .unwrap_or(default)
}

/// A count parameter of a search point (negative values read as 0), or `default` when it is
/// absent.
pub(crate) fn count_param(point: &ParamPoint, key: &str, default: usize) -> usize {
    point
        .get(key)
        .and_then(ParamValue::as_i64)
        .map_or(default, |x| x.max(0) as usize)
}

/// Turn a row of raw scores into probabilities that sum to one.
pub(crate) fn softmax_in_place(row: &mut [f64]) {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

/// Keep averaged probabilities inside [0, 1]: a weighted sum of rows that each sum to one can
/// exceed one by a rounding error, which the metrics (rightly) refuse.
pub(crate) fn clamp_probabilities(problem: Problem, out: &mut [f64]) {
    if problem.kind != ProblemType::Regression {
        for p in out.iter_mut() {
            *p = p.clamp(0.0, 1.0);
        }
    }
}

/// A fit context for unit tests: no time limit, silent, seeded.
#[cfg(test)]
pub(crate) fn test_context(seed: u64) -> exeml_core::FitContext<'static> {
    exeml_core::FitContext {
        budget: exeml_core::Budget::unlimited(),
        device: exeml_core::Device::Cpu,
        preference: exeml_core::Preference::Balance,
        seed,
        progress: &exeml_core::Silent,
        monitor: &exeml_core::search::NeverStop,
    }
}

/// The logistic function.
pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
