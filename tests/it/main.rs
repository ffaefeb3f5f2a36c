//! Integration tests: real models trained on small real data, through the library, the store and
//! the `exeml` binary.

mod batch;
mod cli;
mod image;
mod image_formats;
mod image_store;
mod onnx;
#[cfg(feature = "serve")]
mod serve;
mod store_workflow;
mod tabular_api;

use std::path::PathBuf;

/// A file of `tests/data/`.
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
        .join(name)
}
