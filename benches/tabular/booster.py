#!/usr/bin/env python3
"""exeml's histogram booster vs LightGBM, both with LightGBM's default parameters, in one run.

usage: booster.py BOOSTER_FIT_BINARY [--out results.md] [--repeats 3] [--sets digits,...]

BOOSTER_FIT_BINARY is `target/release/examples/booster_fit` (`cargo build --release --example
booster_fit`). For each data set (scikit-learn's built-ins on the fixed 75/25 split of
export_datasets.py, and three generated 100,000-row sets), both fit on the training part with
100 rounds, 31 leaves, ≥ 20 rows per leaf, learning rate 0.1, 255 bins and no early stopping, and
predict the test part. Reported: the test metric of each, and the fit time (median of --repeats
fits, alternating the two tools; exeml's is timed inside the example, around `Booster::fit`
only, LightGBM's around `fit` only; CSV reading is not counted for either).
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.datasets import make_classification, make_regression
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import export_datasets  # noqa: E402

GENERATED_ROWS = 100_000


def generated(work):
    """Three generated 100k-row sets (7 classes, binary, regression), written as CSVs."""
    sets = []
    specs = [
        ("generated_multiclass", "multiclass", lambda: make_classification(
            GENERATED_ROWS, 40, n_informative=20, n_classes=7, n_clusters_per_class=2, random_state=0)),
        ("generated_binary", "binary", lambda: make_classification(
            GENERATED_ROWS, 40, n_informative=15, random_state=1)),
        ("generated_regression", "regression", lambda: make_regression(
            GENERATED_ROWS, 40, n_informative=20, noise=10.0, random_state=2)),
    ]
    for name, problem, make in specs:
        x, y = make()
        frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
        frame["target"] = y if problem == "regression" else [f"c{v}" for v in y]
        strat = frame["target"] if problem != "regression" else None
        train, test = train_test_split(frame, test_size=0.25, random_state=0, stratify=strat)
        train.to_csv(work / f"{name}_train.csv", index=False)
        test.to_csv(work / f"{name}_test.csv", index=False)
        sets.append((name, "target", problem))
    return sets


def builtin(work):
    export_datasets.export(work, split=True)
    sets = []
    for name, (_, label, classes) in export_datasets.SETS.items():
        problem = "regression" if classes is None else ("binary" if len(classes) == 2 else "multiclass")
        sets.append((name, label, problem))
    return sets


def run_exeml(binary, train, test, label, problem):
    out = subprocess.run([binary, str(train), str(test), label, problem], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def run_lightgbm(train, test, label, problem):
    tr, te = pd.read_csv(train), pd.read_csv(test)
    x, y = tr.drop(columns=[label]), tr[label]
    if problem == "regression":
        est = lgb.LGBMRegressor(verbose=-1)
    else:
        est = lgb.LGBMClassifier(verbose=-1)
    t0 = time.perf_counter()
    est.fit(x, y)
    fit_s = time.perf_counter() - t0
    xt = te.drop(columns=[label])
    pred = est.predict(xt) if problem == "regression" else est.predict_proba(xt)
    return fit_s, pred, (None if problem == "regression" else [str(c) for c in est.classes_])


def metrics(problem, y_true, pred, classes):
    if problem == "regression":
        return {"rmse": float(np.sqrt(mean_squared_error(y_true, pred)))}
    probs = np.asarray(pred).reshape(len(y_true), len(classes))
    labels = [classes[i] for i in probs.argmax(axis=1)]
    y = [str(v) for v in y_true]
    return {"accuracy": accuracy_score(y, labels),
            "log_loss": log_loss(y, probs, labels=classes)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--out", default=str(HERE / "last-booster-results.md"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sets", help="comma-separated subset of the data set names (default: all)")
    args = ap.parse_args()
    lines = ["| data set | rows (train) | metric | exeml booster | LightGBM | exeml fit s | LightGBM fit s "
             "| exeml / LightGBM fit time |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wanted = set(args.sets.split(",")) if args.sets else None
        for name, label, problem in builtin(work) + generated(work):
            if wanted is not None and name not in wanted:
                continue
            train, test = work / f"{name}_train.csv", work / f"{name}_test.csv"
            y_test = pd.read_csv(test, dtype={label: float if problem == "regression" else str})[label]
            ex_times, lg_times = [], []
            for _ in range(args.repeats):
                ex = run_exeml(args.binary, train, test, label, problem)
                ex_times.append(ex["fit_s"])
                lg_fit, lg_pred, lg_classes = run_lightgbm(train, test, label, problem)
                lg_times.append(lg_fit)
            ex_m = metrics(problem, y_test, ex["predictions"], ex["classes"])
            lg_m = metrics(problem, y_test, lg_pred, lg_classes)
            ex_s, lg_s = statistics.median(ex_times), statistics.median(lg_times)
            n_train = sum(1 for _ in open(train)) - 1
            for metric in ex_m:
                lines.append(f"| {name} | {n_train} | {metric} | {ex_m[metric]:.4f} | {lg_m[metric]:.4f} | "
                             f"{ex_s:.3f} | {lg_s:.3f} | {ex_s / lg_s:.2f} |")
            print(lines[-1], flush=True)
    report = "\n".join(lines) + "\n"
    Path(args.out).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
