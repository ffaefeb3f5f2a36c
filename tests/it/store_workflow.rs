//! The project workflow through the store: versions, lineage, concurrency and killed runs.

use crate::data;
use exeml::core::store::{ProjectStatus, Store};
use exeml::core::{Budget, Silent, SplitSpec, TaskKind};
use exeml::{Project, TabularPredictor};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn predictor() -> TabularPredictor {
    TabularPredictor::default().time_limit(Duration::from_secs(10))
}

fn budget() -> Budget {
    Budget::new(Duration::from_secs(10))
}

#[test]
fn workflow_publishes_versions_and_registers_numbered_models_with_lineage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let project =
        Project::create(store, "cancer", TaskKind::Tabular, "binary demo").expect("create");
    project
        .import_table(
            &data("breast_cancer.csv"),
            Some("diagnosis"),
            Default::default(),
        )
        .expect("import");
    let report = project.check().expect("check");
    assert!(!report.has_errors(), "{report}");

    let v1 = project.publish(SplitSpec::default()).expect("publish");
    assert_eq!(v1.name, "V001");
    assert_eq!(v1.n_samples, 569);
    assert_eq!(
        v1.label_counts["benign"] + v1.label_counts["malignant"],
        569
    );
    let again = project.publish(SplitSpec::default()).expect("republish");
    assert_eq!(
        again.name, "V001",
        "identical content is not published twice"
    );
    let v2 = project
        .publish(SplitSpec {
            train_ratio: 0.7,
            seed: 3,
        })
        .expect("publish");
    assert_eq!(v2.name, "V002");

    let m1 = project
        .train(Some("V001"), &predictor(), None, &budget(), &Silent)
        .expect("train");
    assert_eq!(m1.version, "0.0.1");
    assert_eq!(m1.dataset_version.as_deref(), Some("V001"));
    let m2 = project
        .train(
            Some("V002"),
            &predictor(),
            Some("0.0.1"),
            &budget(),
            &Silent,
        )
        .expect("train");
    assert_eq!(m2.version, "0.0.2");
    assert_eq!(m2.parent.as_deref(), Some("0.0.1"));
    let loaded = project.load_model("0.0.2").expect("load");
    assert_eq!(
        loaded.manifest.lineage.dataset_version.as_deref(),
        Some("V002")
    );
    assert_eq!(loaded.manifest.lineage.parent.as_deref(), Some("0.0.1"));
    // The version's split is the one training used.
    assert_eq!(loaded.manifest.lineage.rows.1, v2.n_validation);
    assert_eq!(
        project.info().expect("info").status,
        ProjectStatus::Completed
    );

    let export = dir.path().join("v1.jsonl");
    let n = project
        .store()
        .export_manifest("cancer", "V001", &export)
        .expect("export");
    assert_eq!(n, 569);
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&export)
            .expect("read")
            .lines()
            .next()
            .expect("line"),
    )
    .expect("json");
    let source = line["source"].as_str().expect("source");
    assert!(source.ends_with("breast_cancer.csv"), "{source}");
    assert_eq!(line["labels"].as_array().map(Vec::len), Some(1));
    assert!(line["usage"] == "train" || line["usage"] == "validation");
}

fn exeml(workspace: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_exeml"));
    command.env("EXEML_HOME", workspace);
    command
}

fn create_project(workspace: &Path, name: &str) {
    let store = Store::open(workspace).expect("store");
    let project = Project::create(store, name, TaskKind::Tabular, "").expect("create");
    let csv = workspace.join("churn.csv");
    std::fs::write(&csv, exeml::demo_data::churn_csv(20_000, 5)).expect("write");
    project
        .import_table(&csv, Some("churn"), Default::default())
        .expect("import");
    project.publish(SplitSpec::default()).expect("publish");
}

#[test]
fn sigkilled_training_registers_nothing_and_the_next_run_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_project(dir.path(), "killed");
    let mut child = exeml(dir.path())
        .args([
            "model",
            "train",
            "--project",
            "killed",
            "--time-limit",
            "60s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until training is under way (progress lines go to stderr when it is not a terminal).
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        let training = line.contains("trial 2");
        seen.push(line);
        if training {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("trial 2")),
        "never reached training: {seen:?}"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let store = Store::open(dir.path()).expect("store still opens");
    assert!(store.model_versions("killed").expect("list").is_empty());
    let models = dir.path().join("projects/killed/models");
    let named: Vec<String> = std::fs::read_dir(&models)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert!(named.is_empty(), "no model folder registered: {named:?}");

    let out = exeml(dir.path())
        .args([
            "model",
            "train",
            "--project",
            "killed",
            "--time-limit",
            "5s",
        ])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("model version 0.0.1"));
}

#[test]
fn two_processes_training_at_once_get_distinct_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    create_project(dir.path(), "shared");
    let spawn = || {
        exeml(dir.path())
            .args([
                "model",
                "train",
                "--project",
                "shared",
                "--time-limit",
                "4s",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let store = Store::open(dir.path()).expect("store");
    let versions: Vec<String> = store
        .model_versions("shared")
        .expect("list")
        .into_iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(versions, ["0.0.1", "0.0.2"]);
}
