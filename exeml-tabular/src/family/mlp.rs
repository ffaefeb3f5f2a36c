//! A multi-layer perceptron for tables, trained with candle: the standardised (linear)
//! encoding — numbers scaled, categories one-hot, missing-value indicators — through `layers`
//! hidden layers (linear → ReLU → dropout) to one output per class (softmax cross-entropy) or
//! one value (squared error on the standardised target). AdamW on shuffled mini-batches,
//! early stopping on the validation loss with the best epoch's weights kept, epochs capped to
//! the time left. Weights, shuffles and dropout masks come from the run's seed, so a seed gives
//! the same network. CPU only for now (tables this size gain little from a GPU).
//!
//! With the `embedding` category encoding, a categorical column reaches the network as a level
//! code, looked up in a learned embedding table (`min(32, 1.6 · codes^0.56)` wide, fastai's
//! rule) whose output joins the other features at the first layer.

use super::mlp_rows::{self, RowNetwork};
use super::{Labelled, Problem, TensorFile};
use crate::features::{EmbeddedFeature, Matrix};
use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use exeml_core::search::{ParamPoint, ParamRange, ParamValue, SearchSpace};
use exeml_core::seed::{rng, Rng};
use exeml_core::{Error, FitContext, ProblemType, Result, Trainer};
use rand::seq::SliceRandom;
use rand::Rng as _;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

/// The family's name in manifests and leaderboards.
pub const FAMILY: &str = "mlp";
const WEIGHTS_FILE: &str = "mlp.safetensors";
/// Epochs without a better validation loss before training stops.
const PATIENCE: usize = 12;
/// Most epochs of one fit.
const MAX_EPOCHS: usize = 300;
/// Mini-batches between budget checks within an epoch.
const STEPS_PER_BUDGET_CHECK: usize = 64;
/// Share of the remaining budget a fit may plan to use.
const BUDGET_SHARE: f64 = 0.8;
/// Widest embedding of a categorical column.
const MAX_EMBEDDING_DIM: usize = 32;

/// Hyper-parameters of the network and its training, read from a search point.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpParams {
    /// Units per hidden layer.
    pub hidden: usize,
    /// Hidden layers.
    pub layers: usize,
    /// Dropout rate after each hidden layer.
    pub dropout: f64,
    /// AdamW's learning rate.
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Rows per mini-batch.
    pub batch_size: usize,
    /// Train exactly this many epochs without early stopping (a refit on all rows).
    pub epochs: Option<usize>,
}

impl MlpParams {
    /// Read and validate the parameters of a search point (absent ones keep their defaults).
    pub fn from_point(point: &ParamPoint) -> Result<Self> {
        let int = |k: &str, v: i64| point.get(k).and_then(ParamValue::as_i64).unwrap_or(v);
        let float = |k: &str, v: f64| point.get(k).and_then(ParamValue::as_f64).unwrap_or(v);
        let p = MlpParams {
            hidden: int("hidden", 128).max(0) as usize,
            layers: int("layers", 2).max(0) as usize,
            dropout: float("dropout", 0.1),
            learning_rate: float("learning_rate", 1e-3),
            weight_decay: float("weight_decay", 1e-4),
            batch_size: int("batch_size", 128).max(0) as usize,
            epochs: point
                .get("epochs")
                .and_then(ParamValue::as_i64)
                .map(|e| e.max(1) as usize),
        };
        let bad = |name: &str, msg: &str| Err(Error::invalid(format!("mlp.{name}"), msg));
        if p.hidden == 0 || p.layers == 0 || p.layers > 8 || p.batch_size == 0 {
            return bad(
                "layers",
                "needs 1–8 hidden layers of at least one unit and a batch size",
            );
        }
        if !(0.0..0.95).contains(&p.dropout) {
            return bad("dropout", "must be in [0, 0.95)");
        }
        if !(p.learning_rate > 0.0 && p.learning_rate < 1.0) || p.weight_decay < 0.0 {
            return bad("learning_rate", "must be in (0, 1), and weight_decay ≥ 0");
        }
        Ok(p)
    }
}

/// The family's search space; the default is a 2 × 128 ReLU network with light dropout.
pub fn search_space(_problem: Problem) -> SearchSpace {
    let float = |low, high, log| ParamRange::Float { low, high, log };
    let int = |low, high, log| ParamRange::Int { low, high, log };
    let params = BTreeMap::from([
        ("hidden".to_string(), int(32, 512, true)),
        ("layers".to_string(), int(1, 3, false)),
        ("dropout".to_string(), float(0.0, 0.5, false)),
        ("learning_rate".to_string(), float(1e-4, 1e-2, true)),
        ("weight_decay".to_string(), float(1e-6, 1e-2, true)),
    ]);
    let default = ParamPoint::from([
        ("hidden".to_string(), ParamValue::Int(128)),
        ("layers".to_string(), ParamValue::Int(2)),
        ("dropout".to_string(), ParamValue::Float(0.1)),
        ("learning_rate".to_string(), ParamValue::Float(1e-3)),
        ("weight_decay".to_string(), ParamValue::Float(1e-4)),
    ]);
    SearchSpace {
        family: FAMILY.into(),
        params,
        defaults: vec![default],
        cost_hint: 8.0,
    }
}

