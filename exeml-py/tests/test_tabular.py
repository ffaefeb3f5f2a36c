"""TabularPredictor end to end on real data: fit, predict, evaluate, leaderboard, importance,
save/load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import exeml


def test_fit_predict_evaluate_on_iris(iris_model, iris_split):
    _, test = iris_split
    predicted = iris_model.predict(test)
    assert isinstance(predicted, pd.Series)
    assert list(predicted.index) == list(test.index)
    assert predicted.name == "species"
    accuracy = float((predicted == test["species"]).mean())
    assert accuracy >= 0.9
    evaluation = iris_model.evaluate(test)
    assert isinstance(evaluation, exeml.Evaluation)
    assert evaluation["n"] == len(test)
    assert math.isclose(evaluation["accuracy"], accuracy)
    assert set(evaluation["per_class"]) == {"setosa", "versicolor", "virginica"}
    matrix = evaluation.confusion_matrix["matrix"]
    assert sum(map(sum, matrix)) == len(test)
    assert "<table" in evaluation._repr_html_()
    frame = evaluation.confusion_matrix_frame()
    assert list(frame.index) == ["setosa", "versicolor", "virginica"]
    per_class = evaluation.per_class_frame()
    assert list(per_class.index) == ["setosa", "versicolor", "virginica"]
    assert {"precision", "recall", "f1", "support"} <= set(per_class.columns)
    assert per_class["support"].sum() == len(test)
    bad = evaluation.bad_cases_frame()
    assert list(bad.columns) == ["id", "true", "predicted", "score"]
    assert len(bad) == len(evaluation.get("bad_cases") or [])
    assert (bad["true"] != bad["predicted"]).all()


def test_confusion_matrix_plot(iris_model, iris_split):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    _, test = iris_split
    ax = iris_model.evaluate(test).plot_confusion_matrix()
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"
    assert len(ax.texts) == 9
    assert sum(int(t.get_text()) for t in ax.texts) == len(test)


def test_predict_proba_rows_sum_to_one(iris_model, iris_split):
    _, test = iris_split
    proba = iris_model.predict_proba(test)
    assert list(proba.columns) == ["setosa", "versicolor", "virginica"]
    np.testing.assert_allclose(proba.to_numpy().sum(axis=1), 1.0, atol=1e-9)
    assert list(proba.idxmax(axis=1)) == list(iris_model.predict(test))


def test_leaderboard_summary_and_manifest(iris_model):
    board = iris_model.leaderboard()
    assert len(board) >= 2
    assert board[0]["score"] >= board[-1]["score"] or board[-1]["score"] is None
    assert {"model", "score", "metric", "fit_secs", "predict_secs", "params"} <= set(board[0])
    assert board.to_pandas().shape[0] == len(board)
    assert "leaderboard" in board._repr_html_()
    manifest = iris_model.manifest()
    assert manifest["format"] == "exeml-model"
    assert manifest["family"] == board[0]["model"]
    assert "validation accuracy" in iris_model.summary()
    assert "<table" in iris_model._repr_html_()
    assert "species" in repr(iris_model)


def test_feature_importance_ranks_petals_first(iris_model, iris_split):
    _, test = iris_split
    importance = iris_model.feature_importance(test, shuffles=5)
    assert len(importance) == 4
    assert importance[0]["column"].startswith("petal")
    assert importance[0]["importance"] > importance[-1]["importance"]
    assert importance.to_pandas().index.name == "column"


def test_speed_times_single_rows_and_a_batch(iris_model, iris_split):
    _, test = iris_split
    report = iris_model.speed(test, runs=30, batch_size=20, batch_runs=2)
    assert report["single_runs"] == 30 and report["inputs"] == 30
    assert report["batch_size"] == 20 and report["batch_runs"] == 2
    assert 0 < report["single_ms_median"] <= report["single_ms_p90"]
    assert report["batch_per_second"] > 0
    with pytest.raises(exeml.InvalidParameterError, match="single_runs"):
        iris_model.speed(test, runs=0)


def test_save_and_load_round_trip(iris_model, iris_split, tmp_path: Path):
    _, test = iris_split
    target = tmp_path / "iris-model"
    iris_model.save(target)
    assert (target / "manifest.json").is_file()
    loaded = exeml.load(target, verbosity=0)
    pd.testing.assert_frame_equal(loaded.predict_proba(test), iris_model.predict_proba(test))
    assert loaded.label == "species"


def test_fit_from_path_matches_fit_from_pandas(iris_path: Path):
    from_path = exeml.TabularPredictor(label="species", seed=3, verbosity=0).fit(
        iris_path, time_limit=20
    )
    from_frame = exeml.TabularPredictor(label="species", seed=3, verbosity=0).fit(
        pd.read_csv(iris_path), time_limit=20
    )
    assert from_path.manifest()["family"] == from_frame.manifest()["family"]
    assert from_path.manifest()["params"] == from_frame.manifest()["params"]
    rows = pd.read_csv(iris_path)
    np.testing.assert_allclose(
        from_path.predict_proba(rows).to_numpy(), from_frame.predict_proba(rows).to_numpy()
    )


def test_regression_on_diabetes(diabetes_path: Path):
    frame = pd.read_csv(diabetes_path)
    predictor = exeml.TabularPredictor(label="progression", seed=0, verbosity=0).fit(
        frame, time_limit=20
    )
    assert predictor.problem == "regression"
    values = predictor.predict(frame)
    assert values.dtype == np.float64
    evaluation = predictor.evaluate(frame)
    assert evaluation["rmse"] < frame["progression"].std()
    assert {"mae", "mse", "rmse", "r2"} <= set(evaluation)
    with pytest.raises(exeml.InvalidParameterError):
        predictor.predict_proba(frame)


def test_binary_with_integer_labels_predicts_integers(breast_cancer_path: Path):
    frame = pd.read_csv(breast_cancer_path)
    frame["diagnosis"] = (frame["diagnosis"] == "malignant").astype(int)
    predictor = exeml.TabularPredictor(label="diagnosis", verbosity=0).fit(frame, time_limit=20)
    assert predictor.problem == "binary"
    assert predictor.class_labels == [0, 1]
    predicted = predictor.predict(frame.head(20))
    assert predicted.dtype.kind == "i"
    assert set(predicted) <= {0, 1}
    assert predictor.evaluate(frame)["roc_auc"] > 0.95


def test_tuning_data_is_used_for_validation(iris_split):
    train, test = iris_split
    predictor = exeml.TabularPredictor(label="species", verbosity=0).fit(
        train, tuning_data=test, time_limit=20
    )
    manifest = predictor.manifest()
    assert manifest["lineage"]["rows"] == [len(train), len(test)]
    assert predictor.validation()["n"] == len(test)


def test_warm_start_records_the_parent(iris_model, iris_split):
    train, _ = iris_split
    child = exeml.TabularPredictor(label="species", verbosity=0).fit(
        train, time_limit=20, warm_start=iris_model
    )
    parent = child.manifest()["lineage"]["parent"]
    assert parent.startswith("python:")
    first = child.leaderboard()
    assert any(row["model"] == iris_model.manifest()["family"] for row in first)


def test_same_seed_gives_identical_predictions(iris_split):
    train, test = iris_split

    def fit():
        return exeml.TabularPredictor(label="species", seed=7, verbosity=0).fit(train, time_limit=20)

    a, b = fit(), fit()
    pd.testing.assert_frame_equal(a.predict_proba(test), b.predict_proba(test))


def test_progress_prints_plain_lines_outside_jupyter(iris_split, capsys):
    train, _ = iris_split
    exeml.TabularPredictor(label="species", verbosity=1).fit(train, time_limit=10)
    err = capsys.readouterr().err
    assert "exeml: checking data" in err
    assert "validation accuracy" in err


def test_cli_and_python_give_the_same_model(iris_path: Path, tmp_path: Path):
    """The README's promise: the same data and seed give the model the CLI gives."""
    import subprocess
    import os

    exe = os.environ.get("EXEML_BIN")
    if not exe:
        pytest.skip("EXEML_BIN is not set (scripts/test.sh sets it)")
    out = tmp_path / "cli-model"
    subprocess.run(
        [exe, "train", "--task", "tabular", "--data", str(iris_path), "--label", "species", "--seed", "5",
         "--time-limit", "20s", "--out", str(out)],
        check=True, capture_output=True,
    )
    cli = exeml.load(out, verbosity=0)
    python = exeml.TabularPredictor(label="species", seed=5, verbosity=0).fit(iris_path, time_limit=20)
    assert cli.manifest()["family"] == python.manifest()["family"]
    assert cli.manifest()["params"] == python.manifest()["params"]
    rows = pd.read_csv(iris_path)
    np.testing.assert_allclose(cli.predict_proba(rows).to_numpy(), python.predict_proba(rows).to_numpy())
    assert json.dumps(cli.manifest()["columns"]) == json.dumps(python.manifest()["columns"])


