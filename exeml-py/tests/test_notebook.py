"""The example notebooks run top to bottom in a real Jupyter kernel."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _html_outputs(path: Path) -> list:
    """Execute the notebook at `path` (from its folder); no cell may fail. Its HTML outputs."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, errors
    return [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]


def test_example_notebook_runs():
    html = _html_outputs(EXAMPLES / "notebook.ipynb")
    assert any("leaderboard" in h for h in html), "the leaderboard did not render as HTML"
    assert any("confusion matrix" in h for h in html), "the evaluation did not render as HTML"


def test_image_notebook_runs():
    """examples/images.ipynb: train on generated images, leaderboard, evaluation, predictions
    from files and arrays, embeddings (needs the backbone weights, as every image test)."""
    if not any(Path(os.environ.get("EXEML_WEIGHTS_DIR", "/nonexistent")).rglob("mobilenet_v2-*.pth")):
        if os.environ.get("CI") == "true":
            pytest.fail("CI must install the backbone weights (scripts/setup.sh)")
        pytest.skip("backbone weights not installed")
    html = _html_outputs(EXAMPLES / "images.ipynb")
    assert any("leaderboard" in h for h in html), "the leaderboard did not render as HTML"
    assert any("confusion matrix" in h for h in html), "the evaluation did not render as HTML"
