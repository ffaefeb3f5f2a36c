//! The `exeml` binary against the command-line contract, including every rejected input.

use crate::data;
use std::path::Path;
use std::process::{Command, Output};

fn exeml(args: &[&str], workspace: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exeml"))
        .args(args)
        .env("EXEML_HOME", workspace)
        .output()
        .expect("run exeml")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Train must fail with one error line naming `needle`, and leave nothing at `--out`.
fn assert_train_refused(csv: &Path, extra: &[&str], needle: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("model");
    let csv = csv.to_str().expect("utf-8 path");
    let out_arg = out_dir.to_str().expect("utf-8 path");
    let mut args = vec![
        "train",
        "--task",
        "tabular",
        "--data",
        csv,
        "--time-limit",
        "5s",
        "--out",
        out_arg,
    ];
    args.extend_from_slice(extra);
    let out = exeml(&args, dir.path());
    let err = stderr(&out);
    assert!(!out.status.success(), "should fail: {err}");
    let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "one error line: {err}");
    assert!(error_lines[0].contains(needle), "`{needle}` in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out_dir.exists(), "no partial model folder");
}

/// Train `--task TASK` on `.` with `extra` options must fail before writing `--out`; returns
/// its stderr.
fn train_task_refused(task: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("m");
    let mut args = vec!["train", "--task", task, "--data", "."];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--out", out_dir.to_str().expect("utf-8")]);
    let out = exeml(&args, dir.path());
    assert!(!out.status.success());
    assert!(!out_dir.exists(), "no model folder");
    stderr(&out)
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn train_predict_evaluate_follow_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model");
    let preds = dir.path().join("preds.csv");
    let jsonl = dir.path().join("preds.jsonl");
    let iris = data("iris.csv");
    let s = |p: &Path| p.to_str().expect("utf-8").to_string();
    let out = exeml(
        &[
            "train",
            "--task",
            "tabular",
            "--data",
            &s(&iris),
            "--label",
            "species",
            "--time-limit",
            "10s",
            "--out",
            &s(&model),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("model: "), "{}", stdout(&out));
    assert!(model.join("manifest.json").exists());

    let out = exeml(
        &[
            "predict",
            "--model",
            &s(&model),
            "--data",
            &s(&iris),
            "--output",
            &s(&preds),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&preds).expect("predictions");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("id,prediction,proba_setosa,proba_versicolor,proba_virginica")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 150);
    assert!(rows[0].starts_with("0,setosa,"), "{}", rows[0]);

    let out = exeml(
        &[
            "predict",
            "--model",
            &s(&model),
            "--data",
            &s(&iris),
            "--output",
            &s(&jsonl),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&jsonl)
            .expect("jsonl")
            .lines()
            .next()
            .expect("a line"),
    )
    .expect("json");
    assert_eq!(first["id"], 0);
    assert_eq!(first["predict"], "setosa");
    assert!(first["probabilities"]["setosa"].is_string());

    let out = exeml(
        &[
            "evaluate",
            "--model",
            &s(&model),
            "--data",
            &s(&iris),
            "--json",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON object");
    for key in [
        "task",
        "n",
        "accuracy",
        "macro_f1",
        "weighted_f1",
        "per_class",
        "confusion_matrix",
        "log_loss",
        "bad_cases",
    ] {
        assert!(report.get(key).is_some(), "missing {key}: {report}");
    }
    assert_eq!(report["n"], 150);
    assert!(report["accuracy"].as_f64().expect("accuracy") > 0.9);
    assert_eq!(report["confusion_matrix"]["labels"][0], "setosa");
    assert!(report["per_class"]["virginica"]["support"].as_u64() == Some(50));

    // Embeddings come from image models; a table model is refused by name.
    let embeddings = dir.path().join("emb.csv");
    let out = exeml(
        &[
            "embed",
            "--model",
            &s(&model),
            "--data",
            &s(dir.path()),
            "--output",
            &s(&embeddings),
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is a tabular model; embeddings are written by image models"),
        "{}",
        stderr(&out)
    );
    assert!(!embeddings.exists());
}

#[test]
fn regression_evaluate_json_has_error_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model");
    let diabetes = data("diabetes.csv");
    let s = |p: &Path| p.to_str().expect("utf-8").to_string();
    let out = exeml(
        &[
            "train",
            "--task",
            "tabular",
            "--data",
            &s(&diabetes),
            "--time-limit",
            "10s",
            "--deterministic",
            "--bag-folds",
            "3",
            "--out",
            &s(&model),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["lineage"]["deterministic"], true, "{manifest}");
    // Bagged over 3 folds, then refitted on all rows (balance's default).
    assert_eq!(manifest["lineage"]["refit_of_folds"], 3, "{manifest}");
    assert_eq!(manifest["family"], "refit_full", "{manifest}");
    let out = exeml(
        &[
            "evaluate",
            "--model",
            &s(&model),
            "--data",
            &s(&diabetes),
            "--json",
        ],
        dir.path(),
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    for key in ["rmse", "mae", "mse", "r2"] {
        assert!(report[key].is_number(), "{key}: {report}");
    }

    // `exeml speed` times the saved model: one-row calls cycle over the first rows, the batch
    // is the first --batch-size rows.
    let out = exeml(
        &[
            "speed",
            "--model",
            &s(&model),
            "--data",
            &s(&diabetes),
            "--runs",
            "40",
            "--batch-size",
            "100",
            "--json",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let speed: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(speed["single_runs"], 40, "{speed}");
    assert_eq!(speed["inputs"], 40, "{speed}");
    assert_eq!(speed["batch_size"], 100, "{speed}");
    let median = speed["single_ms_median"].as_f64().expect("median");
    assert!(median > 0.0 && median <= speed["single_ms_p90"].as_f64().expect("p90"));
    assert!(speed["batch_per_second"].as_f64().expect("rows/s") > 0.0);
    let out = exeml(
        &[
            "speed",
            "--model",
            &s(&model),
            "--data",
            &s(&diabetes),
            "--runs",
            "0",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("single_runs"), "{}", stderr(&out));
}

#[test]
fn bag_folds_is_for_tables_only() {
    let err = train_task_refused("image", &["--bag-folds", "3"]);
    assert!(err.contains("--bag-folds"), "{err}");
    let err = train_task_refused("image", &["--family", "hist_gbdt"]);
    assert!(err.contains("--family"), "{err}");
}

#[test]
fn image_options_are_refused_for_tables_by_name() {
    for (flag, value) in [
        ("--backbone", Some("mobilenet_v2")),
        ("--resolution", Some("96")),
        ("--weights", Some("mobilenet_v2=w.pth")),
        ("--no-fine-tune", None),
        ("--no-ensemble", None),
        ("--fine-tune-arms", Some("arms.json")),
    ] {
        let mut extra = vec![flag];
        extra.extend(value);
        let err = train_task_refused("tabular", &extra);
        assert!(
            err.contains(flag) && err.contains("images only"),
            "{flag}: {err}"
        );
    }
}

#[test]
fn family_restricts_the_search_to_the_softmax_booster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model");
    let wine = data("wine.csv");
    let s = |p: &Path| p.to_str().expect("utf-8").to_string();
    let train = |family: &str| {
        exeml(
            &[
                "train",
                "--task",
                "tabular",
                "--data",
                &s(&wine),
                "--label",
                "cultivar",
                "--time-limit",
                "10s",
                "--bag-folds",
                "0",
                "--family",
                family,
                "--out",
                &s(&model),
            ],
            dir.path(),
        )
    };
    let out = train("hist_gbdt");
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let leaderboard = manifest["leaderboard"].as_array().expect("leaderboard");
    assert!(
        leaderboard
            .iter()
            .all(|r| ["hist_gbdt", "ensemble"]
                .contains(&r["trial"]["family"].as_str().unwrap_or(""))),
        "{manifest}"
    );
    let members = manifest["ensemble"].as_array().expect("ensemble");
    assert!(
        members.iter().all(|m| m["family"] == "hist_gbdt"),
        "{manifest}"
    );
    let out = exeml(
        &[
            "evaluate",
            "--model",
            &s(&model),
            "--data",
            &s(&wine),
            "--json",
        ],
        dir.path(),
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let accuracy = report["accuracy"].as_f64().expect("accuracy");
    assert!(accuracy > 0.9, "{report}");

    std::fs::remove_dir_all(&model).ok();
    let out = train("xgboost");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("unknown model family `xgboost`") && err.contains("hist_gbdt"),
        "{err}"
    );
    assert!(!model.exists(), "no model folder");
}

#[test]
fn rejects_missing_file() {
    assert_train_refused(
        Path::new("/nonexistent/train.csv"),
        &[],
        "/nonexistent/train.csv",
    );
}

#[test]
fn rejects_ragged_row_naming_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from("a,b,label\n");
    for i in 0..150 {
        text.push_str(&format!("{i},{},{}\n", i * 2, i % 2));
    }
    text.push_str("1,2\n");
    let csv = write(dir.path(), "ragged.csv", &text);
    assert_train_refused(&csv, &[], "line 152 has 2 fields");
}

#[test]
fn rejects_unknown_label_column() {
    assert_train_refused(
        &data("iris.csv"),
        &["--label", "colour"],
        "no column `colour`",
    );
}

#[test]
fn rejects_deployment_limits_no_model_meets_or_that_make_no_sense() {
    assert_train_refused(
        &data("iris.csv"),
        &["--max-latency-ms", "0.000001"],
        "no model met the constraints (latency ≤ 0.000001 ms)",
    );
    assert_train_refused(&data("iris.csv"), &["--max-model-mb=-3"], "max_model_mb");
}

#[test]
fn rejects_label_with_missing_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from("a,b,label\n");
    for i in 0..150 {
        let label = if i == 17 {
            String::new()
        } else {
            (i % 2).to_string()
        };
        text.push_str(&format!("{i},{},{label}\n", i % 7));
    }
    let csv = write(dir.path(), "holes.csv", &text);
    assert_train_refused(&csv, &[], "label_missing");
}

#[test]
fn rejects_too_few_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text: String = std::iter::once("a,b,label\n".to_string())
        .chain((0..40).map(|i| format!("{i},{},{}\n", i % 3, i % 2)))
        .collect();
    let csv = write(dir.path(), "small.csv", &text);
    assert_train_refused(&csv, &[], "too_few_rows");
}

#[test]
fn rejects_unavailable_task_clearly() {
    let err = train_task_refused("sound", &[]);
    assert!(err.contains("not available"), "{err}");
}

#[test]
fn predict_refuses_a_folder_that_is_not_a_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let preds = dir.path().join("p.csv");
    let out = exeml(
        &[
            "predict",
            "--model",
            dir.path().to_str().expect("utf-8"),
            "--data",
            data("iris.csv").to_str().expect("utf-8"),
            "--output",
            preds.to_str().expect("utf-8"),
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not an exeml model folder"),
        "{}",
        stderr(&out)
    );
    assert!(!preds.exists());
}

#[test]
fn deterministic_is_refused_for_images_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = exeml(
        &[
            "train",
            "--task",
            "image",
            "--data",
            dir.path().to_str().expect("utf-8"),
            "--deterministic",
            "--out",
            dir.path().join("m").to_str().expect("utf-8"),
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--deterministic") && err.contains("tables only"),
        "{err}"
    );
    assert!(!dir.path().join("m").exists());
}

#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_the_command_quietly_instead_of_panicking() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().expect("tempdir");
    // A pipe whose reader is gone, as after `exeml … | head` has read enough.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_exeml"))
        .args(["project", "create", "shop", "--task", "tabular"])
        .env("EXEML_HOME", dir.path())
        .stdout(writer)
        .output()
        .expect("run exeml");
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    // Ended by SIGPIPE (13), as `cat` or `grep` would be.
    assert_eq!(out.status.signal(), Some(13), "{:?}", out.status);
}

/// A two-class table of `rows` rows that takes the search minutes to exhaust.
fn write_big_table(path: &Path, rows: usize) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut text = (0..12).map(|i| format!("f{i},")).collect::<String>() + "y\n";
    for _ in 0..rows {
        let x: Vec<f64> = (0..12).map(|_| rng.random_range(-2.0..2.0)).collect();
        let noisy = x[0] + (3.0 * x[1]).sin() + rng.random_range(-0.5..0.5);
        for v in &x {
            text.push_str(&format!("{v:.4},"));
        }
        text.push_str(if noisy > 0.0 { "a\n" } else { "b\n" });
    }
    std::fs::write(path, text).expect("write table");
}

#[cfg(unix)]
#[test]
fn ctrl_c_during_train_saves_the_best_model_so_far() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("big.csv");
    write_big_table(&csv, 60_000);
    let out_dir = dir.path().join("model");
    let mut child = Command::new(env!("CARGO_BIN_EXE_exeml"))
        .args(["train", "--task", "tabular", "--label", "y"])
        .args(["--time-limit", "120s", "--parallel-trials", "1", "--data"])
        .arg(&csv)
        .arg("--out")
        .arg(&out_dir)
        .env("EXEML_HOME", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run exeml");
    // Trials run one at a time, so the second is proposed once the first has a model.
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("stderr line");
        seen.push(line.clone());
        if line.contains("trial 2") {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.contains("trial 2")),
        "{seen:#?}"
    );
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let rest: Vec<String> = lines.map(|l| l.expect("stderr line")).collect();
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status:?}: {rest:#?}");
    assert!(
        rest.iter().any(|l| l.starts_with("interrupted:")),
        "{rest:#?}"
    );
    let model = exeml::tabular::TabularModel::load(&out_dir).expect("the saved model loads");
    assert!(!model.manifest.leaderboard.is_empty());
}
