//! Image models exported as ONNX compute in onnxruntime what they compute in exeml: every backbone
//! family (MobileNetV2 and EfficientNet-Lite0 with their ImageNet weights, ResNet, ConvNeXt and
//! ViT from initialised checkpoints), a fine-tuned ensemble with a temperature, a calibrated multi-label model.
//!
//! onnxruntime runs in Python: `scripts/setup.sh` installs it into `target/onnx-venv`
//! (`$EXEML_ONNXRUNTIME_PYTHON` names another interpreter). Without it these tests skip, except
//! under `CI=true`, where they fail.

use crate::image::{model_dir, picture, two_member_ensemble};
use candle_core::{Device, Tensor};
use exeml::vision::head::LinearHead;
use exeml::vision::onnx::OnnxOptions;
use exeml::vision::{Backbone, BackboneKind, ImageModel};
use exeml::ProblemType;
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python interpreter with onnxruntime; panics under CI when there is none.
fn onnxruntime_python() -> Option<PathBuf> {
    let python = std::env::var_os("EXEML_ONNXRUNTIME_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/onnx-venv/bin/python")
        });
    let works = Command::new(&python)
        .args(["-c", "import onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    match works {
        true => Some(python),
        false if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI must install onnxruntime ({}): scripts/setup.sh",
                python.display()
            )
        }
        false => {
            eprintln!("skipping: no onnxruntime at {}", python.display());
            None
        }
    }
}

/// Feeds the raw pixels to the model and writes its outputs and metadata as JSON.
const RUNNER: &str = r#"
import json, sys
import numpy as np, onnxruntime as ort
model, pixels, n, side, out = sys.argv[1:]
x = np.fromfile(pixels, dtype="<f4").reshape(int(n), 3, int(side), int(side))
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
p, e = session.run(["probabilities", "embedding"], {"pixels": x})
meta = session.get_modelmeta().custom_metadata_map
json.dump({"probabilities": p.tolist(), "embedding": e.tolist(), "metadata": meta}, open(out, "w"))
"#;

/// What onnxruntime computed for a batch.
struct Outputs {
    probabilities: Vec<Vec<f32>>,
    embedding: Vec<Vec<f32>>,
    metadata: serde_json::Map<String, serde_json::Value>,
}

/// Export `model`, run it in onnxruntime on the ONNX inputs of `images`, and return the outputs.
fn run_exported(
    python: &Path,
    model: &ImageModel,
    images: &[image::RgbImage],
    options: OnnxOptions,
) -> Outputs {
    let dir = tempfile::tempdir().expect("tempdir");
    let onnx = dir.path().join("model.onnx");
    model.export_onnx(&onnx, options).expect("export");
    let pixels: Vec<u8> = images
        .iter()
        .flat_map(|image| model.onnx_input(image))
        .flat_map(f32::to_le_bytes)
        .collect();
    std::fs::write(dir.path().join("pixels.f32"), pixels).expect("write pixels");
    let out = dir.path().join("out.json");
    let run = Command::new(python)
        .args(["-c", RUNNER])
        .arg(&onnx)
        .arg(dir.path().join("pixels.f32"))
        .arg(images.len().to_string())
        .arg(model.manifest.resolution.to_string())
        .arg(&out)
        .output()
        .expect("run python");
    assert!(
        run.status.success(),
        "onnxruntime refused the export: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("out")).expect("json");
    let rows = |key: &str| -> Vec<Vec<f32>> {
        serde_json::from_value(json[key].clone()).expect("rows of floats")
    };
    Outputs {
        probabilities: rows("probabilities"),
        embedding: rows("embedding"),
        metadata: json["metadata"].as_object().expect("metadata").clone(),
    }
}

/// The largest difference between matching entries of two batches of rows.
fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0f32, f32::max)
}

/// The largest magnitude in a batch of rows.
fn max_abs(rows: &[Vec<f32>]) -> f32 {
    rows.iter().flatten().map(|v| v.abs()).fold(0f32, f32::max)
}

/// One picture of each class, and one of 100×60 (cropped and resized to the model's side).
fn pictures(seed: u64) -> Vec<image::RgbImage> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut images: Vec<_> = ["disc", "stripes", "checks"]
        .iter()
        .map(|class| picture(class, &mut rng))
        .collect();
    images.push(image::imageops::resize(
        &picture("disc", &mut rng),
        100,
        60,
        image::imageops::FilterType::Triangle,
    ));
    images
}

