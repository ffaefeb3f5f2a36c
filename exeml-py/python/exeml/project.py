"""The project workspace from Python: the same projects, dataset versions and model versions
the ``exeml`` command line manages (SQLite index + files, no server). Tabular projects import a
table; image projects import folders of images and label them sample by sample."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _exeml
from ._progress import reporter
from .tabular import TabularPredictor
from .errors import InvalidParameterError
from .vision import ImagePredictor

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

    An image project, labelled in place:

    >>> photos = Project("flowers", task="image")                # doctest: +SKIP
    >>> photos.import_images("photos/")["unlabelled"]            # doctest: +SKIP
    3
    >>> todo = [s["id"] for s in photos.samples("unlabelled")]   # doctest: +SKIP
    >>> photos.add_label(todo, "tulip")                          # doctest: +SKIP
    3
    >>> photos.train(time_limit=120)["summary"]                  # doctest: +SKIP
    'multiclass image classifier (5 classes): mobilenet_v2 at 224 px, ...'
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

    @property
    def task(self) -> str:
        """The project's task: ``tabular``, ``image``…"""
        return str(self._inner.task())

    def import_images(self, folder: PathLike) -> Dict[str, Any]:
        """Copy the images of ``folder`` (class folders, ``.txt`` label files beside the
        images, or a ``manifest.jsonl``) into an image project. Images without a label become
        unlabelled samples; returns the counts (``imported``, ``labelled``, ``unlabelled``,
        ``already_present``), the ``renamed`` files and the ``skipped`` ones with the reason.
        Importing the same folder again adds only what is new."""
        return dict(json.loads(self._inner.import_images(os.fspath(folder))))

    def samples(self, which: str = "all", *, label: Optional[str] = None) -> List[Dict[str, Any]]:
        """The samples (``id``, ``source``, ``labels``…): ``"all"``, ``"labelled"``,
        ``"unlabelled"``, or those carrying ``label``."""
        return list(json.loads(self._inner.samples(which, label=label)))

    def label_counts(self) -> Dict[str, int]:
        """Labelled samples per label."""
        return dict(json.loads(self._inner.label_counts()))

    def add_label(self, ids: Sequence[int], label: str) -> int:
        """Add ``label`` to the samples ``ids``; returns how many did not carry it yet."""
        return int(self._inner.add_label([int(i) for i in ids], label))

    def set_labels(self, sample_id: int, labels: Sequence[str]) -> None:
        """Replace one sample's labels (an empty list leaves it unlabelled)."""
        self._inner.set_labels(int(sample_id), [str(label) for label in labels])

    def rename_label(self, old: str, new: str) -> int:
        """Rename a label on every sample; returns how many samples changed."""
        return int(self._inner.rename_label(old, new))

    def delete_label(self, label: str, *, mode: str = "label", confirm: bool = False) -> Dict[str, Any]:
        """Delete a label. ``mode``: ``"label"`` (samples stay), ``"samples"`` (also the
        samples whose only label it was) or ``"files"`` (also their files, except those a
        dataset version uses). Without ``confirm=True`` nothing is deleted and the plan of what
        would go is returned; with it, what went."""
        return dict(json.loads(self._inner.delete_label(label, mode=mode, confirm=confirm)))

    def delete_samples(self, ids: Sequence[int]) -> int:
        """Delete samples by id (their files stay while a dataset version uses them)."""
        return int(self._inner.delete_samples([int(i) for i in ids]))

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
        predictor: Optional[ImagePredictor] = None,
        verbosity: int = 1,
    ) -> Dict[str, Any]:
        """Train on a dataset version (default: the current data, published now unless the
        latest version already holds it) and register a model version (0.0.1, 0.0.2…);
        ``parent`` warm-starts from an earlier model version (new classes allowed for images). For an image project, ``predictor``
        carries the image search's settings (backbones, resolution, fine-tuning, device…);
        its ``preference`` and ``seed`` are used when it is given."""
        progress = reporter(verbosity, f"training {self.name}")
        record: Optional[Dict[str, Any]] = None
        try:
            if self.task == "image":
                settings = predictor if predictor is not None else ImagePredictor(preference=preference, seed=seed)
                text = self._inner.train_image(
                    version=version,
                    time_limit=float(time_limit),
                    preference=settings.preference,
                    seed=settings.seed,
                    train_ratio=settings.train_ratio,
                    parent=parent,
                    progress=progress,
                    backbones=settings.backbones,
                    resolution=settings.resolution,
                    fine_tune=settings.fine_tune,
                    ensemble=settings.ensemble,
                    refit_full=settings.refit_full,
                    device=settings.device,
                    weights=None if settings.weights is None else list(settings.weights.items()),
                    fine_tune_arms=None if settings.fine_tune_arms is None else json.dumps(settings.fine_tune_arms),
                )
            elif predictor is not None:
                raise InvalidParameterError("predictor= is for image projects: a tabular project trains with its own search")
            else:
                text = self._inner.train(
                    version=version,
                    time_limit=float(time_limit),
                    preference=preference,
                    seed=seed,
                    parent=parent,
                    progress=progress,
                )
            record = dict(json.loads(text))
        finally:
            if progress is not None:
                progress.close(None if record is None else f"model version {record['version']}")
        return record

    def load_model(self, version: str, *, verbosity: int = 1) -> Union[TabularPredictor, ImagePredictor]:
        """A registered model version: a :class:`TabularPredictor`, or an
        :class:`ImagePredictor` for an image project."""
        if self.task == "image":
            return ImagePredictor._wrap(self._inner.load_image_model(version), verbosity=verbosity)
        return TabularPredictor._wrap(self._inner.load_model(version), verbosity=verbosity)

    def __repr__(self) -> str:
        return f"Project({self.name!r}, home={self.home!r})"


__all__ = ["Project", "projects"]
