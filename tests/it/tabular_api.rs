//! The Rust API on real tables: sane metrics, save/load, determinism, budgets, warm starts.

use crate::data;
use exeml::tabular::evaluate::Metrics;
use exeml::tabular::{HeaderMode, ReadOptions};
use exeml::{Error, ProblemType, Table, TabularModel, TabularPredictor};
use std::time::Duration;

fn quick(label: &str) -> TabularPredictor {
    TabularPredictor::new(label).time_limit(Duration::from_secs(20))
}

#[test]
fn iris_multiclass_reaches_high_accuracy_and_round_trips() {
    let model = quick("species").fit_path(&data("iris.csv")).expect("fit");
    assert_eq!(model.problem(), ProblemType::Multiclass);
    assert_eq!(model.classes(), ["setosa", "versicolor", "virginica"]);
    let Metrics::Classification(report) = &model.validation().metrics else {
        panic!("classification metrics expected");
    };
    assert!(report.accuracy >= 0.85, "accuracy {}", report.accuracy);
    let board = model.leaderboard();
    assert!(
        board.iter().any(|r| r.trial.family == "linear")
            && board.iter().any(|r| r.trial.family == "gbdt"),
        "linear and gbdt were both tried"
    );
    assert!(board.len() > 2, "the search went past the defaults");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("iris-model");
    model.save(&path).expect("save");
    let loaded = TabularModel::load(&path).expect("load");
    let table = Table::read(&data("iris.csv"), ReadOptions::default()).expect("read");
    assert_eq!(
        model.predict(&table).expect("predict").proba,
        loaded.predict(&table).expect("predict").proba
    );
}

#[test]
fn breast_cancer_binary_has_high_auc() {
    let model = quick("diagnosis")
        .fit_path(&data("breast_cancer.csv"))
        .expect("fit");
    assert_eq!(model.problem(), ProblemType::Binary);
    let Metrics::Classification(report) = &model.validation().metrics else {
        panic!("classification metrics expected");
    };
    assert!(report.accuracy >= 0.9, "accuracy {}", report.accuracy);
    assert!(report.roc_auc.expect("binary AUC") >= 0.95);
    assert!(report.log_loss.expect("log loss") < 0.3);
}

#[test]
fn diabetes_regression_explains_variance() {
    let model = quick("progression")
        .fit_path(&data("diabetes.csv"))
        .expect("fit");
    assert_eq!(model.problem(), ProblemType::Regression);
    let Metrics::Regression(report) = &model.validation().metrics else {
        panic!("regression metrics expected");
    };
    assert!(report.r2 > 0.3, "r2 {}", report.r2);
    assert!((report.rmse - report.mse.sqrt()).abs() < 1e-9);
}

#[test]
fn messy_table_with_missing_values_dates_and_no_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = exeml::demo_data::churn_csv(600, 3);
    // Drop the header: the columns become attr_1 … attr_11 and the label is the last one.
    let body: String = csv.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let path = dir.path().join("churn_no_header.csv");
    std::fs::write(&path, body).expect("write");
    let table = Table::read(
        &path,
        ReadOptions {
            header: HeaderMode::Auto,
        },
    )
    .expect("read");
    assert_eq!(table.columns[0].name, "attr_1");
    let model = TabularPredictor::default()
        .time_limit(Duration::from_secs(20))
        .fit(&table)
        .expect("fit");
    assert_eq!(model.label(), "attr_11");
    let codes: Vec<&str> = model
        .manifest
        .checks
        .findings
        .iter()
        .map(|f| f.code.as_str())
        .collect();
    assert!(
        codes.contains(&"column_dropped"),
        "id and constant columns dropped: {codes:?}"
    );
    assert!(codes.contains(&"datetime_features"), "{codes:?}");
    assert!(
        codes.contains(&"many_missing"),
        "region is 15% missing: {codes:?}"
    );
    let Metrics::Classification(report) = &model.validation().metrics else {
        panic!("classification metrics expected");
    };
    assert!(report.accuracy > 0.7, "accuracy {}", report.accuracy);
}

#[test]
fn same_seed_gives_identical_predictions() {
    let table = Table::read(&data("wine.csv"), ReadOptions::default()).expect("read");
    let fit = || quick("cultivar").seed(7).fit(&table).expect("fit");
    let (a, b) = (fit(), fit());
    assert_eq!(a.manifest.family, b.manifest.family);
    assert_eq!(
        a.predict(&table).expect("predict").proba,
        b.predict(&table).expect("predict").proba
    );
}

#[test]
fn tiny_budget_still_returns_a_valid_model() {
    let model = TabularPredictor::new("diagnosis")
        .time_limit(Duration::from_millis(300))
        .fit_path(&data("breast_cancer.csv"))
        .expect("a model even with a tiny budget");
    let table = Table::read(&data("breast_cancer.csv"), ReadOptions::default()).expect("read");
    assert_eq!(model.predict(&table).expect("predict").len(), 569);
}

#[test]
fn warm_start_tries_the_parent_configuration_first_and_records_it() {
    let parent = quick("species").fit_path(&data("iris.csv")).expect("fit");
    let child = quick("species")
        .warm_start("iris-parent", &parent)
        .fit_path(&data("iris.csv"))
        .expect("fit");
    assert_eq!(
        child.manifest.lineage.parent.as_deref(),
        Some("iris-parent")
    );
    // The parent's heaviest model (its only one, or its ensemble's first) is tried first.
    let heaviest = &parent.manifest.members()[0];
    let first = &child.manifest.leaderboard[0].trial;
    assert_eq!(first.family, heaviest.family);
    assert_eq!(first.params, heaviest.params);
}

