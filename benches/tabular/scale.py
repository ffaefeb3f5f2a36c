#!/usr/bin/env python3
"""Scale check: exeml and LightGBM on a generated table of ROWS × COLS, in one run.

usage: scale.py EXEML_BINARY [--rows 1000000] [--cols 100] [--time-limit 120s] [--out FILE.md]

The table is scikit-learn's make_classification (binary, half the columns informative, seed 0),
written as CSV with the label last and split 80/20 into train/test files. exeml trains with the
time limit (`exeml train`, the whole process timed: CSV parsing, checks, search, refit, saving);
LightGBM (default parameters) trains on the same training file read by pandas. Each tool runs in
its own process; its wall time and peak RSS (ru_maxrss from os.wait4) are reported with the test
accuracy. The issue's target: the limit is honoured and exeml stays within 8 GB.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.metrics import accuracy_score


def peak_rss_mb_of(cmd):
    """Run `cmd` through a tiny launcher and return (wall s, peak RSS MB, stdout text)."""
    launcher = (
        "import os,sys,json,time;t=time.perf_counter();pid=os.fork()\n"
        "if pid==0:\n"
        " os.execvp(sys.argv[1],sys.argv[1:])\n"
        "_,status,ru=os.wait4(pid,0)\n"
        "print(json.dumps({'wall':time.perf_counter()-t,'rss_kb':ru.ru_maxrss,'status':status}),file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", launcher, *cmd], capture_output=True, text=True)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    if report["status"] != 0:
        sys.exit(f"{cmd[0]} failed:\n{proc.stderr[-3000:]}")
    return report["wall"], report["rss_kb"] / 1000.0, proc.stdout


LIGHTGBM_WORKER = """
import sys, time, json
import pandas as pd, lightgbm as lgb
train, test, label = sys.argv[1:4]
tr = pd.read_csv(train); te = pd.read_csv(test)
t = time.perf_counter()
est = lgb.LGBMClassifier(verbose=-1).fit(tr.drop(columns=[label]), tr[label])
fit = time.perf_counter() - t
pred = est.predict(te.drop(columns=[label]))
print(json.dumps({"fit": fit, "pred": [str(p) for p in pred]}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--time-limit", default="120s")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="exeml-scale-"))
    x, y = make_classification(n_samples=args.rows, n_features=args.cols,
                               n_informative=args.cols // 2, random_state=0)
    frame = pd.DataFrame(x.astype(np.float32), columns=[f"f{i}" for i in range(args.cols)])
    frame["label"] = np.where(y == 1, "yes", "no")
    cut = int(args.rows * 0.8)
    train, test = work / "train.csv", work / "test.csv"
    frame.iloc[:cut].to_csv(train, index=False, float_format="%.5g")
    frame.iloc[cut:].to_csv(test, index=False, float_format="%.5g")
    truth = frame["label"].iloc[cut:].to_numpy()
    size_mb = train.stat().st_size / 1e6
    del frame, x, y

    model = work / "model"
    wall, rss, _ = peak_rss_mb_of([args.binary, "train", "--task", "tabular", "--data", str(train),
                                   "--label", "label", "--time-limit", args.time_limit,
                                   "--out", str(model)])
    preds = work / "preds.csv"
    subprocess.run([args.binary, "predict", "--model", str(model), "--data", str(test),
                    "--output", str(preds)], check=True, capture_output=True)
    exeml_acc = accuracy_score(truth, pd.read_csv(preds)["prediction"].astype(str))
    manifest = json.loads((model / "manifest.json").read_text())

    lg_wall, lg_rss, lg_out = peak_rss_mb_of([sys.executable, "-c", LIGHTGBM_WORKER, str(train),
                                              str(test), "label"])
    lg = json.loads(lg_out.strip().splitlines()[-1])
    lg_acc = accuracy_score(truth, lg["pred"])

    limit = manifest["lineage"]["time_limit_secs"]
    lines = [
        f"generated: {args.rows} rows × {args.cols} columns (train CSV {size_mb:.0f} MB), "
        f"time limit {args.time_limit}",
        "",
        "| tool | test accuracy | process s | process s / limit | peak RSS MB | model |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| exeml | {exeml_acc:.4f} | {wall:.1f} | {wall / limit:.2f} | {rss:.0f} | "
        f"{manifest['family']} ({len(manifest['leaderboard'])} trials, refit: "
        f"{manifest['lineage'].get('refit')}) |",
        f"| LightGBM defaults | {lg_acc:.4f} | {lg_wall:.1f} (fit {lg['fit']:.1f}) | — | {lg_rss:.0f} | "
        "one default fit |",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    print(f"work files in {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
