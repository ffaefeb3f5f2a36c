"""exeml: embeddable AutoML with a Rust core.

Give it labelled data, get a model as good as an expert's, on your own machine::

    import exeml
    predictor = exeml.TabularPredictor(label="churn").fit("customers.csv", time_limit=60)
    predictor.leaderboard()
    predictor.predict(new_customers)
    predictor.save("churn-model")
    exeml.load("churn-model")

    images = exeml.ImagePredictor().fit("photos/", time_limit=300)   # a folder per class
    images.predict(["new.jpg"])

scikit-learn estimators live in :mod:`exeml.sklearn`; the project workspace (dataset and
model versions, shared with the ``exeml`` command) in :class:`exeml.Project`.
"""

from __future__ import annotations

import os as _os

# candle's element-wise thread pool spins up to a millisecond after each op, taking the cores
# exeml's convolutions run on; a shorter spin trains networks about a tenth faster on small
# machines (docs/images.md, "Speed on the CPU"). candle reads the variable once, when its pool
# starts, so it is set before the extension loads; a value you set yourself is kept.
_os.environ.setdefault("CANDLE_BARRIER_POOL_SPIN_LIMIT", "1000")

from . import _exeml
from .display import Evaluation, FeatureImportance, Leaderboard
from .errors import (
    AlreadyExistsError,
    BackendError,
    BudgetExhaustedError,
    DataCheckError,
    DataError,
    ExemlError,
    ExemlOSError,
    ExemlPermissionError,
    FormatError,
    InvalidParameterError,
    NotCompiledError,
    NotFoundError,
    StoreError,
    TrainingInterruptedError,
    TrainingInterruptedWarning,
)
from .project import Project, projects
from .tabular import TabularPredictor, load
from .vision import ImagePredictor

__version__: str = _exeml.__version__

__all__ = [
    "TabularPredictor",
    "ImagePredictor",
    "load",
    "Project",
    "projects",
    "Evaluation",
    "Leaderboard",
    "FeatureImportance",
    "ExemlError",
    "DataError",
    "DataCheckError",
    "InvalidParameterError",
    "NotFoundError",
    "AlreadyExistsError",
    "FormatError",
    "NotCompiledError",
    "BudgetExhaustedError",
    "TrainingInterruptedError",
    "StoreError",
    "BackendError",
    "ExemlOSError",
    "ExemlPermissionError",
    "TrainingInterruptedWarning",
    "__version__",
]