#[test]
fn a_child_continues_the_parents_boosted_trees_on_new_rows() {
    let table = Table::read(&data("breast_cancer.csv"), ReadOptions::default()).expect("read");
    let first_half: Vec<usize> = (0..table.n_rows() / 2).collect();
    let boosted = || {
        quick("diagnosis")
            .families(["hist_gbdt"])
            .bag_folds(0)
            .deterministic(true)
    };
    let parent = boosted().fit(&table.take(&first_half)).expect("parent");
    let dir = tempfile::tempdir().expect("tempdir");
    parent.save(dir.path()).expect("save");
    let parent = TabularModel::load(dir.path()).expect("load");
    let child = boosted()
        .warm_start("half", &parent)
        .fit(&table)
        .expect("child");
    let first = &child.manifest.leaderboard[0];
    assert_eq!(first.trial.params, parent.manifest.members()[0].params);
    let note = first.outcome.note.as_deref().unwrap_or("");
    assert!(
        note.starts_with("continues the parent's booster ("),
        "{note}"
    );
    // Each of the parent's boosters is continued once, first; later trials start from scratch.
    let parents = parent.manifest.members().len();
    let continues = |r: &exeml::core::TrialRecord| {
        r.outcome
            .note
            .as_deref()
            .unwrap_or("")
            .starts_with("continues")
    };
    assert!(child.manifest.leaderboard[..parents].iter().all(continues));
    assert!(!child.manifest.leaderboard[parents..].iter().any(continues));
    let Metrics::Classification(report) = &child.validation().metrics else {
        panic!("classification metrics expected");
    };
    assert!(report.accuracy > 0.9, "{}", report.accuracy);
}

#[test]
fn warm_start_from_a_model_of_another_label_is_refused() {
    let parent = quick("species").fit_path(&data("iris.csv")).expect("fit");
    let err = quick("diagnosis")
        .warm_start("iris", &parent)
        .fit_path(&data("breast_cancer.csv"))
        .expect_err("different label");
    assert!(matches!(err, Error::Data { .. }), "{err}");
}

#[test]
fn newer_model_format_is_rejected_clearly() {
    let model = quick("species").fit_path(&data("iris.csv")).expect("fit");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m");
    model.save(&path).expect("save");
    let manifest = path.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).expect("read");
    let mut json: serde_json::Value = serde_json::from_str(&text).expect("json");
    json["format_version"] = 99.into();
    std::fs::write(&manifest, json.to_string()).expect("write");
    let err = TabularModel::load(&path).expect_err("newer format");
    assert!(matches!(err, Error::Format { .. }), "{err}");
    assert!(err.to_string().contains("format_version 99"), "{err}");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_device_without_feature_is_a_typed_error() {
    let mut predictor = quick("species");
    predictor.device = exeml::Device::Cuda(0);
    let err = predictor
        .fit_path(&data("iris.csv"))
        .expect_err("no cuda build");
    assert!(matches!(err, Error::NotCompiled { .. }), "{err}");
}

#[test]
fn a_cancelled_run_without_a_model_is_interrupted() {
    let table = Table::read(&data("iris.csv"), ReadOptions::default()).expect("read");
    let budget = exeml::Budget::new(Duration::from_secs(20));
    budget.cancel();
    let err = quick("species")
        .fit_with(&table, None, &budget, &exeml::core::Silent)
        .expect_err("cancelled before the first trial");
    assert!(matches!(err, Error::Interrupted(_)), "{err}");
}

#[test]
fn permutation_importance_ranks_petal_measurements_first() {
    let table = Table::read(&data("iris.csv"), ReadOptions::default()).expect("read");
    let model = quick("species").fit(&table).expect("fit");
    let importance = model.feature_importance(&table, 5, 0).expect("importance");
    assert_eq!(importance.len(), 4);
    assert!(
        importance[0].column.starts_with("petal"),
        "{:?}",
        importance
    );
    assert!(importance[0].importance > 0.1, "{:?}", importance[0]);
    assert!(importance
        .windows(2)
        .all(|w| w[0].importance >= w[1].importance));
    assert!(matches!(
        model.feature_importance(&table, 0, 0),
        Err(Error::InvalidParameter { .. })
    ));
}

#[test]
fn tuning_rows_appended_to_training_rows_validate() {
    let table = Table::read(&data("iris.csv"), ReadOptions::default()).expect("read");
    let train = table.take(&(0..150).filter(|i| i % 4 != 0).collect::<Vec<_>>());
    let tuning = table.take(&(0..150).filter(|i| i % 4 == 0).collect::<Vec<_>>());
    let both = train.append(&tuning).expect("append");
    let usage: Vec<exeml::core::Usage> = (0..both.n_rows())
        .map(|i| {
            if i < train.n_rows() {
                exeml::core::Usage::Train
            } else {
                exeml::core::Usage::Validation
            }
        })
        .collect();
    let model = quick("species")
        .fit_with(
            &both,
            Some(&usage),
            &exeml::Budget::new(Duration::from_secs(20)),
            &exeml::core::Silent,
        )
        .expect("fit");
    assert_eq!(model.validation().n(), tuning.n_rows());
}

