//! Evaluation metrics for classification and regression, matching scikit-learn's definitions.
//!
//! Every function checks its input (lengths, emptiness, class indices, non-finite values) and
//! returns [`Error::InvalidParameter`](crate::Error::InvalidParameter) rather than a NaN or a
//! panic, so a report can always be written to JSON and read back.
//!
//! ```
//! use exeml_core::metrics::{accuracy, r2};
//! assert_eq!(accuracy(&[0, 1, 1], &[0, 1, 0])?, 2.0 / 3.0);
//! assert_eq!(r2(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0])?, 1.0);
//! # Ok::<(), exeml_core::Error>(())
//! ```

pub mod classification;
mod input;
pub mod regression;

pub use classification::{
    accuracy, confusion_matrix, log_loss, precision_recall_f1, roc_auc_binary, roc_auc_ovr,
    ClassMetrics, ClassificationReport, ConfusionMatrix,
};
pub use regression::{mae, mse, r2, rmse, RegressionReport};
