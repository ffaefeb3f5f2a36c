"""Shared fixtures: the real data sets of the repository's tests/data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"


@pytest.fixture(scope="session")
def iris_path() -> Path:
    return DATA / "iris.csv"


@pytest.fixture(scope="session")
def breast_cancer_path() -> Path:
    return DATA / "breast_cancer.csv"


@pytest.fixture(scope="session")
def diabetes_path() -> Path:
    return DATA / "diabetes.csv"


@pytest.fixture(scope="session")
def iris_split(iris_path: Path):
    """A fixed stratified 75/25 split of iris as pandas frames."""
    import pandas as pd

    frame = pd.read_csv(iris_path)
    test = frame.groupby("species", group_keys=False).sample(frac=0.25, random_state=0)
    train = frame.drop(test.index)
    return train.reset_index(drop=True), test.reset_index(drop=True)


@pytest.fixture(scope="session")
def iris_model(iris_split):
    """One model trained once and shared by the read-only tests."""
    import exeml

    train, _ = iris_split
    return exeml.TabularPredictor(label="species", seed=0, verbosity=0).fit(train, time_limit=20)