#[test]
fn every_family_trains_saves_and_predicts_on_its_own() {
    let table = Table::read(&data("wine.csv"), ReadOptions::default()).expect("read");
    let dir = tempfile::tempdir().expect("tempdir");
    for family in ["linear", "knn", "gbdt", "hist_gbdt", "forest", "mlp"] {
        let model = quick("cultivar")
            .families([family])
            .fit(&table)
            .expect("fit");
        let members = model.manifest.members();
        assert!(members.iter().all(|m| m.family == family), "{members:?}");
        assert!(model.leaderboard().iter().all(
            |r| [family, "ensemble", "bagged", "refit_full"].contains(&r.trial.family.as_str())
        ));
        let Metrics::Classification(report) = &model.validation().metrics else {
            panic!("classification metrics expected");
        };
        assert!(report.accuracy > 0.8, "{family}: {}", report.accuracy);
        let path = dir.path().join(family);
        model.save(&path).expect("save");
        let loaded = TabularModel::load(&path).expect("load");
        assert_eq!(
            model.predict(&table).expect("predict"),
            loaded.predict(&table).expect("predict"),
            "{family}"
        );
    }
    // A folder whose pipeline makes fewer features than its models read (files mixed up or
    // edited) is refused on load, naming the member and both widths, instead of misread.
    let iris = quick("species")
        .families(["linear"])
        .bag_folds(0)
        .fit_path(&data("iris.csv"))
        .expect("fit iris");
    let iris_path = dir.path().join("iris");
    iris.save(&iris_path).expect("save iris");
    let narrow = std::fs::read(iris_path.join("pipeline.json")).expect("read pipeline");
    for family in ["linear", "knn", "gbdt", "hist_gbdt", "forest", "mlp"] {
        let path = dir.path().join(family);
        for entry in std::fs::read_dir(&path).expect("read model folder") {
            let file = entry.expect("entry").path();
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with("pipeline") && name.ends_with(".json") {
                std::fs::write(&file, &narrow).expect("swap pipeline");
            }
        }
        let err = TabularModel::load(&path).expect_err("mismatched pipeline");
        let message = err.to_string();
        assert!(
            message.contains(&format!("the {family} model reads"))
                && message.contains("but its pipeline"),
            "{family}: {message}"
        );
    }
    let err = quick("cultivar")
        .families(["bayes"])
        .fit(&table)
        .expect_err("unknown family");
    assert!(
        err.to_string().contains("unknown model family `bayes`"),
        "{err}"
    );
}

#[test]
fn the_search_explores_features_and_hyper_parameters_and_keeps_the_best() {
    let table = Table::read(&data("breast_cancer.csv"), ReadOptions::default()).expect("read");
    let model = quick("diagnosis")
        .families(["gbdt"])
        .fit(&table)
        .expect("fit");
    let board: Vec<_> = model
        .leaderboard()
        .into_iter()
        .filter(|r| r.trial.family == "gbdt")
        .collect();
    assert!(board.len() > 5, "the search went past the default point");
    let points: std::collections::HashSet<String> = board
        .iter()
        .map(|r| format!("{:?}", r.trial.params))
        .collect();
    assert_eq!(points.len(), board.len(), "no point is tried twice");
    // 30 columns: feature selection is part of the search.
    assert!(
        board
            .iter()
            .any(|r| r.trial.params.get("keep_features").and_then(|v| v.as_str()) != Some("1.0")),
        "{board:?}"
    );
    let best = board[0].outcome.score.expect("best scored");
    let chosen = chosen_row(&model).outcome.score.expect("chosen scored");
    if ["bagged", "refit_full"].contains(&model.manifest.family.as_str()) {
        // Scored out of fold on every row, not on the search's validation rows.
        assert!(chosen > 0.9, "{chosen}");
    } else if model.manifest.family == "ensemble" {
        assert!(
            chosen > best,
            "an ensemble is kept only when it beats the best model"
        );
    } else {
        assert_eq!(chosen, best, "the best trial is the model");
    }
}

/// The leaderboard row of the configuration a model chose.
fn chosen_row(model: &TabularModel) -> exeml::core::TrialRecord {
    model
        .manifest
        .leaderboard
        .iter()
        .find(|r| {
            r.trial.family == model.manifest.family && r.trial.params == model.manifest.params
        })
        .cloned()
        .expect("the chosen configuration is in the leaderboard")
}

#[test]
fn a_size_limit_excludes_models_that_store_the_training_rows() {
    // k-nearest neighbours saves every training row (455 × 30 numbers, > 100 kB); a linear
    // model saves 31 coefficients. Sizes are exact, so this exclusion is deterministic.
    let table = Table::read(&data("breast_cancer.csv"), ReadOptions::default()).expect("read");
    let limit = 0.05;
    let model = quick("diagnosis")
        .time_limit(Duration::from_secs(10))
        .families(["knn", "linear"])
        .max_model_mb(limit)
        .fit(&table)
        .expect("fit");
    let members = model.manifest.members();
    assert!(members.iter().all(|m| m.family == "linear"), "{members:?}");
    assert_eq!(model.manifest.lineage.constraints.max_model_mb, Some(limit));
    let board = &model.manifest.leaderboard;
    let knn: Vec<_> = board.iter().filter(|r| r.trial.family == "knn").collect();
    assert!(!knn.is_empty(), "knn was tried: {board:#?}");
    for row in board.iter().filter(|r| r.outcome.score.is_some()) {
        let size = row
            .outcome
            .size_mb
            .expect("every trained trial is measured");
        let excluded = row
            .outcome
            .note
            .as_deref()
            .is_some_and(|n| n.starts_with("excluded: size"));
        assert_eq!(excluded, size > limit, "{row:#?}");
    }
    assert!(knn.iter().all(|r| r.outcome.note.is_some()), "{knn:#?}");
    let chosen = chosen_row(&model);
    assert!(chosen.outcome.note.is_none() && chosen.outcome.size_mb.expect("measured") <= limit);

    // The saved folder is what was measured (besides the manifest's metadata).
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("m");
    model.save(&folder).expect("save");
    let saved = exeml::core::constraints::folder_megabytes(&folder).expect("size");
    let manifest = std::fs::metadata(folder.join("manifest.json"))
        .expect("manifest")
        .len();
    let files = saved - manifest as f64 / 1e6;
    assert!(
        (files - chosen.outcome.size_mb.expect("measured")).abs() < 1e-3,
        "saved {files} MB"
    );
}

