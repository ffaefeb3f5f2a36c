"""Results that show themselves well in Jupyter: the evaluation (metrics, per-class table,
confusion matrix), the leaderboard and feature importance. Each is a plain ``dict`` or
``list`` underneath, so code can use it directly; ``_repr_html_`` draws it in a notebook and
``to_pandas()`` hands it to pandas."""

from __future__ import annotations

import html
from typing import Any, Dict, Iterable, List, Optional, Sequence

_TABLE_STYLE = "border-collapse:collapse;font-family:monospace;font-size:12px"
_CELL_STYLE = "border:1px solid #ccc;padding:2px 6px;text-align:right"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "—"
    return str(value)


def html_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], caption: str = "") -> str:
    """A small HTML table (escaped)."""
    head = "".join(f"<th style='{_CELL_STYLE}'>{html.escape(_fmt(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='{_CELL_STYLE}'>{html.escape(_fmt(c))}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    cap = f"<caption style='text-align:left'><b>{html.escape(caption)}</b></caption>" if caption else ""
    return f"<table style='{_TABLE_STYLE}'>{cap}<tr>{head}</tr>{body}</table>"


_HEADLINE = [
    "accuracy",
    "top5_accuracy",
    "micro_f1",
    "macro_f1",
    "weighted_f1",
    "macro_precision",
    "macro_recall",
    "roc_auc",
    "log_loss",
    "hamming_loss",
    "rmse",
    "mae",
    "mse",
    "r2",
    "n",
]


class Evaluation(Dict[str, Any]):
    """An evaluation: a dict of SPEC metrics (``accuracy``, ``per_class``, ``confusion_matrix``,
    ``roc_auc``, ``log_loss`` or ``mae``/``mse``/``rmse``/``r2``, ``bad_cases``…)."""

    @property
    def headline(self) -> Dict[str, Any]:
        """The scalar metrics only."""
        return {k: self[k] for k in _HEADLINE if k in self and self[k] is not None}

    @property
    def confusion_matrix(self) -> Optional[Dict[str, Any]]:
        """``{"labels": [...], "matrix": [[...]]}`` (rows: truth, columns: prediction), or
        ``None`` for regression."""
        return self.get("confusion_matrix")

    def confusion_matrix_frame(self) -> Any:
        """The confusion matrix as a pandas DataFrame (truth × prediction)."""
        import pandas as pd

        cm = self.confusion_matrix
        if cm is None:
            raise ValueError("a regression evaluation has no confusion matrix")
        return pd.DataFrame(
            cm["matrix"],
            index=pd.Index(cm["labels"], name="true"),
            columns=pd.Index(cm["labels"], name="predicted"),
        )

    def per_class_frame(self) -> Any:
        """Precision, recall, F1 and support per class as a pandas DataFrame (index: class),
        or an empty one for regression."""
        import pandas as pd

        per_class = self.get("per_class") or {}
        frame = pd.DataFrame.from_dict(per_class, orient="index")
        frame.index.name = "class"
        return frame

    def bad_cases_frame(self) -> Any:
        """The bad cases (``id`` — a row number or an image path —, ``true``, ``predicted``,
        ``score``) as a pandas DataFrame, worst first, as the evaluation lists them."""
        import pandas as pd

        return pd.DataFrame(
            self.get("bad_cases") or [], columns=["id", "true", "predicted", "score"]
        )

    def plot_confusion_matrix(self, ax: Any = None) -> Any:
        """Draw the confusion matrix with matplotlib (optional dependency); returns the axes."""
        import matplotlib.pyplot as plt

        cm = self.confusion_matrix
        if cm is None:
            raise ValueError("a regression evaluation has no confusion matrix")
        if ax is None:
            _, ax = plt.subplots(figsize=(1 + 0.6 * len(cm["labels"]),) * 2)
        ax.imshow(cm["matrix"], cmap="Blues")
        ticks = range(len(cm["labels"]))
        ax.set_xticks(list(ticks), cm["labels"], rotation=45, ha="right")
        ax.set_yticks(list(ticks), cm["labels"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for i, row in enumerate(cm["matrix"]):
            for j, count in enumerate(row):
                ax.text(j, i, str(count), ha="center", va="center")
        return ax

    def _repr_html_(self) -> str:
        parts = [
            html_table(
                ["metric", "value"],
                self.headline.items(),
                caption=f"{self.get('task', 'evaluation')} · {self.get('problem', '')}",
            )
        ]
        per_class = self.get("per_class")
        if per_class:
            parts.append(
                html_table(
                    ["class", "precision", "recall", "f1", "support"],
                    (
                        [name, m["precision"], m["recall"], m["f1"], m["support"]]
                        for name, m in per_class.items()
                    ),
                    caption="per class",
                )
            )
        cm = self.confusion_matrix
        if cm:
            parts.append(
                html_table(
                    ["true \\ predicted", *cm["labels"]],
                    ([label, *row] for label, row in zip(cm["labels"], cm["matrix"])),
                    caption="confusion matrix",
                )
            )
        bad = self.get("bad_cases") or []
        if bad:
            parts.append(
                html_table(
                    ["row", "true", "predicted", "score"],
                    ([b["id"], b["true"], b["predicted"], b["score"]] for b in bad[:10]),
                    caption=f"worst rows ({len(bad)} listed)",
                )
            )
        return "<div>" + "<br>".join(parts) + "</div>"


class Leaderboard(List[Dict[str, Any]]):
    """Every trial of the search, best first: ``model``, ``score``, ``metric``, ``fit_secs``,
    ``predict_secs``, ``params`` and ``note``."""

    @classmethod
    def from_trials(cls, trials: List[Dict[str, Any]]) -> "Leaderboard":
        rows = cls()
        for record in trials:
            trial, outcome = record["trial"], record["outcome"]
            rows.append(
                {
                    "model": trial["family"],
                    "score": outcome.get("score"),
                    "metric": outcome.get("metric"),
                    "fit_secs": outcome.get("fit_secs"),
                    "predict_secs": outcome.get("predict_secs"),
                    "latency_ms": outcome.get("latency_ms"),
                    "size_mb": outcome.get("size_mb"),
                    "params": trial.get("params", {}),
                    "note": outcome.get("note"),
                }
            )
        return rows

    def to_pandas(self) -> Any:
        """The leaderboard as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(list(self))

    def _repr_html_(self) -> str:
        columns = [
            "model",
            "score",
            "metric",
            "fit_secs",
            "predict_secs",
            "latency_ms",
            "params",
            "note",
        ]
        return html_table(
            ["#", *columns],
            ([i + 1, *[r.get(c) for c in columns]] for i, r in enumerate(self)),
            caption="leaderboard (validation score, higher is better)",
        )


class FeatureImportance(List[Dict[str, Any]]):
    """Permutation importance per column, most important first: ``column``, ``importance``
    (mean drop of accuracy, or rise of RMSE, when the column is shuffled), ``stddev``."""

    def to_pandas(self) -> Any:
        """As a pandas DataFrame indexed by column."""
        import pandas as pd

        return pd.DataFrame(list(self)).set_index("column")

    def _repr_html_(self) -> str:
        return html_table(
            ["column", "importance", "stddev"],
            ([r["column"], r["importance"], r["stddev"]] for r in self),
            caption="permutation feature importance",
        )


__all__ = ["Evaluation", "Leaderboard", "FeatureImportance", "html_table"]
