//! Shared foundation of exeml: the traits every task implements, errors, budgets, devices,
//! seeds, metrics, data checks, the train/validation split and the embedded project store.
//!
//! The data flow is the same for all five tasks (see `docs/architecture.md`):
//! files → [`Dataset`] → dataset version ([`store`]) → [`Searcher`] ⇄ [`Trainer`] →
//! [`Evaluator`] → model version → [`Exporter`] / service.
#![deny(missing_docs)]

pub mod batch;
pub mod budget;
pub mod calibration;
pub mod checks;
pub mod constraints;
pub mod dataset;
pub mod device;
pub mod error;
pub mod fsio;
pub mod metrics;
pub mod model;
pub mod parallel;
pub mod preference;
pub mod search;
pub mod seed;
pub mod serving;
pub mod speed;
pub mod split;
pub mod store;
pub mod task;

pub use budget::Budget;
pub use checks::{CheckReport, Finding, Severity};
pub use constraints::Constraints;
pub use dataset::Dataset;
pub use device::Device;
pub use error::{Error, Result};
pub use model::{Evaluator, Exporter, FitContext, Progress, Silent, Trainer};
pub use preference::Preference;
pub use search::{Searcher, Trial, TrialOutcome, TrialRecord};
pub use serving::{Answer, InputKind, Servable, ServeInfo, ServeInput};
pub use speed::{measure_speed, SpeedOptions, SpeedReport};
pub use split::{SplitSpec, Usage};
pub use task::{ProblemType, TaskKind};
