//! k-nearest neighbours on the standardised (linear) encoding: exact Euclidean search over the
//! stored training rows, uniform or distance-weighted votes (or means for regression).
//!
//! Written here rather than taken from a crate: the exact brute-force search is a few lines,
//! and the neighbour crates (kiddo, linfa-nn) want fixed dimensions or another ndarray version.
//! Training rows beyond [`MAX_STORED_ROWS`] are subsampled (seeded) so that prediction stays
//! fast; the cost hint tells the searcher it is a mid-priced family.

use super::{read_f64_tensor, Labelled, Problem, TensorFile};
use crate::features::Matrix;
use exeml_core::search::{ParamPoint, ParamRange, ParamValue, SearchSpace};
use exeml_core::seed::rng;
use exeml_core::{Error, FitContext, ProblemType, Result, Trainer};
use rand::seq::index::sample;
use rayon::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The family's name in manifests and leaderboards.
pub const FAMILY: &str = "knn";
const POINTS_FILE: &str = "knn.safetensors";
/// Most training rows a model keeps.
pub const MAX_STORED_ROWS: usize = 20_000;
/// Most distance terms (stored rows × validation rows × features) scoring the validation part
/// may cost: about a second or two on one core. On large tables fewer rows are stored so that
/// a k-NN trial cannot eat the search's budget.
const VALIDATION_WORK: usize = 2_000_000_000;
/// Fewest rows stored when [`VALIDATION_WORK`] lowers the count.
const MIN_STORED_ROWS: usize = 1_000;
/// Pseudo-count added to every class's vote, so that no probability is exactly zero.
const VOTE_SMOOTHING: f64 = 1e-3;

/// The family's search space: the number of neighbours and how votes are weighted.
pub fn search_space(_problem: Problem) -> SearchSpace {
    let params = BTreeMap::from([
        (
            "k".to_string(),
            ParamRange::Int {
                low: 1,
                high: 50,
                log: true,
            },
        ),
        (
            "weights".to_string(),
            ParamRange::Choice {
                options: vec!["uniform".into(), "distance".into()],
            },
        ),
    ]);
    let mut default = ParamPoint::new();
    default.insert("k".into(), ParamValue::Int(5));
    default.insert("weights".into(), ParamValue::Text("uniform".into()));
    SearchSpace {
        family: FAMILY.into(),
        params,
        defaults: vec![default],
        cost_hint: 3.0,
    }
}

/// A fitted k-NN model: the stored rows (row-major) and their targets.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnModel {
    points: Vec<f64>,
    targets: Vec<f64>,
    cols: usize,
    k: usize,
    by_distance: bool,
    problem: Problem,
}

/// Fits [`KnnModel`]s.
#[derive(Debug, Clone, Copy)]
pub struct KnnTrainer {
    /// The problem to fit.
    pub problem: Problem,
}

fn read_params(point: &ParamPoint) -> Result<(usize, bool)> {
    let k = point.get("k").and_then(ParamValue::as_i64).unwrap_or(5);
    if k < 1 {
        return Err(Error::invalid("knn.k", format!("{k} must be at least 1")));
    }
    let by_distance = match point.get("weights").and_then(ParamValue::as_str) {
        None | Some("uniform") => false,
        Some("distance") => true,
        Some(other) => {
            return Err(Error::invalid(
                "knn.weights",
                format!("`{other}`: expected uniform or distance"),
            ))
        }
    };
    Ok((k as usize, by_distance))
}

impl Trainer for KnnTrainer {
    type Data = Labelled;
    type Model = KnnModel;

    fn fit(
        &self,
        point: &ParamPoint,
        train: &Labelled,
        valid: &Labelled,
        ctx: &FitContext<'_>,
    ) -> Result<KnnModel> {
        let (k, by_distance) = read_params(point)?;
        let n = train.x.rows;
        let stored = stored_rows(n, valid.x.rows, train.x.cols);
        let rows: Vec<usize> = if n > stored {
            let mut chosen = sample(&mut rng(ctx.seed, 0x4b4e), n, stored).into_vec();
            chosen.sort_unstable();
            chosen
        } else {
            (0..n).collect()
        };
        let cols = train.x.cols;
        let mut points = Vec::with_capacity(rows.len() * cols);
        for &r in &rows {
            points.extend((0..cols).map(|c| train.x.get(r, c)));
        }
        Ok(KnnModel {
            points,
            targets: rows.iter().map(|&r| train.y[r]).collect(),
            cols,
            k: k.min(rows.len()).max(1),
            by_distance,
            problem: self.problem,
        })
    }
}

