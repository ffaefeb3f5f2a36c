"""Predictive analytics on tables: :class:`TabularPredictor`, shaped like AutoGluon's."""

from __future__ import annotations

import html
import json
import os
from typing import Any, Dict, List, Optional, Union

import numpy as np

from . import _exeml
from ._frames import natural_labels, shape_matrix, shape_vector, to_frame
from ._progress import reporter
from .display import Evaluation, FeatureImportance, Leaderboard, html_table
from .errors import InvalidParameterError

PathLike = Union[str, "os.PathLike[str]"]

PREFERENCES = ("performance_first", "balance", "accuracy_first")
PROBLEM_TYPES = ("binary", "multiclass", "classification", "regression")


class TabularPredictor:
    """Automatic training on a table: give the label column and the data, get a model.

    >>> predictor = TabularPredictor(label="species").fit("iris.csv", time_limit=30)
    >>> predictor.predict(new_rows)            # doctest: +SKIP

    Parameters
    ----------
    label:
        The column to predict. ``None`` means the last column.
    problem_type:
        ``"binary"``, ``"multiclass"``, ``"classification"`` or ``"regression"``; inferred
        from the label when ``None``.
    preference:
        ``"performance_first"`` (small, fast models), ``"balance"`` or ``"accuracy_first"``.
    seed:
        The one seed of the run: the same data and seed give the same model.
    train_ratio:
        The share of rows used for training when no ``tuning_data`` is given; the rest
        validates (a seeded, stratified split).
    verbosity:
        0 is silent; 1 shows progress (a bar in Jupyter, lines elsewhere).
    families:
        Restrict the search to these model families (``"linear"``, ``"knn"``, ``"gbdt"``,
        ``"hist_gbdt"``, ``"forest"``, ``"mlp"``); ``None`` searches all.
    """

    def __init__(
        self,
        label: Optional[str] = None,
        *,
        problem_type: Optional[str] = None,
        preference: str = "balance",
        seed: int = 0,
        train_ratio: float = 0.8,
        verbosity: int = 1,
        families: Optional[List[str]] = None,
    ) -> None:
        if preference not in PREFERENCES:
            raise InvalidParameterError(
                f"invalid preference: `{preference}`: expected one of {', '.join(PREFERENCES)}"
            )
        if problem_type is not None and problem_type not in PROBLEM_TYPES:
            raise InvalidParameterError(
                f"invalid problem_type: `{problem_type}`: expected one of {', '.join(PROBLEM_TYPES)}"
            )
        if not 0.0 < train_ratio < 1.0:
            raise InvalidParameterError(f"invalid train_ratio: {train_ratio}: expected 0 < ratio < 1")
        self.label = label
        self.problem_type = problem_type
        self.preference = preference
        self.seed = int(seed)
        self.train_ratio = float(train_ratio)
        self.verbosity = int(verbosity)
        self.families = None if families is None else list(families)
        self._model: Optional[_exeml.TabularModel] = None

    # -- training -------------------------------------------------------------------------

    def fit(
        self,
        train_data: Any,
        *,
        time_limit: float = 60.0,
        tuning_data: Any = None,
        header: str = "auto",
        warm_start: Optional["TabularPredictor"] = None,
        max_latency_ms: Optional[float] = None,
        max_model_mb: Optional[float] = None,
        deterministic: bool = False,
        search_rows: Optional[int] = None,
        bag_folds: Optional[int] = None,
        refit_full: Optional[bool] = None,
        stack: Optional[bool] = None,
        parallel_trials: Optional[int] = None,
    ) -> "TabularPredictor":
        """Train within ``time_limit`` seconds and keep the best model; returns ``self``.

        ``train_data`` is a CSV/Parquet path, a pandas or polars DataFrame, a pyarrow Table,
        a dict of columns or a list of records. ``tuning_data`` (same kinds except a path) is
        used for validation instead of a split of ``train_data``. ``warm_start`` is an earlier
        predictor whose best configuration is tried first and recorded as the parent.
        ``max_latency_ms`` / ``max_model_mb`` are deployment limits: the returned model
        predicts one row within that median latency on this machine and saves to at most
        that many megabytes (trials that break them stay in the leaderboard, excluded).
        ``deterministic=True`` sizes every fit by counts instead of the time left, so the same
        data, seed and settings give identical predictions (the time limit still stops the
        search; ``manifest()["lineage"]["stopped_by_budget"]`` then says so).
        ``search_rows`` caps the training rows each trial of the search fits on (a stratified
        sample; the chosen model is refitted on all rows when time allows); by default a large
        table is sampled to about 20 million feature cells. ``bag_folds=k`` fits each chosen
        model k times, each on all rows but one fold, and averages them (AutoGluon's bagging;
        the validation metrics are then out of fold over every row); 0 turns it off; by default
        5 folds under ``accuracy_first``, and under ``balance`` up to 20,000 rows, when the
        time allows. ``refit_full=True`` then refits each configuration the bagged model
        kept once on all rows (AutoGluon's ``refit_full``: k times faster to predict and about
        k times smaller; weights and validation metrics stay those chosen out of fold);
        ``False`` keeps the k fits; by default ``True`` except under ``accuracy_first``.
        ``stack=True`` tries one stacking layer over the bagged models (scikit-learn's
        ``StackingClassifier``: a regularised linear model on their out-of-fold
        predictions), kept only when it beats the weighted average in cross-validation; it
        needs bagging; by default ``True`` under ``accuracy_first``.
        ``parallel_trials=n`` fits n trials of the search at a time, each on an equal share
        of the cores; by default one per core (at most 4) on a small table, else one (and one
        when ``deterministic``).
        Ctrl-C stops training early and keeps the best model so far (with a
        :class:`~exeml.errors.TrainingInterruptedWarning`).
        """
        frame = to_frame(train_data)
        tuning: Dict[str, Any] = {}
        if tuning_data is not None:
            tuning_frame = to_frame(tuning_data)
            if tuning_frame.path is not None:
                tuning["tuning_path"] = tuning_frame.path
            else:
                tuning["tuning_columns"] = tuning_frame.columns
        progress = reporter(self.verbosity, "training")
        parent = warm_start.model if warm_start is not None else None
        try:
            self._model = _exeml.fit_tabular(
                **frame.call_args(),
                **tuning,
                label=self.label,
                problem=self.problem_type,
                time_limit=float(time_limit),
                preference=self.preference,
                seed=self.seed,
                train_ratio=self.train_ratio,
                header=header,
                parent=parent,
                parent_name=None if parent is None else "python:" + parent.summary(),
                families=self.families,
                progress=progress,
                max_latency_ms=max_latency_ms,
                max_model_mb=max_model_mb,
                deterministic=bool(deterministic),
                search_rows=None if search_rows is None else int(search_rows),
                bag_folds=None if bag_folds is None else int(bag_folds),
                refit_full=None if refit_full is None else bool(refit_full),
                stack=None if stack is None else bool(stack),
                parallel_trials=None if parallel_trials is None else int(parallel_trials),
            )
        finally:
            if progress is not None:
                progress.close(self._model.summary() if self._model is not None else None)
        self.label = self._model.label
        return self

    # -- the trained model ----------------------------------------------------------------

    @property
    def model(self) -> _exeml.TabularModel:
        """The trained model of the extension; raises if :meth:`fit` has not run."""
        if self._model is None:
            raise InvalidParameterError("the predictor is not fitted yet: call fit() first")
        return self._model

    @property
    def is_fit(self) -> bool:
        """True once a model is trained or loaded."""
        return self._model is not None

    @property
    def problem(self) -> str:
        """``binary``, ``multiclass`` or ``regression``."""
        return self.model.problem

    @property
    def class_labels(self) -> List[Any]:
        """The classes, in the order of :meth:`predict_proba`'s columns."""
        return natural_labels(self.model.classes)

    def predict(self, data: Any) -> Any:
        """Predict a label (or value) per row, as a pandas/polars Series, pyarrow Array or
        numpy array matching the input."""
        frame = to_frame(data)
        out = self.model.predict(**frame.call_args())
        if out["problem"] == "regression":
            values: Any = np.frombuffer(out["values"], dtype=np.float64).copy()
        else:
            proba = _proba_matrix(out)
            labels = natural_labels(out["classes"])
            values = np.asarray(labels, dtype=object)[proba.argmax(axis=1)]
            if all(isinstance(v, (int, float)) for v in labels):
                values = values.astype(type(labels[0]))
        return shape_vector(frame, values, self.model.label)

    def predict_proba(self, data: Any) -> Any:
        """Class probabilities per row: a DataFrame/Table with a column per class, or a 2-D
        numpy array."""
        if self.model.problem == "regression":
            raise InvalidParameterError("predict_proba is for classification; use predict")
        frame = to_frame(data)
        out = self.model.predict(**frame.call_args())
        return shape_matrix(frame, _proba_matrix(out), natural_labels(out["classes"]))

    def predict_file(
        self,
        data: PathLike,
        output: PathLike,
        *,
        resume: bool = False,
        chunk_rows: int = 50_000,
        header: str = "auto",
    ) -> Dict[str, Any]:
        """Predict every row of a CSV (streamed, so any size) or Parquet file into ``output``:
        ``.csv`` as ``exeml predict`` writes it, or ``.jsonl`` (one SPEC response per row).

        The output is checkpointed every ``chunk_rows`` rows and only appears under its name
        once complete; rows that cannot be predicted are listed with their reason in
        ``OUTPUT.errors.csv`` instead of stopping the run. After Ctrl-C or a crash,
        ``resume=True`` continues from the last checkpoint. Returns ``output``, ``inputs``,
        ``predicted``, ``skipped``, ``resumed_at`` and ``errors_file``."""
        progress = reporter(self.verbosity, "predicting")
        try:
            return dict(
                self.model.predict_file(
                    os.fspath(data),
                    os.fspath(output),
                    resume=resume,
                    chunk_rows=int(chunk_rows),
                    header=header,
                    progress=progress,
                )
            )
        finally:
            if progress is not None:
                progress.close()

    def evaluate(self, data: Any) -> Evaluation:
        """Evaluate on labelled data: accuracy, precision/recall/F1 per class, confusion
        matrix, ROC AUC, log loss (classification) or MAE/MSE/RMSE/R², plus the worst rows."""
        frame = to_frame(data)
        return Evaluation(json.loads(self.model.evaluate(**frame.call_args())))

    def validation(self) -> Evaluation:
        """The evaluation on the validation part, made at training time."""
        return Evaluation(self.manifest()["validation"])

    def leaderboard(self) -> Leaderboard:
        """The chosen model first, then every other trial of the search, best score first."""
        return Leaderboard.from_trials(json.loads(self.model.leaderboard()))

    def feature_importance(self, data: Any, *, shuffles: int = 3, seed: int = 0) -> FeatureImportance:
        """Permutation importance of each column on labelled ``data``, most important first."""
        frame = to_frame(data)
        rows = json.loads(
            self.model.feature_importance(**frame.call_args(), shuffles=shuffles, seed=seed)
        )
        return FeatureImportance(rows)

    def speed(
        self, data: Any, *, runs: int = 200, batch_size: int = 10_000, batch_runs: int = 3
    ) -> Dict[str, Any]:
        """How fast the model predicts rows of ``data``, timed in Rust (no Python per call).

        Returns ``single_ms_median`` and ``single_ms_p90`` (one-row predictions, ``runs`` calls
        after 5 warm-up calls, cycling over the first rows), ``batch_ms_median`` and
        ``batch_per_second`` (one call on the first ``batch_size`` rows, ``batch_runs`` times),
        and the counts behind them; as ``exeml speed --json``.
        """
        frame = to_frame(data)
        return dict(
            json.loads(
                self.model.speed(
                    **frame.call_args(), runs=runs, batch_size=batch_size, batch_runs=batch_runs
                )
            )
        )

    def manifest(self) -> Dict[str, Any]:
        """The model's manifest: schema, classes, configuration, leaderboard, lineage."""
        return dict(json.loads(self.model.manifest()))

    def summary(self) -> str:
        """One line: family, problem and validation score."""
        return self.model.summary()

    def save(self, path: PathLike) -> None:
        """Write the model as a self-contained folder (the same format the CLI writes)."""
        self.model.save(os.fspath(path))

    @classmethod
    def load(cls, path: PathLike, *, verbosity: int = 1) -> "TabularPredictor":
        """Load a model folder written by :meth:`save`, the CLI or a project."""
        return cls._wrap(_exeml.TabularModel.load(os.fspath(path)), verbosity=verbosity)

    @classmethod
    def _wrap(cls, model: _exeml.TabularModel, *, verbosity: int = 1) -> "TabularPredictor":
        manifest = json.loads(model.manifest())
        lineage = manifest.get("lineage", {})
        predictor = cls(
            label=model.label,
            preference=lineage.get("preference", "balance"),
            seed=int(lineage.get("seed", 0)),
            train_ratio=float(lineage.get("train_ratio", 0.8)),
            verbosity=verbosity,
        )
        predictor._model = model
        return predictor

    # -- display --------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = self._model.summary() if self._model is not None else "not fitted"
        return f"TabularPredictor(label={self.label!r}, preference={self.preference!r}, {state})"

    def _repr_html_(self) -> str:
        if self._model is None:
            return f"<pre>{html.escape(repr(self))}</pre>"
        manifest = self.manifest()
        used = [c for c in manifest["columns"] if not c.get("dropped")]
        dropped = [c for c in manifest["columns"] if c.get("dropped")]
        parts = [
            html_table(
                ["", ""],
                [
                    ["label", manifest["target"]["column"]],
                    ["problem", manifest["problem"]],
                    ["model", manifest["family"]],
                    ["classes", ", ".join(manifest["target"]["classes"]) or "—"],
                    ["features used", len(used)],
                    ["columns dropped", ", ".join(c["name"] for c in dropped) or "—"],
                    ["trials", len(manifest["leaderboard"])],
                    ["fit seconds", manifest["lineage"]["fit_secs"]],
                ],
                caption=self.summary(),
            ),
            self.validation()._repr_html_(),
        ]
        return "<div>" + "<br>".join(parts) + "</div>"


def _proba_matrix(out: Dict[str, Any]) -> np.ndarray:
    classes = len(out["classes"])
    return np.frombuffer(out["proba"], dtype=np.float64).reshape(out["rows"], classes).copy()


def load(path: PathLike, *, verbosity: int = 1) -> TabularPredictor:
    """Load a saved model folder as a :class:`TabularPredictor`."""
    return TabularPredictor.load(path, verbosity=verbosity)


__all__ = ["TabularPredictor", "load"]
