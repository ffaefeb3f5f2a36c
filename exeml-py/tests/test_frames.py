"""Every input kind gives the same model, and results come back in the input's kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import exeml


@pytest.fixture(scope="module")
def iris_frame(iris_path: Path) -> pd.DataFrame:
    return pd.read_csv(iris_path)


def _fit(data):
    return exeml.TabularPredictor(label="species", seed=1, verbosity=0).fit(data, time_limit=20)


def test_polars_and_arrow_and_dict_inputs_give_the_same_model(iris_frame):
    reference = _fit(iris_frame).predict_proba(iris_frame).to_numpy()
    for data in (
        pl.from_pandas(iris_frame),
        pa.Table.from_pandas(iris_frame),
        {c: iris_frame[c].to_numpy() for c in iris_frame.columns},
        iris_frame.to_dict(orient="records"),
    ):
        got = _fit(data).predict_proba(iris_frame).to_numpy()
        np.testing.assert_allclose(got, reference, err_msg=type(data).__name__)


def test_results_come_back_in_the_input_kind(iris_model, iris_split):
    _, test = iris_split
    features = test.drop(columns=["species"])
    as_polars = iris_model.predict(pl.from_pandas(features))
    assert isinstance(as_polars, pl.Series) and as_polars.name == "species"
    as_arrow = iris_model.predict(pa.Table.from_pandas(features))
    assert isinstance(as_arrow, pa.Array)
    proba = iris_model.predict_proba(pl.from_pandas(features))
    assert isinstance(proba, pl.DataFrame) and proba.columns == ["setosa", "versicolor", "virginica"]
    assert isinstance(iris_model.predict_proba(pa.Table.from_pandas(features)), pa.Table)
    as_numpy = iris_model.predict({c: features[c].to_numpy() for c in features.columns})
    assert isinstance(as_numpy, np.ndarray)
    assert list(as_numpy) == list(iris_model.predict(features))


def test_missing_values_categoricals_and_dates_in_every_library():
    rng = np.random.default_rng(0)
    n = 300
    tenure = rng.integers(1, 72, n).astype(float)
    plan = rng.choice(["basic", "plus", "pro"], n)
    signup = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D")
    churn = np.where((tenure < 12) & (plan == "basic"), "yes", "no")
    tenure[::17] = np.nan
    frame = pd.DataFrame(
        {
            "tenure": tenure,
            "plan": pd.Categorical(plan),
            "signup": signup,
            "active": rng.random(n) > 0.5,
            "seats": pd.array(rng.integers(1, 5, n), dtype="Int64"),
            "churn": churn,
        }
    )
    frame.loc[::13, "plan"] = None
    frame.loc[::11, "seats"] = pd.NA
    reference = _fit_churn(frame)
    manifest = reference.manifest()
    kinds = {c["name"]: c["kind"] for c in manifest["columns"]}
    assert kinds["signup"] in ("datetime", "time")
    assert kinds["plan"] == "categorical"
    for data in (pl.from_pandas(frame), pa.Table.from_pandas(frame)):
        other = _fit_churn(data)
        assert {c["name"]: c["kind"] for c in other.manifest()["columns"]} == kinds
        np.testing.assert_allclose(
            other.predict_proba(frame).to_numpy(), reference.predict_proba(frame).to_numpy()
        )
    assert reference.evaluate(frame)["accuracy"] > 0.9


def _fit_churn(data):
    return exeml.TabularPredictor(label="churn", seed=0, verbosity=0).fit(data, time_limit=20)


def test_a_two_dimensional_array_gets_generated_names(iris_frame):
    features = iris_frame.drop(columns=["species"]).to_numpy()
    data = {f"x{i}": features[:, i] for i in range(features.shape[1])}
    data["species"] = iris_frame["species"].to_numpy()
    predictor = _fit(data)
    assert isinstance(predictor.predict(features), np.ndarray)
    assert predictor.predict(features).shape == (len(features),)
