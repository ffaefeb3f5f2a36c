"""Errors are typed, carry the Rust message, subclass the right builtin, and never panic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import exeml


def test_the_hierarchy_subclasses_builtins():
    assert issubclass(exeml.DataError, exeml.ExemlError)
    assert issubclass(exeml.DataError, ValueError)
    assert issubclass(exeml.DataCheckError, exeml.DataError)
    assert issubclass(exeml.NotFoundError, FileNotFoundError)
    assert issubclass(exeml.InvalidParameterError, ValueError)
    assert issubclass(exeml.AlreadyExistsError, FileExistsError)
    assert issubclass(exeml.BudgetExhaustedError, TimeoutError)
    assert issubclass(exeml.NotCompiledError, NotImplementedError)


def test_missing_file_is_not_found(tmp_path: Path):
    with pytest.raises(exeml.NotFoundError, match="nope.csv"):
        exeml.TabularPredictor(verbosity=0).fit(tmp_path / "nope.csv", time_limit=5)


def test_ragged_csv_names_the_line(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,label\n1,2,x\n3,4\n")
    with pytest.raises(exeml.DataError, match=r"bad\.csv.*line 3"):
        exeml.TabularPredictor(verbosity=0).fit(bad, time_limit=5)


def test_too_few_rows_fail_the_checks():
    frame = pd.DataFrame({"a": np.arange(10.0), "b": np.arange(10.0) * 2, "y": ["p", "q"] * 5})
    with pytest.raises(exeml.DataCheckError, match="rows"):
        exeml.TabularPredictor(label="y", verbosity=0).fit(frame, time_limit=5)


def test_unknown_label_column(iris_path: Path):
    with pytest.raises(exeml.DataError, match="no column `colour`"):
        exeml.TabularPredictor(label="colour", verbosity=0).fit(iris_path, time_limit=5)


def test_unknown_label_at_evaluation(iris_model, iris_split):
    _, test = iris_split
    test = test.copy()
    test.loc[0, "species"] = "daisy"
    with pytest.raises(exeml.DataError, match="unknown label `daisy`"):
        iris_model.evaluate(test)


def test_predicting_without_a_needed_column(iris_model, iris_split):
    _, test = iris_split
    with pytest.raises(exeml.DataError, match="petal_length_cm"):
        iris_model.predict(test.drop(columns=["petal_length_cm"]))


def test_invalid_parameters():
    with pytest.raises(exeml.InvalidParameterError, match="preference"):
        exeml.TabularPredictor(preference="fastest")
    with pytest.raises(exeml.InvalidParameterError, match="train_ratio"):
        exeml.TabularPredictor(train_ratio=1.5)
    with pytest.raises(exeml.InvalidParameterError, match="time_limit"):
        exeml.TabularPredictor(verbosity=0).fit({"a": [1.0]}, time_limit=-1)
    with pytest.raises(exeml.InvalidParameterError, match="not fitted"):
        exeml.TabularPredictor().predict({"a": [1.0]})


def test_loading_a_folder_that_is_not_a_model(tmp_path: Path):
    with pytest.raises(exeml.FormatError, match="not an exeml model"):
        exeml.load(tmp_path)


def test_newer_format_is_refused(iris_model, tmp_path: Path):
    import json

    iris_model.save(tmp_path / "m")
    manifest = tmp_path / "m" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["format_version"] = 99
    manifest.write_text(json.dumps(data))
    with pytest.raises(exeml.FormatError, match="format_version 99"):
        exeml.load(tmp_path / "m")


def test_columns_of_different_lengths_are_a_data_error():
    from exeml import _exeml

    with pytest.raises(exeml.DataError, match="has 1 values"):
        _exeml.fit_tabular(
            columns=[
                ("a", "number", np.zeros(3).tobytes()),
                ("b", "text", ["x"]),
            ]
        )


def test_save_over_a_file_fails_cleanly(iris_model, tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(exeml.ExemlError):
        iris_model.save(blocker / "model")
    assert blocker.read_text() == "not a folder"