/// `model`'s exported graph gives its probabilities (within `tolerance`) and embeddings (within
/// 10⁻⁴ of their largest magnitude) on `images`; returns the metadata.
fn assert_exported_alike(
    python: &Path,
    model: &ImageModel,
    images: &[image::RgbImage],
    tolerance: f32,
) -> serde_json::Map<String, serde_json::Value> {
    let ours = model.predict_images(images).expect("predict");
    let embedded = model.embed_images(images).expect("embed");
    let theirs = run_exported(python, model, images, OnnxOptions::default());
    let what = model.summary();
    let p = max_diff(&ours, &theirs.probabilities);
    let (e, scale) = (max_diff(&embedded, &theirs.embedding), max_abs(&embedded));
    eprintln!("{what}: probabilities within {p}, embeddings within {e} of {scale}");
    assert!(p <= tolerance, "{what}: probabilities differ by {p}");
    assert!(
        scale > 0.1 && e <= 1e-4 * scale,
        "{what}: embeddings differ by {e} of {scale}"
    );
    // The scores are not all alike (which would make the comparison empty).
    let spread = ours.iter().flatten().fold(0f32, |m, &v| m.max(v))
        - ours.iter().flatten().fold(1f32, |m, &v| m.min(v));
    assert!(spread > 0.05, "{what}: {ours:?}");
    theirs.metadata
}

#[test]
fn an_exported_mobilenet_model_predicts_as_exeml_with_its_classes_in_the_metadata() {
    let Some(python) = onnxruntime_python() else {
        return;
    };
    let Some(dir) = model_dir() else { return };
    let model = ImageModel::load(dir).expect("load");
    let meta = assert_exported_alike(&python, &model, &pictures(1), 1e-4);
    let classes: Vec<String> =
        serde_json::from_str(meta["exeml.classes"].as_str().expect("classes")).expect("json");
    assert_eq!(classes, model.classes());
    assert_eq!(meta["exeml.resolution"], "64");
    assert_eq!(meta["exeml.backbone"], "mobilenet_v2");
    assert!(!meta.contains_key("exeml.thresholds"));

    // Missing folders are created; a path that is a folder is an error naming it, and no
    // temporary file is left beside it.
    let out = tempfile::tempdir().expect("tempdir");
    let nested = out.path().join("exports/v1/model.onnx");
    model
        .export_onnx(&nested, OnnxOptions::default())
        .expect("export into new folders");
    assert!(std::fs::metadata(&nested).expect("written").len() > 1_000_000);
    let folder = out.path().join("exports");
    let err = model
        .export_onnx(&folder, OnnxOptions::default())
        .expect_err("a folder");
    assert!(err.to_string().contains("exports"), "{err}");
    let left: Vec<_> = std::fs::read_dir(out.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, ["exports"], "nothing but the export");
    // The core `Exporter` trait writes `model.onnx` into a folder.
    use exeml::core::Exporter;
    let written = exeml::vision::onnx::OnnxExporter::default()
        .export(&model, &out.path().join("by-trait"))
        .expect("exporter");
    assert_eq!(written, out.path().join("by-trait/model.onnx"));
    assert_eq!(
        std::fs::read(&written).expect("read"),
        exeml::vision::onnx::onnx_bytes(&model, OnnxOptions::default()).expect("bytes")
    );
}

#[test]
fn int8_weights_shrink_the_file_to_a_third_and_keep_the_predictions() {
    let Some(python) = onnxruntime_python() else {
        return;
    };
    let Some(dir) = model_dir() else { return };
    let model = ImageModel::load(dir).expect("load");
    // A damped head keeps the probabilities off 0 and 1, so that their changes show.
    let mut head = model.head().clone();
    head.weight = (&head.weight * 0.05).expect("scale");
    let model = ImageModel::new(model.manifest.clone(), model.backbone().clone(), head);
    let images = pictures(5);
    let ours = model.predict_images(&images).expect("predict");
    let embedded = model.embed_images(&images).expect("embed");
    let int8 = OnnxOptions { int8_weights: true };
    let theirs = run_exported(&python, &model, &images, int8);
    let cosine = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    };
    let p = max_diff(&ours, &theirs.probabilities);
    let e = embedded
        .iter()
        .zip(&theirs.embedding)
        .map(|(a, b)| cosine(a, b))
        .fold(1f32, f32::min);
    eprintln!("int8 weights: probabilities within {p}, embeddings' cosine at least {e}");
    assert!(
        p < 0.02 && e > 0.99,
        "probabilities {p}, embeddings' cosine {e}"
    );
    assert!(p > 0.0, "the weights were rounded");
    let argmax = |row: &Vec<f32>| (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b]));
    for (a, b) in ours.iter().zip(&theirs.probabilities) {
        assert_eq!(argmax(a), argmax(b), "{a:?} vs {b:?}");
    }
    assert!(theirs.metadata["exeml.weights"]
        .as_str()
        .is_some_and(|w| w.starts_with("int8")));
    let sizes = [OnnxOptions::default(), int8].map(|o| {
        exeml::vision::onnx::onnx_bytes(&model, o)
            .expect("bytes")
            .len()
    });
    assert!(
        sizes[1] * 100 < sizes[0] * 35,
        "int8 {} bytes, float {}",
        sizes[1],
        sizes[0]
    );
}

