"""Image classification: :class:`ImagePredictor`, a folder of labelled images in, a model out."""

from __future__ import annotations

import contextlib
import html
import json
import os
import tempfile
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _exeml
from ._images import Images, image_items, rows_of, write_labelled
from ._progress import reporter
from .display import Evaluation, Leaderboard, html_table
from .errors import InvalidParameterError

PathLike = Union[str, "os.PathLike[str]"]

PREFERENCES = ("performance_first", "balance", "accuracy_first")


class ImagePredictor:
    """Automatic image classification by transfer learning (linear probe, then fine-tuning of
    the backbone's top blocks searched by successive halving fitted to ``time_limit``, and an
    ensemble of the fine-tuned models when it lowers the validation log loss).

    >>> predictor = ImagePredictor().fit("flowers/", time_limit=300)     # doctest: +SKIP
    >>> predictor.predict(["new.jpg"])                                    # doctest: +SKIP

    The folder holds a sub-folder per class, ``name.jpg`` + ``name.txt`` label files (several
    lines = multi-label), or a ``manifest.jsonl``; see docs/images.md.

    Parameters
    ----------
    preference:
        ``"performance_first"`` (small, fast), ``"balance"`` or ``"accuracy_first"``.
    seed:
        The one seed of the run.
    train_ratio:
        The share of images used for training; the rest validates (seeded, stratified).
    backbones:
        Restrict the search to these backbones (``"mobilenet_v2"``, ``"efficientnet_lite0"``,
        ``"resnet18"``, ``"resnet34"``, ``"resnet50"``; the ResNets are read from the Hugging Face
        hub cache or ``weights``).
    weights:
        Weight files by backbone name, e.g. ``{"resnet50": "resnet50.safetensors"}``
        (safetensors or PyTorch ``.pth``) instead of the installed or cached ones.
    resolution:
        Fix the square input size in pixels (default: chosen by the search).
    fine_tune:
        Fine-tune the backbone's top blocks after the linear probe (default ``True``).
    ensemble:
        Average fine-tuned models into an ensemble when it lowers the validation log loss and
        its accuracy is within half a standard error of the single model's (default ``True``;
        ``False`` keeps one model, whose single-image latency is lower).
    refit_full:
        Once chosen, train the fine-tuned model (each member of an ensemble) again on training
        and validation images together, for the epochs its validation chose, so that it learns
        from every image (as AutoGluon's ``refit_full``). The search sizes its runs to leave
        the refit its time, unless that would halve them (a short budget: the refit is then
        skipped); the validation metrics stay the search's. ``None`` (the default): on under
        ``balance`` and ``accuracy_first``, off under ``performance_first``.
    fine_tune_arms:
        Fine-tune with these configurations instead of the preference's plan: dicts with the
        fields of a leaderboard row's ``fine_tune`` (``unfrozen_blocks``, ``learning_rate``,
        ``weight_decay``, ``max_epochs``, ``batch_size``, ``mixing`` such as
        ``{"kind": "mixup", "alpha": 0.2}``, ``optimizer`` such as
        ``{"kind": "sgd", "momentum": 0.9}`` (default AdamW), ``label_smoothing``,
        ``patience``); a field left out takes its default, an unknown one is an error. The
        white-box way to rerun a search with its arms edited (given arms are run as given:
        never lengthened to use a generous budget).
    device:
        ``"cpu"`` (default), ``"cuda:0"`` or ``"metal"``: where to train (a GPU needs an exeml
        built with the ``cuda``/``metal`` feature; otherwise :class:`~exeml.errors.NotCompiledError`).
        The saved model predicts on the CPU.
    verbosity:
        0 is silent; 1 shows progress.
    """

    def __init__(
        self,
        *,
        preference: str = "balance",
        seed: int = 0,
        train_ratio: float = 0.8,
        backbones: Optional[Sequence[str]] = None,
        resolution: Optional[int] = None,
        fine_tune: bool = True,
        ensemble: bool = True,
        refit_full: Optional[bool] = None,
        device: str = "cpu",
        weights: Optional[Mapping[str, PathLike]] = None,
        fine_tune_arms: Optional[Sequence[Mapping[str, Any]]] = None,
        verbosity: int = 1,
    ) -> None:
        if preference not in PREFERENCES:
            raise InvalidParameterError(
                f"invalid preference: `{preference}`: expected one of {', '.join(PREFERENCES)}"
            )
        if not 0.0 < train_ratio < 1.0:
            raise InvalidParameterError(f"invalid train_ratio: {train_ratio}: expected 0 < ratio < 1")
        self.preference = preference
        self.seed = int(seed)
        self.train_ratio = float(train_ratio)
        self.backbones = None if backbones is None else list(backbones)
        self.resolution = None if resolution is None else int(resolution)
        self.fine_tune = bool(fine_tune)
        self.ensemble = bool(ensemble)
        self.refit_full = None if refit_full is None else bool(refit_full)
        self.device = str(device)
        self.weights = None if weights is None else {str(k): os.fspath(v) for k, v in weights.items()}
        self.fine_tune_arms = None if fine_tune_arms is None else [dict(a) for a in fine_tune_arms]
        self.verbosity = int(verbosity)
        self._model: Optional[_exeml.ImageModel] = None

    def fit(
        self,
        data: Any,
        labels: Optional[Sequence[Any]] = None,
        *,
        time_limit: float = 600.0,
        warm_start: Optional["ImagePredictor"] = None,
        max_latency_ms: Optional[float] = None,
        max_model_mb: Optional[float] = None,
    ) -> "ImagePredictor":
        """Train within ``time_limit`` seconds; returns ``self``.

        ``data``: a folder of labelled images (a folder per class, ``.txt`` label files beside
        the images, or a manifest); or images — files, PIL images, numpy ``uint8`` arrays, a
        batch ``N×H×W×C`` — with one entry of ``labels`` per image (a label, or a list of
        labels for multi-label data); or a pandas DataFrame with an ``image`` column (paths)
        and a ``label`` column. Images in memory are written to a temporary folder for the
        import and removed after training.

        ``warm_start`` is an earlier predictor whose backbone and configuration are tried first
        (new classes are allowed). ``max_latency_ms`` / ``max_model_mb`` limit the median
        single-image latency on this machine and the saved size of what is returned (too-slow
        configurations are retried at lower resolutions). Ctrl-C keeps the best model so far."""
        with _labelled_folder(data, labels) as (folder, described):
            return self._fit_folder(folder, described, time_limit, warm_start, max_latency_ms, max_model_mb)

    def _fit_folder(
        self,
        folder: str,
        described: Optional[str],
        time_limit: float,
        warm_start: Optional["ImagePredictor"],
        max_latency_ms: Optional[float],
        max_model_mb: Optional[float],
    ) -> "ImagePredictor":
        progress = reporter(self.verbosity, "training")
        parent = warm_start.model if warm_start is not None else None
        try:
            self._model = _exeml.fit_image(
                path=folder,
                time_limit=float(time_limit),
                preference=self.preference,
                seed=self.seed,
                train_ratio=self.train_ratio,
                backbones=self.backbones,
                resolution=self.resolution,
                fine_tune=self.fine_tune,
                ensemble=self.ensemble,
                refit_full=self.refit_full,
                parent=parent,
                parent_name=None if parent is None else "python:" + parent.summary(),
                progress=progress,
                max_latency_ms=max_latency_ms,
                max_model_mb=max_model_mb,
                device=self.device,
                weights=None if self.weights is None else list(self.weights.items()),
                fine_tune_arms=None if self.fine_tune_arms is None else json.dumps(self.fine_tune_arms),
                data_name=described,
            )
        finally:
            if progress is not None:
                progress.close(self._model.summary() if self._model is not None else None)
        return self

    @property
    def model(self) -> _exeml.ImageModel:
        """The trained model of the extension; raises if :meth:`fit` has not run."""
        if self._model is None:
            raise InvalidParameterError("the predictor is not fitted yet: call fit() first")
        return self._model

    @property
    def is_fit(self) -> bool:
        """True once a model is trained or loaded."""
        return self._model is not None

    @property
    def class_labels(self) -> List[str]:
        """The classes, in the order of :meth:`predict_proba`'s columns."""
        return list(self.model.classes)

    @property
    def problem(self) -> str:
        """``binary``, ``multiclass`` or ``multilabel``."""
        return self.model.problem

    def _scores(self, images: Images) -> np.ndarray:
        model = self.model
        return rows_of(image_items(images), model.predict_files, model.predict_pixels, len(self.class_labels))

    def predict_proba(self, images: Images) -> np.ndarray:
        """Class scores, one row per image, columns in :attr:`class_labels` order.

        ``images``: a file, a folder (its JPG, PNG and BMP images, recursively, sorted by path),
        a numpy array of 8-bit pixels (``height × width``, ``height × width × 3`` or ``× 4``; a
        4-d array is a batch), a PIL image, or a list of any of these. An unreadable file raises
        :class:`~exeml.errors.DataError` naming it; an array that is not 8-bit pixels,
        :class:`~exeml.errors.InvalidParameterError`."""
        return self._scores(images)

    def predict(self, images: Images) -> List[Any]:
        """The predicted label per image (a list of labels per image for multi-label models)."""
        classes = self.class_labels
        out: List[Any] = []
        for row in self._scores(images):
            chosen = [classes[i] for i in self.model.predicted(row.tolist())]
            out.append(chosen if self.problem == "multilabel" else chosen[0])
        return out

    def predict_json(self, images: Images) -> List[Dict[str, Any]]:
        """The service's response per image: ``predicted_label`` and the top-5 ``scores``."""
        return [json.loads(self.model.response(row.tolist())) for row in self._scores(images)]

    def predict_folder(
        self,
        folder: PathLike,
        output: PathLike,
        *,
        resume: bool = False,
        chunk_images: int = 64,
    ) -> Dict[str, Any]:
        """Predict every image under ``folder`` into ``output``: ``.csv`` as ``exeml predict``
        writes it (``id`` = path relative to the folder), or ``.jsonl`` (one SPEC response per
        image).

        The output is checkpointed every ``chunk_images`` images and only appears under its
        name once complete; unreadable images are listed with their reason in
        ``OUTPUT.errors.csv``. After Ctrl-C or a crash, ``resume=True`` continues from the last
        checkpoint. Returns ``output``, ``inputs``, ``predicted``, ``skipped``, ``resumed_at``
        and ``errors_file``."""
        return self._folder_run(self.model.predict_folder, "predicting", folder, output, resume, chunk_images)

    def extract_embedding(self, images: Images) -> np.ndarray:
        """Embeddings, one row per image (``images`` as for :meth:`predict_proba`): the pooled
        features of the fine-tuned backbone that the classifier's head reads (for an ensemble,
        its first member's), :attr:`embedding_dim` columns, raw (divide each row by its norm
        for cosine similarity). For search, clustering, deduplication or another model's input.
        An unreadable file raises :class:`~exeml.errors.DataError` naming it."""
        model = self.model
        return rows_of(image_items(images), model.embed_files, model.embed_pixels, self.embedding_dim)

    @property
    def embedding_dim(self) -> int:
        """The length of an embedding (the backbone's feature count)."""
        return self.model.embedding_dim

    def export_onnx(self, path: PathLike, *, int8: bool = False) -> str:
        """Write the model as one ONNX file (opset 17) and return its path, for onnxruntime,
        TensorRT, OpenVINO or a browser: input ``pixels`` (float32 ``N×3×R×R``, what
        :meth:`onnx_input` gives), outputs ``probabilities`` (as :meth:`predict_proba`) and
        ``embedding`` (as :meth:`extract_embedding`); the class names are in its metadata
        (``exeml.classes``, a JSON list), with the problem, resolution and, for multi-label
        models, the per-label thresholds (``exeml.thresholds``). ``int8=True`` stores the
        weights as 8-bit integers (one scale per output channel): a quarter of the file, the
        same speed, probabilities that move a little (docs/images.md)."""
        path = os.fspath(path)
        self.model.export_onnx(path, int8=int8)
        return path

    def onnx_input(self, images: Images) -> np.ndarray:
        """The input of the model exported by :meth:`export_onnx` for ``images`` (as for
        :meth:`predict_proba`): float32 ``N×3×R×R``, RGB values / 255 of each image's centre
        square (7/8 of its shorter side) resized to ``R×R`` (``R`` the trained model's resolution,
        ``manifest()["resolution"]``), channels first. The graph normalises them itself."""
        model = self.model
        side = model.resolution
        rows = rows_of(image_items(images), model.onnx_input_files, model.onnx_input_pixels, 3 * side * side)
        return rows.reshape(-1, 3, side, side)

    def embed_folder(
        self,
        folder: PathLike,
        output: PathLike,
        *,
        resume: bool = False,
        chunk_images: int = 64,
    ) -> Dict[str, Any]:
        """Write the embedding of every image under ``folder`` into ``output``, as ``exeml
        embed`` does: ``.csv`` (``id,emb_0,…``) or ``.jsonl`` (``{"id", "embedding"}`` per
        line), checkpointed and resumable like :meth:`predict_folder`, whose summary it
        returns."""
        return self._folder_run(self.model.embed_folder, "embedding", folder, output, resume, chunk_images)

    def _folder_run(
        self,
        run: Callable[..., Dict[str, Any]],
        label: str,
        folder: PathLike,
        output: PathLike,
        resume: bool,
        chunk_images: int,
    ) -> Dict[str, Any]:
        """A checkpointed folder run of the model (``predict_folder`` or ``embed_folder``) with a
        progress bar labelled ``label``."""
        progress = reporter(self.verbosity, label)
        try:
            return dict(
                run(
                    os.fspath(folder),
                    os.fspath(output),
                    resume=resume,
                    chunk_images=int(chunk_images),
                    progress=progress,
                )
            )
        finally:
            if progress is not None:
                progress.close()

    def evaluate(self, data: Any, labels: Optional[Sequence[Any]] = None) -> Evaluation:
        """Evaluate on labelled images (``data`` and ``labels`` as for :meth:`fit`): accuracy,
        per-class precision/recall/F1, confusion matrix, bad cases (and multi-label metrics).
        A bad case's ``id`` is its path in a folder, or for images given with ``labels`` their
        position, as ``000017.png``."""
        with _labelled_folder(data, labels) as (folder, _):
            return Evaluation(json.loads(self.model.evaluate(folder)))

    def validation(self) -> Evaluation:
        """The evaluation on the validation part, made at training time."""
        return Evaluation(self.manifest()["validation"])

    def leaderboard(self) -> Leaderboard:
        """Every configuration tried (linear probes and fine-tuning arms), in search order."""
        metric = "macro_f1" if self.problem == "multilabel" else "accuracy"
        rows = Leaderboard()
        for t in self.manifest()["leaderboard"]:
            tuned = t.get("fine_tune")
            members = t.get("members") or []
            if members:
                plural = "s" if len(members) != 1 else ""
                rows_of = ", ".join(map(str, members))
                how = f"ensemble of {len(members)} fine-tuned model{plural} (rows {rows_of})"
            elif tuned:
                how = f"fine-tune last {tuned['unfrozen_blocks']} blocks"
            else:
                how = "linear probe"
            params: Dict[str, Any] = {"head": t["head"], "augmented_views": t["augmented_views"]}
            if members:
                params["members"] = members
            if tuned:
                params["fine_tune"] = tuned
                params["epochs"] = t.get("epochs")
            rows.append(
                {
                    "model": f"{t['backbone']} {t['resolution']}px, {how}",
                    "score": t.get("score"),
                    "metric": metric,
                    "fit_secs": t.get("seconds"),
                    "predict_secs": None,
                    "params": params,
                    "note": t.get("status"),
                }
            )
        return rows

    def manifest(self) -> Dict[str, Any]:
        """The model's manifest: classes, backbone, fine-tuning, validation, leaderboard, lineage."""
        return dict(json.loads(self.model.manifest()))

    def summary(self) -> str:
        """One line: backbone, resolution, validation accuracy."""
        return self.model.summary()

    def save(self, path: PathLike) -> None:
        """Write the model as a self-contained folder (the same format the CLI writes)."""
        self.model.save(os.fspath(path))

    @classmethod
    def load(cls, path: PathLike, *, verbosity: int = 1) -> "ImagePredictor":
        """Load an image model folder written by :meth:`save` or the CLI."""
        return cls._wrap(_exeml.ImageModel.load(os.fspath(path)), verbosity=verbosity)

    @classmethod
    def _wrap(cls, model: _exeml.ImageModel, *, verbosity: int = 1) -> "ImagePredictor":
        """A predictor around a loaded model, with the settings its lineage records."""
        lineage = json.loads(model.manifest()).get("lineage", {})
        predictor = cls(
            preference=lineage.get("preference", "balance"),
            seed=int(lineage.get("seed", 0)),
            train_ratio=float(lineage.get("train_ratio", 0.8)),
            verbosity=verbosity,
        )
        predictor._model = model
        return predictor

    def __repr__(self) -> str:
        state = self._model.summary() if self._model is not None else "not fitted"
        return f"ImagePredictor(preference={self.preference!r}, {state})"

    def _repr_html_(self) -> str:
        if self._model is None:
            return f"<pre>{html.escape(repr(self))}</pre>"
        m = self.manifest()
        tuned = m.get("fine_tune")
        table = html_table(
            ["", ""],
            [
                ["problem", m["problem"]],
                ["classes", ", ".join(m["classes"])],
                ["backbone", f"{m['backbone']} at {m['resolution']} px"],
                ["fine-tuned", f"last {tuned['unfrozen_blocks']} blocks" if tuned else "no (linear probe)"],
                ["ensemble", f"{len(m['ensemble'])} fine-tuned models" if m.get("ensemble") else "no (one model)"],
                ["configurations tried", len(m["leaderboard"])],
                ["fit seconds", m["lineage"]["fit_secs"]],
            ],
            caption=self.summary(),
        )
        return "<div>" + table + "<br>" + self.validation()._repr_html_() + "</div>"


