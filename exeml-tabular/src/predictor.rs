//! `TabularPredictor`: the one obvious entry point, shaped like AutoGluon's.

use crate::boosting::Booster;
use crate::family::Estimator;
use crate::features::FeaturePipeline;
use crate::manifest::Manifest;
use crate::model::TabularModel;
use crate::sniff::HeaderMode;
use crate::table::{ReadOptions, Table};
use exeml_core::{
    Budget, Constraints, Device, Preference, ProblemType, Progress, Result, Silent, Usage,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Configures and runs automatic training on a table.
///
/// ```no_run
/// use exeml_tabular::TabularPredictor;
/// use std::time::Duration;
/// # fn main() -> exeml_core::Result<()> {
/// let model = TabularPredictor::new("label")
///     .time_limit(Duration::from_secs(60))
///     .fit_path("train.csv".as_ref())?;
/// let eval = model.evaluate(&exeml_tabular::Table::read("test.csv".as_ref(), Default::default())?)?;
/// println!("{}", eval.headline().1);
/// model.save("my-model".as_ref())?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TabularPredictor {
    /// The label column; `None` means the last column (SPEC).
    pub label: Option<String>,
    /// Force classification or regression instead of inferring it.
    pub problem: Option<ProblemType>,
    /// The wall-clock budget of the whole fit.
    pub time_limit: Duration,
    /// Speed/size versus accuracy.
    pub preference: Preference,
    /// The one seed of the run.
    pub seed: u64,
    /// The training share of the split.
    pub train_ratio: f64,
    /// Where to compute.
    pub device: Device,
    /// Whether CSV input has a header.
    pub header: HeaderMode,
    /// An earlier model whose chosen configuration is tried first (`--from`).
    pub warm_start: Option<WarmStart>,
    /// Model families the search may use (`linear`, `knn`, `gbdt`, `hist_gbdt`, `forest`,
    /// `mlp`); empty means all.
    pub families: Vec<String>,
    /// Limits on single-row latency and model size that the returned model meets.
    pub constraints: Constraints,
    /// Make the run reproducible: every decision that would depend on the clock (boosting
    /// rounds and forest trees capped to the time left, whether to refit) depends on counts
    /// instead, so the same data, seed and settings give identical predictions on any machine
    /// load. The time limit still stops the search; the manifest then records
    /// `stopped_by_budget` (the run is reproducible when the search ends by itself first).
    pub deterministic: bool,
    /// Most training rows the search fits its trials on (a stratified, seeded sample; the
    /// chosen model is refitted on all rows when the budget allows). `None`: enough rows for
    /// 20 million feature cells, at least 20,000.
    pub search_rows: Option<usize>,
    /// k-fold bagging of the chosen models: `None` decides by preference and size (5 folds
    /// under `accuracy_first`, and under `balance` up to 20,000 rows, when the time allows;
    /// never when the data comes with its own validation split), `Some(0)` or `Some(1)` never
    /// bags, `Some(k)` bags with k folds when the time allows.
    pub bag_folds: Option<usize>,
    /// Refit a bagged model's configurations once each on all rows, as AutoGluon's
    /// `refit_full`: k times faster to predict and about k times smaller, its weights and
    /// validation metrics still those chosen out of fold. `None` decides by preference (yes
    /// under `balance` and `performance_first`, no under `accuracy_first`). A bagged model that
    /// breaks `max_latency_ms` or `max_model_mb` is refitted whatever this says.
    pub refit_full: Option<bool>,
    /// One stacking layer over a bagged model (see [`crate::stacking`]): a regularised linear
    /// model on every bagged configuration's out-of-fold predictions replaces the weighted
    /// average when it scores better in cross-validation. `None` decides by preference (yes
    /// under `accuracy_first`). Needs bagging: without it nothing is stacked.
    pub stack: Option<bool>,
    /// Trials fitted at the same time, each on its share of the cores (its own rayon pool of
    /// `cores / n` threads). `None` decides by the machine and the data (see
    /// [`crate::automl::trial_concurrency`]): one per core, at most 4, on a small search sample;
    /// one at a time on a large one (where a single fit already keeps every core busy) and in
    /// a `deterministic` run. Latency, size and scores are measured after each batch of fits,
    /// one trial at a time.
    pub parallel_trials: Option<usize>,
}

/// The parent of an incremental run: its name in the lineage, its manifest and its boosters.
#[derive(Debug, Clone)]
pub struct WarmStart {
    /// How the lineage names the parent (a model folder or a model version).
    pub name: String,
    /// The parent's manifest (its chosen family and parameters are tried first).
    pub manifest: Manifest,
    /// The parent's `hist_gbdt` boosters: the trial at their parameters continues them.
    pub boosters: Vec<ParentBooster>,
}

/// A booster of the parent model and the features it reads: the `hist_gbdt` trial at its
/// parameters continues it on the new data, through the parent's fitted feature pipeline.
#[derive(Debug, Clone)]
pub struct ParentBooster {
    /// The parameters it was fitted with.
    pub params: exeml_core::search::ParamPoint,
    /// The parent's fitted pipeline that makes its features.
    pub pipeline: Arc<FeaturePipeline>,
    /// The fitted booster.
    pub booster: Arc<Booster>,
}

