//! Rust errors and panics become exceptions of `exeml.errors`, which subclass the fitting
//! builtin (`DataError` is a `ValueError`, `NotFoundError` a `FileNotFoundError`…).

use exeml_core::Error;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyType;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The name of the `exeml.errors` class for `error`.
fn class_name(error: &Error) -> &'static str {
    match error {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            "NotFoundError"
        }
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            "ExemlPermissionError"
        }
        Error::Io { .. } => "ExemlOSError",
        Error::Data { .. } => "DataError",
        Error::CheckFailed { .. } => "DataCheckError",
        Error::InvalidParameter { .. } => "InvalidParameterError",
        Error::NotFound { .. } => "NotFoundError",
        Error::AlreadyExists { .. } => "AlreadyExistsError",
        Error::Format { .. } => "FormatError",
        Error::NotCompiled { .. } => "NotCompiledError",
        Error::BudgetExhausted { .. } => "BudgetExhaustedError",
        Error::Interrupted(_) => "TrainingInterruptedError",
        Error::Store { .. } => "StoreError",
        Error::Backend { .. } => "BackendError",
        _ => "ExemlError",
    }
}

/// The exception class `name` of `exeml.errors`, or `RuntimeError` if that module is missing
/// (the extension imported on its own).
fn exception_class<'py>(py: Python<'py>, name: &str) -> Bound<'py, PyType> {
    py.import("exeml.errors")
        .and_then(|m| m.getattr(name))
        .and_then(|c| c.cast_into::<PyType>().map_err(PyErr::from))
        .unwrap_or_else(|_| py.get_type::<PyRuntimeError>())
}

/// Convert an exeml error into its Python exception, keeping the message.
pub fn to_py(error: Error) -> PyErr {
    Python::attach(|py| {
        PyErr::from_type(exception_class(py, class_name(&error)), error.to_string())
    })
}

/// An `exeml.ExemlError` for a Rust panic: a bug, reported instead of crashing Python.
pub fn panic_to_py(payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    Python::attach(|py| {
        PyErr::from_type(
            exception_class(py, "ExemlError"),
            format!("internal error (please report it): {message}"),
        )
    })
}

/// Run `f`, turning exeml errors and panics into Python exceptions.
pub fn guard<T>(f: impl FnOnce() -> exeml_core::Result<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.map_err(to_py),
        Err(payload) => Err(panic_to_py(payload)),
    }
}

/// Like [`guard`], with the GIL released while `f` runs.
pub fn guard_detached<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> exeml_core::Result<T> + Send,
) -> PyResult<T> {
    let outcome = py.detach(|| catch_unwind(AssertUnwindSafe(f)));
    match outcome {
        Ok(result) => result.map_err(to_py),
        Err(payload) => Err(panic_to_py(payload)),
    }
}

/// `value` as JSON text for the Python layer (which parses it with `json.loads`).
pub fn to_json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value)
        .map_err(|e| to_py(Error::invalid("result", format!("cannot serialise: {e}"))))
}
