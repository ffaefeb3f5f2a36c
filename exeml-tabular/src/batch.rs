//! Batch prediction over a CSV of any size. The file is streamed in chunks (never loaded whole);
//! predictions go to `OUTPUT.partial` and are renamed into place at the end; a row that cannot be
//! read or does not fit the model is skipped and listed with its reason in `OUTPUT.errors.csv`;
//! after each chunk a checkpoint records how far the run got, so an interrupted run (killed,
//! cancelled) resumes where it stopped with [`BatchOptions::resume`].

use crate::model::{Predictions, TabularModel};
use crate::schema::{check_text, ColumnKind};
use crate::serving::tabular_row;
use crate::sniff::{sniff_head, HeaderMode};
use crate::table::{clean_text, Column, Table, Values};
use crate::ReadOptions;
use exeml_core::batch::{file_identity, ResumableOutput};
use exeml_core::{Budget, Error, ProblemType, Progress, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

/// How predictions are written, chosen by the output's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `id,prediction,proba_<class>…` (`.csv`).
    Csv,
    /// One SPEC JSON object per row with `id` (`.jsonl`, `.ndjson`).
    JsonLines,
}

impl OutputFormat {
    /// The format of `path`, by extension.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "csv" => Ok(OutputFormat::Csv),
            "jsonl" | "ndjson" => Ok(OutputFormat::JsonLines),
            _ => Err(Error::invalid(
                "--output",
                format!("{}: expected a .csv or .jsonl file", path.display()),
            )),
        }
    }
}

/// The rows `rows` of `predictions` (with their input ids) in `format`.
pub fn format_predictions(
    format: OutputFormat,
    predictions: &Predictions,
    ids: &[u64],
    with_header: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        OutputFormat::Csv => {
            let mut writer = csv::Writer::from_writer(&mut out);
            let regression = predictions.problem == ProblemType::Regression;
            // Writing CSV into memory cannot fail.
            if with_header {
                let mut header = vec!["id".to_string(), "prediction".to_string()];
                header.extend(predictions.classes.iter().map(|c| format!("proba_{c}")));
                let _ = writer.write_record(&header);
            }
            for (r, id) in ids.iter().enumerate() {
                let mut row = vec![id.to_string(), predictions.label(r)];
                if !regression {
                    row.extend(predictions.proba_row(r).iter().map(|v| format!("{v:.6}")));
                }
                let _ = writer.write_record(&row);
            }
            let _ = writer.flush();
        }
        OutputFormat::JsonLines => {
            for (r, id) in ids.iter().enumerate() {
                let line = tabular_row(predictions, r, Some(*id as usize));
                out.extend_from_slice(line.to_string().as_bytes());
                out.push(b'\n');
            }
        }
    }
    out
}

/// Options of a batch run.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Whether the CSV has a header row.
    pub header: HeaderMode,
    /// Rows predicted (and checkpointed) at a time.
    pub chunk_rows: usize,
    /// Continue an interrupted run of the same input, model and output from its checkpoint.
    pub resume: bool,
    /// Cancelling it stops the run after the current chunk, resumable.
    pub budget: Budget,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            header: HeaderMode::Auto,
            chunk_rows: 50_000,
            resume: false,
            budget: Budget::unlimited(),
        }
    }
}

/// What a batch run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReport {
    /// Data rows read (predicted + skipped).
    pub rows: u64,
    /// Rows predicted.
    pub predicted: u64,
    /// Rows skipped (listed in [`BatchReport::errors_file`]).
    pub skipped: u64,
    /// Rows already done by the interrupted run this one resumed (0 for a fresh run).
    pub resumed_at: u64,
    /// The side file listing skipped rows, when there are any.
    pub errors_file: Option<PathBuf>,
}

