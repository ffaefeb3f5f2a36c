//! Writing predictions: CSV (`id`, `prediction`, `proba_<class>`…) or JSON lines, atomically.

use exeml::core::fsio::write_atomic;
use exeml::core::{Error, ProblemType, Result};
use exeml::tabular::Predictions;
use std::path::Path;

/// Write predictions to `path`, as CSV or JSON lines by extension.
pub fn write_predictions(path: &Path, predictions: &Predictions) -> Result<()> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let bytes = match ext.as_str() {
        "csv" => to_csv(path, predictions)?,
        "jsonl" | "ndjson" => to_jsonl(path, predictions)?,
        _ => {
            return Err(Error::invalid(
                "--output",
                format!("{}: expected a .csv or .jsonl file", path.display()),
            ))
        }
    };
    write_atomic(path, &bytes)
}

fn to_csv(path: &Path, p: &Predictions) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| Error::data(path, e.to_string());
    let mut header = vec!["id".to_string(), "prediction".to_string()];
    header.extend(p.classes.iter().map(|c| format!("proba_{c}")));
    writer.write_record(&header).map_err(err)?;
    for r in 0..p.len() {
        let mut row = vec![r.to_string(), p.label(r)];
        if p.problem != ProblemType::Regression {
            row.extend(p.proba_row(r).iter().map(|v| format!("{v:.6}")));
        }
        writer.write_record(&row).map_err(err)?;
    }
    writer
        .into_inner()
        .map_err(|e| Error::data(path, e.to_string()))
}

fn to_jsonl(path: &Path, p: &Predictions) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for r in 0..p.len() {
        let line = exeml::response::tabular_row(p, r, Some(r));
        serde_json::to_writer(&mut out, &line).map_err(|e| Error::data(path, e.to_string()))?;
        out.push(b'\n');
    }
    Ok(out)
}
