"""Type stubs of the extension module built from exeml-py (Rust, pyo3)."""

from os import PathLike
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from typing_extensions import final

_Path = Union[str, PathLike[str]]
_Column = Tuple[str, str, Any]
_Progress = Callable[[str, Any], Any]

__all__ = [
    "ImageModel",
    "Project",
    "TabularModel",
    "__version__",
    "fit_image",
    "fit_tabular",
    "list_projects",
    "write_png",
]
__version__: str

def fit_tabular(
    *,
    path: Optional[_Path] = None,
    columns: Optional[Sequence[_Column]] = None,
    tuning_path: Optional[_Path] = None,
    tuning_columns: Optional[Sequence[_Column]] = None,
    label: Optional[str] = None,
    problem: Optional[str] = None,
    time_limit: float = 60.0,
    preference: str = "balance",
    seed: int = 0,
    train_ratio: float = 0.8,
    header: str = "auto",
    parent: Optional[TabularModel] = None,
    parent_name: Optional[str] = None,
    families: Optional[Sequence[str]] = None,
    progress: Optional[_Progress] = None,
    max_latency_ms: Optional[float] = None,
    max_model_mb: Optional[float] = None,
    deterministic: bool = False,
    search_rows: Optional[int] = None,
    bag_folds: Optional[int] = None,
    refit_full: Optional[bool] = None,
    stack: Optional[bool] = None,
    parallel_trials: Optional[int] = None,
) -> TabularModel: ...
def list_projects(home: Optional[_Path] = None) -> str: ...
def write_png(path: _Path, pixels: bytes, height: int, width: int) -> None: ...
def fit_image(
    *,
    path: _Path,
    time_limit: float = 600.0,
    preference: str = "balance",
    seed: int = 0,
    train_ratio: float = 0.8,
    backbones: Optional[Sequence[str]] = None,
    resolution: Optional[int] = None,
    fine_tune: bool = True,
    ensemble: bool = True,
    refit_full: Optional[bool] = None,
    parent: Optional[ImageModel] = None,
    parent_name: Optional[str] = None,
    progress: Optional[_Progress] = None,
    max_latency_ms: Optional[float] = None,
    max_model_mb: Optional[float] = None,
    device: str = "cpu",
    weights: Optional[Sequence[Tuple[str, _Path]]] = None,
    fine_tune_arms: Optional[str] = None,
    data_name: Optional[str] = None,
) -> ImageModel: ...

