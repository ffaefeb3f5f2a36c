//! The `Trainer`, `Evaluator` and `Exporter` traits, and what they share: the fit context.

use crate::budget::Budget;
use crate::device::Device;
use crate::preference::Preference;
use crate::search::ParamPoint;
use std::path::{Path, PathBuf};

/// Progress messages from a long step, shown by the CLI (indicatif) or Python (tqdm).
pub trait Progress: Send + Sync {
    /// A new phase begins (e.g. `trial 3/12: gbdt`).
    fn phase(&self, message: &str);
    /// Fraction done of the whole run, in `[0, 1]`.
    fn fraction(&self, _done: f64) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _message: &str) {}
}

/// Everything a fit needs besides data and hyper-parameters: passed in, never global.
#[derive(Clone)]
pub struct FitContext<'a> {
    /// The wall-clock budget; stop cleanly with the best model so far when it runs out.
    pub budget: Budget,
    /// Where to compute.
    pub device: Device,
    /// Speed/size versus accuracy.
    pub preference: Preference,
    /// The one seed of the run.
    pub seed: u64,
    /// Where progress goes.
    pub progress: &'a dyn Progress,
    /// Told the validation loss as an iterative fit goes; may stop a trial that is clearly
    /// worse than earlier ones ([`crate::search::NeverStop`] when nothing should be stopped).
    pub monitor: &'a dyn crate::search::TrialMonitor,
}

impl std::fmt::Debug for FitContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FitContext")
            .field("budget", &self.budget)
            .field("device", &self.device)
            .field("preference", &self.preference)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// Fits one model family at one point of its search space.
pub trait Trainer {
    /// The training data.
    type Data;
    /// The fitted model.
    type Model;

    /// Fit on `train`, using `valid` for early stopping; honour `ctx.budget`.
    fn fit(
        &self,
        params: &ParamPoint,
        train: &Self::Data,
        valid: &Self::Data,
        ctx: &FitContext<'_>,
    ) -> crate::Result<Self::Model>;
}

/// Scores a fitted model on labelled data.
pub trait Evaluator {
    /// The model to evaluate.
    type Model;
    /// The labelled data.
    type Data;
    /// The report (metrics, confusion matrix, bad cases).
    type Report;

    /// Evaluate `model` on `data`.
    fn evaluate(&self, model: &Self::Model, data: &Self::Data) -> crate::Result<Self::Report>;
}

/// Writes a model as a self-contained artifact.
pub trait Exporter {
    /// The model to export.
    type Model;

    /// Write `model` into the folder `dir` (created atomically) and return the main file written.
    fn export(&self, model: &Self::Model, dir: &Path) -> crate::Result<PathBuf>;
}