/// Weights `[out, in]` and biases of each layer, the last one the output.
type Layers = Vec<(Tensor, Tensor)>;

/// A fitted network: weights `[out, in]` and biases per layer, the last one the output.
#[derive(Debug, Clone)]
pub struct MlpModel {
    layers: Layers,
    /// The embedding table (`[codes, dim]`) of each code feature, in feature order.
    embeddings: Vec<(EmbeddedFeature, Tensor)>,
    /// Features the network reads (plain and code features).
    n_inputs: usize,
    problem: Problem,
    /// Mean and spread of the regression target (the network predicts it standardised).
    target_scale: (f64, f64),
    /// Epochs of the kept weights (a refit trains this many).
    epochs: usize,
    /// The same weights as plain vectors, for predicting a few rows without candle.
    rows: RowNetwork,
}

impl PartialEq for MlpModel {
    fn eq(&self, other: &Self) -> bool {
        let values = |m: &MlpModel| -> Option<Vec<Vec<f32>>> {
            m.layers
                .iter()
                .flat_map(|(w, b)| [w, b])
                .map(|t| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).ok())
                .collect()
        };
        let tables = |m: &MlpModel| -> Option<Vec<Vec<f32>>> {
            m.embeddings
                .iter()
                .map(|(_, t)| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).ok())
                .collect()
        };
        self.problem == other.problem
            && self.n_inputs == other.n_inputs
            && self
                .embeddings
                .iter()
                .map(|(e, _)| e)
                .eq(other.embeddings.iter().map(|(e, _)| e))
            && tables(self) == tables(other)
            && self.target_scale == other.target_scale
            && self.epochs == other.epochs
            && values(self) == values(other)
    }
}

/// Fits [`MlpModel`]s.
#[derive(Debug, Clone, Copy)]
pub struct MlpTrainer {
    /// The problem to fit.
    pub problem: Problem,
}

fn candle(e: candle_core::Error) -> Error {
    Error::Backend {
        backend: "candle",
        message: e.to_string(),
    }
}

/// The network's inputs: the plain features as one row-major `[rows, plain]` f32 tensor (none
/// when every feature is a code) and each code feature as a `[rows]` u32 index tensor.
struct Inputs {
    plain: Option<Tensor>,
    codes: Vec<Tensor>,
}

impl Inputs {
    /// Split a column-major matrix; `embedded` lists its code features (in feature order).
    fn new(x: &Matrix, embedded: &[EmbeddedFeature]) -> Result<Self> {
        let plain_columns: Vec<usize> = (0..x.cols)
            .filter(|c| !embedded.iter().any(|e| e.feature == *c))
            .collect();
        let plain = if plain_columns.is_empty() {
            None
        } else {
            let width = plain_columns.len();
            let mut data = vec![0f32; x.rows * width];
            for (j, &c) in plain_columns.iter().enumerate() {
                for (r, v) in x.column(c).iter().enumerate() {
                    data[r * width + j] = mlp_rows::plain_input(*v);
                }
            }
            Some(Tensor::from_vec(data, (x.rows, width), &Device::Cpu).map_err(candle)?)
        };
        let codes = embedded
            .iter()
            .map(|e| {
                let v: Vec<u32> = x
                    .column(e.feature)
                    .iter()
                    .map(|&c| mlp_rows::code_input(c, *e) as u32)
                    .collect();
                Tensor::from_vec(v, x.rows, &Device::Cpu).map_err(candle)
            })
            .collect::<Result<Vec<Tensor>>>()?;
        Ok(Inputs { plain, codes })
    }

    /// The rows `index` of every part.
    fn rows(&self, index: &Tensor) -> candle_core::Result<Inputs> {
        Ok(Inputs {
            plain: self
                .plain
                .as_ref()
                .map(|t| t.index_select(index, 0))
                .transpose()?,
            codes: self
                .codes
                .iter()
                .map(|t| t.index_select(index, 0))
                .collect::<candle_core::Result<_>>()?,
        })
    }
}

/// Width of the embedding of a column with `codes` codes (fastai's rule, capped).
fn embedding_dim(codes: usize) -> usize {
    ((1.6 * (codes as f64).powf(0.56)).round() as usize).clamp(2, MAX_EMBEDDING_DIM)
}

