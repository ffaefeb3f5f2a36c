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
use exeml_core::fsio::{read_json, write_json_atomic};
use exeml_core::{Budget, Error, ProblemType, Progress, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
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

/// How far a run got: written after every chunk, atomically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    input: PathBuf,
    input_len: u64,
    input_modified: u64,
    model: String,
    rows_done: u64,
    predicted: u64,
    skipped: u64,
    output_bytes: u64,
    errors_bytes: u64,
}

/// The files of one run next to `output`.
struct RunFiles {
    output: PathBuf,
    partial: PathBuf,
    errors: PathBuf,
    errors_partial: PathBuf,
    checkpoint: PathBuf,
}

impl RunFiles {
    fn new(output: &Path) -> Self {
        let with = |suffix: &str| {
            let mut name = output.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        RunFiles {
            output: output.to_path_buf(),
            partial: with(".partial"),
            errors: with(".errors.csv"),
            errors_partial: with(".errors.csv.partial"),
            checkpoint: with(".checkpoint.json"),
        }
    }
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
    let files = RunFiles::new(output);
    let meta = std::fs::metadata(input).map_err(|e| Error::io(input, e))?;
    let input_modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let fingerprint = model_fingerprint(model);

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

    let mut state = Checkpoint {
        input: input.to_path_buf(),
        input_len: meta.len(),
        input_modified,
        model: fingerprint,
        rows_done: 0,
        predicted: 0,
        skipped: 0,
        output_bytes: 0,
        errors_bytes: 0,
    };
    let resumed = if options.resume && files.checkpoint.exists() {
        let saved: Checkpoint = read_json(&files.checkpoint)?;
        let same_run = saved.input == state.input
            && saved.input_len == state.input_len
            && saved.input_modified == state.input_modified
            && saved.model == state.model;
        if !same_run {
            return Err(Error::invalid(
                "--resume",
                format!(
                    "{} belongs to a run of another input file or model; run without --resume to start over",
                    files.checkpoint.display()
                ),
            ));
        }
        Some(saved)
    } else {
        None
    };
    let (mut out, mut errors) = match &resumed {
        Some(saved) => (
            reopen_at(&files.partial, saved.output_bytes)?,
            reopen_at(&files.errors_partial, saved.errors_bytes)?,
        ),
        None => (create(&files.partial)?, create(&files.errors_partial)?),
    };
    if let Some(saved) = resumed {
        state = saved;
        let mut skipped_rows = 0;
        while skipped_rows < state.rows_done && next_record(&mut reader, &mut record, input)? {
            if !is_blank(&record) {
                skipped_rows += 1;
            }
        }
    } else {
        if format == OutputFormat::Csv {
            let empty = Predictions {
                problem: model.problem(),
                classes: model.classes().to_vec(),
                proba: Vec::new(),
                values: Vec::new(),
            };
            write_all(
                &mut out,
                &files.partial,
                &format_predictions(format, &empty, &[], true),
            )?;
        }
        write_all(&mut errors, &files.errors_partial, b"row,reason\n")?;
    }
    let resumed_at = state.rows_done;

    let mut chunk: Vec<Vec<String>> = Vec::with_capacity(options.chunk_rows.min(65_536));
    let mut ids: Vec<u64> = Vec::new();
    let mut bad = csv::Writer::from_writer(Vec::new());
    loop {
        let more = next_record(&mut reader, &mut record, input)?;
        if more && !is_blank(&record) {
            let id = state.rows_done;
            state.rows_done += 1;
            match check_record(&record, dialect.n_fields, &used) {
                Ok(values) => {
                    chunk.push(values);
                    ids.push(id);
                }
                Err(reason) => {
                    state.skipped += 1;
                    let _ = bad.write_record([id.to_string(), reason]);
                }
            }
        }
        let full = chunk.len() >= options.chunk_rows;
        if full || !more {
            let table = chunk_table(&used, &chunk, input);
            if !chunk.is_empty() {
                let predictions = model.predict(&table)?;
                let bytes = format_predictions(format, &predictions, &ids, false);
                write_all(&mut out, &files.partial, &bytes)?;
                state.predicted += ids.len() as u64;
            }
            let bad_bytes = std::mem::replace(&mut bad, csv::Writer::from_writer(Vec::new()))
                .into_inner()
                .unwrap_or_default();
            write_all(&mut errors, &files.errors_partial, &bad_bytes)?;
            chunk.clear();
            ids.clear();
            out.sync_data().map_err(|e| Error::io(&files.partial, e))?;
            errors
                .sync_data()
                .map_err(|e| Error::io(&files.errors_partial, e))?;
            state.output_bytes = position(&mut out, &files.partial)?;
            state.errors_bytes = position(&mut errors, &files.errors_partial)?;
            write_json_atomic(&files.checkpoint, &state)?;
            let read = reader.position().byte();
            progress.phase(&format!(
                "predicted {} rows, skipped {}",
                state.predicted, state.skipped
            ));
            progress.fraction(read as f64 / state.input_len.max(1) as f64);
            if more && options.budget.is_cancelled() {
                return Err(Error::Interrupted(format!(
                    "batch prediction stopped after {} rows; run again with --resume to continue",
                    state.rows_done
                )));
            }
        }
        if !more {
            break;
        }
    }
    drop(out);
    drop(errors);
    std::fs::rename(&files.partial, &files.output).map_err(|e| Error::io(&files.output, e))?;
    let errors_file = if state.skipped > 0 {
        std::fs::rename(&files.errors_partial, &files.errors)
            .map_err(|e| Error::io(&files.errors, e))?;
        Some(files.errors.clone())
    } else {
        remove_if_present(&files.errors_partial)?;
        // A list of bad rows from an earlier run of the same output would now mislead.
        remove_if_present(&files.errors)?;
        None
    };
    remove_if_present(&files.checkpoint)?;
    Ok(BatchReport {
        rows: state.rows_done,
        predicted: state.predicted,
        skipped: state.skipped,
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

fn create(path: &Path) -> Result<File> {
    File::create(path).map_err(|e| Error::io(path, e))
}

/// Open `path` for appending after its first `len` bytes (what the checkpoint vouches for).
fn reopen_at(path: &Path, len: u64) -> Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let actual = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if actual < len {
        return Err(Error::data(
            path,
            format!("has {actual} bytes but its checkpoint records {len}; run without --resume"),
        ));
    }
    file.set_len(len).map_err(|e| Error::io(path, e))?;
    file.seek(SeekFrom::End(0))
        .map_err(|e| Error::io(path, e))?;
    Ok(file)
}

fn write_all(file: &mut File, path: &Path, bytes: &[u8]) -> Result<()> {
    file.write_all(bytes).map_err(|e| Error::io(path, e))
}

fn position(file: &mut File, path: &Path) -> Result<u64> {
    file.stream_position().map_err(|e| Error::io(path, e))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}
