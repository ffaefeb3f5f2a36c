"""The GIL is released while Rust trains and predicts: other Python threads keep running."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd

import exeml


def test_python_threads_run_during_training():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(20_000, 8)), columns=[f"f{i}" for i in range(8)])
    frame["y"] = np.where(frame["f0"] + frame["f1"] > 0, "p", "q")
    done = threading.Event()
    result: dict = {}

    def train():
        result["model"] = exeml.TabularPredictor(label="y", verbosity=0).fit(frame, time_limit=20)
        done.set()

    worker = threading.Thread(target=train)
    worker.start()
    ticks = 0
    while not done.is_set():
        ticks += 1
        done.wait(0.001)
    worker.join()
    assert result["model"].is_fit
    # Holding the GIL for the whole fit would leave this loop one or two iterations.
    assert ticks > 20
