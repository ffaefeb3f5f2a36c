//! The SPEC JSON formats of predictions (service responses and `.jsonl` output).

pub use exeml_tabular::serving::{tabular_response, tabular_row};
