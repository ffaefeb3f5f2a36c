"""Data in and out: turns the frames users have into the columns the Rust core reads, and
predictions back into the same kind of frame.

Numbers and times cross as one float64 buffer per column (NaN for missing); text as a list of
``str | None``. pandas, polars and pyarrow are optional: each is imported only when the data
is one of its objects.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import DataError

Column = Tuple[str, str, Any]
"""One column for the Rust core: ``(name, "number" | "time" | "text", data)``."""

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class Frame:
    """Data ready for the Rust core, plus what is needed to shape results like the input."""

    path: Optional[str] = None
    columns: Optional[List[Column]] = None
    kind: str = "numpy"
    """``path``, ``pandas``, ``polars``, ``arrow``, ``dict`` or ``numpy``."""
    index: Any = None
    names: List[str] = field(default_factory=list)

    def call_args(self) -> Dict[str, Any]:
        """Keyword arguments for the extension's ``path=`` / ``columns=`` parameters."""
        if self.path is not None:
            return {"path": self.path}
        return {"columns": self.columns}


def _module_of(data: Any) -> str:
    return type(data).__module__.split(".")[0]


def _number(name: str, values: Any) -> Column:
    array = np.ascontiguousarray(values, dtype=np.float64)
    return (name, "number", array.tobytes())


def _text(name: str, values: Sequence[Any]) -> Column:
    out: List[Optional[str]] = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
        elif type(v).__name__ in ("NAType", "NaTType"):
            out.append(None)
        else:
            out.append(v if isinstance(v, str) else str(v))
    return (name, "text", out)


def _time_from_datetime64(name: str, values: Any) -> Column:
    array = np.asarray(values).astype("datetime64[ms]")
    millis = array.astype(np.int64).astype(np.float64)
    millis[np.isnat(array)] = np.nan
    return (name, "time", millis.tobytes())


def _numpy_column(name: str, values: Any) -> Column:
    array = np.asarray(values)
    if array.dtype.kind in "biuf":
        return _number(name, array)
    if array.dtype.kind == "M":
        return _time_from_datetime64(name, array)
    return _text(name, array.tolist())


def _pandas_columns(frame: Any) -> List[Column]:
    import pandas as pd

    columns: List[Column] = []
    for name in frame.columns:
        series = frame[name]
        dtype = series.dtype
        label = str(name)
        if pd.api.types.is_bool_dtype(dtype) or (
            pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
        ):
            columns.append(_number(label, series.to_numpy(dtype="float64", na_value=np.nan)))
        elif pd.api.types.is_datetime64_any_dtype(dtype):
            if getattr(dtype, "tz", None) is not None:
                series = series.dt.tz_convert("UTC").dt.tz_localize(None)
            columns.append(_time_from_datetime64(label, series.to_numpy()))
        else:
            columns.append(_text(label, series.astype(object).tolist()))
    return columns


def _polars_columns(frame: Any) -> List[Column]:
    import polars as pl

    columns: List[Column] = []
    for series in frame.get_columns():
        dtype = series.dtype
        name = series.name
        if dtype.is_numeric() or dtype == pl.Boolean:
            values = series.cast(pl.Float64).fill_null(float("nan")).to_numpy()
            columns.append(_number(name, values))
        elif dtype in (pl.Date, pl.Datetime) or isinstance(dtype, pl.Datetime):
            millis = series.cast(pl.Datetime("ms")).dt.epoch("ms").cast(pl.Float64)
            columns.append((name, "time", millis.fill_null(float("nan")).to_numpy().tobytes()))
        else:
            try:
                columns.append(_text(name, series.cast(pl.Utf8).to_list()))
            except Exception:  # nested types cannot be cast to text: format each value
                columns.append(_text(name, series.to_list()))
    return columns


def _arrow_columns(table: Any) -> List[Column]:
    import pyarrow as pa
    import pyarrow.compute as pc

    columns: List[Column] = []
    for name, column in zip(table.column_names, table.columns):
        kind = column.type
        if (
            pa.types.is_integer(kind)
            or pa.types.is_floating(kind)
            or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind)
        ):
            values = pc.fill_null(pc.cast(column, pa.float64()), float("nan"))
            columns.append(_number(name, values.to_numpy()))
        elif pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            millis = pc.cast(pc.cast(column, pa.timestamp("ms")), pa.int64())
            values = pc.fill_null(pc.cast(millis, pa.float64()), float("nan"))
            columns.append((name, "time", values.to_numpy().astype(np.float64).tobytes()))
        else:
            columns.append(_text(name, column.to_pylist()))
    return columns


