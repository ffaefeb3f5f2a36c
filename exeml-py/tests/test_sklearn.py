"""The scikit-learn estimators work in cross-validation and pipelines and pass sklearn's API
checks that apply to an AutoML estimator (the full suite trains on 30-row data sets, below
exeml's 100-row minimum)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks

from exeml.sklearn import ExemlClassifier, ExemlRegressor


def test_cross_val_score_on_iris():
    X, y = load_iris(return_X_y=True)
    scores = cross_val_score(ExemlClassifier(time_limit=10), X, y, cv=3)
    assert scores.shape == (3,)
    assert scores.mean() > 0.9


def test_in_a_pipeline_with_dataframes_and_string_labels():
    data = load_breast_cancer(as_frame=True)
    X = data.data
    y = pd.Series(np.where(data.target == 1, "benign", "malignant"))
    model = make_pipeline(StandardScaler().set_output(transform="pandas"), ExemlClassifier(time_limit=10))
    model.fit(X, y)
    predicted = model.predict(X)
    assert set(predicted) <= {"benign", "malignant"}
    assert (predicted == y).mean() > 0.9
    classifier = model[-1]
    assert list(classifier.classes_) == ["benign", "malignant"]
    assert classifier.n_features_in_ == X.shape[1]
    assert list(classifier.feature_names_in_) == list(X.columns)
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_integer_classes_come_back_as_given():
    X, y = load_iris(return_X_y=True)
    y = y * 10 + 3
    model = ExemlClassifier(time_limit=10).fit(X, y)
    assert list(model.classes_) == [3, 13, 23]
    assert set(model.predict(X)) <= {3, 13, 23}
    assert model.score(X, y) > 0.9


def test_regressor_scores_r2():
    X, y = load_diabetes(return_X_y=True)
    scores = cross_val_score(ExemlRegressor(time_limit=10), X, y, cv=3, scoring="r2")
    assert scores.mean() > 0.3


def test_params_round_trip_and_clone():
    model = ExemlClassifier(time_limit=5, preference="accuracy_first", seed=3)
    assert model.get_params()["preference"] == "accuracy_first"
    model.set_params(seed=4)
    assert clone(model).get_params()["seed"] == 4


def test_wrong_number_of_features_at_predict():
    X, y = load_iris(return_X_y=True)
    model = ExemlClassifier(time_limit=5).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :3])


@pytest.mark.parametrize(
    "check",
    [
        estimator_checks.check_no_attributes_set_in_init,
        estimator_checks.check_parameters_default_constructible,
        estimator_checks.check_get_params_invariance,
        estimator_checks.check_set_params,
        estimator_checks.check_estimators_unfitted,
        estimator_checks.check_estimator_repr,
        estimator_checks.check_estimator_cloneable,
        estimator_checks.check_estimator_tags_renamed,
        estimator_checks.check_valid_tag_types,
        estimator_checks.check_estimator_sparse_tag,
        estimator_checks.check_mixin_order,
    ],
    ids=lambda c: c.__name__,
)
@pytest.mark.parametrize("estimator", [ExemlClassifier(), ExemlRegressor()], ids=type)
def test_sklearn_api_checks(estimator, check):
    check(type(estimator).__name__, estimator)
