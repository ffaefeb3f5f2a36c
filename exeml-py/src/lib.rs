//! Python bindings of exeml — **not built yet**.
//!
//! This crate will become the pyo3 extension module `exeml._exeml`, built by maturin into the pip
//! package `exeml` (`TabularPredictor`, `load`, the project store, an exception hierarchy under
//! `exeml.ExemlError`). It exposes no API yet; use the Rust crate or the `exeml` command meanwhile.
#![deny(missing_docs)]