/// PyTorch's default `Linear` initialisation, U(−1/√fan_in, 1/√fan_in), from our generator.
fn init_layer(rng: &mut Rng, fan_in: usize, fan_out: usize) -> Result<(Var, Var)> {
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    let mut draw =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
    let w =
        Var::from_vec(draw(fan_in * fan_out), (fan_out, fan_in), &Device::Cpu).map_err(candle)?;
    let b = Var::from_vec(draw(fan_out), fan_out, &Device::Cpu).map_err(candle)?;
    Ok((w, b))
}

/// An embedding table with unit-variance entries, U(−√3, √3), from our generator.
fn init_embedding(rng: &mut Rng, codes: usize, dim: usize) -> Result<Var> {
    let bound = 3f32.sqrt();
    let values: Vec<f32> = (0..codes * dim)
        .map(|_| rng.random_range(-bound..bound))
        .collect();
    Var::from_vec(values, (codes, dim), &Device::Cpu).map_err(candle)
}

/// The network's output (logits or standardised values) for `inputs`; dropout masks are
/// applied after each hidden layer when given.
fn forward(
    layers: &[(Tensor, Tensor)],
    tables: &[Tensor],
    inputs: &Inputs,
    masks: Option<&[Tensor]>,
) -> candle_core::Result<Tensor> {
    let mut parts: Vec<Tensor> = inputs.plain.iter().cloned().collect();
    for (table, codes) in tables.iter().zip(&inputs.codes) {
        parts.push(table.index_select(codes, 0)?);
    }
    let mut h = match parts.len() {
        1 => parts.remove(0),
        _ => Tensor::cat(&parts, 1)?,
    };
    let last = layers.len() - 1;
    for (i, (w, b)) in layers.iter().enumerate() {
        h = h.matmul(&w.t()?)?.broadcast_add(b)?;
        if i < last {
            h = h.relu()?;
            if let Some(mask) = masks.and_then(|m| m.get(i)) {
                h = h.mul(mask)?;
            }
        }
    }
    Ok(h)
}

impl Trainer for MlpTrainer {
    type Data = Labelled;
    type Model = MlpModel;