#[test]
fn an_exported_ensemble_averages_its_members_and_applies_the_temperature() {
    let Some(python) = onnxruntime_python() else {
        return;
    };
    let Some(dir) = model_dir() else { return };
    let model = ImageModel::load(dir).expect("load");
    let (mut manifest, a, b) = two_member_ensemble(&model);
    manifest.temperature = Some(0.5);
    let ensemble =
        ImageModel::new_ensemble(manifest, a.backbone, a.head, vec![b]).expect("ensemble");
    assert_exported_alike(&python, &ensemble, &pictures(2), 1e-4);
}

#[test]
fn an_exported_multilabel_model_rescales_each_label_and_lists_its_thresholds() {
    let Some(python) = onnxruntime_python() else {
        return;
    };
    let Some(dir) = model_dir() else { return };
    let model = ImageModel::load(dir).expect("load");
    let mut manifest = model.manifest.clone();
    manifest.problem = ProblemType::Multilabel;
    manifest.thresholds = vec![0.3, 0.5, 0.7];
    manifest.temperature = Some(1.7);
    let mut head = model.head().clone();
    head.multilabel = true;
    head.weight = (&head.weight * 0.05).expect("scale");
    let multilabel = ImageModel::new(manifest, model.backbone().clone(), head);
    let meta = assert_exported_alike(&python, &multilabel, &pictures(3), 1e-4);
    let thresholds: Vec<f32> =
        serde_json::from_str(meta["exeml.thresholds"].as_str().expect("thresholds")).expect("json");
    // The thresholds are on the reported (rescaled) probabilities: what `predicted` applies.
    let probabilities = multilabel.predict_images(&pictures(3)).expect("predict");
    for row in &probabilities {
        let by_threshold: Vec<usize> = (0..3).filter(|&c| row[c] >= thresholds[c]).collect();
        let mut predicted = multilabel.predicted(row);
        predicted.sort_unstable();
        if !by_threshold.is_empty() {
            assert_eq!(predicted, by_threshold, "{row:?} at {thresholds:?}");
        }
    }
    assert_eq!(meta["exeml.problem"], "multilabel");
}

/// A model of `kind` from its initialised checkpoint (with `edit` applied to its tensors) at
/// `resolution` px, with a random three-class head: what a user's hub checkpoint and training
/// would give, minus the training.
fn initialised_model(
    template: &ImageModel,
    kind: BackboneKind,
    resolution: u32,
    edit: impl Fn(&str, &Tensor) -> Option<Tensor>,
) -> (tempfile::TempDir, ImageModel) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("checkpoint.safetensors");
    let mut tensors = exeml::vision::initial_tensors(kind, 9).expect("init");
    for (name, tensor) in tensors.iter_mut() {
        if let Some(edited) = edit(name, tensor) {
            *tensor = edited;
        }
    }
    candle_core::safetensors::save(&tensors, &path).expect("save checkpoint");
    let backbone = Backbone::load(kind, Some(&path), &Device::Cpu).expect("load backbone");
    (dir, with_random_head(template, backbone, resolution))
}

/// `backbone` at `resolution` px with a random three-class head, `template`'s manifest otherwise.
fn with_random_head(template: &ImageModel, backbone: Backbone, resolution: u32) -> ImageModel {
    let kind = backbone.kind();
    let d = kind.feature_dim();
    let head = LinearHead {
        weight: (Tensor::randn(0f32, 1.0, (3, d), &Device::Cpu).expect("w") * 0.3).expect("w"),
        bias: Tensor::new(&[0.1f32, -0.2, 0.05], &Device::Cpu).expect("b"),
        mean: Tensor::randn(0f32, 0.1, d, &Device::Cpu).expect("mean"),
        inv_std: (Tensor::rand(0.5f32, 2.0, d, &Device::Cpu).expect("inv_std")),
        multilabel: false,
    };
    let mut manifest = template.manifest.clone();
    manifest.backbone = kind;
    manifest.resolution = resolution;
    manifest.tuned_from = None;
    manifest.ensemble.clear();
    manifest.temperature = None;
    ImageModel::new(manifest, backbone, head)
}

