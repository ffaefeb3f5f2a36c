"""The project workspace from Python: import → check → publish → train → versions → load,
shared with the command line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import exeml


def test_project_workflow(iris_path: Path, tmp_path: Path):
    home = tmp_path / "ws"
    project = exeml.Project("iris-flowers", home=home)
    assert project.info()["task"] == "tabular"
    project.import_table(iris_path, label="species")
    report = project.check()
    assert not [f for f in report["findings"] if f["severity"] == "error"]
    version = project.publish(train_ratio=0.75, seed=1)
    assert version["name"] == "V001"
    first = project.train(time_limit=20, verbosity=0)
    assert first["version"] == "0.0.1"
    assert first["dataset_version"] == "V001"
    second = project.train(time_limit=20, parent="0.0.1", verbosity=0)
    assert second["version"] == "0.0.2" and second["parent"] == "0.0.1"
    assert [m["version"] for m in project.model_versions()] == ["0.0.1", "0.0.2"]
    assert [v["name"] for v in project.dataset_versions()] == ["V001"]
    model = project.load_model("0.0.2", verbosity=0)
    rows = pd.read_csv(iris_path)
    assert (model.predict(rows) == rows["species"]).mean() > 0.9
    assert [p["name"] for p in exeml.projects(home)] == ["iris-flowers"]
    reopened = exeml.Project("iris-flowers", home=home, create=False)
    assert reopened.model_versions()[-1]["version"] == "0.0.2"
    assert "iris-flowers" in repr(reopened)


def test_missing_project_and_version(tmp_path: Path):
    with pytest.raises(exeml.NotFoundError, match="ghost"):
        exeml.Project("ghost", home=tmp_path, create=False)
    project = exeml.Project("empty", home=tmp_path)
    with pytest.raises(exeml.NotFoundError, match="0.0.9"):
        project.load_model("0.0.9")


def test_invalid_project_name(tmp_path: Path):
    with pytest.raises(exeml.InvalidParameterError):
        exeml.Project("bad name/../x", home=tmp_path)