    fn fit(
        &self,
        point: &ParamPoint,
        train: &Labelled,
        valid: &Labelled,
        ctx: &FitContext<'_>,
    ) -> Result<MlpModel> {
        let params = MlpParams::from_point(point)?;
        let problem = self.problem;
        let n = train.x.rows;
        if n == 0 || train.y.len() != n {
            return Err(Error::invalid("mlp", "no training rows"));
        }
        let regression = problem.kind == ProblemType::Regression;
        let target_scale = if regression {
            let mean = train.y.iter().sum::<f64>() / n as f64;
            let var = train.y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            (mean, var.sqrt().max(1e-12))
        } else {
            (0.0, 1.0)
        };
        let targets = |y: &[f64]| -> Result<Tensor> {
            if regression {
                let v: Vec<f32> = y
                    .iter()
                    .map(|v| ((v - target_scale.0) / target_scale.1) as f32)
                    .collect();
                Tensor::from_vec(v, (y.len(), 1), &Device::Cpu).map_err(candle)
            } else {
                let v: Vec<u32> = y.iter().map(|&v| v as u32).collect();
                Tensor::from_vec(v, y.len(), &Device::Cpu).map_err(candle)
            }
        };
        let loss_of = |out: &Tensor, y: &Tensor| -> candle_core::Result<Tensor> {
            if regression {
                candle_nn::loss::mse(out, y)
            } else {
                candle_nn::loss::cross_entropy(out, y)
            }
        };
        let embedded = train.embedded.clone();
        let (x, y) = (Inputs::new(&train.x, &embedded)?, targets(&train.y)?);
        let validation = if valid.x.rows > 0 && params.epochs.is_none() {
            Some((Inputs::new(&valid.x, &embedded)?, targets(&valid.y)?))
        } else {
            None
        };

        let mut generator = rng(ctx.seed, 0x6d6c_7000);
        let table_vars: Vec<Var> = embedded
            .iter()
            .map(|e| init_embedding(&mut generator, e.codes, embedding_dim(e.codes)))
            .collect::<Result<_>>()?;
        let mut vars: Vec<(Var, Var)> = Vec::with_capacity(params.layers + 1);
        let mut fan_in = train.x.cols - embedded.len()
            + embedded
                .iter()
                .map(|e| embedding_dim(e.codes))
                .sum::<usize>();
        for _ in 0..params.layers {
            vars.push(init_layer(&mut generator, fan_in, params.hidden)?);
            fan_in = params.hidden;
        }
        vars.push(init_layer(&mut generator, fan_in, problem.output_width())?);
        let layers = |vars: &[(Var, Var)]| -> Layers {
            vars.iter()
                .map(|(w, b)| (w.as_tensor().clone(), b.as_tensor().clone()))
                .collect()
        };
        let tables =
            |vars: &[Var]| -> Vec<Tensor> { vars.iter().map(|v| v.as_tensor().clone()).collect() };
        let mut optimizer = AdamW::new(
            vars.iter()
                .flat_map(|(w, b)| [w.clone(), b.clone()])
                .chain(table_vars.iter().cloned())
                .collect(),
            ParamsAdamW {
                lr: params.learning_rate,
                weight_decay: params.weight_decay,
                ..Default::default()
            },
        )
        .map_err(candle)?;

        let keep = 1.0 - params.dropout;
        let started = Instant::now();
        let max_epochs = params.epochs.unwrap_or(MAX_EPOCHS);
        let mut order: Vec<u32> = (0..n as u32).collect();
        let mut best: Option<(f64, usize, Layers, Vec<Tensor>)> = None;
        let mut epochs = 0;
        'training: while epochs < max_epochs {
            order.shuffle(&mut generator);
            for (step, batch) in order.chunks(params.batch_size).enumerate() {
                // An epoch of a large table is long: the budget is checked within it too.
                if step % STEPS_PER_BUDGET_CHECK == STEPS_PER_BUDGET_CHECK - 1
                    && ctx.budget.exhausted()
                {
                    break 'training;
                }
                let index = Tensor::from_slice(batch, batch.len(), &Device::Cpu).map_err(candle)?;
                let xb = x.rows(&index).map_err(candle)?;
                let yb = y.index_select(&index, 0).map_err(candle)?;
                let masks: Vec<Tensor> = if params.dropout > 0.0 {
                    (0..params.layers)
                        .map(|_| {
                            let m: Vec<f32> = (0..batch.len() * params.hidden)
                                .map(|_| {
                                    if generator.random::<f64>() < keep {
                                        (1.0 / keep) as f32
                                    } else {
                                        0.0
                                    }
                                })
                                .collect();
                            Tensor::from_vec(m, (batch.len(), params.hidden), &Device::Cpu)
                        })
                        .collect::<candle_core::Result<_>>()
                        .map_err(candle)?
                } else {
                    Vec::new()
                };
                let out = forward(&layers(&vars), &tables(&table_vars), &xb, Some(&masks))
                    .map_err(candle)?;
                let loss = loss_of(&out, &yb).map_err(candle)?;
                optimizer.backward_step(&loss).map_err(candle)?;
            }
            epochs += 1;
            if let Some((xv, yv)) = &validation {
                let out =
                    forward(&layers(&vars), &tables(&table_vars), xv, None).map_err(candle)?;
                let loss = loss_of(&out, yv)
                    .and_then(|l| l.to_scalar::<f32>())
                    .map_err(candle)? as f64;
                if !loss.is_finite() {
                    break;
                }
                // A trial clearly worse than earlier ones stops here with its best weights.
                let go_on = ctx.monitor.report(epochs, loss);
                if best.as_ref().is_none_or(|(l, ..)| loss < *l) {
                    let snapshot = layers(&vars)
                        .into_iter()
                        .map(|(w, b)| Ok((w.copy()?, b.copy()?)))
                        .collect::<candle_core::Result<Vec<_>>>()
                        .map_err(candle)?;
                    let table_snapshot = tables(&table_vars)
                        .iter()
                        .map(Tensor::copy)
                        .collect::<candle_core::Result<Vec<_>>>()
                        .map_err(candle)?;
                    best = Some((loss, epochs, snapshot, table_snapshot));
                } else if best
                    .as_ref()
                    .is_some_and(|(_, e, ..)| epochs - e >= PATIENCE)
                {
                    break;
                }
                if !go_on {
                    break;
                }
            }
            if ctx.budget.is_cancelled() {
                break;
            }
            // Another epoch only if the time left covers it at the pace so far.
            let per_epoch = started.elapsed().as_secs_f64() / epochs as f64;
            if ctx.budget.remaining().as_secs_f64() * BUDGET_SHARE < per_epoch {
                break;
            }
        }
        let (layers, table_values, epochs) = match best {
            Some((_, epoch, snapshot, table_snapshot)) => (snapshot, table_snapshot, epoch),
            None => (layers(&vars), tables(&table_vars), epochs),
        };
        // The weights are kept at the precision they are saved with, so that the model the
        // search scores is the one that is shipped (and reloads to identical predictions).
        let layers: Layers = layers
            .iter()
            .map(|(w, b)| Ok((half_precision(w)?, b.clone())))
            .collect::<candle_core::Result<_>>()
            .map_err(candle)?;
        let table_values: Vec<Tensor> = table_values
            .iter()
            .map(half_precision)
            .collect::<candle_core::Result<_>>()
            .map_err(candle)?;
        let embeddings: Vec<(EmbeddedFeature, Tensor)> =
            embedded.into_iter().zip(table_values).collect();
        Ok(MlpModel {
            rows: RowNetwork::new(&layers, &embeddings).map_err(candle)?,
            layers,
            embeddings,
            n_inputs: train.x.cols,
            problem,
            target_scale,
            epochs,
        })
    }
}

