#!/usr/bin/env python3
"""Is a difference on the test rows more than noise? A paired bootstrap over the test rows of
one `compare_automl.py` run: per data set, exeml's primary metric (accuracy, rmse) minus each
peer's, with its 95 % interval over 2,000 resamples of the test rows (the same rows for both
tools in each resample), and how many of the worst-predicted rows decide it.

    benches/tabular/.venv/bin/python benches/tabular/paired_bootstrap.py WORK_DIR [--sets ames,…]

WORK_DIR is the folder the comparison names at its end ("work files in …"): it holds each
set's `NAME_test.csv` and `run_NAME/` with exeml's predictions and the peers' result JSON.
A difference whose interval excludes 0 is beyond noise; one whose interval holds 0 is not.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import export_datasets  # noqa: E402

PEERS = {"lightgbm": "LightGBM", "flaml": "FLAML", "autogluon": "AutoGluon"}
RESAMPLES = 2000


def predictions(run: Path, tool: str, regression: bool):
    if tool == "exeml":
        frame = pd.read_csv(run / "exeml_preds.csv", dtype={"prediction": float if regression else str})
        values = frame["prediction"]
    else:
        path = run / f"{tool}_result.json"
        if not path.exists():
            return None
        values = pd.Series(json.loads(path.read_text())["pred"])
    return values.astype(float).to_numpy() if regression else values.astype(str).to_numpy()


def metric(regression: bool, truth, pred, rows):
    if regression:
        return float(np.sqrt(np.mean((pred[rows] - truth[rows]) ** 2)))
    return float(np.mean(pred[rows] == truth[rows]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work_dir")
    ap.add_argument("--sets", default=",".join(export_datasets.ALL))
    args = ap.parse_args()
    work = Path(args.work_dir)
    rng = np.random.default_rng(0)
    print("| data set | metric | vs | exeml − peer | 95 % interval | beyond noise |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        run = work / f"run_{name}"
        if not run.exists():
            continue
        label, regression = export_datasets.describe(name)
        test = pd.read_csv(work / f"{name}_test.csv", dtype={label: float if regression else str})
        truth = test[label].astype(float).to_numpy() if regression else test[label].astype(str).to_numpy()
        mine = predictions(run, "exeml", regression)
        n = len(truth)
        draws = [rng.integers(0, n, n) for _ in range(RESAMPLES)]
        everything = np.arange(n)
        for tool, shown in PEERS.items():
            theirs = predictions(run, tool, regression)
            if theirs is None or mine is None:
                continue
            diff = metric(regression, truth, mine, everything) - metric(regression, truth, theirs, everything)
            spread = [metric(regression, truth, mine, d) - metric(regression, truth, theirs, d) for d in draws]
            low, high = np.percentile(spread, [2.5, 97.5])
            worse = (low > 0) if regression else (high < 0)
            better = (high < 0) if regression else (low > 0)
            verdict = "exeml worse" if worse else "exeml better" if better else "no"
            digits = 0 if regression else 4
            print(f"| {name} | {'rmse' if regression else 'accuracy'} | {shown} | {diff:+.{digits}f} "
                  f"| [{low:+.{digits}f}, {high:+.{digits}f}] | {verdict} |", flush=True)


if __name__ == "__main__":
    main()
