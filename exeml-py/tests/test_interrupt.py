"""Ctrl-C during training stops it cleanly: the best model so far comes back with a warning,
or KeyboardInterrupt if no model exists yet."""

from __future__ import annotations

import os
import signal

import numpy as np
import pandas as pd
import pytest

import exeml


def _big_table(rows: int = 60_000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 12))
    y = np.where(x[:, 0] + np.sin(3 * x[:, 1]) + 0.5 * rng.normal(size=rows) > 0, "a", "b")
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(12)])
    frame["y"] = y
    return frame


@pytest.fixture
def python_handles_ctrl_c():
    """Python's own Ctrl-C handler for the test's duration. A process started in the background
    by a non-interactive shell (`cmd &`, as CI scripts often are) inherits SIGINT ignored, and
    Python then installs no handler: the signal would never reach the search."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_keeps_the_best_model_so_far(python_handles_ctrl_c):
    frame = _big_table()
    predictor = exeml.TabularPredictor(label="y", verbosity=0)
    events: list = []

    def watch(kind, value):
        events.append((kind, value))
        # Ctrl-C once the first trial has produced a model (trials are fitted one at a time, so
        # the second is proposed after the first is scored).
        if kind == "phase" and "trial 2" in str(value) and not interrupted:
            interrupted.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    interrupted: list = []
    with pytest.warns(exeml.TrainingInterruptedWarning):
        model = exeml._exeml.fit_tabular(
            columns=exeml._frames.to_frame(frame).columns, label="y", time_limit=120.0,
            progress=watch, parallel_trials=1,
        )
    assert interrupted, f"the search never reached a second trial: {events}"
    trials = len(__import__("json").loads(model.leaderboard()))
    assert trials >= 1
    predictor._model = model
    assert predictor.evaluate(frame.head(500))["accuracy"] > 0.6


def test_ctrl_c_before_any_model_raises_keyboard_interrupt():
    frame = _big_table()

    def watch(kind, value):
        if kind == "phase" and "checking" in str(value):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        exeml._exeml.fit_tabular(
            columns=exeml._frames.to_frame(frame).columns, label="y", time_limit=600.0,
            progress=watch,
        )
