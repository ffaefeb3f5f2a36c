//! # exeml — embeddable AutoML
//!
//! Point exeml at labelled data and get an evaluated, versioned model: from Rust, from the
//! `exeml` command line, and from Python. Predictive analytics on tables and image
//! classification work today, on their own or in a project of the workspace ([`Project`]);
//! detection, sound and text classification plug into the same traits (see
//! `docs/architecture.md`).
//!
//! ```no_run
//! use exeml::{Table, TabularPredictor};
//! use std::time::Duration;
//! # fn main() -> exeml::Result<()> {
//! let model = TabularPredictor::new("churn")
//!     .time_limit(Duration::from_secs(30))
//!     .fit_path("customers.csv".as_ref())?;
//! println!("{}", model.summary());
//! let predictions = model.predict(&Table::read("new.csv".as_ref(), Default::default())?)?;
//! println!("{:?}", predictions.labels());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub use exeml_audio as audio;
pub use exeml_core as core;
pub use exeml_tabular as tabular;
pub use exeml_text as text;
pub use exeml_vision as vision;

pub use exeml_core::{
    Budget, CheckReport, Device, Error, Preference, ProblemType, Result, SplitSpec, TaskKind,
};
pub use exeml_tabular::{Evaluation, Predictions, Table, TabularModel, TabularPredictor};

pub mod allocator;
pub mod demo_data;
pub mod report;
pub mod response;
#[cfg(feature = "serve")]
pub mod serve;
pub mod workflow;

pub use workflow::Project;
