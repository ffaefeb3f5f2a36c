"""Threads: the GIL is released while Rust trains and predicts (other Python threads keep
running), and candle's thread pool is set up to share the cores with exeml's."""

from __future__ import annotations

import os
import subprocess
import sys
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


def _spin_limit_after_import(preset: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "CANDLE_BARRIER_POOL_SPIN_LIMIT"}
    if preset is not None:
        env["CANDLE_BARRIER_POOL_SPIN_LIMIT"] = preset
    code = "import os, exeml; print(os.environ['CANDLE_BARRIER_POOL_SPIN_LIMIT'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def test_candle_spins_briefly_unless_the_user_says_otherwise():
    # Set before the extension loads (candle reads it once); a value already set is kept.
    assert _spin_limit_after_import(None) == "1000"
    assert _spin_limit_after_import("42") == "42"