@pytest.mark.parametrize("family", ["linear", "knn", "gbdt", "hist_gbdt", "forest", "mlp"])
def test_each_family_alone(iris_split, family):
    train, test = iris_split
    predictor = exeml.TabularPredictor(label="species", families=[family], verbosity=0).fit(
        train, time_limit=20
    )
    # Every trial is of the family; the final model may average several of them.
    assert {row["model"] for row in predictor.leaderboard()} - {"ensemble", "bagged", "refit_full"} == {family}
    assert {m["family"] for m in predictor.manifest()["ensemble"]} == {family}
    assert predictor.evaluate(test)["accuracy"] > 0.8


def test_unknown_family_is_an_invalid_parameter(iris_split):
    train, _ = iris_split
    with pytest.raises(exeml.InvalidParameterError, match="bayes"):
        exeml.TabularPredictor(label="species", families=["bayes"], verbosity=0).fit(train)


def test_deployment_limits_exclude_models_and_are_recorded(breast_cancer_path: Path):
    # k-nearest neighbours stores every training row (> 100 kB): a 50 kB limit excludes it.
    predictor = exeml.TabularPredictor(
        label="diagnosis", families=["knn", "linear"], verbosity=0
    ).fit(breast_cancer_path, time_limit=10, max_model_mb=0.05)
    assert {m["family"] for m in predictor.manifest()["ensemble"]} == {"linear"}
    assert predictor.manifest()["lineage"]["constraints"] == {"max_model_mb": 0.05}
    board = predictor.leaderboard()
    knn = [row for row in board if row["model"] == "knn"]
    assert knn and all(row["note"].startswith("excluded: size") for row in knn)
    assert all(row["latency_ms"] > 0 for row in board if row["score"] is not None)
    with pytest.raises(exeml.InvalidParameterError, match="max_latency_ms"):
        exeml.TabularPredictor(label="diagnosis", families=["linear"], verbosity=0).fit(
            breast_cancer_path, time_limit=5, max_latency_ms=1e-6
        )


