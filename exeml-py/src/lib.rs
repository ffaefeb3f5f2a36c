//! Python bindings of exeml: the extension module `exeml._exeml`, built by maturin into the pip
//! package `exeml`.
//!
//! This layer is thin on purpose. It moves columns in and predictions out as flat buffers,
//! runs training on a worker thread with the GIL released (so Ctrl-C and progress bars work),
//! and maps every Rust error to the exception hierarchy of `exeml.errors`. The user-facing
//! classes (`TabularPredictor`, `ImagePredictor`, `Project`, scikit-learn estimators) are Python in
//! `python/exeml/`.
#![deny(missing_docs)]

mod batch;
mod columns;
mod errors;
mod image;
mod project;
mod tabular;
mod training;

use pyo3::prelude::*;

// The allocator of the `exeml` binary, for the Rust side of the extension (Python objects keep
// Python's): training networks is much faster with it (see `exeml::allocator`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The extension module.
#[pymodule]
fn _exeml(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(tabular::fit_tabular, m)?)?;
    m.add_function(wrap_pyfunction!(project::list_projects, m)?)?;
    m.add_function(wrap_pyfunction!(image::fit_image, m)?)?;
    m.add_function(wrap_pyfunction!(image::write_png, m)?)?;
    m.add_class::<tabular::TabularModel>()?;
    m.add_class::<image::ImageModel>()?;
    m.add_class::<project::Project>()?;
    Ok(())
}