/// `t` rounded to the nearest f16 value, kept as f32: the precision the weights are saved with
/// (half the bytes of f32; the networks' predictions move by about 1e-4).
fn half_precision(t: &Tensor) -> candle_core::Result<Tensor> {
    t.to_dtype(candle_core::DType::F16)?
        .to_dtype(candle_core::DType::F32)
}

impl MlpModel {
    /// Predictions, row-major: class probabilities, or values for regression.
    pub fn predict(&self, x: &Matrix) -> Vec<f64> {
        let width = self.problem.output_width();
        if x.rows <= mlp_rows::MAX_ROWS {
            let mut values = self.rows.forward(x);
            if self.problem.kind == ProblemType::Regression {
                return values
                    .iter()
                    .map(|&v| v as f64 * self.target_scale.1 + self.target_scale.0)
                    .collect();
            }
            mlp_rows::softmax_rows(&mut values, width);
            return values.iter().map(|&v| v as f64).collect();
        }
        let embedded: Vec<EmbeddedFeature> = self.embeddings.iter().map(|(e, _)| *e).collect();
        let tables: Vec<Tensor> = self.embeddings.iter().map(|(_, t)| t.clone()).collect();
        let out = Inputs::new(x, &embedded)
            .and_then(|inputs| forward(&self.layers, &tables, &inputs, None).map_err(candle))
            .and_then(|out| {
                if self.problem.kind == ProblemType::Regression {
                    Ok(out)
                } else {
                    candle_nn::ops::softmax_last_dim(&out).map_err(candle)
                }
            })
            .and_then(|out| {
                out.flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(candle)
            });
        match out {
            Ok(values) if self.problem.kind == ProblemType::Regression => values
                .iter()
                .map(|&v| v as f64 * self.target_scale.1 + self.target_scale.0)
                .collect(),
            Ok(values) => values.iter().map(|&v| v as f64).collect(),
            // Shapes are checked when the model is built or loaded; should the backend still
            // fail, every class is equally likely (or the training mean) rather than a panic.
            Err(_) if self.problem.kind == ProblemType::Regression => {
                vec![self.target_scale.0; x.rows]
            }
            Err(_) => vec![1.0 / width as f64; x.rows * width],
        }
    }

    /// Number of input features the network reads.
    pub fn n_features(&self) -> usize {
        self.n_inputs
    }

    /// Epochs of the kept weights.
    pub fn epochs(&self) -> usize {
        self.epochs
    }

    /// The search point of a refit on all rows: these parameters for the kept number of
    /// epochs, without early stopping.
    pub fn refit_point(&self, point: &ParamPoint) -> ParamPoint {
        let mut point = point.clone();
        point.insert("epochs".into(), ParamValue::Int(self.epochs.max(1) as i64));
        point
    }

