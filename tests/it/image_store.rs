//! Image projects in the store (SPEC §1): folders imported as samples, labelled one by one,
//! checked, published as versions and trained into numbered model versions, through the library
//! and the `exeml` binary.

use crate::image::{class_folders, picture, weights_available};
use exeml::core::store::{DeleteLabelMode, SampleFilter, Store, WorkflowStep};
use exeml::core::{SplitSpec, TaskKind, Usage};
use exeml::Project;
use rand::SeedableRng;
use std::path::Path;
use std::process::{Command, Output};

/// Three class folders of six pictures, two loose (unlabelled) pictures, a GIF and an empty PNG.
fn shapes_folder(root: &Path) {
    class_folders(root, 6, 7);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
    for name in ["loose_a.png", "loose_b.png"] {
        picture("disc", &mut rng)
            .save(root.join(name))
            .expect("save");
    }
    std::fs::write(root.join("disc/anim.gif"), b"GIF89a").expect("gif");
    std::fs::write(root.join("stripes/empty.png"), b"").expect("empty");
}

fn ids(samples: &[exeml::core::store::Sample]) -> Vec<i64> {
    samples.iter().map(|s| s.id).collect()
}

#[test]
fn an_image_folder_is_imported_labelled_checked_and_published() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("shapes");
    shapes_folder(&data);
    let store = Store::open(&dir.path().join("ws")).expect("store");
    let project = Project::create(store, "shapes", TaskKind::Image, "").expect("create");

    let import = project.import_images(&data).expect("import");
    assert_eq!(
        (import.imported, import.labelled, import.unlabelled),
        (20, 18, 2),
        "{import:#?}"
    );
    let reasons: Vec<String> = import
        .skipped
        .iter()
        .map(|s| format!("{}: {}", s.path.display(), s.reason))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("anim.gif") && r.contains("GIF")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("empty.png") && r.contains("zero-byte")),
        "{reasons:?}"
    );
    assert_eq!(project.info().expect("info").step, WorkflowStep::Label);

    // The same folder again adds nothing; a different file under a taken name gets a new one.
    let again = project.import_images(&data).expect("again");
    assert_eq!((again.imported, again.already_present), (0, 20));
    let other = dir.path().join("other");
    std::fs::create_dir_all(other.join("disc")).expect("mkdir");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    picture("disc", &mut rng)
        .save(other.join("disc/00.jpg"))
        .expect("save");
    let renamed = project.import_images(&other).expect("other");
    assert_eq!(
        renamed.renamed,
        vec![("disc/00.jpg".to_string(), "disc/00-2.jpg".to_string())]
    );

    // Label the loose pictures, one of them with a Chinese label first.
    let loose = project
        .samples(SampleFilter::Unlabelled)
        .expect("unlabelled");
    assert_eq!(loose.len(), 2);
    assert_eq!(
        project.add_label(&ids(&loose[..1]), "disc").expect("add"),
        1
    );
    project
        .set_labels(loose[1].id, &["斑点".to_string()])
        .expect("set");
    assert_eq!(project.info().expect("info").step, WorkflowStep::Check);
    let report = project.check().expect("check");
    assert!(report.has_errors(), "{report}");
    assert!(report.to_string().contains("斑点"), "{report}");
    assert!(project.publish(SplitSpec::default()).is_err());
    assert_eq!(project.rename_label("斑点", "disc").expect("rename"), 1);
    let report = project.check().expect("check");
    assert!(!report.has_errors(), "{report}");

    let v1 = project.publish(SplitSpec::default()).expect("publish");
    assert_eq!(v1.name, "V001");
    assert_eq!(v1.n_samples, 21);
    assert_eq!(v1.label_counts["disc"], 9);
    let images = project.version_images(&v1).expect("version images");
    assert_eq!(images.samples.len(), 21);
    assert!(images.samples.iter().all(|s| s.path.is_file()));
    let usages: Vec<Usage> = images.samples.iter().filter_map(|s| s.usage).collect();
    assert_eq!(usages.len(), 21);
    assert!(usages.contains(&Usage::Validation) && usages.contains(&Usage::Train));

    // Deleting a label with its files keeps the files the published version uses.
    let plan = project
        .plan_delete_label("checks", DeleteLabelMode::SamplesAndFiles)
        .expect("plan");
    assert_eq!(plan.samples_deleted.len(), 6);
    assert!(plan.files_deleted.is_empty(), "{plan:?}");
    assert_eq!(plan.files_kept.len(), 6);
    let done = project
        .delete_label("checks", DeleteLabelMode::SamplesAndFiles)
        .expect("delete");
    assert_eq!(done, plan);
    assert!(plan.files_kept.iter().all(|f| f.is_file()));
    assert_eq!(
        project
            .version_images(&v1)
            .expect("still readable")
            .samples
            .len(),
        21
    );
}

