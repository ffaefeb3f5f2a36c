"""Training progress: a tqdm bar in Jupyter, plain lines elsewhere, nothing at verbosity 0."""

from __future__ import annotations

import sys
from typing import Any, Optional


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _notebook_bar() -> Any:
    """tqdm's notebook bar if tqdm and ipywidgets are installed, else its text bar."""
    try:
        from tqdm.std import tqdm as text_bar  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return None
    try:
        import ipywidgets  # type: ignore[import-not-found, import-untyped, unused-ignore] # noqa: F401
        from tqdm.notebook import tqdm as widget_bar  # type: ignore[import-untyped, unused-ignore]

        return widget_bar
    except ImportError:
        return text_bar


class Reporter:
    """Receives ``(kind, value)`` events from training: ``("phase", message)`` and
    ``("fraction", done)``."""

    def __init__(self, verbosity: int, title: str) -> None:
        self.verbosity = verbosity
        self.bar: Any = None
        self.last_phase = ""
        if verbosity > 0 and _in_notebook():
            bar_class = _notebook_bar()
            if bar_class is not None:
                self.bar = bar_class(total=1000, desc=title, leave=True)
        elif verbosity > 0:
            print(f"exeml: {title}", file=sys.stderr, flush=True)

    def __call__(self, kind: str, value: Any) -> None:
        if kind == "phase":
            self.last_phase = str(value)
            if self.bar is not None:
                self.bar.set_postfix_str(self.last_phase, refresh=True)
            elif self.verbosity > 0:
                print(f"exeml: {self.last_phase}", file=sys.stderr, flush=True)
        elif kind == "fraction" and self.bar is not None:
            self.bar.n = int(min(max(float(value), 0.0), 1.0) * 1000)
            self.bar.refresh()

    def close(self, summary: Optional[str] = None) -> None:
        if self.bar is not None:
            self.bar.n = self.bar.total
            if summary:
                self.bar.set_postfix_str(summary)
            self.bar.close()
        elif self.verbosity > 0 and summary:
            print(f"exeml: {summary}", file=sys.stderr, flush=True)


def reporter(verbosity: int, title: str) -> Optional[Reporter]:
    """A reporter, or ``None`` (no callback at all) at verbosity 0."""
    return Reporter(verbosity, title) if verbosity > 0 else None
