"""scikit-learn estimators: :class:`ExemlClassifier` and :class:`ExemlRegressor` run the
whole exeml search inside ``fit(X, y)``, so they work in ``cross_val_score``, ``Pipeline`` and
``GridSearchCV`` like any other estimator. Requires scikit-learn."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ._frames import Column, Frame, to_frame
from .errors import DataError
from .tabular import TabularPredictor

_LABEL = "__exeml_target__"


def _features(estimator: Any, X: Any, fitting: bool) -> Frame:
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise DataError("sparse input is not supported: pass a dense array (X.toarray())")
    names = getattr(X, "columns", None)
    frame = to_frame(X)
    if frame.columns is None:
        raise DataError("X must be data in memory (an array or a DataFrame), not a path")
    if fitting:
        estimator.n_features_in_ = len(frame.columns)
        if names is not None and all(isinstance(n, str) for n in names):
            estimator.feature_names_in_ = np.asarray(list(names), dtype=object)
        elif hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    elif len(frame.columns) != estimator.n_features_in_:
        raise DataError(
            f"X has {len(frame.columns)} features, but {type(estimator).__name__} "
            f"is expecting {estimator.n_features_in_} features as input"
        )
    return frame


def _with_target(frame: Frame, values: Any, kind: str) -> Frame:
    assert frame.columns is not None
    column: Column
    if kind == "number":
        column = (_LABEL, "number", np.ascontiguousarray(values, dtype=np.float64).tobytes())
    else:
        column = (_LABEL, "text", [str(v) for v in values])
    return Frame(columns=[*frame.columns, column], kind="numpy", names=[*frame.names, _LABEL])


class _ExemlEstimator(BaseEstimator):
    """Parameters shared by both estimators."""

    _problem: Optional[str] = None

    def __init__(
        self,
        time_limit: float = 30.0,
        preference: str = "balance",
        seed: int = 0,
        train_ratio: float = 0.8,
        verbosity: int = 0,
    ) -> None:
        self.time_limit = time_limit
        self.preference = preference
        self.seed = seed
        self.train_ratio = train_ratio
        self.verbosity = verbosity

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.non_deterministic = False
        return tags

    def _fit_frame(self, frame: Frame, problem: str) -> None:
        self.predictor_ = TabularPredictor(
            label=_LABEL,
            problem_type=problem,
            preference=self.preference,
            seed=self.seed,
            train_ratio=self.train_ratio,
            verbosity=self.verbosity,
        ).fit(frame, time_limit=self.time_limit)

    def leaderboard(self) -> List[Dict[str, Any]]:
        """The search's leaderboard (see :meth:`exeml.TabularPredictor.leaderboard`)."""
        check_is_fitted(self, "predictor_")
        return list(self.predictor_.leaderboard())


class ExemlClassifier(ClassifierMixin, _ExemlEstimator):
    """A classifier that runs exeml's AutoML search in ``fit``.

    Parameters: ``time_limit`` (seconds per fit), ``preference``, ``seed``, ``train_ratio``
    (of the internal validation split) and ``verbosity``. After ``fit``: ``classes_``,
    ``n_features_in_``, ``feature_names_in_`` (for DataFrames) and ``predictor_``.
    """

    def fit(self, X: Any, y: Any) -> "ExemlClassifier":
        """Search for the best classifier of ``y`` given ``X``."""
        y = np.asarray(y)
        if y.ndim != 1:
            raise DataError(f"y must be one-dimensional, got shape {y.shape}")
        frame = _features(self, X, fitting=True)
        if len(y) != frame_rows(frame):
            raise DataError(f"X has {frame_rows(frame)} rows but y has {len(y)}")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise DataError("y has a single class: a classifier needs at least two")
        self._by_text = {str(c): i for i, c in enumerate(self.classes_)}
        problem = "binary" if len(self.classes_) == 2 else "multiclass"
        self._fit_frame(_with_target(frame, y, "text"), problem)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self, "predictor_")
        frame = _features(self, X, fitting=False)
        out = self.predictor_.model.predict(columns=frame.columns)
        rust_classes: List[str] = out["classes"]
        proba = np.frombuffer(out["proba"], dtype=np.float64).reshape(out["rows"], len(rust_classes))
        result = np.zeros((out["rows"], len(self.classes_)))
        for j, name in enumerate(rust_classes):
            result[:, self._by_text[name]] = proba[:, j]
        return result

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row."""
        check_is_fitted(self, "predictor_")
        return np.asarray(self.classes_[self.predict_proba(X).argmax(axis=1)])


class ExemlRegressor(RegressorMixin, _ExemlEstimator):
    """A regressor that runs exeml's AutoML search in ``fit`` (parameters as
    :class:`ExemlClassifier`)."""

    def fit(self, X: Any, y: Any) -> "ExemlRegressor":
        """Search for the best regressor of ``y`` given ``X``."""
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1:
            raise DataError(f"y must be one-dimensional, got shape {y.shape}")
        frame = _features(self, X, fitting=True)
        if len(y) != frame_rows(frame):
            raise DataError(f"X has {frame_rows(frame)} rows but y has {len(y)}")
        self._fit_frame(_with_target(frame, y, "number"), "regression")
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The predicted value of each row."""
        check_is_fitted(self, "predictor_")
        frame = _features(self, X, fitting=False)
        out = self.predictor_.model.predict(columns=frame.columns)
        return np.frombuffer(out["values"], dtype=np.float64).copy()


def frame_rows(frame: Frame) -> int:
    """Number of rows of in-memory columns."""
    assert frame.columns is not None
    _, kind, data = frame.columns[0]
    return len(data) // 8 if kind in ("number", "time") else len(data)


__all__ = ["ExemlClassifier", "ExemlRegressor"]