#[test]
fn a_latency_limit_is_met_by_the_returned_model_and_recorded() {
    let table = Table::read(&data("wine.csv"), ReadOptions::default()).expect("read");
    let free = quick("cultivar")
        .time_limit(Duration::from_secs(10))
        .fit(&table)
        .expect("fit");
    let latencies: Vec<f64> = free
        .manifest
        .leaderboard
        .iter()
        .filter_map(|r| r.outcome.latency_ms)
        .collect();
    assert!(!latencies.is_empty() && latencies.iter().all(|&ms| ms > 0.0));
    // Between the fastest and the slowest trial of the free run.
    let (fastest, slowest) = latencies
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let limit = (fastest * slowest).sqrt();
    let model = quick("cultivar")
        .time_limit(Duration::from_secs(10))
        .max_latency_ms(limit)
        .fit(&table)
        .expect("fit");
    for row in model
        .manifest
        .leaderboard
        .iter()
        .filter(|r| r.outcome.score.is_some())
    {
        let ms = row.outcome.latency_ms.expect("measured");
        let excluded = row
            .outcome
            .note
            .as_deref()
            .is_some_and(|n| n.starts_with("excluded"));
        assert_eq!(excluded, ms > limit, "{row:#?}");
    }
    assert!(chosen_row(&model).outcome.latency_ms.expect("measured") <= limit);

    // Nothing predicts a row in a nanosecond: a typed error says what came closest.
    let err = quick("cultivar")
        .time_limit(Duration::from_secs(5))
        .families(["linear"])
        .max_latency_ms(1e-6)
        .fit(&table)
        .expect_err("impossible limit");
    let text = err.to_string();
    assert!(matches!(err, Error::InvalidParameter { .. }), "{text}");
    assert!(
        text.contains("max_latency_ms") && text.contains("the fastest took"),
        "{text}"
    );
}

/// Diabetes and an `accuracy_first` model of it, trained once for the tests that read it.
fn diabetes_ensemble() -> (Table, &'static TabularModel) {
    static MODEL: std::sync::OnceLock<TabularModel> = std::sync::OnceLock::new();
    let table = Table::read(&data("diabetes.csv"), ReadOptions::default()).expect("read");
    let model = MODEL.get_or_init(|| {
        quick("progression")
            .time_limit(Duration::from_secs(10))
            .preference(exeml::Preference::AccuracyFirst)
            .bag_folds(0)
            .fit(&table)
            .expect("fit")
    });
    (table, model)
}

#[test]
fn an_ensemble_beats_its_members_on_validation_and_round_trips() {
    // Regression on diabetes: a linear model and boosted trees make different errors, so the
    // greedy ensemble lowers the validation error below the best single model's.
    let (table, model) = diabetes_ensemble();
    let members = model.manifest.members();
    assert_eq!(model.manifest.family, "ensemble", "{members:?}");
    assert!(members.len() >= 2, "{members:?}");
    let total: f64 = members.iter().map(|m| m.weight).sum();
    assert!((total - 1.0).abs() < 1e-9, "{members:?}");
    let board = &model.manifest.leaderboard;
    let ensemble = chosen_row(model);
    assert!(ensemble.outcome.note.is_none(), "{ensemble:#?}");
    let best_single = board
        .iter()
        .filter(|r| r.trial.family != "ensemble")
        .filter_map(|r| r.outcome.score)
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(ensemble.outcome.score.expect("scored") > best_single);
    let Metrics::Regression(report) = &model.validation().metrics else {
        panic!("regression metrics expected");
    };
    assert!((report.rmse + ensemble.outcome.score.expect("scored")).abs() < 1e-9);

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ensemble");
    model.save(&path).expect("save");
    assert!(path.join("member_1").is_dir());
    let loaded = TabularModel::load(&path).expect("load");
    assert_eq!(loaded.members().len(), members.len());
    assert_eq!(
        model.predict(&table).expect("predict"),
        loaded.predict(&table).expect("predict")
    );
}

#[test]
fn performance_first_returns_one_model_refitted_on_all_rows() {
    let table = Table::read(&data("iris.csv"), ReadOptions::default()).expect("read");
    let model = quick("species")
        .families(["knn"])
        .preference(exeml::Preference::PerformanceFirst)
        .fit(&table)
        .expect("fit");
    assert_eq!(model.manifest.family, "knn");
    assert_eq!(model.members().len(), 1);
    assert!(model.manifest.lineage.refit, "iris refits in no time");
    assert_eq!(model.manifest.lineage.rows, (120, 30));
    let exeml::tabular::family::Estimator::Knn(knn) = &model.members()[0].estimator else {
        panic!("a k-NN model expected");
    };
    assert_eq!(knn.n_points(), 150, "the refit stores every row");
}

#[test]
fn a_large_table_is_searched_on_a_sample_and_refitted_on_every_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = generated_table(
        dir.path(),
        "churn.csv",
        &exeml::demo_data::churn_csv(3000, 5),
    );
    let model = quick("churn")
        .families(["knn"])
        .preference(exeml::Preference::PerformanceFirst)
        .search_rows(600)
        .fit(&table)
        .expect("fit");
    let lineage = &model.manifest.lineage;
    assert_eq!(lineage.rows, (2400, 600));
    let (searched_train, searched_valid) = lineage.search_rows.expect("searched on a sample");
    assert!((590..=610).contains(&searched_train), "{searched_train}");
    assert_eq!(searched_valid, 600, "validation is below its own cap");
    assert!(lineage.refit, "a small table refits in no time");
    assert_eq!(lineage.refit_rows, Some(3000));
    let exeml::tabular::family::Estimator::Knn(knn) = &model.members()[0].estimator else {
        panic!("a k-NN model expected");
    };
    assert_eq!(
        knn.n_points(),
        3000,
        "the refit used every row, not the sample"
    );
    let Metrics::Classification(report) = &model.validation().metrics else {
        panic!("classification metrics expected");
    };
    assert!(report.accuracy > 0.6, "{}", report.accuracy);

    let whole = quick("churn")
        .families(["knn"])
        .preference(exeml::Preference::PerformanceFirst)
        .fit(&table)
        .expect("fit");
    assert_eq!(
        whole.manifest.lineage.search_rows, None,
        "small tables are searched whole"
    );
}

