//! Tables in, predictions out. Python (`exeml._frames`) turns pandas, polars, pyarrow and numpy
//! data into `(name, kind, data)` columns: numbers and times as native-endian float64 bytes
//! (NaN for missing), text as a list of `str | None`. One copy, no per-value Python objects for
//! numbers.

use exeml_core::Error;
use exeml_tabular::table::{clean_text, Column, Values};
use exeml_tabular::{Predictions, Table};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use std::path::PathBuf;

/// One column as sent by Python.
pub type ColumnPayload<'py> = (String, String, Bound<'py, PyAny>);

fn floats(source: &str, name: &str, data: &Bound<'_, PyAny>) -> PyResult<Vec<f64>> {
    let bytes = data.cast::<PyBytes>().map_err(|_| {
        crate::errors::to_py(Error::data(
            source,
            format!("column `{name}`: numeric data must be float64 bytes"),
        ))
    })?;
    let bytes = bytes.as_bytes();
    if bytes.len() % 8 != 0 {
        return Err(crate::errors::to_py(Error::data(
            source,
            format!(
                "column `{name}`: {} bytes is not a whole number of float64",
                bytes.len()
            ),
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| f64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// Build a table from Python's columns; `source` names the data in error messages.
pub fn table_from_columns(columns: Vec<ColumnPayload<'_>>, source: &str) -> PyResult<Table> {
    let mut out: Vec<Column> = Vec::with_capacity(columns.len());
    for (name, kind, data) in columns {
        if out.iter().any(|c| c.name == name) {
            return Err(crate::errors::to_py(Error::data(
                source,
                format!("column `{name}` appears twice"),
            )));
        }
        let values = match kind.as_str() {
            "number" => Values::Number(floats(source, &name, &data)?),
            "time" => Values::Time(
                floats(source, &name, &data)?
                    .into_iter()
                    .map(|ms| (!ms.is_nan()).then_some(ms as i64))
                    .collect(),
            ),
            "text" => {
                let texts: Vec<Option<String>> = data.extract()?;
                Values::Text(
                    texts
                        .into_iter()
                        .map(|t| t.and_then(|t| clean_text(&t)))
                        .collect(),
                )
            }
            other => {
                return Err(crate::errors::to_py(Error::invalid(
                    "column kind",
                    format!("`{other}` for column `{name}`: expected number, time or text"),
                )))
            }
        };
        if let Some(first) = out.first() {
            if first.values.len() != values.len() {
                return Err(crate::errors::to_py(Error::data(
                    source,
                    format!(
                        "column `{name}` has {} values but `{}` has {}",
                        values.len(),
                        first.name,
                        first.values.len()
                    ),
                )));
            }
        }
        out.push(Column { name, values });
    }
    if out.is_empty() || out[0].values.is_empty() {
        return Err(crate::errors::to_py(Error::data(
            source,
            "the table has no columns or no rows",
        )));
    }
    Ok(Table {
        columns: out,
        source: PathBuf::from(source),
    })
}

fn float_bytes<'py>(py: Python<'py>, values: &[f64]) -> Bound<'py, PyBytes> {
    let mut bytes = Vec::with_capacity(values.len() * 8);
    for v in values {
        bytes.extend_from_slice(&v.to_ne_bytes());
    }
    PyBytes::new(py, &bytes)
}

/// Predictions as a dict: `problem`, `classes`, `proba` (row-major float64 bytes) and
/// `values` (float64 bytes, regression).
pub fn predictions_to_py<'py>(
    py: Python<'py>,
    predictions: &Predictions,
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("problem", predictions.problem.as_str())?;
    out.set_item("classes", predictions.classes.clone())?;
    out.set_item("proba", float_bytes(py, &predictions.proba))?;
    out.set_item("values", float_bytes(py, &predictions.values))?;
    out.set_item("rows", predictions.len())?;
    Ok(out)
}