/// How many of `n` training rows to store, given the validation rows it will score.
fn stored_rows(n: usize, validation_rows: usize, cols: usize) -> usize {
    let affordable = VALIDATION_WORK / (validation_rows.max(1) * cols.max(1));
    n.min(MAX_STORED_ROWS).min(affordable.max(MIN_STORED_ROWS))
}

impl KnnModel {
    /// Number of input features.
    pub fn n_features(&self) -> usize {
        self.cols
    }

    /// How many training rows it stores (and searches at prediction time).
    pub fn n_points(&self) -> usize {
        self.targets.len()
    }

    /// The `k` nearest stored rows of `query`: (squared distance, index), nearest first.
    fn neighbours(&self, query: &[f64]) -> Vec<(f64, usize)> {
        let mut all: Vec<(f64, usize)> = self
            .points
            .chunks_exact(self.cols.max(1))
            .enumerate()
            .map(|(i, p)| {
                let d: f64 = p.iter().zip(query).map(|(a, b)| (a - b) * (a - b)).sum();
                (d, i)
            })
            .collect();
        let k = self.k.min(all.len());
        if k < all.len() {
            all.select_nth_unstable_by(k, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            all.truncate(k);
        }
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all
    }

    fn weight(&self, squared_distance: f64) -> f64 {
        if self.by_distance {
            1.0 / (squared_distance.sqrt() + 1e-9)
        } else {
            1.0
        }
    }

    /// Predictions, row-major: probabilities per class, or values for regression.
    pub fn predict(&self, x: &Matrix) -> Vec<f64> {
        let width = self.problem.output_width();
        let rows: Vec<Vec<f64>> = (0..x.rows)
            .into_par_iter()
            .map(|r| {
                let query: Vec<f64> = (0..x.cols).map(|c| x.get(r, c)).collect();
                let found = self.neighbours(&query);
                if self.problem.kind == ProblemType::Regression {
                    let (mut sum, mut total) = (0.0, 0.0);
                    for (d, i) in found {
                        let w = self.weight(d);
                        sum += w * self.targets[i];
                        total += w;
                    }
                    vec![sum / total.max(f64::MIN_POSITIVE)]
                } else {
                    let mut votes = vec![VOTE_SMOOTHING; width];
                    for (d, i) in found {
                        let class = self.targets[i] as usize;
                        if let Some(v) = votes.get_mut(class) {
                            *v += self.weight(d);
                        }
                    }
                    let total: f64 = votes.iter().sum();
                    votes.into_iter().map(|v| v / total).collect()
                }
            })
            .collect();
        rows.concat()
    }

    /// Write the stored rows and targets as (compressed) safetensors, `k` and the weighting as metadata.
    pub fn save(&self, dir: &Path) -> Result<Vec<String>> {
        let path = dir.join(POINTS_FILE);
        let tensor_err = |e: safetensors::SafeTensorError| Error::data(&path, e.to_string());
        let point_bytes: Vec<u8> = self.points.iter().flat_map(|v| v.to_le_bytes()).collect();
        let target_bytes: Vec<u8> = self.targets.iter().flat_map(|v| v.to_le_bytes()).collect();
        let points = TensorView::new(Dtype::F64, vec![self.n_points(), self.cols], &point_bytes)
            .map_err(tensor_err)?;
        let targets = TensorView::new(Dtype::F64, vec![self.n_points()], &target_bytes)
            .map_err(tensor_err)?;
        let metadata = HashMap::from([
            ("k".to_string(), self.k.to_string()),
            (
                "weights".to_string(),
                if self.by_distance {
                    "distance"
                } else {
                    "uniform"
                }
                .to_string(),
            ),
        ]);
        let bytes =
            safetensors::serialize([("points", points), ("targets", targets)], Some(metadata))
                .map_err(tensor_err)?;
        Ok(vec![super::compressed::write(&path, &bytes)?])
    }

    /// Read a model written by [`KnnModel::save`].
    pub fn load(dir: &Path, problem: Problem) -> Result<Self> {
        let file = TensorFile::read(&dir.join(POINTS_FILE))?;
        let bad = |message: String| Error::data(&file.path, message);
        let tensors = file.tensors()?;
        let (points, shape) = read_f64_tensor(&tensors, "points", &file.path)?;
        let (targets, _) = read_f64_tensor(&tensors, "targets", &file.path)?;
        let meta = &file.metadata;
        let k: usize = meta
            .get("k")
            .and_then(|k| k.parse().ok())
            .ok_or_else(|| bad("metadata `k` is missing or not a number".into()))?;
        let by_distance = meta.get("weights").map(String::as_str) == Some("distance");
        let cols = shape.get(1).copied().unwrap_or(0);
        if shape.len() != 2 || targets.len() != shape[0] || targets.is_empty() || k == 0 {
            return Err(bad("points and targets shapes do not match".into()));
        }
        Ok(KnnModel {
            points,
            targets,
            cols,
            k,
            by_distance,
            problem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> FitContext<'static> {
        crate::family::test_context(0)
    }

    /// Two clusters along one feature: class 0 near 0, class 1 near 10.
    fn clusters() -> Labelled {
        let xs = vec![0.0, 0.5, 1.0, 9.0, 9.5, 10.0];
        Labelled::new(
            Matrix {
                data: xs,
                rows: 6,
                cols: 1,
            },
            vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0],
        )
    }

    fn point(k: i64, weights: &str) -> ParamPoint {
        let mut p = ParamPoint::new();
        p.insert("k".into(), ParamValue::Int(k));
        p.insert("weights".into(), ParamValue::Text(weights.into()));
        p
    }

    #[test]
    fn classifies_by_the_nearest_rows_and_round_trips() {
        let problem = Problem {
            kind: ProblemType::Binary,
            n_classes: 2,
        };
        let data = clusters();
        let model = KnnTrainer { problem }
            .fit(&point(3, "distance"), &data, &data, &ctx())
            .expect("fit");
        let query = Matrix {
            data: vec![0.2, 9.8],
            rows: 2,
            cols: 1,
        };
        let proba = model.predict(&query);
        assert!(proba[0] > 0.99 && proba[3] > 0.99, "{proba:?}");
        assert!((proba[0] + proba[1] - 1.0).abs() < 1e-12);
        let dir = tempfile::tempdir().expect("tempdir");
        model.save(dir.path()).expect("save");
        let loaded = KnnModel::load(dir.path(), problem).expect("load");
        assert_eq!(loaded, model);
    }

    #[test]
    fn large_tables_store_fewer_rows_so_validation_stays_cheap() {
        assert_eq!(stored_rows(500, 100, 10), 500);
        assert_eq!(stored_rows(1_000_000, 100, 10), MAX_STORED_ROWS);
        // 200k validation rows × 100 features: only the minimum is affordable.
        assert_eq!(stored_rows(800_000, 200_000, 100), MIN_STORED_ROWS);
        assert_eq!(stored_rows(100_000, 20_000, 10), 10_000);
    }

    #[test]
    fn regression_averages_the_neighbours() {
        let problem = Problem {
            kind: ProblemType::Regression,
            n_classes: 1,
        };
        let data = clusters();
        let model = KnnTrainer { problem }
            .fit(&point(3, "uniform"), &data, &data, &ctx())
            .expect("fit");
        let query = Matrix {
            data: vec![0.4],
            rows: 1,
            cols: 1,
        };
        assert_eq!(model.predict(&query), vec![0.0]);
        assert!(KnnTrainer { problem }
            .fit(&point(2, "cosine"), &data, &data, &ctx())
            .is_err());
    }
}