#[test]
fn a_manifest_whose_member_folder_escapes_the_model_is_refused() {
    let (_, model) = diabetes_ensemble();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m");
    model.save(&path).expect("save");
    let manifest_path = path.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).expect("read"))
            .expect("json");
    manifest["ensemble"][0]["folder"] = serde_json::json!("../elsewhere");
    std::fs::write(&manifest_path, manifest.to_string()).expect("write");
    let err = TabularModel::load(&path).expect_err("escaping folder");
    assert!(
        err.to_string().contains("ensemble member 0") && err.to_string().contains("../elsewhere"),
        "{err}"
    );
}

/// Save `model`, let `rewrite` turn the folder (and its parsed manifest) into what an older
/// format wrote, and check that the rewritten folder loads and predicts `table` alike.
fn assert_older_format_loads(
    model: &TabularModel,
    table: &Table,
    rewrite: impl FnOnce(&std::path::Path, &mut serde_json::Map<String, serde_json::Value>),
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m");
    model.save(&path).expect("save");
    let manifest_path = path.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).expect("read"))
            .expect("json");
    rewrite(&path, manifest.as_object_mut().expect("object"));
    std::fs::write(&manifest_path, manifest.to_string()).expect("write");
    let loaded = TabularModel::load(&path).expect("the older format loads");
    assert_eq!(
        model.predict(table).expect("predict"),
        loaded.predict(table).expect("predict")
    );
}

#[test]
fn a_model_saved_before_ensembles_still_loads() {
    let table = Table::read(&data("iris.csv"), ReadOptions::default()).expect("read");
    let model = quick("species")
        .preference(exeml::Preference::PerformanceFirst)
        .fit(&table)
        .expect("fit");
    // The layout of format 1: no `ensemble`, the only model in the folder itself.
    assert_older_format_loads(&model, &table, |_, manifest| {
        manifest.remove("ensemble");
        manifest.insert("format_version".into(), serde_json::json!(1));
    });
}

#[test]
fn tree_and_row_files_are_compressed_and_an_uncompressed_format_2_folder_still_loads() {
    let table = Table::read(&data("iris.csv"), ReadOptions::default()).expect("read");
    for family in ["forest", "gbdt", "hist_gbdt", "knn"] {
        let model = TabularPredictor::new("species")
            .time_limit(Duration::from_secs(5))
            .families([family])
            .bag_folds(0)
            .fit(&table)
            .expect("fit");
        // Format 2 wrote the same files uncompressed.
        assert_older_format_loads(&model, &table, |path, manifest| {
            let files: Vec<String> =
                serde_json::from_value(manifest["files"].clone()).expect("files");
            let packed: Vec<&String> = files.iter().filter(|f| f.ends_with(".zst")).collect();
            assert!(!packed.is_empty(), "{family}: {files:?}");
            for file in packed {
                let bytes = zstd::decode_all(
                    std::fs::File::open(path.join(file)).expect("open compressed file"),
                )
                .expect("zstd");
                assert!(
                    std::fs::metadata(path.join(file)).expect("meta").len() < bytes.len() as u64,
                    "{family}: {file} is not smaller compressed"
                );
                std::fs::write(path.join(file.trim_end_matches(".zst")), bytes).expect("write");
                std::fs::remove_file(path.join(file)).expect("remove");
            }
            let plain: Vec<&str> = files.iter().map(|f| f.trim_end_matches(".zst")).collect();
            manifest.insert("files".into(), serde_json::json!(plain));
            manifest.insert("format_version".into(), serde_json::json!(2));
        });
    }
}

#[test]
fn deterministic_runs_repeat_the_same_search_and_predictions() {
    let table = Table::read(&data("wine.csv"), ReadOptions::default()).expect("read");
    let fit = || {
        quick("cultivar")
            .time_limit(Duration::from_secs(120))
            .seed(3)
            .deterministic(true)
            .fit(&table)
            .expect("fit")
    };
    let (a, b) = (fit(), fit());
    for model in [&a, &b] {
        assert!(model.manifest.lineage.deterministic);
        assert!(
            !model.manifest.lineage.stopped_by_budget,
            "the search ended by itself"
        );
    }
    let trials = |m: &TabularModel| -> Vec<(String, String)> {
        m.manifest
            .leaderboard
            .iter()
            .map(|r| {
                (
                    r.trial.family.clone(),
                    serde_json::to_string(&r.trial.params).expect("json"),
                )
            })
            .collect()
    };
    assert_eq!(trials(&a), trials(&b));
    assert_eq!(a.manifest.ensemble, b.manifest.ensemble);
    assert_eq!(
        a.predict(&table).expect("predict"),
        b.predict(&table).expect("predict")
    );
}

#[test]
fn trials_fitted_side_by_side_are_distinct_recorded_in_order_and_repeatable() {
    let table = Table::read(&data("wine.csv"), ReadOptions::default()).expect("read");
    let fit = || {
        quick("cultivar")
            .time_limit(Duration::from_secs(120))
            .seed(3)
            .deterministic(true)
            .parallel_trials(3)
            .fit(&table)
            .expect("fit")
    };
    let (a, b) = (fit(), fit());
    assert_eq!(a.manifest.lineage.parallel_trials, Some(3));
    assert!(
        !a.manifest.lineage.stopped_by_budget,
        "the search ended by itself"
    );
    let searched: Vec<_> = a
        .manifest
        .leaderboard
        .iter()
        .filter(|r| {
            ["linear", "knn", "gbdt", "hist_gbdt", "forest", "mlp"]
                .contains(&r.trial.family.as_str())
        })
        .collect();
    assert!(searched.len() >= 9, "{}", searched.len());
    // Every trial is recorded once, in the order proposed, measured after its batch's fits.
    for (i, r) in searched.iter().enumerate() {
        assert_eq!(r.trial.id, i, "{:?}", r.trial);
        if r.outcome.score.is_some() {
            assert!(r.outcome.latency_ms.is_some_and(|ms| ms > 0.0), "{r:?}");
        }
    }
    // Fitted at the same time, the same seed still gives the same search and model.
    let params = |m: &TabularModel| -> Vec<String> {
        m.manifest
            .leaderboard
            .iter()
            .map(|r| serde_json::to_string(&r.trial).expect("json"))
            .collect()
    };
    assert_eq!(params(&a), params(&b));
    assert_eq!(
        a.predict(&table).expect("predict"),
        b.predict(&table).expect("predict")
    );
    // Sequential is the default of a deterministic run.
    let one = quick("cultivar")
        .time_limit(Duration::from_secs(5))
        .deterministic(true)
        .families(["linear"])
        .fit(&table)
        .expect("fit");
    assert_eq!(one.manifest.lineage.parallel_trials, None);
}