#[test]
fn exported_efficientnet_resnet_convnext_and_vit_models_predict_as_exeml() {
    let Some(python) = onnxruntime_python() else {
        return;
    };
    let Some(dir) = model_dir() else { return };
    let template = ImageModel::load(dir).expect("load");
    let images = pictures(4);
    // EfficientNet-Lite0 from its installed ImageNet weights: 5×5 depthwise convolutions.
    let lite0 = Backbone::load(BackboneKind::EfficientnetLite0, None, &Device::Cpu).expect("lite0");
    let lite0 = with_random_head(&template, lite0, 64);
    assert_exported_alike(&python, &lite0, &images, 1e-4);
    let keep = |_: &str, _: &Tensor| None;
    // ResNet-18: its stem's max pooling and the residual blocks' projections.
    let (_d1, resnet) = initialised_model(&template, BackboneKind::Resnet18, 64, keep);
    assert_exported_alike(&python, &resnet, &images, 1e-4);
    // ConvNeXt-Atto with layer scales of 1 (timm's 10⁻⁶ would make its blocks the identity):
    // patchify stem, depthwise 7×7, channel norms, GELU, the pooled head norm.
    let unit_gamma = |name: &str, t: &Tensor| {
        name.ends_with(".gamma")
            .then(|| t.ones_like().expect("ones"))
    };
    let (_d2, convnext) = initialised_model(&template, BackboneKind::ConvnextAtto, 64, unit_gamma);
    assert_exported_alike(&python, &convnext, &images, 1e-4);
    // ViT-Tiny at 48 px: a 3×3 patch grid, so its position embeddings are resampled.
    let (_d3, vit) = initialised_model(&template, BackboneKind::VitTiny, 48, keep);
    assert_exported_alike(&python, &vit, &images, 1e-4);
}

#[test]
fn cli_exports_an_image_model_and_refuses_a_table_model() {
    let Some(dir) = model_dir() else { return };
    let out = tempfile::tempdir().expect("tempdir");
    let onnx = out.path().join("model.onnx");
    let run = Command::new(env!("CARGO_BIN_EXE_exeml"))
        .arg("export")
        .arg("--model")
        .arg(dir)
        .arg("--output")
        .arg(&onnx)
        .output()
        .expect("run exeml");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("model.onnx") && stdout.contains("3 classes") && stdout.contains("1280"),
        "{stdout}"
    );
    let model = ImageModel::load(dir).expect("load");
    assert_eq!(
        std::fs::read(&onnx).expect("onnx"),
        exeml::vision::onnx::onnx_bytes(&model, OnnxOptions::default()).expect("bytes")
    );

    // `--int8`: a quarter of the size, and said so.
    let small = out.path().join("model-int8.onnx");
    let run = Command::new(env!("CARGO_BIN_EXE_exeml"))
        .arg("export")
        .arg("--model")
        .arg(dir)
        .arg("--output")
        .arg(&small)
        .arg("--int8")
        .output()
        .expect("run exeml");
    assert!(run.status.success());
    assert!(String::from_utf8_lossy(&run.stdout).contains("int8 weights"));
    let size = |p: &Path| std::fs::metadata(p).expect("size").len();
    assert!(size(&small) * 100 < size(&onnx) * 35);

    // A table model is refused by name, and nothing is written.
    let table = out.path().join("table-model");
    exeml::TabularPredictor::new("species")
        .time_limit(std::time::Duration::from_secs(3))
        .families(["gbdt"])
        .fit_path(&crate::data("iris.csv"))
        .expect("fit")
        .save(&table)
        .expect("save");
    let refused = Command::new(env!("CARGO_BIN_EXE_exeml"))
        .arg("export")
        .arg("--model")
        .arg(&table)
        .arg("--output")
        .arg(out.path().join("table.onnx"))
        .output()
        .expect("run exeml");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("table-model") && stderr.contains("image models"),
        "{stderr}"
    );
    assert!(!out.path().join("table.onnx").exists());
}
