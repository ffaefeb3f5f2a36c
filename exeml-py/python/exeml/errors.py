"""The exceptions of exeml.

Every error raised by exeml is an :class:`ExemlError` that also subclasses the builtin a
Python user would catch (``ValueError`` for bad data, ``FileNotFoundError`` for a missing file
or project…). The message is the Rust error's: it names the file, column or row at fault.
"""

from __future__ import annotations

__all__ = [
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
]


class ExemlError(Exception):
    """Base class of every exeml error."""


class DataError(ExemlError, ValueError):
    """Input data is malformed: a ragged CSV row, an unknown label, a missing column."""


class DataCheckError(DataError):
    """The data checks refused the data set (too few rows, a constant label…)."""


class InvalidParameterError(ExemlError, ValueError):
    """An argument is invalid (a negative time limit, an unknown preference…)."""


class NotFoundError(ExemlError, FileNotFoundError):
    """A file, project, dataset version or model version does not exist."""


class AlreadyExistsError(ExemlError, FileExistsError):
    """Something with that name already exists."""


class FormatError(ExemlError, ValueError):
    """A saved model or workspace has a format this version cannot read."""


class NotCompiledError(ExemlError, NotImplementedError):
    """A feature (e.g. CUDA) is not compiled into this build."""


class BudgetExhaustedError(ExemlError, TimeoutError):
    """The time limit ran out before any model could be trained."""


class TrainingInterruptedError(ExemlError, RuntimeError):
    """Training was cancelled before any model existed."""


class StoreError(ExemlError, OSError):
    """The project workspace (SQLite index) failed."""


class BackendError(ExemlError, RuntimeError):
    """A model library failed while training or predicting."""


class ExemlOSError(ExemlError, OSError):
    """A file or folder could not be read or written."""


class ExemlPermissionError(ExemlError, PermissionError):
    """A file or folder is not readable or writable."""


class TrainingInterruptedWarning(UserWarning):
    """Ctrl-C stopped training early; the best model found so far was kept."""