def test_parallel_trials_fit_several_trials_at_a_time(iris_split):
    train, test = iris_split
    predictor = exeml.TabularPredictor(label="species", families=["linear", "knn"], verbosity=0)
    predictor.fit(train, time_limit=10, parallel_trials=2)
    assert predictor.manifest()["lineage"]["parallel_trials"] == 2
    assert (predictor.predict(test) == test["species"]).mean() > 0.8
    with pytest.raises(exeml.InvalidParameterError, match="parallel_trials"):
        predictor.fit(train, time_limit=5, parallel_trials=0)


def test_deterministic_fits_repeat_their_predictions(iris_split):
    train, test = iris_split

    def fit():
        return exeml.TabularPredictor(label="species", seed=5, verbosity=0).fit(
            train, time_limit=120, deterministic=True
        )

    a, b = fit(), fit()
    assert a.manifest()["lineage"]["deterministic"] is True
    assert a.manifest()["ensemble"] == b.manifest()["ensemble"]
    assert a.predict_proba(test).equals(b.predict_proba(test))


def test_search_rows_searches_on_a_sample_and_refits_on_every_row(breast_cancer_path):
    predictor = exeml.TabularPredictor(
        label="diagnosis", families=["knn"], preference="performance_first", verbosity=0
    ).fit(breast_cancer_path, time_limit=20, search_rows=200)
    lineage = predictor.manifest()["lineage"]
    searched_train, searched_valid = lineage["search_rows"]
    train_rows, valid_rows = lineage["rows"]
    assert 195 <= searched_train <= 205 < train_rows
    assert searched_valid == valid_rows
    assert lineage["refit"] is True
    with pytest.raises(exeml.InvalidParameterError, match="search_rows"):
        exeml.TabularPredictor(label="diagnosis", verbosity=0).fit(
            breast_cancer_path, time_limit=5, search_rows=10
        )