def to_frame(data: Any, *, feature_names: Optional[Sequence[str]] = None) -> Frame:
    """Convert ``data`` (a path, pandas/polars DataFrame, pyarrow Table, dict of columns,
    list of records or 2-D numpy array) into a :class:`Frame`."""
    if isinstance(data, Frame):
        return data
    if isinstance(data, (str, os.PathLike)):
        return Frame(path=os.fspath(data), kind="path")
    module = _module_of(data)
    type_name = type(data).__name__
    if module == "pandas" and type_name == "DataFrame":
        return Frame(
            columns=_pandas_columns(data),
            kind="pandas",
            index=data.index,
            names=[str(c) for c in data.columns],
        )
    if module == "pandas" and type_name == "Series":
        return to_frame(data.to_frame())
    if module == "polars" and type_name == "LazyFrame":
        data = data.collect()
        type_name = "DataFrame"
    if module == "polars" and type_name == "DataFrame":
        return Frame(columns=_polars_columns(data), kind="polars", names=list(data.columns))
    if module == "pyarrow" and type_name in ("Table", "RecordBatch"):
        return Frame(columns=_arrow_columns(data), kind="arrow", names=list(data.column_names))
    if isinstance(data, Mapping):
        columns = [_numpy_column(str(k), v) for k, v in data.items()]
        return Frame(columns=columns, kind="dict", names=[str(k) for k in data])
    if isinstance(data, list) and data and all(isinstance(r, Mapping) for r in data):
        names: List[str] = []
        for record in data:
            names.extend(str(k) for k in record if str(k) not in names)
        records: Dict[str, List[Any]] = {n: [r.get(n) for r in data] for n in names}
        columns = [_numpy_column(n, _objects(v)) for n, v in records.items()]
        return Frame(columns=columns, kind="dict", names=names)
    array = np.asarray(data)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise DataError(
            f"expected a path, a DataFrame, a pyarrow Table, a dict of columns or a 2-D array, "
            f"got {type(data).__name__} with {array.ndim} dimensions"
        )
    names = list(feature_names) if feature_names is not None else [
        f"x{i}" for i in range(array.shape[1])
    ]
    if len(names) != array.shape[1]:
        raise DataError(f"{len(names)} feature names for {array.shape[1]} columns")
    columns = [_numpy_column(names[i], array[:, i]) for i in range(array.shape[1])]
    return Frame(columns=columns, kind="numpy", names=names)


def _objects(values: List[Any]) -> Any:
    """A list of record values as a numpy array: numeric if every present value is a number."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def with_column(frame: Frame, name: str, values: Any) -> Frame:
    """A copy of ``frame`` (not a path) with one more column (e.g. scikit-learn's ``y``)."""
    if frame.columns is None:
        raise DataError("cannot add a label column to data read from a file")
    column = _text(name, list(values)) if not isinstance(values, tuple) else values
    return Frame(
        columns=[*frame.columns, column],
        kind=frame.kind,
        index=frame.index,
        names=[*frame.names, name],
    )


def natural_labels(classes: Sequence[str]) -> List[Any]:
    """Class names as the user most likely wrote them: integers when every class is an
    integer literal, floats when every class is a number, text otherwise."""

    def as_int(text: str) -> Optional[int]:
        try:
            value = int(text)
        except ValueError:
            return None
        return value if str(value) == text else None

    ints = [as_int(c) for c in classes]
    if classes and all(i is not None for i in ints):
        return ints
    try:
        floats = [float(c) for c in classes]
    except ValueError:
        return list(classes)
    if all(math.isfinite(f) for f in floats):
        return floats
    return list(classes)


def shape_vector(frame: Frame, values: Any, name: str) -> Any:
    """Predictions in the input's kind: a pandas/polars Series, a pyarrow Array or numpy."""
    if frame.kind == "pandas":
        import pandas as pd

        return pd.Series(values, index=frame.index, name=name)
    if frame.kind == "polars":
        import polars as pl

        return pl.Series(name, values)
    if frame.kind == "arrow":
        import pyarrow as pa

        return pa.array(values)
    return np.asarray(values)


def shape_matrix(frame: Frame, matrix: np.ndarray, columns: Sequence[Any]) -> Any:
    """Class probabilities in the input's kind: a DataFrame/Table with a column per class,
    or a 2-D numpy array."""
    if frame.kind == "pandas":
        import pandas as pd

        return pd.DataFrame(matrix, index=frame.index, columns=list(columns))
    if frame.kind == "polars":
        import polars as pl

        return pl.DataFrame({str(c): matrix[:, i] for i, c in enumerate(columns)})
    if frame.kind == "arrow":
        import pyarrow as pa

        return pa.table({str(c): matrix[:, i] for i, c in enumerate(columns)})
    return matrix


def records_to_table(rows: List[Dict[str, Any]], like: str) -> Any:
    """Rows as a pandas or polars DataFrame when the user works with that library, else as
    the list itself."""
    if like == "pandas":
        import pandas as pd

        return pd.DataFrame(rows)
    if like == "polars":
        import polars as pl

        return pl.DataFrame(rows)
    return rows


__all__ = ["Frame", "to_frame", "with_column", "natural_labels", "shape_vector", "shape_matrix"]