/// Write a generated CSV into `dir` and read it back as a table.
fn generated_table(dir: &std::path::Path, name: &str, csv: &str) -> Table {
    let path = dir.join(name);
    std::fs::write(&path, csv).expect("write");
    Table::read(&path, ReadOptions::default()).expect("read")
}

#[test]
fn the_booster_splits_categories_into_sets() {
    // Thirty cities, a third of them (scattered through the alphabet and the level order)
    // with a positive label; 5 % of labels flipped.
    let mut csv = String::from("city,amount,label\n");
    for i in 0..3000usize {
        let city = (i * 7) % 30;
        let positive = city % 3 == 1;
        let flipped = (i * 7919) % 100 < 5;
        let label = if positive != flipped { "yes" } else { "no" };
        csv.push_str(&format!("city{city},{},{label}\n", (i * 104_729) % 1000));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let table = generated_table(dir.path(), "cities.csv", &csv);
    let model = quick("label")
        .time_limit(Duration::from_secs(10))
        .families(["hist_gbdt"])
        .bag_folds(0)
        .fit(&table)
        .expect("fit");
    let sets = best_score_with(&model, "category_splits", "sets");
    assert!(sets > 0.93, "accuracy of set splits {sets}");
    let Metrics::Classification(report) = &model.validation().metrics else {
        panic!("classification metrics expected");
    };
    assert!(report.accuracy > 0.93, "{}", report.accuracy);
    assert_round_trips(&model, &table, dir.path());
}

/// The best validation score among the trials whose parameter `param` is `value`.
fn best_score_with(model: &TabularModel, param: &str, value: &str) -> f64 {
    model
        .manifest
        .leaderboard
        .iter()
        .filter(|r| r.trial.params.get(param).and_then(|v| v.as_str()) == Some(value))
        .filter_map(|r| r.outcome.score)
        .fold(f64::NEG_INFINITY, f64::max)
}

/// Save `model` under `dir`, load it back and check that it predicts `table` identically;
/// returns the saved folder.
fn assert_round_trips(
    model: &TabularModel,
    table: &Table,
    dir: &std::path::Path,
) -> std::path::PathBuf {
    let saved = dir.join("model");
    model.save(&saved).expect("save");
    let loaded = TabularModel::load(&saved).expect("load");
    assert_eq!(
        model.predict(table).expect("predict"),
        loaded.predict(table).expect("predict")
    );
    saved
}

/// A table whose label depends on a 200-level category (more levels than one-hot keeps) plus a
/// noise column: seeded, so the test is the same on every run.
fn many_level_csv(rows: usize) -> String {
    let mut csv = String::from("shop,noise,bought\n");
    let mut state: u64 = 42;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    for _ in 0..rows {
        let shop = (next() * 200.0) as usize;
        let rate = if shop % 2 == 0 { 0.9 } else { 0.1 };
        let bought = if next() < rate { "yes" } else { "no" };
        csv.push_str(&format!("s{shop:03},{:.3},{bought}\n", next()));
    }
    csv
}

#[test]
fn target_encoding_is_tried_and_wins_on_a_many_level_category() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = generated_table(dir.path(), "shops.csv", &many_level_csv(3000));
    let model = quick("bought")
        .families(["linear"])
        .fit(&table)
        .expect("fit");
    let one_hot = best_score_with(&model, "categories", "one_hot");
    let target = best_score_with(&model, "categories", "target");
    assert!(
        one_hot.is_finite() && target.is_finite(),
        "both encodings tried"
    );
    // Bayes accuracy is 0.9; one-hot of the 32 most frequent shops cannot get near it.
    assert!(
        target > 0.8 && target > one_hot + 0.1,
        "target {target}, one-hot {one_hot}"
    );
    let members = model.manifest.members();
    let heaviest = members
        .iter()
        .max_by(|a, b| a.weight.total_cmp(&b.weight))
        .expect("a member");
    assert_eq!(
        heaviest.params.get("categories").and_then(|v| v.as_str()),
        Some("target"),
        "{members:?}"
    );

    let saved = assert_round_trips(&model, &table, dir.path());
    let pipeline = std::fs::read_to_string(saved.join("pipeline.json")).expect("pipeline");
    assert!(
        pipeline.contains("\"target\""),
        "statistics saved with the model"
    );
}

#[test]
fn network_trials_clearly_worse_than_earlier_ones_are_stopped_early() {
    let table = Table::read(&data("diabetes.csv"), ReadOptions::default()).expect("read");
    let model = quick("progression")
        .families(["mlp"])
        .deterministic(true)
        .fit(&table)
        .expect("fit");
    let board = &model.manifest.leaderboard;
    let stopped: Vec<_> = board
        .iter()
        .filter(|r| {
            r.outcome
                .note
                .as_deref()
                .is_some_and(|n| n.starts_with("stopped early at step"))
        })
        .collect();
    assert!(!stopped.is_empty(), "{board:?}");
    // A stopped trial keeps its score (the search learns from it) and never beats the best.
    let best = model.leaderboard()[0].outcome.score.expect("best");
    assert!(stopped
        .iter()
        .all(|r| r.outcome.score.is_some_and(|s| s < best)));
}

