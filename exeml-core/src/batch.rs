//! The output side of a resumable batch prediction, shared by every task: predictions go to
//! `OUT.partial`, skipped inputs to `OUT.errors.csv.partial`, and after every chunk a checkpoint
//! (`OUT.checkpoint.json`, written atomically after both files are synced) records how many
//! inputs are done and how many bytes of each file it vouches for. An interrupted run (killed,
//! cancelled) continues from the checkpoint with `resume`; the finished files are renamed into
//! place, so the final names never hold half a run.

use crate::fsio::{read_json, write_json_atomic};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// How far a run got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Checkpoint {
    /// What the run reads and with which model: a resumed run must match it.
    identity: serde_json::Value,
    done: u64,
    predicted: u64,
    skipped: u64,
    output_bytes: u64,
    errors_bytes: u64,
}

/// Counts of a batch run so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCounts {
    /// Inputs read (predicted + skipped).
    pub done: u64,
    /// Inputs predicted.
    pub predicted: u64,
    /// Inputs skipped (listed in the errors file).
    pub skipped: u64,
}

/// The files of a resumable batch run beside its output.
#[derive(Debug)]
pub struct ResumableOutput {
    output: PathBuf,
    partial: PathBuf,
    errors: PathBuf,
    errors_partial: PathBuf,
    checkpoint: PathBuf,
    out: File,
    errors_out: File,
    state: Checkpoint,
    resumed_at: u64,
}

impl ResumableOutput {
    /// Start writing a run whose result goes to `output`. `identity` names what is predicted
    /// with what (input, its size and time, the model): with `resume` and a checkpoint of the
    /// same identity the run continues after the inputs it records ([`Self::resumed_at`]);
    /// otherwise it starts over, writing `header` and `errors_header` first.
    pub fn open(
        output: &Path,
        identity: serde_json::Value,
        resume: bool,
        header: &[u8],
        errors_header: &[u8],
    ) -> Result<Self> {
        let with = |suffix: &str| {
            let mut name = output.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        let (partial, errors, errors_partial, checkpoint) = (
            with(".partial"),
            with(".errors.csv"),
            with(".errors.csv.partial"),
            with(".checkpoint.json"),
        );
        let saved = if resume && checkpoint.exists() {
            let saved: Checkpoint = read_json(&checkpoint)?;
            if saved.identity != identity {
                return Err(Error::invalid(
                    "--resume",
                    format!(
                        "{} belongs to a run of another input, model or kind of output; run without --resume to start over",
                        checkpoint.display()
                    ),
                ));
            }
            Some(saved)
        } else {
            None
        };
        let (out, errors_out, state) = match saved {
            Some(saved) => (
                reopen_at(&partial, saved.output_bytes)?,
                reopen_at(&errors_partial, saved.errors_bytes)?,
                saved,
            ),
            None => {
                let mut out = create(&partial)?;
                let mut errors_out = create(&errors_partial)?;
                write_all(&mut out, &partial, header)?;
                write_all(&mut errors_out, &errors_partial, errors_header)?;
                let state = Checkpoint {
                    identity,
                    done: 0,
                    predicted: 0,
                    skipped: 0,
                    output_bytes: header.len() as u64,
                    errors_bytes: errors_header.len() as u64,
                };
                (out, errors_out, state)
            }
        };
        let resumed_at = state.done;
        Ok(ResumableOutput {
            output: output.to_path_buf(),
            partial,
            errors,
            errors_partial,
            checkpoint,
            out,
            errors_out,
            state,
            resumed_at,
        })
    }

    /// Inputs the interrupted run had finished (0 for a fresh run): skip that many.
    pub fn resumed_at(&self) -> u64 {
        self.resumed_at
    }

    /// The counts so far (the resumed run's included).
    pub fn counts(&self) -> BatchCounts {
        BatchCounts {
            done: self.state.done,
            predicted: self.state.predicted,
            skipped: self.state.skipped,
        }
    }

    /// Append one chunk: its output `rows`, its `errors` lines, and how many inputs it
    /// `predicted` and `skipped`; then sync both files and checkpoint.
    pub fn append(
        &mut self,
        rows: &[u8],
        errors: &[u8],
        predicted: u64,
        skipped: u64,
    ) -> Result<()> {
        write_all(&mut self.out, &self.partial, rows)?;
        write_all(&mut self.errors_out, &self.errors_partial, errors)?;
        self.out
            .sync_data()
            .map_err(|e| Error::io(&self.partial, e))?;
        self.errors_out
            .sync_data()
            .map_err(|e| Error::io(&self.errors_partial, e))?;
        self.state.done += predicted + skipped;
        self.state.predicted += predicted;
        self.state.skipped += skipped;
        self.state.output_bytes = position(&mut self.out, &self.partial)?;
        self.state.errors_bytes = position(&mut self.errors_out, &self.errors_partial)?;
        write_json_atomic(&self.checkpoint, &self.state)
    }

    /// Move the finished files into place; returns the errors file when something was skipped
    /// (an errors file of an earlier run of the same output is removed otherwise).
    pub fn finish(self) -> Result<Option<PathBuf>> {
        drop(self.out);
        drop(self.errors_out);
        std::fs::rename(&self.partial, &self.output).map_err(|e| Error::io(&self.output, e))?;
        let errors_file = if self.state.skipped > 0 {
            std::fs::rename(&self.errors_partial, &self.errors)
                .map_err(|e| Error::io(&self.errors, e))?;
            Some(self.errors)
        } else {
            remove_if_present(&self.errors_partial)?;
            remove_if_present(&self.errors)?;
            None
        };
        remove_if_present(&self.checkpoint)?;
        Ok(errors_file)
    }
}

/// The size and modification time of `path`, part of a run's identity: a changed input is
/// not resumed.
pub fn file_identity(path: &Path) -> Result<serde_json::Value> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Ok(serde_json::json!({
        "path": path,
        "len": meta.len(),
        "modified": modified,
    }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).expect("ok")
    }

