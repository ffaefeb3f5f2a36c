"""What ``ImagePredictor`` accepts as images, turned into what the engine reads: file paths
(decoded in Rust, EXIF orientation included) or 8-bit RGB pixels (numpy arrays and PIL images
already in memory)."""

from __future__ import annotations

import os
import shutil
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import DataError, InvalidParameterError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

#: 8-bit RGB pixels as the engine takes them: ``(bytes, height, width)``.
Pixels = Tuple[bytes, int, int]
#: One image: a file path or its pixels.
Item = Union[str, Pixels]

#: Files, folders, numpy arrays (``H×W``, ``H×W×1|3|4``, or a batch ``N×H×W×C``), PIL images,
#: or a list mixing them.
Images = Any


def image_items(images: Images) -> List[Item]:
    """One item per image, in order: a folder gives its images (recursively, sorted by path),
    a 4-d array its first axis."""
    if isinstance(images, (str, os.PathLike)):
        return list(_paths(images))
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [_pixels(a, f"images[{i}]") for i, a in enumerate(images)]
    if isinstance(images, np.ndarray) or _is_pil(images):
        return [_pixels(images, "images")]
    if hasattr(images, "__iter__") and not isinstance(images, (bytes, dict)):
        # A list, a tuple, a pandas Series of paths, a generator…
        out: List[Item] = []
        for i, item in enumerate(images):
            if isinstance(item, (str, os.PathLike)):
                out.append(os.fspath(item))
            elif isinstance(item, np.ndarray) or _is_pil(item):
                out.append(_pixels(item, f"images[{i}]"))
            else:
                raise InvalidParameterError(f"images[{i}]: expected a path, a numpy array or a PIL image; got {type(item).__name__}")
        return out
    raise InvalidParameterError(
        f"images: expected a path, a folder, a numpy array, a PIL image or a list of them; got {type(images).__name__}"
    )


def rows_of(
    items: List[Item],
    from_files: Callable[[List[str]], List[Tuple[List[float], Optional[str]]]],
    from_pixels: Callable[[List[Pixels]], List[List[float]]],
    width: int,
) -> np.ndarray:
    """The engine's rows for ``items`` (``width`` values each), files and pixels each in one
    call, put back in the items' order. An unreadable file raises :class:`DataError` naming it."""
    out = np.zeros((len(items), width), dtype=np.float32)
    files = [(i, item) for i, item in enumerate(items) if isinstance(item, str)]
    arrays = [(i, item) for i, item in enumerate(items) if not isinstance(item, str)]
    if files:
        rows = from_files([path for _, path in files])
        errors = [e for _, e in rows if e is not None]
        if errors:
            raise DataError(errors[0] if len(errors) == 1 else f"{len(errors)} unreadable images; first: {errors[0]}")
        out[[i for i, _ in files]] = np.asarray([r for r, _ in rows], dtype=np.float32).reshape(len(files), width)
    if arrays:
        scores = from_pixels([pixels for _, pixels in arrays])
        out[[i for i, _ in arrays]] = np.asarray(scores, dtype=np.float32).reshape(len(arrays), width)
    return out


def _paths(path: Union[str, "os.PathLike[str]"]) -> List[str]:
    """A folder's images (recursively, sorted), or the one file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        found: List[str] = []
        for root, _, files in os.walk(path):
            found += [os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_SUFFIXES)]
        return sorted(found)
    return [path]


def _is_pil(value: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # no Pillow: nothing can be a PIL image
        return False
    return isinstance(value, Image.Image)


def _pixels(image: Any, name: str) -> Pixels:
    """An array or PIL image as 8-bit RGB: grey is repeated over the three channels and an alpha
    channel dropped (as for files); other dtypes and shapes are refused, naming ``name``."""
    if _is_pil(image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise InvalidParameterError(
            f"{name}: expected 8-bit pixels (dtype uint8, 0-255); got {array.dtype}"
            " (for floats in [0, 1]: (a * 255).round().astype(numpy.uint8))"
        )
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InvalidParameterError(
            f"{name}: expected height × width or height × width × 1, 3 or 4 channels; got shape {array.shape}"
        )
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif array.shape[2] == 4:
        array = array[:, :, :3]
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise InvalidParameterError(f"{name}: a {height}×{width} image has no pixels")
    return np.ascontiguousarray(array).tobytes(), int(height), int(width)


def write_labelled(
    images: Images,
    labels: Sequence[Any],
    root: str,
    write_png: Callable[[str, bytes, int, int], None],
) -> None:
    """``images`` with their ``labels`` in ``root`` as SPEC's side-by-side files: ``000000.png``
    (a file keeps its extension and is hard-linked, or copied) beside ``000000.txt`` holding
    its labels, one per line. A label is a string (or anything ``str`` writes, such as an
    integer) or, for multi-label data, a list of them."""
    items = image_items(images)
    labels = list(labels)
    if len(labels) != len(items):
        raise InvalidParameterError(f"labels: {len(labels)} labels for {len(items)} images")
    for i, (item, label) in enumerate(zip(items, labels)):
        stem = os.path.join(root, f"{i:06d}")
        lines = _label_lines(label, f"labels[{i}]")
        if isinstance(item, str):
            target = stem + os.path.splitext(item)[1].lower()
            try:
                os.link(item, target)
            except FileNotFoundError:
                raise DataError(f"{item}: no such image file") from None
            except OSError:
                shutil.copyfile(item, target)
        else:
            write_png(stem + ".png", *item)
        with open(stem + ".txt", "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


def _label_lines(label: Any, name: str) -> List[str]:
    """The lines of one image's label file; an empty or multi-line label is refused."""
    values = sorted(label) if isinstance(label, (set, frozenset)) else label
    if isinstance(values, (list, tuple, np.ndarray)):
        lines = [str(v) for v in values]
    else:
        lines = [str(values)]
    if not lines:
        raise InvalidParameterError(f"{name}: no label")
    for line in lines:
        if not line.strip() or "\n" in line or "\r" in line:
            raise InvalidParameterError(f"{name}: {line!r} is not a label (empty, or several lines)")
    return [line.strip() for line in lines]