/// Predict every row of the CSV `input` with `model` into `output` (see the module docs).
/// Parquet input is read whole and written the same way.
pub fn predict_file(
    model: &TabularModel,
    input: &Path,
    output: &Path,
    options: &BatchOptions,
    progress: &dyn Progress,
) -> Result<BatchReport> {
    let format = OutputFormat::from_path(output)?;
    if options.chunk_rows == 0 {
        return Err(Error::invalid("--chunk-rows", "must be at least 1"));
    }
    let ext = input
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "parquet" || ext == "pq" {
        return predict_whole(model, input, output, format, options);
    }
    let identity = serde_json::json!({
        "input": file_identity(input)?,
        "model": model_fingerprint(model),
    });
    let input_len = std::fs::metadata(input)
        .map_err(|e| Error::io(input, e))?
        .len();

    let dialect = sniff_head(input, options.header)?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(dialect.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_path(input)
        .map_err(|e| Error::data(input, format!("cannot read CSV: {e}")))?;
    let mut record = csv::StringRecord::new();
    let names: Vec<String> = if dialect.has_header {
        next_record(&mut reader, &mut record, input)?;
        record.iter().map(|f| f.trim().to_string()).collect()
    } else {
        (1..=dialect.n_fields)
            .map(|i| format!("attr_{i}"))
            .collect()
    };
    let used = used_columns(model, &names, input)?;

    let header = if format == OutputFormat::Csv {
        let empty = Predictions {
            problem: model.problem(),
            classes: model.classes().to_vec(),
            proba: Vec::new(),
            values: Vec::new(),
        };
        format_predictions(format, &empty, &[], true)
    } else {
        Vec::new()
    };
    let mut run =
        ResumableOutput::open(output, identity, options.resume, &header, b"row,reason\n")?;
    let resumed_at = run.resumed_at();
    let mut skipped_rows = 0;
    while skipped_rows < resumed_at && next_record(&mut reader, &mut record, input)? {
        if !is_blank(&record) {
            skipped_rows += 1;
        }
    }

    let mut rows_read = resumed_at;
    let mut chunk: Vec<Vec<String>> = Vec::with_capacity(options.chunk_rows.min(65_536));
    let mut ids: Vec<u64> = Vec::new();
    let mut bad = csv::Writer::from_writer(Vec::new());
    let mut bad_rows = 0;
    loop {
        let more = next_record(&mut reader, &mut record, input)?;
        if more && !is_blank(&record) {
            let id = rows_read;
            rows_read += 1;
            match check_record(&record, dialect.n_fields, &used) {
                Ok(values) => {
                    chunk.push(values);
                    ids.push(id);
                }
                Err(reason) => {
                    bad_rows += 1;
                    let _ = bad.write_record([id.to_string(), reason]);
                }
            }
        }
        let full = chunk.len() >= options.chunk_rows;
        if full || !more {
            let bytes = if chunk.is_empty() {
                Vec::new()
            } else {
                let predictions = model.predict(&chunk_table(&used, &chunk, input))?;
                format_predictions(format, &predictions, &ids, false)
            };
            let bad_bytes = std::mem::replace(&mut bad, csv::Writer::from_writer(Vec::new()))
                .into_inner()
                .unwrap_or_default();
            run.append(&bytes, &bad_bytes, ids.len() as u64, bad_rows)?;
            chunk.clear();
            ids.clear();
            bad_rows = 0;
            let counts = run.counts();
            progress.phase(&format!(
                "predicted {} rows, skipped {}",
                counts.predicted, counts.skipped
            ));
            progress.fraction(reader.position().byte() as f64 / input_len.max(1) as f64);
            if more && options.budget.is_cancelled() {
                return Err(Error::Interrupted(format!(
                    "batch prediction stopped after {} rows; run again with --resume to continue",
                    counts.done
                )));
            }
        }
        if !more {
            break;
        }
    }
    let counts = run.counts();
    let errors_file = run.finish()?;
    Ok(BatchReport {
        rows: counts.done,
        predicted: counts.predicted,
        skipped: counts.skipped,
        resumed_at,
        errors_file,
    })
}

/// Parquet (and other whole-file inputs): read, predict, write atomically.
fn predict_whole(
    model: &TabularModel,
    input: &Path,
    output: &Path,
    format: OutputFormat,
    options: &BatchOptions,
) -> Result<BatchReport> {
    let table = Table::read(
        input,
        ReadOptions {
            header: options.header,
        },
    )?;
    let predictions = model.predict(&table)?;
    let ids: Vec<u64> = (0..predictions.len() as u64).collect();
    exeml_core::fsio::write_atomic(
        output,
        &format_predictions(format, &predictions, &ids, true),
    )?;
    Ok(BatchReport {
        rows: ids.len() as u64,
        predicted: ids.len() as u64,
        skipped: 0,
        resumed_at: 0,
        errors_file: None,
    })
}

/// Identifies a trained model well enough to refuse resuming another model's run.
fn model_fingerprint(model: &TabularModel) -> String {
    let m = &model.manifest;
    format!(
        "{}:{}:{}:{}",
        m.family, m.lineage.created_at, m.target.column, m.lineage.fit_secs
    )
}

/// A column the model reads: its name, kind and position in the file.
struct UsedColumn {
    name: String,
    kind: ColumnKind,
    index: usize,
}

fn used_columns(model: &TabularModel, names: &[String], input: &Path) -> Result<Vec<UsedColumn>> {
    let pipeline = model.pipeline();
    pipeline
        .transforms
        .iter()
        .zip(&pipeline.kinds)
        .map(|(t, &kind)| {
            let name = t.column();
            let index = names.iter().position(|n| n == name).ok_or_else(|| {
                Error::data(
                    input,
                    format!("missing column `{name}` that the model was trained with"),
                )
            })?;
            Ok(UsedColumn {
                name: name.to_string(),
                kind,
                index,
            })
        })
        .collect()
}

/// The used values of one record, or why the row is skipped.
fn check_record(
    record: &csv::StringRecord,
    n_fields: usize,
    used: &[UsedColumn],
) -> std::result::Result<Vec<String>, String> {
    if record.len() != n_fields {
        return Err(format!(
            "has {} fields, expected {n_fields} like the header",
            record.len()
        ));
    }
    used.iter()
        .map(|c| {
            let text = record.get(c.index).unwrap_or("");
            check_text(text, c.kind)
                .map(|()| text.to_string())
                .map_err(|m| format!("column `{}`: {m}", c.name))
        })
        .collect()
}

fn chunk_table(used: &[UsedColumn], rows: &[Vec<String>], input: &Path) -> Table {
    let columns = used
        .iter()
        .enumerate()
        .map(|(i, c)| Column {
            name: c.name.clone(),
            values: Values::Text(rows.iter().map(|r| clean_text(&r[i])).collect()),
        })
        .collect();
    Table {
        columns,
        source: input.to_path_buf(),
    }
}

fn is_blank(record: &csv::StringRecord) -> bool {
    record.len() == 1 && record.get(0).is_some_and(|f| f.trim().is_empty())
}

fn next_record(
    reader: &mut csv::Reader<File>,
    record: &mut csv::StringRecord,
    input: &Path,
) -> Result<bool> {
    reader.read_record(record).map_err(|e| {
        let line = e
            .position()
            .map_or(String::new(), |p| format!("line {}: ", p.line()));
        Error::data(input, format!("{line}cannot read CSV: {e}"))
    })
}
