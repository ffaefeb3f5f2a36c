//! Image data and outputs the other image tests do not reach: a manifest with its own split and
//! Chinese labels, the top-5 cut of the SPEC response, multi-label predictions in CSV and JSON
//! lines, one class only, and a GPU asked of a CPU build.

use crate::image::{picture, weights_available};
use exeml::core::{Device, Error};
use exeml::vision::{BackboneKind, ImageDataset, ImageModel, ImagePredictor, ImportFormat};
use exeml::{Budget, Preference};
use rand::SeedableRng;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A quick configuration: MobileNetV2 at 64 px, a linear probe only.
fn quick() -> ImagePredictor {
    ImagePredictor::new()
        .preference(Preference::PerformanceFirst)
        .backbones(vec![BackboneKind::MobilenetV2])
        .resolution(64)
        .fine_tune(false)
}

fn fit(predictor: &ImagePredictor, data: &Path) -> exeml::Result<ImageModel> {
    let dataset = ImageDataset::import(data, ImportFormat::Auto)?;
    predictor.fit(
        &dataset,
        &Budget::new(Duration::from_secs(120)),
        &exeml::core::Silent,
    )
}

#[test]
fn a_manifest_folder_trains_on_its_own_split_with_chinese_labels() {
    if !weights_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
    let mut lines = Vec::new();
    for (kind, label) in [("disc", "圆盘"), ("stripes", "条纹")] {
        std::fs::create_dir_all(dir.path().join("pics")).expect("mkdir");
        for i in 0..9 {
            let source = format!("pics/{kind}_{i}.png");
            picture(kind, &mut rng)
                .save(dir.path().join(&source))
                .expect("save");
            // The last three of each class are the manifest's validation part.
            let usage = if i >= 6 { "validation" } else { "train" };
            lines.push(format!(
                r#"{{"source": "{source}", "labels": ["{label}"], "usage": "{usage}"}}"#
            ));
        }
    }
    std::fs::write(dir.path().join("manifest.jsonl"), lines.join("\n")).expect("manifest");
    let model = fit(&quick(), dir.path()).expect("fit");
    assert_eq!(model.classes(), ["圆盘", "条纹"]);
    assert_eq!(
        model.manifest.lineage.images,
        (12, 6),
        "the manifest's split"
    );
    assert!(model.manifest.validation.accuracy() >= 0.8);
}

#[test]
fn the_response_keeps_the_top_five_classes_as_three_decimal_strings() {
    if !weights_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(22);
    let kinds = ["disc", "stripes", "checks"];
    // Six classes: three patterns, each dark or light.
    for class in 0..6 {
        let folder = dir.path().join(format!("class{class}"));
        std::fs::create_dir_all(&folder).expect("mkdir");
        for i in 0..5 {
            let mut img = picture(kinds[class % 3], &mut rng);
            if class >= 3 {
                img.pixels_mut().for_each(|p| p.0 = p.0.map(|v| v / 3));
            }
            img.save(folder.join(format!("{i}.png"))).expect("save");
        }
    }
    let model = fit(&quick(), dir.path()).expect("fit");
    assert_eq!(model.classes().len(), 6);
    let scores = model
        .predict_files(&[dir.path().join("class4/0.png")])
        .expect("predict")
        .remove(0)
        .expect("readable");
    let response = model.response(&scores);
    let top = response["scores"].as_array().expect("scores");
    assert_eq!(top.len(), 5, "{response}");
    let values: Vec<f64> = top
        .iter()
        .map(|pair| {
            let text = pair[1].as_str().expect("a string");
            assert_eq!(text.split('.').nth(1).map(str::len), Some(3), "{text}");
            text.parse().expect("a number")
        })
        .collect();
    assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");
    assert_eq!(response["predicted_label"], top[0][0], "{response}");
    assert!(response.get("predicted_labels").is_none());
}

#[test]
fn multilabel_predictions_join_labels_in_csv_and_list_them_in_json_lines() {
    if !weights_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(23);
    for i in 0..32 {
        let striped = i % 2 == 0;
        let dark = (i / 2) % 2 == 0;
        let mut img = picture(if striped { "stripes" } else { "disc" }, &mut rng);
        if dark {
            img.pixels_mut().for_each(|p| p.0 = p.0.map(|v| v / 3));
        }
        img.save(data.join(format!("{i:02}.png"))).expect("save");
        let mut labels = vec![if striped { "striped" } else { "plain" }];
        if dark {
            labels.push("dark");
        }
        std::fs::write(data.join(format!("{i:02}.txt")), labels.join("\n")).expect("txt");
    }
    let model_dir = dir.path().join("model");
    fit(&quick(), &data)
        .expect("fit")
        .save(&model_dir)
        .expect("save");
    let run = |output: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_exeml"))
            .args(["predict", "--model"])
            .arg(&model_dir)
            .arg("--data")
            .arg(&data)
            .arg("--output")
            .arg(output)
            .output()
            .expect("run exeml");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(output).expect("predictions")
    };
    let csv = run(&dir.path().join("preds.csv"));
    let header = csv.lines().next().expect("header");
    assert_eq!(
        header, "id,prediction,proba_dark,proba_plain,proba_striped",
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 33);
    // Dark pictures (two of every four) carry two labels, joined by `;`.
    let joined = csv.lines().skip(1).filter(|l| l.contains(';')).count();
    assert!(joined >= 8, "{csv}");
    let jsonl = run(&dir.path().join("preds.jsonl"));
    let first: serde_json::Value =
        serde_json::from_str(jsonl.lines().next().expect("a line")).expect("json");
    assert_eq!(first["id"], "00.png");
    let labels = first["predicted_labels"].as_array().expect("a list");
    assert!(labels.contains(&serde_json::json!(first["predicted_label"])));
}

#[test]
fn one_class_is_refused_by_the_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(24);
    std::fs::create_dir_all(dir.path().join("only")).expect("mkdir");
    for i in 0..8 {
        picture("disc", &mut rng)
            .save(dir.path().join(format!("only/{i}.png")))
            .expect("save");
    }
    let err = fit(&quick(), dir.path()).expect_err("one class");
    assert!(matches!(err, Error::CheckFailed { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    let report = exeml::vision::data::check(
        &ImageDataset::import(dir.path(), ImportFormat::Auto).expect("import"),
    );
    assert!(
        report.to_string().contains("at least 2 are needed"),
        "{report}"
    );
}

#[test]
fn a_gpu_asked_of_a_cpu_build_is_not_compiled() {
    if cfg!(feature = "cuda") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    crate::image::class_folders(dir.path(), 5, 25);
    let err = fit(&quick().device(Device::Cuda(0)), dir.path()).expect_err("no CUDA here");
    assert!(matches!(err, Error::NotCompiled { .. }), "{err}");
    assert!(err.to_string().contains("cuda"), "{err}");
}