def test_predict_file_streams_csv_and_jsonl_with_bad_rows_on_the_side(iris_model, iris_split, tmp_path):
    _, test = iris_split
    rows = test.drop(columns=["species"])
    source = tmp_path / "rows.csv"
    text = rows.to_csv(index=False)
    # A row with too many fields: skipped with its reason, not fatal.
    source.write_text(text + "1,2,3,4,5,6\n")
    report = iris_model.predict_file(source, tmp_path / "out.csv", chunk_rows=7)
    assert report["inputs"] == len(rows) + 1
    assert report["predicted"] == len(rows)
    assert report["skipped"] == 1 and report["resumed_at"] == 0
    assert len(Path(report["errors_file"]).read_text().splitlines()) == 2  # header + the bad row
    written = pd.read_csv(tmp_path / "out.csv")
    assert list(written["id"]) == list(range(len(rows)))
    assert list(written["prediction"]) == list(iris_model.predict(rows))
    assert {"proba_setosa", "proba_versicolor", "proba_virginica"} <= set(written.columns)
    source.write_text(text)
    report = iris_model.predict_file(source, tmp_path / "out.jsonl")
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert report["skipped"] == 0 and report["errors_file"] is None
    assert len(lines) == len(rows)
    assert json.loads(lines[0])["id"] == 0


def test_predict_file_refuses_a_missing_input_by_name(iris_model, tmp_path):
    with pytest.raises(exeml.errors.ExemlError, match="nowhere.csv"):
        iris_model.predict_file(tmp_path / "nowhere.csv", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_bag_folds_bags_the_chosen_models_or_turns_bagging_off(breast_cancer_path: Path):
    # deterministic: the fold fits are sized by counts, so machine load cannot skip them.
    bagged = exeml.TabularPredictor(label="diagnosis", families=["linear"], verbosity=0).fit(
        breast_cancer_path, time_limit=10, bag_folds=3, deterministic=True, refit_full=False
    )
    manifest = bagged.manifest()
    assert manifest["lineage"]["bagged_folds"] == 3
    assert sorted({m["fold"] for m in manifest["ensemble"]}) == [0, 1, 2]
    assert bagged.validation()["n"] == 569  # out of fold, every row
    # By default (balance) the bagged configurations are refitted once each on all rows.
    refitted = exeml.TabularPredictor(label="diagnosis", families=["linear"], verbosity=0).fit(
        breast_cancer_path, time_limit=10, bag_folds=3, deterministic=True
    )
    lineage = refitted.manifest()["lineage"]
    assert lineage["refit_of_folds"] == 3 and lineage["refit_rows"] == 569
    assert {m.get("fold") for m in refitted.manifest()["ensemble"]} == {None}
    assert refitted.validation()["n"] == 569
    single = exeml.TabularPredictor(label="diagnosis", families=["linear"], verbosity=0).fit(
        breast_cancer_path, time_limit=10, bag_folds=0
    )
    assert "bagged_folds" not in single.manifest()["lineage"]


def test_stack_adds_a_stacking_layer_over_the_bagged_models(iris_path: Path):
    wine = iris_path.parent / "wine.csv"
    # On wine the stacker's cross-validated log loss is about half the weighted average's.
    stacked = exeml.TabularPredictor(
        label="cultivar", preference="accuracy_first", verbosity=0
    ).fit(wine, time_limit=20, deterministic=True, stack=True)
    manifest = stacked.manifest()
    stacker = manifest["stacker"]
    assert stacker["cv_loss"] < stacker["blend_cv_loss"]
    assert {m["input"] for m in manifest["ensemble"]} == set(range(stacker["inputs"]))
    assert "stacked by" in stacked.summary()
    plain = exeml.TabularPredictor(
        label="cultivar", preference="accuracy_first", verbosity=0
    ).fit(wine, time_limit=20, deterministic=True, stack=False)
    assert "stacker" not in plain.manifest()
