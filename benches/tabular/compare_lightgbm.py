#!/usr/bin/env python3
"""exeml vs Python LightGBM (default parameters) on the same fixed 75/25 splits, in one run.

usage: compare_lightgbm.py EXEML_BINARY [--time-limit 60s] [--out results.md]

For each data set: exeml trains with the time limit (its own 80/20 train/validation split inside the
75 % training part, early stopping on validation), LightGBM trains with defaults on the whole 75 %;
both predict the same 25 % test part. Reports accuracy / ROC AUC / log loss or RMSE / R², fit wall
time, and the ratios exeml/LightGBM.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, r2_score, roc_auc_score

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import export_datasets  # noqa: E402


def run_exeml(binary, train, test, label, limit, work):
    model = work / "model"
    t0 = time.perf_counter()
    subprocess.run([binary, "train", "--task", "tabular", "--data", str(train), "--label", label,
                    "--time-limit", limit, "--out", str(model)], check=True, capture_output=True)
    fit_s = time.perf_counter() - t0
    preds = work / "preds.csv"
    subprocess.run([binary, "predict", "--model", str(model), "--data", str(test), "--output", str(preds)],
                   check=True, capture_output=True)
    manifest = json.loads((model / "manifest.json").read_text())
    # The first hist_gbdt trial is that family's default point (LightGBM's parameters, with early
    # stopping on the 80 % training part): one booster fit, comparable to LightGBM's default fit.
    gbdt = next((r["outcome"]["fit_secs"] for r in manifest["leaderboard"]
                 if r["trial"]["family"] == "hist_gbdt"), float("nan"))
    return pd.read_csv(preds), fit_s, manifest["family"], gbdt


def run_lightgbm(train, test, label, regression):
    tr, te = pd.read_csv(train), pd.read_csv(test)
    x, y = tr.drop(columns=[label]), tr[label]
    est = lgb.LGBMRegressor(verbose=-1) if regression else lgb.LGBMClassifier(verbose=-1)
    t0 = time.perf_counter()
    est.fit(x, y)
    fit_s = time.perf_counter() - t0
    xt = te.drop(columns=[label])
    if regression:
        return est.predict(xt), None, fit_s
    return est.predict(xt), pd.DataFrame(est.predict_proba(xt), columns=[str(c) for c in est.classes_]), fit_s


def scores(truth, pred, proba, classes):
    if proba is None:
        return {"rmse": float(np.sqrt(mean_squared_error(truth, pred))), "r2": float(r2_score(truth, pred))}
    p = proba[classes].to_numpy()
    p = p / p.sum(axis=1, keepdims=True)
    out = {"accuracy": float(accuracy_score(truth.astype(str), pred.astype(str))),
           "log_loss": float(log_loss(truth.astype(str), p, labels=classes))}
    if len(classes) == 2:
        out["roc_auc"] = float(roc_auc_score((truth.astype(str) == classes[1]).astype(int), p[:, 1]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--time-limit", default="60s")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    work_root = Path(tempfile.mkdtemp())
    export_datasets.export(work_root, split=True)
    lines = ["| data set | task | metric | exeml | LightGBM | exeml fit s | exeml default hist_gbdt fit s "
             "| LightGBM fit s | exeml model |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, (_, label, classes) in export_datasets.SETS.items():
        train, test = work_root / f"{name}_train.csv", work_root / f"{name}_test.csv"
        regression = classes is None
        truth = pd.read_csv(test)[label]
        work = work_root / f"run_{name}"
        work.mkdir()
        ex_preds, ex_fit, family, ex_gbdt = run_exeml(args.binary, train, test, label, args.time_limit, work)
        lg_pred, lg_proba, lg_fit = run_lightgbm(train, test, label, regression)
        if regression:
            ex = scores(truth, ex_preds["prediction"].to_numpy(), None, None)
            lg = scores(truth, lg_pred, None, None)
        else:
            cls = sorted({str(c) for c in truth.astype(str)} | set(lg_proba.columns))
            ex_proba = ex_preds[[c for c in ex_preds.columns if c.startswith("proba_")]].rename(columns=lambda c: c[6:])
            for c in cls:
                if c not in ex_proba:
                    ex_proba[c] = 0.0
                if c not in lg_proba:
                    lg_proba[c] = 0.0
            ex = scores(truth, ex_preds["prediction"].astype(str).to_numpy(), ex_proba, cls)
            lg = scores(truth, lg_pred, lg_proba, cls)
        for metric in ex:
            lines.append(f"| {name} | {'regression' if regression else 'classification'} | {metric} | "
                         f"{ex[metric]:.4f} | {lg[metric]:.4f} | {ex_fit:.2f} | {ex_gbdt:.2f} | {lg_fit:.2f} | "
                         f"{family} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