impl ParentBooster {
    /// The first of `parents` fitted at `params`.
    pub fn find<'p>(
        parents: &'p [ParentBooster],
        params: &exeml_core::search::ParamPoint,
    ) -> Option<&'p ParentBooster> {
        parents.iter().find(|p| p.params == *params)
    }
}

impl Default for TabularPredictor {
    fn default() -> Self {
        TabularPredictor {
            label: None,
            problem: None,
            time_limit: Duration::from_secs(60),
            preference: Preference::Balance,
            seed: 0,
            train_ratio: 0.8,
            device: Device::Cpu,
            header: HeaderMode::Auto,
            warm_start: None,
            families: Vec::new(),
            constraints: Constraints::default(),
            deterministic: false,
            search_rows: None,
            bag_folds: None,
            refit_full: None,
            stack: None,
            parallel_trials: None,
        }
    }
}

impl TabularPredictor {
    /// A predictor for the label column `label`.
    pub fn new(label: impl Into<String>) -> Self {
        TabularPredictor {
            label: Some(label.into()),
            ..Self::default()
        }
    }

    /// Bag the chosen models over `k` folds (0 or 1: never; see [`TabularPredictor::bag_folds`]).
    pub fn bag_folds(mut self, k: usize) -> Self {
        self.bag_folds = Some(k);
        self
    }

    /// Refit a bagged model on all rows, or keep its k fits (see
    /// [`TabularPredictor::refit_full`]).
    pub fn refit_full(mut self, refit: bool) -> Self {
        self.refit_full = Some(refit);
        self
    }

    /// Try a stacking layer over the bagged models, or never (see [`TabularPredictor::stack`]).
    pub fn stack(mut self, stack: bool) -> Self {
        self.stack = Some(stack);
        self
    }

    /// Fit `n` trials at a time (see [`TabularPredictor::parallel_trials`]).
    pub fn parallel_trials(mut self, n: usize) -> Self {
        self.parallel_trials = Some(n);
        self
    }

    /// Search on at most `rows` training rows (see [`TabularPredictor::search_rows`]).
    pub fn search_rows(mut self, rows: usize) -> Self {
        self.search_rows = Some(rows);
        self
    }

    /// Set the time limit.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = limit;
        self
    }

    /// Set the preference.
    pub fn preference(mut self, preference: Preference) -> Self {
        self.preference = preference;
        self
    }

    /// Set the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Set the training share of the split, in (0, 1).
    pub fn train_ratio(mut self, ratio: f64) -> Self {
        self.train_ratio = ratio;
        self
    }

    /// Force the problem type.
    pub fn problem(mut self, problem: ProblemType) -> Self {
        self.problem = Some(problem);
        self
    }

    /// Restrict the search to these model families (`linear`, `knn`, `gbdt`, `hist_gbdt`,
    /// `forest`, `mlp`).
    pub fn families<S: Into<String>>(mut self, families: impl IntoIterator<Item = S>) -> Self {
        self.families = families.into_iter().map(Into::into).collect();
        self
    }

    /// Only return a model whose median single-row prediction (features + model) takes at
    /// most `ms` milliseconds on this machine; slower trials stay in the leaderboard, excluded.
    pub fn max_latency_ms(mut self, ms: f64) -> Self {
        self.constraints.max_latency_ms = Some(ms);
        self
    }

    /// Make the run reproducible (see [`TabularPredictor::deterministic`]'s field).
    pub fn deterministic(mut self, on: bool) -> Self {
        self.deterministic = on;
        self
    }

    /// Only return a model whose saved folder is at most `mb` megabytes.
    pub fn max_model_mb(mut self, mb: f64) -> Self {
        self.constraints.max_model_mb = Some(mb);
        self
    }

    /// Warm-start from an earlier model: its chosen configurations are tried first, a boosted
    /// one (`hist_gbdt`) continues the parent's trees on the new data when the features match,
    /// and it is recorded as the parent in the lineage.
    pub fn warm_start(mut self, name: impl Into<String>, parent: &TabularModel) -> Self {
        // Of a bagged parent (k fits of one configuration), the first fold's booster is continued.
        let boosters = parent
            .manifest
            .members()
            .into_iter()
            .zip(parent.members())
            .filter_map(|(described, member)| match &member.estimator {
                Estimator::HistGbdt(model) => Some(ParentBooster {
                    params: described.params,
                    pipeline: Arc::new(parent.pipelines()[member.pipeline].clone()),
                    booster: Arc::new(model.booster().clone()),
                }),
                _ => None,
            })
            .collect();
        self.warm_start = Some(WarmStart {
            name: name.into(),
            manifest: parent.manifest.clone(),
            boosters,
        });
        self
    }

    /// Read `path` (CSV or Parquet) and fit.
    pub fn fit_path(&self, path: &Path) -> Result<TabularModel> {
        let table = Table::read(
            path,
            ReadOptions {
                header: self.header,
            },
        )?;
        self.fit(&table)
    }

    /// Fit on a table, splitting it here.
    pub fn fit(&self, table: &Table) -> Result<TabularModel> {
        self.fit_with(table, None, &Budget::new(self.time_limit), &Silent)
    }

    /// Fit with a given split (a dataset version's), budget and progress sink.
    pub fn fit_with(
        &self,
        table: &Table,
        usage: Option<&[Usage]>,
        budget: &Budget,
        progress: &dyn Progress,
    ) -> Result<TabularModel> {
        self.device.check_available()?;
        crate::automl::fit(self, table, usage, budget, progress)
    }
}