#[test]
fn the_network_embeds_categories_by_default_and_the_model_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = generated_table(dir.path(), "shops.csv", &many_level_csv(3000));
    let model = quick("bought")
        .families(["mlp"])
        .preference(exeml::Preference::PerformanceFirst)
        .time_limit(Duration::from_secs(8))
        .fit(&table)
        .expect("fit");
    let first = &model.manifest.leaderboard[0];
    assert_eq!(
        first
            .trial
            .params
            .get("categories")
            .and_then(|v| v.as_str()),
        Some("embedding")
    );
    let embedded = first.outcome.score.expect("scored");
    // 200 shops, half buying 90 % of the time: an embedding per shop gets close to 0.9.
    assert!(embedded > 0.8, "{embedded}");
    assert_round_trips(&model, &table, dir.path());
}

/// Reviews whose label is in a word pair: "not good" is negative, "good" after any other word
/// positive, and both classes use the same words ("not" appears elsewhere in positive ones).
fn reviews_csv(rows: usize) -> String {
    let filler = [
        "the", "food", "was", "service", "really", "place", "very", "and",
    ];
    let mut csv = String::from("stars,review,label\n");
    let mut state: u64 = 7;
    let mut next = move |n: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        ((state >> 33) % n as u64) as usize
    };
    for _ in 0..rows {
        let positive = next(2) == 0;
        let mut words: Vec<&str> = (0..4).map(|_| filler[next(filler.len())]).collect();
        if positive {
            words.insert(next(3), "not");
            words.push("really");
            words.push("good");
        } else {
            words.push("not");
            words.push("good");
            words.insert(next(3), "really");
        }
        let label = if positive { "pos" } else { "neg" };
        csv.push_str(&format!("{},{},{label}\n", next(5) + 1, words.join(" ")));
    }
    csv
}

#[test]
fn tf_idf_of_word_pairs_is_searched_for_text_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = generated_table(dir.path(), "reviews.csv", &reviews_csv(600));
    let model = quick("label")
        .families(["linear"])
        .fit(&table)
        .expect("fit");
    let hashed = best_score_with(&model, "text", "hashed");
    let tfidf = best_score_with(&model, "text", "tfidf");
    assert!(
        tfidf > 0.95 && tfidf > hashed + 0.1,
        "tfidf {tfidf}, hashed {hashed}"
    );
    assert_round_trips(&model, &table, dir.path());
}