    /// Write the network as safetensors: weights (`w0`, …) and embedding tables (`emb0`, …)
    /// in f16, which holds them exactly (they are rounded to it when fitted), biases (`b0`, …)
    /// in f32; the target scale and epochs as metadata.
    pub fn save(&self, dir: &Path) -> Result<Vec<String>> {
        let path = dir.join(WEIGHTS_FILE);
        let mut named: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut add = |name: String, t: &Tensor, dtype: Dtype| -> Result<()> {
            let values = t
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(candle)?;
            let bytes = match dtype {
                Dtype::F16 => values
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect(),
                _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            };
            named.push((name, dtype, t.dims().to_vec(), bytes));
            Ok(())
        };
        for (i, (w, b)) in self.layers.iter().enumerate() {
            add(format!("w{i}"), w, Dtype::F16)?;
            add(format!("b{i}"), b, Dtype::F32)?;
        }
        for (k, (_, table)) in self.embeddings.iter().enumerate() {
            add(format!("emb{k}"), table, Dtype::F16)?;
        }
        let embedded: Vec<String> = self
            .embeddings
            .iter()
            .map(|(e, _)| format!("{}:{}", e.feature, e.codes))
            .collect();
        let tensor_err = |e: safetensors::SafeTensorError| Error::data(&path, e.to_string());
        let views = named
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                TensorView::new(*dtype, shape.clone(), bytes).map(|v| (name.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(tensor_err)?;
        let metadata = HashMap::from([
            ("layers".to_string(), self.layers.len().to_string()),
            ("target_mean".to_string(), self.target_scale.0.to_string()),
            ("target_std".to_string(), self.target_scale.1.to_string()),
            ("epochs".to_string(), self.epochs.to_string()),
            ("inputs".to_string(), self.n_inputs.to_string()),
            ("embedded".to_string(), embedded.join(",")),
        ]);
        let bytes = safetensors::serialize(views, Some(metadata)).map_err(tensor_err)?;
        exeml_core::fsio::write_atomic(&path, &bytes)?;
        Ok(vec![WEIGHTS_FILE.to_string()])
    }

    /// Read a network written by [`MlpModel::save`], checking that the layers chain.
    pub fn load(dir: &Path, problem: Problem) -> Result<Self> {
        let file = TensorFile::read(&dir.join(WEIGHTS_FILE))?;
        let bad = |message: String| Error::data(&file.path, message);
        let tensors = file.tensors()?;
        let meta = &file.metadata;
        let number = |key: &str| -> Result<f64> {
            meta.get(key)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(format!("metadata `{key}` is missing or not a number")))
        };
        let count = number("layers")? as usize;
        if !(2..=9).contains(&count) {
            return Err(bad(format!("{count} layers: expected 2 to 9")));
        }
        let read = |name: String| -> Result<(Vec<f32>, Vec<usize>)> {
            let t = tensors
                .tensor(&name)
                .map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
            // f16 since model format 4, f32 before.
            let values = match t.dtype() {
                Dtype::F32 => t
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F16 => t
                    .data()
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                other => return Err(bad(format!("tensor `{name}` is {other:?}, not f16 or f32"))),
            };
            Ok((values, t.shape().to_vec()))
        };
        // Embeddings (absent in networks saved before they existed).
        let mut embeddings: Vec<(EmbeddedFeature, Tensor)> = Vec::new();
        let listed = meta.get("embedded").map_or("", String::as_str);
        for (k, item) in listed.split(',').filter(|i| !i.is_empty()).enumerate() {
            let parsed = item
                .split_once(':')
                .and_then(|(f, c)| Some((f.parse::<usize>().ok()?, c.parse::<usize>().ok()?)));
            let Some((feature, codes)) = parsed else {
                return Err(bad(format!(
                    "metadata `embedded`: `{item}` is not feature:codes"
                )));
            };
            let (values, shape) = read(format!("emb{k}"))?;
            let ordered = embeddings.last().is_none_or(|(e, _)| e.feature < feature);
            if shape.len() != 2 || shape[0] != codes || codes == 0 || !ordered {
                return Err(bad(format!(
                    "embedding {k} has shape {shape:?} for {codes} codes of feature {feature}"
                )));
            }
            let table =
                Tensor::from_vec(values, (shape[0], shape[1]), &Device::Cpu).map_err(candle)?;
            embeddings.push((EmbeddedFeature { feature, codes }, table));
        }
        let mut layers = Vec::with_capacity(count);
        let mut fan_in: Option<usize> = None;
        for i in 0..count {
            let (w, w_shape) = read(format!("w{i}"))?;
            let (b, b_shape) = read(format!("b{i}"))?;
            let chains = w_shape.len() == 2
                && b_shape == [w_shape[0]]
                && fan_in.is_none_or(|f| f == w_shape[1])
                && (i + 1 < count || w_shape[0] == problem.output_width());
            if !chains {
                return Err(bad(format!(
                    "layer {i}: weights {w_shape:?} and bias {b_shape:?} do not chain"
                )));
            }
            fan_in = Some(w_shape[0]);
            let w = Tensor::from_vec(w, (w_shape[0], w_shape[1]), &Device::Cpu).map_err(candle)?;
            let b = Tensor::from_vec(b, b_shape[0], &Device::Cpu).map_err(candle)?;
            layers.push((w, b));
        }
        let first_fan_in = layers.first().map_or(0, |(w, _)| w.dims()[1]);
        let embedded_width: usize = embeddings.iter().map(|(_, t)| t.dims()[1]).sum();
        let n_inputs = match meta.get("inputs") {
            Some(_) => number("inputs")? as usize,
            None => first_fan_in,
        };
        let fits = n_inputs >= embeddings.len()
            && n_inputs - embeddings.len() + embedded_width == first_fan_in
            && embeddings.iter().all(|(e, _)| e.feature < n_inputs);
        if !fits {
            return Err(bad(format!(
                "{n_inputs} inputs with {} embeddings do not match the first layer's {first_fan_in}",
                embeddings.len()
            )));
        }
        Ok(MlpModel {
            rows: RowNetwork::new(&layers, &embeddings).map_err(candle)?,
            layers,
            embeddings,
            n_inputs,
            problem,
            target_scale: (number("target_mean")?, number("target_std")?),
            epochs: number("epochs")? as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> FitContext<'static> {
        crate::family::test_context(5)
    }

    /// Two interleaved rings (class by radius): not linearly separable.
    fn rings(n: usize, seed: u64) -> Labelled {
        let mut g = rng(seed, 1);
        let (mut a, mut b, mut y) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let class = i % 2;
            let radius = if class == 0 { 1.0 } else { 2.5 } + g.random_range(-0.3..0.3);
            let angle: f64 = g.random_range(0.0..std::f64::consts::TAU);
            a.push(radius * angle.cos());
            b.push(radius * angle.sin());
            y.push(class as f64);
        }
        Labelled::new(
            Matrix {
                data: [a, b].concat(),
                rows: n,
                cols: 2,
            },
            y,
        )
    }

    const BINARY: Problem = Problem {
        kind: ProblemType::Binary,
        n_classes: 2,
    };

    #[test]
    fn learns_a_non_linear_boundary_and_round_trips() {
        let (train, valid) = (rings(400, 1), rings(200, 2));
        let model = MlpTrainer { problem: BINARY }
            .fit(&ParamPoint::new(), &train, &valid, &ctx())
            .expect("fit");
        let proba = model.predict(&valid.x);
        let correct = valid
            .y
            .iter()
            .enumerate()
            .filter(|(r, &t)| (proba[2 * r + 1] > 0.5) == (t == 1.0))
            .count();
        assert!(correct as f64 / 200.0 > 0.95, "{correct}/200");
        let dir = tempfile::tempdir().expect("tempdir");
        model.save(dir.path()).expect("save");
        let loaded = MlpModel::load(dir.path(), BINARY).expect("load");
        assert_eq!(loaded, model);
        assert_eq!(loaded.n_features(), 2);

        // Weights are saved in f16 (exactly: they were rounded to it when fitted), biases in f32.
        let path = dir.path().join(WEIGHTS_FILE);
        let file = TensorFile::read(&path).expect("read");
        let tensors = file.tensors().expect("tensors");
        for (name, view) in tensors.tensors() {
            let expected = if name.starts_with('b') {
                Dtype::F32
            } else {
                Dtype::F16
            };
            assert_eq!(view.dtype(), expected, "{name}");
        }
        // A network saved with f32 weights (model format 3 and before) still loads, the same.
        let views: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let bytes = match view.dtype() {
                    Dtype::F16 => view
                        .data()
                        .chunks_exact(2)
                        .flat_map(|c| {
                            half::f16::from_le_bytes([c[0], c[1]])
                                .to_f32()
                                .to_le_bytes()
                        })
                        .collect(),
                    _ => view.data().to_vec(),
                };
                (name, view.shape().to_vec(), bytes)
            })
            .collect();
        let f32_views: Vec<(String, TensorView<'_>)> = views
            .iter()
            .map(|(name, shape, bytes)| {
                let view = TensorView::new(Dtype::F32, shape.clone(), bytes).expect("view");
                (name.clone(), view)
            })
            .collect();
        let bytes = safetensors::serialize(f32_views, Some(file.metadata.clone())).expect("f32");
        assert!(bytes.len() > std::fs::metadata(&path).expect("size").len() as usize * 3 / 2);
        std::fs::write(&path, bytes).expect("write");
        assert_eq!(MlpModel::load(dir.path(), BINARY).expect("load f32"), model);
    }

    #[test]
    fn the_same_seed_trains_the_same_network_and_a_refit_runs_the_kept_epochs() {
        let (train, valid) = (rings(200, 3), rings(100, 4));
        let fit = |point: &ParamPoint, valid: &Labelled| {
            MlpTrainer { problem: BINARY }
                .fit(point, &train, valid, &ctx())
                .expect("fit")
        };
        let a = fit(&ParamPoint::new(), &valid);
        assert_eq!(a, fit(&ParamPoint::new(), &valid));
        let refit = fit(&a.refit_point(&ParamPoint::new()), &train);
        assert_eq!(refit.epochs(), a.epochs());
    }

    /// A category code (40 levels, every other one positive) and a noise column: the class is
    /// a non-monotonic function of the code, which only a per-level representation learns.
    fn coded(n: usize, seed: u64) -> Labelled {
        let mut g = rng(seed, 2);
        let (mut noise, mut code, mut y) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let level: usize = g.random_range(0..40);
            noise.push(g.random_range(-1.0..1.0));
            code.push(level as f64);
            y.push((level % 2) as f64);
        }
        Labelled {
            x: Matrix {
                data: [noise, code].concat(),
                rows: n,
                cols: 2,
            },
            y,
            embedded: vec![EmbeddedFeature {
                feature: 1,
                codes: 42,
            }],
            categorical: Vec::new(),
        }
    }