@final
class TabularModel:
    @staticmethod
    def load(path: _Path) -> TabularModel: ...
    def save(self, path: _Path) -> None: ...
    def predict(
        self, *, path: Optional[_Path] = None, columns: Optional[Sequence[_Column]] = None
    ) -> Dict[str, Any]: ...
    def predict_file(
        self,
        input: _Path,
        output: _Path,
        *,
        resume: bool = False,
        chunk_rows: int = 50000,
        header: str = "auto",
        progress: Optional[_Progress] = None,
    ) -> Dict[str, Any]: ...
    def evaluate(
        self, *, path: Optional[_Path] = None, columns: Optional[Sequence[_Column]] = None
    ) -> str: ...
    def feature_importance(
        self,
        *,
        path: Optional[_Path] = None,
        columns: Optional[Sequence[_Column]] = None,
        shuffles: int = 3,
        seed: int = 0,
    ) -> str: ...
    def speed(
        self,
        *,
        path: Optional[_Path] = None,
        columns: Optional[Sequence[_Column]] = None,
        runs: int = 200,
        batch_size: int = 10000,
        batch_runs: int = 3,
    ) -> str: ...
    def manifest(self) -> str: ...
    def leaderboard(self) -> str: ...
    def summary(self) -> str: ...
    @property
    def problem(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def classes(self) -> List[str]: ...

@final
class ImageModel:
    @staticmethod
    def load(path: _Path) -> ImageModel: ...
    def save(self, path: _Path) -> None: ...
    def predict_files(self, paths: Sequence[_Path]) -> List[Tuple[List[float], Optional[str]]]: ...
    def predict_folder(
        self,
        folder: _Path,
        output: _Path,
        *,
        resume: bool = False,
        chunk_images: int = 64,
        progress: Optional[_Progress] = None,
    ) -> Dict[str, Any]: ...
    def predict_pixels(self, images: Sequence[Tuple[bytes, int, int]]) -> List[List[float]]: ...
    def embed_pixels(self, images: Sequence[Tuple[bytes, int, int]]) -> List[List[float]]: ...
    def embed_files(self, paths: Sequence[_Path]) -> List[Tuple[List[float], Optional[str]]]: ...
    def embed_folder(
        self,
        folder: _Path,
        output: _Path,
        *,
        resume: bool = False,
        chunk_images: int = 64,
        progress: Optional[_Progress] = None,
    ) -> Dict[str, Any]: ...
    def export_onnx(self, path: _Path, *, int8: bool = False) -> None: ...
    def onnx_input_files(self, paths: Sequence[_Path]) -> List[Tuple[List[float], Optional[str]]]: ...
    def onnx_input_pixels(self, images: Sequence[Tuple[bytes, int, int]]) -> List[List[float]]: ...
    @property
    def resolution(self) -> int: ...
    @property
    def embedding_dim(self) -> int: ...
    def response(self, scores: Sequence[float]) -> str: ...
    def predicted(self, scores: Sequence[float]) -> List[int]: ...
    def evaluate(self, path: _Path) -> str: ...
    def manifest(self) -> str: ...
    def summary(self) -> str: ...
    @property
    def problem(self) -> str: ...
    @property
    def classes(self) -> List[str]: ...

@final
class Project:
    def __new__(
        cls,
        name: str,
        *,
        task: str = "tabular",
        home: Optional[_Path] = None,
        create: bool = True,
        description: str = "",
    ) -> Project: ...
    @property
    def name(self) -> str: ...
    @property
    def home(self) -> str: ...
    def info(self) -> str: ...
    def import_table(self, path: _Path, *, label: Optional[str] = None, header: str = "auto") -> None: ...
    def check(self) -> str: ...
    def publish(self, *, train_ratio: float = 0.8, seed: int = 0) -> str: ...
    def dataset_versions(self) -> str: ...
    def model_versions(self) -> str: ...
    def train(
        self,
        *,
        version: Optional[str] = None,
        time_limit: float = 60.0,
        preference: str = "balance",
        seed: int = 0,
        parent: Optional[str] = None,
        progress: Optional[_Progress] = None,
    ) -> str: ...
    def train_image(
        self,
        *,
        version: Optional[str] = None,
        time_limit: float = 60.0,
        preference: str = "balance",
        seed: int = 0,
        train_ratio: float = 0.8,
        parent: Optional[str] = None,
        progress: Optional[_Progress] = None,
        backbones: Optional[Sequence[str]] = None,
        resolution: Optional[int] = None,
        fine_tune: bool = True,
        ensemble: bool = True,
        device: str = "cpu",
        weights: Optional[Sequence[Tuple[str, _Path]]] = None,
        fine_tune_arms: Optional[str] = None,
        max_latency_ms: Optional[float] = None,
        max_model_mb: Optional[float] = None,
        refit_full: Optional[bool] = None,
    ) -> str: ...
    def load_image_model(self, version: str) -> ImageModel: ...
    def task(self) -> str: ...
    def import_images(self, folder: _Path) -> str: ...
    def samples(self, which: str = "all", *, label: Optional[str] = None) -> str: ...
    def label_counts(self) -> str: ...
    def add_label(self, ids: Sequence[int], label: str) -> int: ...
    def set_labels(self, id: int, labels: Sequence[str]) -> None: ...
    def rename_label(self, old: str, new: str) -> int: ...
    def delete_label(self, label: str, *, mode: str = "label", confirm: bool = False) -> str: ...
    def delete_samples(self, ids: Sequence[int]) -> int: ...
    def load_model(self, version: str) -> TabularModel: ...