#[test]
fn small_tables_are_bagged_and_scored_out_of_fold_on_every_row() {
    let table = Table::read(&data("breast_cancer.csv"), ReadOptions::default()).expect("read");
    // Deterministic: the fold fits are sized by counts, so a loaded machine cannot make them
    // look unaffordable.
    let model = quick("diagnosis")
        .families(["linear", "gbdt"])
        .deterministic(true)
        .refit_full(false)
        .fit(&table)
        .expect("fit");
    let lineage = &model.manifest.lineage;
    assert_eq!(lineage.bagged_folds, Some(5), "{:?}", model.manifest.family);
    assert!(!lineage.refit, "the fold fits replace the refit");
    assert_eq!(model.manifest.family, "bagged");
    let members = model.manifest.members();
    let total: f64 = members.iter().map(|m| m.weight).sum();
    assert!((total - 1.0).abs() < 1e-9, "{members:?}");
    for fold in 0..5 {
        assert!(members.iter().any(|m| m.fold == Some(fold)), "{members:?}");
    }
    // Every row scored by the fits that did not see it.
    assert_eq!(model.validation().n(), table.n_rows());
    let Metrics::Classification(report) = &model.validation().metrics else {
        panic!("classification metrics expected");
    };
    assert!(report.accuracy > 0.93, "{}", report.accuracy);
    let row = chosen_row(&model);
    assert_eq!(row.trial.family, "bagged");
    // The best model of each family was bagged and scored out of fold, chosen or not.
    let considered = row.trial.params["out_of_fold"].as_str().unwrap_or_default();
    assert!(
        considered.contains("linear#") && considered.contains("gbdt#"),
        "{considered}"
    );
    assert!(
        model.summary().contains("5-fold bagged"),
        "{}",
        model.summary()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bagged");
    model.save(&path).expect("save");
    let loaded = TabularModel::load(&path).expect("load");
    assert_eq!(loaded.members().len(), members.len());
    assert_eq!(
        model.predict(&table).expect("predict"),
        loaded.predict(&table).expect("predict")
    );
    // Every saved pipeline is read by some fit (those of dropped configurations are not kept).
    let saved = loaded.manifest.members();
    let read: std::collections::HashSet<&str> = saved.iter().map(|m| m.pipeline.as_str()).collect();
    assert_eq!(read.len(), loaded.pipelines().len(), "{saved:?}");

    // A bagged parent's configuration is tried once, first.
    let child = quick("diagnosis")
        .families(["linear", "gbdt"])
        .bag_folds(0)
        .warm_start("bagged-parent", &loaded)
        .fit(&table)
        .expect("fit");
    assert_eq!(child.manifest.lineage.bagged_folds, None);
    let first = &child.manifest.leaderboard[0].trial;
    assert_eq!(first.params, members[0].params);
    let tried_twice = child.manifest.leaderboard[1..]
        .iter()
        .any(|r| r.trial.family == first.family && r.trial.params == first.params);
    assert!(
        !tried_twice,
        "the k fits of one configuration are one configuration"
    );
}

#[test]
fn a_bagged_model_is_refitted_on_all_rows_by_default() {
    let table = Table::read(&data("breast_cancer.csv"), ReadOptions::default()).expect("read");
    let model = quick("diagnosis")
        .families(["linear", "gbdt"])
        .deterministic(true)
        .fit(&table)
        .expect("fit");
    let lineage = &model.manifest.lineage;
    assert_eq!(model.manifest.family, "refit_full");
    assert_eq!(lineage.refit_of_folds, Some(5));
    assert_eq!(lineage.bagged_folds, None);
    assert!(lineage.refit);
    assert_eq!(lineage.refit_rows, Some(table.n_rows()));
    // The out-of-fold metrics of the bagged model it comes from, over every row.
    assert_eq!(model.validation().n(), table.n_rows());
    let row = chosen_row(&model);
    assert_eq!(row.trial.family, "refit_full");
    let bagged = model
        .manifest
        .leaderboard
        .iter()
        .find(|r| r.trial.family == "bagged")
        .expect("the bagged model's row");
    // The same configurations and weights as the bagged model, one fit each.
    assert_eq!(row.trial.params["members"], bagged.trial.params["members"]);
    assert_eq!(row.outcome.score, bagged.outcome.score);
    let members = model.manifest.members();
    let configs = bagged.trial.params["members"]
        .as_str()
        .unwrap_or_default()
        .split(" + ")
        .count();
    assert_eq!(members.len(), configs, "{members:?}");
    assert!(members.iter().all(|m| m.fold.is_none()), "{members:?}");
    let total: f64 = members.iter().map(|m| m.weight).sum();
    assert!((total - 1.0).abs() < 1e-9, "{members:?}");
    assert!(
        model.summary().contains("refitted on all rows"),
        "{}",
        model.summary()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    model.save(&dir.path().join("refit")).expect("save");
    let loaded = TabularModel::load(&dir.path().join("refit")).expect("load");
    assert_eq!(
        model.predict(&table).expect("predict"),
        loaded.predict(&table).expect("predict")
    );
    let Metrics::Classification(report) = &loaded.evaluate(&table).expect("evaluate").metrics
    else {
        panic!("classification metrics expected");
    };
    assert!(report.accuracy > 0.95, "{}", report.accuracy);
}

/// The bagged model's leaderboard row.
fn bagged_row(model: &TabularModel) -> exeml::core::TrialRecord {
    model
        .manifest
        .leaderboard
        .iter()
        .find(|r| r.trial.family == "bagged")
        .cloned()
        .expect("the bagged model's row")
}

#[test]
fn a_stacking_layer_is_kept_when_it_beats_the_weighted_average_out_of_fold() {
    let table = Table::read(&data("wine.csv"), ReadOptions::default()).expect("read");
    let stacked = |refit: bool| {
        quick("cultivar")
            .preference(exeml::Preference::AccuracyFirst)
            .deterministic(true)
            .refit_full(refit)
            .fit(&table)
            .expect("fit")
    };
    let model = stacked(false);
    let described = model.manifest.stacker.clone().expect("a stacker on wine");
    // On wine its cross-validated log loss is about half the weighted average's.
    assert!(
        described.cv_loss < 0.8 * described.blend_cv_loss,
        "{described:?}"
    );
    let stacker = model.stacker().expect("the fitted stacker");
    assert_eq!(stacker.inputs(), described.inputs);
    let members = model.manifest.members();
    for input in 0..described.inputs {
        let fits = members.iter().filter(|m| m.input == Some(input)).count();
        assert_eq!(fits, 5, "each input averages its 5 fold fits: {members:?}");
    }
    // The validation metrics are the stacker's cross-validated predictions of every row.
    assert_eq!(model.validation().n(), table.n_rows());
    let Metrics::Classification(report) = &model.validation().metrics else {
        panic!("classification metrics expected");
    };
    assert!(report.accuracy > 0.95, "{}", report.accuracy);
    assert!(
        model.summary().contains("5-fold bagged"),
        "{}",
        model.summary()
    );
    assert!(
        model.summary().contains("stacked by"),
        "{}",
        model.summary()
    );
    let row = bagged_row(&model);
    let account = row.trial.params["stacking"].as_str().unwrap_or_default();
    assert!(account.contains("cross-validated loss"), "{account}");
    assert!(!account.contains("not used"), "{account}");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stacked");
    model.save(&path).expect("save");
    assert!(path.join("stacker").join("stacker.safetensors").is_file());
    let loaded = TabularModel::load(&path).expect("load");
    assert_eq!(loaded.manifest.stacker, model.manifest.stacker);
    assert_eq!(
        model.predict(&table).expect("predict"),
        loaded.predict(&table).expect("predict")
    );

    // A member that feeds an input the stacker does not have is refused by name.
    let manifest_path = path.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).expect("manifest");
    let mut value: serde_json::Value = serde_json::from_str(&text).expect("json");
    value["ensemble"][0]["input"] = serde_json::json!(99);
    std::fs::write(&manifest_path, value.to_string()).expect("write");
    let err = TabularModel::load(&path).expect_err("a stray input");
    assert!(err.to_string().contains("stacker input 99"), "{err}");

    // Refitted on all rows, each configuration is one fit feeding its own input.
    let refit = stacked(true);
    assert_eq!(refit.manifest.family, "refit_full");
    let described = refit.manifest.stacker.clone().expect("a stacker");
    let members = refit.manifest.members();
    assert_eq!(members.len(), described.inputs, "{members:?}");
    assert!(members
        .iter()
        .all(|m| m.fold.is_none() && m.input.is_some()));
    assert!(
        refit.summary().contains("refitted on all rows"),
        "{}",
        refit.summary()
    );
    let path = dir.path().join("stacked-refit");
    refit.save(&path).expect("save");
    assert_eq!(
        refit.predict(&table).expect("predict"),
        TabularModel::load(&path)
            .expect("load")
            .predict(&table)
            .expect("predict")
    );

    // Turned off, the weighted average ships and nothing is tried.
    let plain = quick("cultivar")
        .preference(exeml::Preference::AccuracyFirst)
        .deterministic(true)
        .stack(false)
        .fit(&table)
        .expect("fit");
    assert!(plain.manifest.stacker.is_none());
    assert!(plain.members().iter().all(|m| m.input.is_none()));
    assert!(!bagged_row(&plain).trial.params.contains_key("stacking"));
}