    #[test]
    fn embeddings_learn_per_level_effects_and_round_trip() {
        let (train, valid) = (coded(800, 1), coded(300, 2));
        let point = ParamPoint::from([
            ("learning_rate".to_string(), ParamValue::Float(0.01)),
            ("hidden".to_string(), ParamValue::Int(64)),
        ]);
        let model = MlpTrainer { problem: BINARY }
            .fit(&point, &train, &valid, &ctx())
            .expect("fit");
        assert_eq!(model.n_features(), 2);
        let proba = model.predict(&valid.x);
        let correct = (0..valid.x.rows)
            .filter(|&r| (proba[2 * r + 1] > 0.5) == (valid.y[r] == 1.0))
            .count();
        assert!(correct as f64 / valid.x.rows as f64 > 0.95, "{correct}");

        let dir = tempfile::tempdir().expect("tempdir");
        model.save(dir.path()).expect("save");
        let loaded = MlpModel::load(dir.path(), BINARY).expect("load");
        assert_eq!(loaded, model);
        assert_eq!(loaded.predict(&valid.x), proba);
        // An out-of-range code reads as the missing code instead of indexing past the table.
        let mut odd = valid.x.clone();
        odd.data[valid.x.rows] = 1e9;
        assert_eq!(loaded.predict(&odd).len(), proba.len());

        // A few rows (a served request) take the plain-Rust path: the same outputs as candle's
        // batch, the out-of-range code and a missing number included.
        odd.data[0] = f64::NAN;
        let batch = loaded.predict(&odd);
        for rows in [1, mlp_rows::MAX_ROWS] {
            let few = odd.take_rows(&(0..rows).collect::<Vec<_>>());
            for (a, b) in loaded.predict(&few).iter().zip(&batch) {
                assert!((a - b).abs() < 1e-5, "{rows} rows: {a} vs {b}");
            }
        }
    }