    #[test]
    fn an_interrupted_run_resumes_and_gives_the_uninterrupted_file() {
        let dir = tempfile::tempdir().expect("ok");
        let output = dir.path().join("preds.csv");
        let id = json!({"input": "a"});
        let mut run =
            ResumableOutput::open(&output, id.clone(), false, b"h\n", b"e\n").expect("ok");
        run.append(b"1\n2\n", b"", 2, 0).expect("ok");
        // A crash after writing more rows but before the next checkpoint.
        run.out.write_all(b"3-half").expect("ok");
        drop(run);
        assert!(!output.exists());

        let other = ResumableOutput::open(&output, json!({"input": "b"}), true, b"h\n", b"e\n");
        assert!(other
            .expect_err("an error")
            .to_string()
            .contains("another input"));

        let mut run = ResumableOutput::open(&output, id, true, b"h\n", b"e\n").expect("ok");
        assert_eq!(run.resumed_at(), 2);
        run.append(b"3\n", b"4,bad\n", 1, 1).expect("ok");
        assert_eq!(
            run.counts(),
            BatchCounts {
                done: 4,
                predicted: 3,
                skipped: 1
            }
        );
        let errors = run.finish().expect("ok").expect("errors file");
        assert_eq!(read(&output), "h\n1\n2\n3\n");
        assert_eq!(read(&errors), "e\n4,bad\n");
        assert!(!dir.path().join("preds.csv.checkpoint.json").exists());
    }

    #[test]
    fn a_fresh_run_without_skips_removes_stale_error_lists() {
        let dir = tempfile::tempdir().expect("ok");
        let output = dir.path().join("preds.jsonl");
        std::fs::write(dir.path().join("preds.jsonl.errors.csv"), "old").expect("ok");
        let mut run = ResumableOutput::open(&output, json!(1), true, b"", b"e\n").expect("ok");
        assert_eq!(run.resumed_at(), 0, "no checkpoint: a fresh run");
        run.append(b"{}\n", b"", 1, 0).expect("ok");
        assert_eq!(run.finish().expect("ok"), None);
        assert!(!dir.path().join("preds.jsonl.errors.csv").exists());
        assert_eq!(read(&output), "{}\n");
    }
}