#[test]
fn label_operations_are_refused_on_a_tabular_project_and_images_on_a_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let tabular = Project::create(store, "table", TaskKind::Tabular, "").expect("create");
    let e = tabular.add_label(&[1], "x").expect_err("refused");
    assert!(e.to_string().contains("label column"), "{e}");
    let e = tabular
        .import_images(dir.path())
        .expect_err("not an image project");
    assert!(e.to_string().contains("tabular project"), "{e}");
    let store = Store::open(dir.path()).expect("store");
    let images = Project::create(store, "pics", TaskKind::Image, "").expect("create");
    let e = images
        .import_table(&crate::data("iris.csv"), None, Default::default())
        .expect_err("not a tabular project");
    assert!(e.to_string().contains("image project"), "{e}");
    let e = images
        .import_images(&dir.path().join("missing"))
        .expect_err("no folder");
    assert!(e.to_string().contains("missing"), "{e}");
}

fn exeml(workspace: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exeml"))
        .arg("--workspace")
        .arg(workspace)
        .args(args)
        .output()
        .expect("run exeml")
}

/// Run and require success; stdout.
fn ok(workspace: &Path, args: &[&str]) -> String {
    let out = exeml(workspace, args);
    assert!(
        out.status.success(),
        "exeml {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run and require failure; stderr.
fn refused(workspace: &Path, args: &[&str]) -> String {
    let out = exeml(workspace, args);
    assert!(!out.status.success(), "exeml {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cli_image_project_from_folder_to_labelled_versions_and_warm_started_models() {
    if !weights_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = dir.path().join("ws");
    let data = dir.path().join("shapes");
    shapes_folder(&data);
    let data_arg = data.to_str().expect("utf-8");
    ok(&ws, &["project", "create", "shapes", "--task", "image"]);
    let refusal = refused(
        &ws,
        &[
            "dataset",
            "import",
            "--project",
            "shapes",
            "--data",
            data_arg,
            "--label",
            "y",
        ],
    );
    assert!(
        refusal.contains("--label") && refusal.contains("tables"),
        "{refusal}"
    );
    let out = exeml(
        &ws,
        &[
            "dataset",
            "import",
            "--project",
            "shapes",
            "--data",
            data_arg,
            "--json",
        ],
    );
    assert!(out.status.success());
    let import: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(import["imported"], 20, "{import}");
    assert_eq!(import["skipped"].as_array().map(Vec::len), Some(2));

    // Label the two loose pictures by id, as `dataset samples` lists them.
    let listed = ok(
        &ws,
        &[
            "dataset",
            "samples",
            "--project",
            "shapes",
            "--unlabelled",
            "--json",
        ],
    );
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("json");
    let loose: Vec<String> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["id"].to_string())
        .collect();
    assert_eq!(loose.len(), 2, "{listed}");
    let said = ok(
        &ws,
        &[
            "dataset",
            "label",
            "add",
            "--project",
            "shapes",
            "--label",
            "disc",
            "--samples",
            &loose.join(","),
        ],
    );
    assert!(said.contains("added to 2 sample(s)"), "{said}");
    assert!(ok(
        &ws,
        &["dataset", "samples", "--project", "shapes", "--unlabelled"]
    )
    .contains("0 sample(s)"));
    ok(&ws, &["dataset", "check", "--project", "shapes"]);
    let published = ok(&ws, &["dataset", "publish", "--project", "shapes"]);
    assert!(published.contains("V001: 20 samples"), "{published}");

    let train = [
        "model",
        "train",
        "--project",
        "shapes",
        "--time-limit",
        "60s",
        "--backbone",
        "mobilenet_v2",
        "--resolution",
        "64",
        "--no-fine-tune",
    ];
    let trained = ok(&ws, &train);
    assert!(
        trained.contains("model version 0.0.1 of shapes (dataset V001)"),
        "{trained}"
    );
    let shown = ok(&ws, &["model", "show", "--project", "shapes", "0.0.1"]);
    assert!(
        shown.contains("leaderboard:") && shown.contains("linear probe"),
        "{shown}"
    );
    assert!(
        shown.contains("confusion") || shown.contains("precision"),
        "{shown}"
    );

    // A new class arrives: a new version, and a model warm-started from the first.
    let more = dir.path().join("more");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    std::fs::create_dir_all(more.join("rings")).expect("mkdir");
    for i in 0..6 {
        picture("checks", &mut rng)
            .save(more.join(format!("rings/{i}.png")))
            .expect("save");
    }
    ok(
        &ws,
        &[
            "dataset",
            "import",
            "--project",
            "shapes",
            "--data",
            more.to_str().expect("utf-8"),
        ],
    );
    ok(&ws, &["dataset", "publish", "--project", "shapes"]);
    let mut warm = train.to_vec();
    warm.extend(["--from", "0.0.1"]);
    let trained = ok(&ws, &warm);
    assert!(
        trained.contains("model version 0.0.2 of shapes (dataset V002)")
            && trained.contains("4 classes"),
        "{trained}"
    );
    let compared = ok(&ws, &["model", "compare", "--project", "shapes"]);
    assert!(
        compared.contains("0.0.1")
            && compared.contains("0.0.2")
            && compared.contains("mobilenet_v2 64px"),
        "{compared}"
    );
    let shown = ok(
        &ws,
        &["model", "show", "--project", "shapes", "0.0.2", "--json"],
    );
    let manifest: serde_json::Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(manifest["lineage"]["dataset_version"], "V002");
    assert_eq!(manifest["lineage"]["parent"], "0.0.1");

    // The exported version predicts a folder on its own.
    let exported = dir.path().join("exported");
    ok(
        &ws,
        &[
            "model",
            "export",
            "--project",
            "shapes",
            "0.0.2",
            "--out",
            exported.to_str().expect("utf-8"),
        ],
    );
    let preds = dir.path().join("preds.csv");
    ok(
        &ws,
        &[
            "predict",
            "--model",
            exported.to_str().expect("utf-8"),
            "--data",
            more.to_str().expect("utf-8"),
            "--output",
            preds.to_str().expect("utf-8"),
        ],
    );
    let csv = std::fs::read_to_string(&preds).expect("preds");
    assert_eq!(csv.lines().count(), 7, "{csv}");
    // … and as one ONNX file: the same bytes as the library writes for the exported folder.
    let onnx = dir.path().join("shapes.onnx");
    ok(
        &ws,
        &[
            "model",
            "export",
            "--project",
            "shapes",
            "0.0.2",
            "--format",
            "onnx",
            "--out",
            onnx.to_str().expect("utf-8"),
        ],
    );
    let why = refused(
        &ws,
        &[
            "model",
            "export",
            "--project",
            "shapes",
            "0.0.2",
            "--int8",
            "--out",
            onnx.to_str().expect("utf-8"),
        ],
    );
    assert!(why.contains("--format onnx"), "{why}");
    let model = exeml::vision::ImageModel::load(&exported).expect("load export");
    assert_eq!(
        std::fs::read(&onnx).expect("onnx"),
        exeml::vision::onnx::onnx_bytes(&model, Default::default()).expect("bytes")
    );

    // Deleting a label says what goes and deletes only when confirmed.
    let refusal = refused(
        &ws,
        &[
            "dataset",
            "label",
            "delete",
            "--project",
            "shapes",
            "--label",
            "rings",
            "--mode",
            "files",
        ],
    );
    assert!(refusal.contains("--yes"), "{refusal}");
    let samples = ok(
        &ws,
        &[
            "dataset",
            "samples",
            "--project",
            "shapes",
            "--label",
            "rings",
        ],
    );
    assert!(samples.contains("6 sample(s)"), "{samples}");
    let deleted = ok(
        &ws,
        &[
            "dataset",
            "label",
            "delete",
            "--project",
            "shapes",
            "--label",
            "rings",
            "--mode",
            "files",
            "--yes",
        ],
    );
    assert!(
        deleted.contains("6 sample(s) deleted") && deleted.contains("6 file(s) kept"),
        "{deleted}"
    );
    let refusal = refused(
        &ws,
        &[
            "dataset",
            "delete-samples",
            "--project",
            "shapes",
            "--samples",
            "1",
        ],
    );
    assert!(refusal.contains("--yes"), "{refusal}");
}