    #[test]
    fn a_saved_embedding_that_does_not_fit_the_first_layer_is_refused() {
        let (train, valid) = (coded(300, 3), coded(100, 4));
        let point = ParamPoint::from([("layers".to_string(), ParamValue::Int(1))]);
        let model = MlpTrainer { problem: BINARY }
            .fit(&point, &train, &valid, &ctx())
            .expect("fit");
        let dir = tempfile::tempdir().expect("tempdir");
        model.save(dir.path()).expect("save");
        let path = dir.path().join(WEIGHTS_FILE);
        let file = TensorFile::read(&path).expect("read");
        let tensors = file.tensors().expect("tensors");
        let mut meta = file.metadata.clone();
        meta.insert("embedded".into(), "1:41".into());
        let views: Vec<(String, TensorView<'_>)> = tensors
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let owned = TensorView::new(view.dtype(), view.shape().to_vec(), view.data())
                    .expect("view");
                (name, owned)
            })
            .collect();
        let bytes = safetensors::serialize(views, Some(meta)).expect("serialize");
        std::fs::write(&path, bytes).expect("write");
        let err = MlpModel::load(dir.path(), BINARY).expect_err("shape mismatch");
        assert!(err.to_string().contains("embedding 0"), "{err}");
    }

    /// A monitor that stops every trial at a given step and remembers what it was told.
    struct StopAt(usize, std::sync::Mutex<Vec<usize>>);

    impl exeml_core::search::TrialMonitor for StopAt {
        fn report(&self, step: usize, _loss: f64) -> bool {
            self.1.lock().expect("lock").push(step);
            step < self.0
        }
    }

    #[test]
    fn a_monitor_can_stop_a_trial_which_keeps_its_best_epoch() {
        let (train, valid) = (rings(200, 3), rings(100, 4));
        let monitor = StopAt(3, std::sync::Mutex::new(Vec::new()));
        let ctx = FitContext {
            monitor: &monitor,
            ..ctx()
        };
        let model = MlpTrainer { problem: BINARY }
            .fit(&ParamPoint::new(), &train, &valid, &ctx)
            .expect("fit");
        assert_eq!(*monitor.1.lock().expect("lock"), vec![1, 2, 3]);
        assert!((1..=3).contains(&model.epochs()), "{}", model.epochs());
    }

    #[test]
    fn regression_predicts_on_the_target_scale_and_bad_files_are_errors() {
        let problem = Problem {
            kind: ProblemType::Regression,
            n_classes: 1,
        };
        let mut data = rings(300, 5);
        data.y = (0..300).map(|r| 100.0 + 10.0 * data.x.get(r, 0)).collect();
        let model = MlpTrainer { problem }
            .fit(&ParamPoint::new(), &data, &data, &ctx())
            .expect("fit");
        let out = model.predict(&data.x);
        let rmse = (out
            .iter()
            .zip(&data.y)
            .map(|(p, t)| (p - t) * (p - t))
            .sum::<f64>()
            / 300.0)
            .sqrt();
        assert!(rmse < 3.0, "rmse {rmse}");
        let dir = tempfile::tempdir().expect("tempdir");
        model.save(dir.path()).expect("save");
        // A model saved for regression does not load as a 2-class classifier.
        let err = MlpModel::load(dir.path(), BINARY).expect_err("wrong output width");
        assert!(err.to_string().contains("do not chain"), "{err}");
        std::fs::write(dir.path().join(WEIGHTS_FILE), b"junk").expect("write");
        assert!(MlpModel::load(dir.path(), problem).is_err());
        assert!(MlpParams::from_point(&ParamPoint::from([(
            "dropout".to_string(),
            ParamValue::Float(1.5)
        )]))
        .is_err());
    }
}
