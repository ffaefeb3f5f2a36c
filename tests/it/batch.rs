//! Batch prediction: streamed chunks give the same predictions as a whole-table predict, bad
//! rows are skipped and listed, and an interrupted run resumes to the same output.

use crate::data;
use exeml::core::Progress;
use exeml::tabular::{predict_file, BatchOptions};
use exeml::{Budget, Error, Table, TabularModel, TabularPredictor};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn iris_model(dir: &Path) -> TabularModel {
    let model = TabularPredictor::new("species")
        .time_limit(Duration::from_secs(3))
        .families(["gbdt"])
        .fit_path(&data("iris.csv"))
        .expect("fit");
    let path = dir.join("model");
    model.save(&path).expect("save");
    TabularModel::load(&path).expect("load")
}

/// Iris, 20 times over (3,000 rows), with a few bad rows placed among them.
fn big_csv(dir: &Path, bad_rows: bool) -> PathBuf {
    let text = std::fs::read_to_string(data("iris.csv")).expect("read");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let body: Vec<&str> = lines.collect();
    let mut out = format!("{header}\n");
    for copy in 0..20 {
        for (i, line) in body.iter().enumerate() {
            out.push_str(line);
            out.push('\n');
            if bad_rows && copy == 3 && i == 10 {
                out.push_str("5.1,3.5,1.4\n");
                out.push_str("wide,3.5,1.4,0.2,setosa\n");
            }
        }
    }
    let path = dir.join("big.csv");
    std::fs::write(&path, out).expect("write");
    path
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn streamed_chunks_predict_like_the_whole_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = iris_model(dir.path());
    let input = big_csv(dir.path(), false);
    let output = dir.path().join("preds.csv");
    let options = BatchOptions {
        chunk_rows: 256,
        ..BatchOptions::default()
    };
    let report =
        predict_file(&model, &input, &output, &options, &exeml::core::Silent).expect("batch");
    assert_eq!(
        (report.rows, report.predicted, report.skipped),
        (3000, 3000, 0)
    );
    assert!(report.errors_file.is_none());
    let table = Table::read(&input, Default::default()).expect("read");
    let whole = model.predict(&table).expect("predict");
    let lines = read_lines(&output);
    assert_eq!(
        lines[0],
        "id,prediction,proba_setosa,proba_versicolor,proba_virginica"
    );
    assert_eq!(lines.len(), 3001);
    for (r, line) in lines[1..].iter().enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[0], r.to_string());
        assert_eq!(fields[1], whole.label(r), "row {r}");
        let p: f64 = fields[2].parse().expect("number");
        assert!((p - whole.proba_row(r)[0]).abs() < 1e-6);
    }
    for leftover in [
        "preds.csv.partial",
        "preds.csv.checkpoint.json",
        "preds.csv.errors.csv",
    ] {
        assert!(!dir.path().join(leftover).exists(), "{leftover}");
    }
}

#[test]
fn bad_rows_are_skipped_and_listed_with_their_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = iris_model(dir.path());
    let input = big_csv(dir.path(), true);
    let output = dir.path().join("preds.jsonl");
    let report = predict_file(
        &model,
        &input,
        &output,
        &BatchOptions::default(),
        &exeml::core::Silent,
    )
    .expect("batch");
    assert_eq!(
        (report.rows, report.predicted, report.skipped),
        (3002, 3000, 2)
    );
    let errors = read_lines(report.errors_file.as_deref().expect("errors file"));
    assert_eq!(errors[0], "row,reason");
    assert!(
        errors[1].starts_with("461,") && errors[1].contains("has 3 fields, expected 5"),
        "{errors:?}"
    );
    assert!(
        errors[2].starts_with("462,")
            && errors[2].contains("column `sepal_length_cm`: expected a number"),
        "{errors:?}"
    );
    let lines = read_lines(&output);
    assert_eq!(lines.len(), 3000);
    let ids: Vec<u64> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["id"]
                .as_u64()
                .expect("id")
        })
        .collect();
    assert!(!ids.contains(&461) && !ids.contains(&462) && ids.contains(&463));
}

/// Cancels the run's budget once the first chunk is written, like Ctrl-C.
struct CancelAfterFirstChunk(Budget);

impl Progress for CancelAfterFirstChunk {
    fn phase(&self, _message: &str) {
        self.0.cancel();
    }
}

#[test]
fn an_interrupted_run_resumes_to_the_same_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = iris_model(dir.path());
    let input = big_csv(dir.path(), true);
    let reference = dir.path().join("reference.csv");
    let options = BatchOptions {
        chunk_rows: 500,
        ..BatchOptions::default()
    };
    predict_file(&model, &input, &reference, &options, &exeml::core::Silent).expect("batch");

    let output = dir.path().join("preds.csv");
    let budget = Budget::unlimited();
    let interrupted = BatchOptions {
        budget: budget.clone(),
        ..options.clone()
    };
    let err = predict_file(
        &model,
        &input,
        &output,
        &interrupted,
        &CancelAfterFirstChunk(budget),
    )
    .expect_err("interrupted");
    assert!(matches!(err, Error::Interrupted(_)), "{err}");
    assert!(
        !output.exists(),
        "no half-written output under the final name"
    );
    assert!(dir.path().join("preds.csv.checkpoint.json").exists());
    // A crash between a chunk and its checkpoint leaves extra bytes: resume cuts them off.
    let mut partial = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("preds.csv.partial"))
        .expect("partial");
    std::io::Write::write_all(&mut partial, b"9999,half-written").expect("append");

    let resume = BatchOptions {
        resume: true,
        ..options.clone()
    };
    let report =
        predict_file(&model, &input, &output, &resume, &exeml::core::Silent).expect("resume");
    // The first chunk held 500 good rows; the 2 bad rows among them were read too.
    assert_eq!(report.resumed_at, 502);
    assert_eq!((report.predicted, report.skipped), (3000, 2));
    assert_eq!(read_lines(&output), read_lines(&reference));
    assert_eq!(
        read_lines(&dir.path().join("preds.csv.errors.csv")),
        read_lines(&dir.path().join("reference.csv.errors.csv"))
    );

    // A checkpoint of another input is refused.
    predict_file(
        &model,
        &input,
        &output,
        &interrupted,
        &CancelAfterFirstChunk(interrupted.budget.clone()),
    )
    .expect_err("interrupted again");
    std::fs::write(
        &input,
        "sepal_length_cm,sepal_width_cm,petal_length_cm,petal_width_cm\n1,2,3,4\n",
    )
    .expect("rewrite");
    let err =
        predict_file(&model, &input, &output, &resume, &exeml::core::Silent).expect_err("refused");
    assert!(err.to_string().contains("--resume"), "{err}");
}