@contextlib.contextmanager
def _labelled_folder(data: Any, labels: Optional[Sequence[Any]]) -> Iterator[Tuple[str, Optional[str]]]:
    """The folder to import and, for data in memory, how to describe it: ``data`` itself when
    it is a folder given without labels, else a temporary one holding the images and their label
    files (removed afterwards)."""
    source = "a DataFrame" if _is_frame(data) else "images"
    if labels is None and _is_frame(data):
        missing = [c for c in ("image", "label") if c not in data.columns]
        if missing:
            raise InvalidParameterError(
                f"data: a DataFrame needs the columns 'image' (paths) and 'label'; missing {missing}"
            )
        data, labels = [os.fspath(p) for p in data["image"]], list(data["label"])
    if labels is None:
        if not isinstance(data, (str, os.PathLike)):
            raise InvalidParameterError("labels: images in memory or a list of files need their labels")
        yield os.fspath(data), None
        return
    with tempfile.TemporaryDirectory(prefix="exeml-images-") as folder:
        write_labelled(data, labels, folder, _exeml.write_png)
        yield folder, f"python: {source} with {len(labels)} labels"


def _is_frame(data: Any) -> bool:
    return type(data).__module__.startswith("pandas") and hasattr(data, "columns")


__all__ = ["ImagePredictor"]
