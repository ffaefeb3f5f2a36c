//! Predictive analytics for exeml: classification and regression on tables.
//!
//! Reads CSV (with or without a header) and Parquet, infers column types (numbers,
//! categories, dates, free text) and the problem type, runs the SPEC data checks, transforms
//! features, searches model families within a time budget and saves a self-contained model.
//!
//! ```no_run
//! use exeml_tabular::{TabularModel, TabularPredictor, Table};
//! # fn main() -> exeml_core::Result<()> {
//! let model = TabularPredictor::new("species").fit_path("iris.csv".as_ref())?;
//! model.save("iris-model".as_ref())?;
//! let model = TabularModel::load("iris-model".as_ref())?;
//! let preds = model.predict(&Table::read("new.csv".as_ref(), Default::default())?)?;
//! println!("{:?}", preds.labels());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod automl;
pub mod bagging;
pub mod batch;
pub mod boosting;
pub mod checks;
pub mod dataset;
pub mod ensemble;
pub mod evaluate;
pub mod family;
pub mod features;
pub mod importance;
pub mod manifest;
pub mod model;
pub mod predictor;
pub mod sample;
pub mod schema;
pub mod serving;
pub mod sniff;
pub mod stacking;
pub mod table;

pub use automl::split_rows;
pub use batch::{predict_file, BatchOptions, BatchReport, OutputFormat};
pub use dataset::TabularDataset;
pub use evaluate::Evaluation;
pub use importance::{permutation_importance, FeatureImportance};
pub use model::{Predictions, TabularModel};
pub use predictor::{ParentBooster, TabularPredictor, WarmStart};
pub use sniff::HeaderMode;
pub use table::{ReadOptions, Table};
