"""The project workspace from Python: the same projects, dataset versions and model versions
the ``exeml`` command line manages (SQLite index + files, no server)."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Union

from . import _exeml
from ._progress import reporter
from .tabular import TabularPredictor

PathLike = Union[str, "os.PathLike[str]"]


def _home(home: Optional[PathLike]) -> Optional[str]:
    return None if home is None else os.fspath(home)


def projects(home: Optional[PathLike] = None) -> List[Dict[str, Any]]:
    """Every project of the workspace at ``home`` (default ``$EXEML_HOME`` or
    ``./exeml-workspace``)."""
    return list(json.loads(_exeml.list_projects(_home(home))))


class Project:
    """A project: import data → check → publish a dataset version → train → load a model.

    >>> project = Project("churn", home="my-workspace")          # doctest: +SKIP
    >>> project.import_table("customers.csv", label="churn")     # doctest: +SKIP
    >>> project.publish()["name"]                                # doctest: +SKIP
    'V001'
    >>> project.train(time_limit=30)["version"]                  # doctest: +SKIP
    '0.0.1'
    """

    def __init__(
        self,
        name: str,
        *,
        task: str = "tabular",
        home: Optional[PathLike] = None,
        create: bool = True,
        description: str = "",
    ) -> None:
        self._inner = _exeml.Project(
            name, task=task, home=_home(home), create=create, description=description
        )

    @property
    def name(self) -> str:
        """The project's name."""
        return self._inner.name

    @property
    def home(self) -> str:
        """The workspace folder."""
        return os.fspath(self._inner.home)

    def info(self) -> Dict[str, Any]:
        """The project's record: task, status, step, times."""
        return dict(json.loads(self._inner.info()))

    def import_table(self, path: PathLike, *, label: Optional[str] = None, header: str = "auto") -> None:
        """Copy a CSV/Parquet table into the project and set its label column."""
        self._inner.import_table(os.fspath(path), label=label, header=header)

    def check(self) -> Dict[str, Any]:
        """Run the data checks: ``{"findings": [...]}`` with errors, warnings and notes."""
        return dict(json.loads(self._inner.check()))

    def publish(self, *, train_ratio: float = 0.8, seed: int = 0) -> Dict[str, Any]:
        """Publish an immutable dataset version (V001, V002…) with a seeded split."""
        return dict(json.loads(self._inner.publish(train_ratio=train_ratio, seed=seed)))

    def dataset_versions(self) -> List[Dict[str, Any]]:
        """Every dataset version, oldest first."""
        return list(json.loads(self._inner.dataset_versions()))

    def model_versions(self) -> List[Dict[str, Any]]:
        """Every model version, oldest first."""
        return list(json.loads(self._inner.model_versions()))

    def train(
        self,
        *,
        version: Optional[str] = None,
        time_limit: float = 60.0,
        preference: str = "balance",
        seed: int = 0,
        parent: Optional[str] = None,
        verbosity: int = 1,
    ) -> Dict[str, Any]:
        """Train on a dataset version (default: the latest) and register a model version
        (0.0.1, 0.0.2…); ``parent`` warm-starts from an earlier model version."""
        progress = reporter(verbosity, f"training {self.name}")
        record: Optional[Dict[str, Any]] = None
        try:
            record = dict(
                json.loads(
                    self._inner.train(
                        version=version,
                        time_limit=float(time_limit),
                        preference=preference,
                        seed=seed,
                        parent=parent,
                        progress=progress,
                    )
                )
            )
        finally:
            if progress is not None:
                progress.close(None if record is None else f"model version {record['version']}")
        return record

    def load_model(self, version: str, *, verbosity: int = 1) -> TabularPredictor:
        """A registered model version as a :class:`TabularPredictor`."""
        return TabularPredictor._wrap(self._inner.load_model(version), verbosity=verbosity)

    def __repr__(self) -> str:
        return f"Project({self.name!r}, home={self.home!r})"


__all__ = ["Project", "projects"]
