#!/usr/bin/env python3
"""exeml against itself: the same data sets and splits as compare_automl.py, trained once per
variant of `exeml train` options, in one run. For choosing a default on measurements.

usage:
  benches/tabular/.venv/bin/python benches/tabular/variants.py EXEML_BINARY \\
      --variant NAME="OPTIONS" [--variant NAME2="OPTIONS2" ...] [--time-limit 60s] \\
      [--sets iris,wine,...] [--out FILE.md]

  e.g. --variant bagged="--refit-full false" --variant refit_full="--refit-full true"

Per data set and variant: the test metrics (accuracy + log loss, or rmse + r2), the chosen
model, fit s, the one-row latency (`exeml speed`: median of 200 calls), the model folder
size and peak RSS, measured as compare_automl.py measures exeml. The variants of a set run one
after the other on the same split; the report ends with each variant's mean rank on the primary
metric (accuracy, rmse) and the median latency and size ratios to the first variant.
"""
import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import export_datasets  # noqa: E402
from compare_automl import evaluate, exeml_version, fmt, parse_seconds, read_split, run_exeml, sig, table  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--variant", action="append", required=True, help='NAME="exeml train options"')
    ap.add_argument("--time-limit", default="60s")
    ap.add_argument("--sets", default=",".join(export_datasets.ALL))
    ap.add_argument("--out", default=str(HERE / "last-variants-results.md"))
    args = ap.parse_args()
    variants = []
    for v in args.variant:
        name, sep, options = v.partition("=")
        if not sep or not name:
            ap.error(f"--variant {v!r}: expected NAME=\"OPTIONS\"")
        variants.append((name, shlex.split(options)))
    names = [n for n, _ in variants]
    limit_s = parse_seconds(args.time_limit)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    work_root = Path(tempfile.mkdtemp(prefix="exeml-variants-bench-"))
    export_datasets.export(work_root, split=True, names=sets)
    metric_rows, cost_rows, primary = [], [], {}
    for name in sets:
        label, regression = export_datasets.describe(name)
        train, test = work_root / f"{name}_train.csv", work_root / f"{name}_test.csv"
        truth = read_split(test, label, regression)[label]
        results = {}
        for variant, options in variants:
            print(f"[{time.strftime('%H:%M:%S')}] {name}: {variant} ...", file=sys.stderr, flush=True)
            work = work_root / f"run_{name}_{variant}"
            work.mkdir()
            try:
                results[variant] = run_exeml(args.binary, train, test, label, args.time_limit, limit_s, work,
                                             regression, options)
            except Exception as e:  # noqa: BLE001 - one failed run must not end the benchmark
                print(f"  {variant} failed on {name}: {e}", file=sys.stderr, flush=True)
        classes = None if regression else sorted(
            set(truth.astype(str)) | {c for r in results.values() for c in r.get("proba", {})})
        scores = {v: evaluate(r, truth, regression, classes) for v, r in results.items()}
        metrics = ["rmse", "r2"] if regression else ["accuracy", "log_loss"]
        for m in metrics:
            metric_rows.append([name, m] + [fmt(scores[v][m]) if v in scores else "failed" for v in names])
        key = metrics[0]
        primary[name] = pd.Series({v: scores[v][key] if v in scores else np.nan for v in names})
        if regression:
            primary[name] = -primary[name]
        for v in names:
            r = results.get(v)
            if r:
                cost_rows.append([name, v, r["info"], f"{r['fit_s']:.2f}", sig(r["latency_ms"]), sig(r["size_mb"]),
                                  f"{r['rss_mb']:.0f}"])
    ranks = pd.concat([s.rank(ascending=False, na_option="bottom") for s in primary.values()], axis=1)
    first = names[0]
    summary = []
    for v in names:
        lat, size = [], []
        for row in cost_rows:
            if row[1] == v:
                base = next((r for r in cost_rows if r[0] == row[0] and r[1] == first), None)
                if base:
                    lat.append(float(row[4]) / float(base[4]))
                    size.append(float(row[5]) / float(base[5]))
        summary.append([v, " ".join(dict(variants)[v]) or "(defaults)", f"{ranks.loc[v].mean():.2f}",
                        sig(statistics.median(lat)) if lat else "", sig(statistics.median(size)) if size else ""])
    text = "\n".join([
        f"exeml variants: {exeml_version(args.binary)}, --time-limit {args.time_limit}, run {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        "### Test metrics", "", table(["data set", "metric"] + names, metric_rows), "",
        "### Cost", "", table(["data set", "variant", "model", "fit s", "1-row ms", "MB", "peak RSS MB"], cost_rows), "",
        "### Summary", "",
        table(["variant", "options", "mean rank", f"median latency / {first}", f"median size / {first}"], summary),
        "",
    ])
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
