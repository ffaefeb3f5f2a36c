#!/usr/bin/env python3
"""exeml vs FLAML vs AutoGluon vs LightGBM defaults on the same fixed 75/25 splits, in one run.

usage:
  compare_automl.py EXEML_BINARY [--time-limit 60s] [--sets iris,wine,...] [--out FILE.md]
  compare_automl.py --worker {flaml,autogluon,lightgbm} --train TRAIN.csv --test TEST.csv
                    --label LABEL --limit SECONDS [--regression] --out RESULT.json  (internal)

  EXEML_BINARY   the exeml CLI to benchmark (e.g. target/release/exeml)
  --time-limit   the budget given to every AutoML tool (exeml's syntax: 90, 90s, 10m, 1h30m);
                 the same number of seconds goes to FLAML (time_budget) and AutoGluon (time_limit).
                 LightGBM defaults have no budget (one fit); its wall/limit is still reported.
  --sets         comma-separated subset of the data sets of export_datasets.py (default: all 13:
                 iris, wine, breast_cancer, diabetes, digits; attrition, credit_data, wa_churn,
                 penguins, hpc_data, ames, sacramento (R modeldata); fashion_mnist_14px (70,000 rows))
  --out          Markdown report (default benches/tabular/last-automl-results.md); also printed

Needs, in the Python that runs it: lightgbm scikit-learn pandas numpy flaml autogluon.tabular and an
importable xgboost < 3 (FLAML's AutoML does not import without it; run.sh installs the CPU-only
xgboost-cpu wheel on Linux). benches/tabular/run.sh installs them into benches/tabular/.venv:
  benches/tabular/run.sh 60s automl                          # all data sets, 60 s per tool
  EXEML_BIN=target/debug/exeml benches/tabular/run.sh 10s automl --sets iris,diabetes

What is measured, per data set and tool (every tool trains in its own child process):
  * test metrics on the 25 % test part: accuracy, log_loss (+ roc_auc when binary) or rmse, r2;
    probabilities are aligned to the sorted class names, labels kept as the CSV's strings;
  * fit s: wall time of the whole `exeml train` process (CSV loading included) for exeml, of the
    `fit(...)` call for the Python tools (their interpreter start and imports are not counted, but
    are in "process s", the whole worker process: imports, fit, test predictions, latency, save);
  * fit s / limit: fit s divided by the time limit in seconds;
  * 1-row predict ms: median of 200 single-row predictions of test rows after 5 warm-up calls, in
    the tool's own process (`automl.predict(X.iloc[[i]])`, `predictor.predict(X.iloc[[i]])`,
    `est.predict(X.iloc[[i]])`); exeml's is `exeml speed --runs 200` on the saved model: the same
    count of one-row `TabularModel::predict` calls in Rust, through the whole feature pipeline, on
    one-row tables of the test rows prepared beforehand (the search's own measurement of the
    chosen model is kept in the results as `search_latency_ms`).
    Neither number crosses a process or HTTP boundary (both are in-process library calls); the
    Python ones include the pandas DataFrame overhead of a one-row frame;
  * batch rows/s: test rows divided by the median time of 3 `predict` calls on the whole test
    part (exeml: `exeml speed`'s batch of the same rows);
  * artifact MB (10^6 bytes): the exeml model folder; pickle of the fitted FLAML AutoML object;
    AutoGluon's output folder (every model it trained, as it leaves it); pickle of the LightGBM
    estimator;
  * peak RSS MB (10^6 bytes): `ru_maxrss` of the training process from os.wait4 (on Linux it also
    covers the children that process waited for). A small launcher process (python -I -S, about
    10 MB) spawns each tool and reads it, because a child forked straight from this driver would
    report at least the driver's own ~200 MB (Linux keeps the peak from before exec).
Summary: mean rank per tool over all (data set, primary metric) pairs (accuracy for
classification, rmse for regression; rank 1 = best, ties averaged, a failed run ranks last), max
fit s / limit per tool, and per data set the latency ratios FLAML/exeml and AutoGluon/exeml, the
artifact-size ratio AutoGluon/exeml and the peak memory of every tool.

FLAML runs with its default metric (roc_auc binary, log_loss multiclass, r2 regression) and its
default estimator list minus the estimators whose packages are missing (run.sh installs xgboost
but not catboost, so FLAML's catboost is left out). AutoGluon runs with presets="medium_quality"
(its default preset) and eval_metric accuracy / root_mean_squared_error; it skips the model types
whose packages are missing (no catboost, torch or fastai: no CatBoost, no neural nets).
"""
import argparse
import importlib.metadata
import json
import os
import pickle
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import export_datasets  # noqa: E402

TOOLS = ["exeml", "flaml", "autogluon", "lightgbm"]
NAMES = {"exeml": "exeml", "flaml": "FLAML", "autogluon": "AutoGluon", "lightgbm": "LightGBM"}
AUTOGLUON_PRESET = "medium_quality"
LATENCY_WARMUP, LATENCY_RUNS, BATCH_RUNS = 5, 200, 3


# ---------------------------------------------------------------- helpers shared by both modes

def parse_seconds(text):
    """exeml's duration syntax (90, 90s, 10m, 1h30m, 1d) in seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    total, number = 0.0, ""
    for c in text:
        if c.isdigit() or c == ".":
            number += c
            continue
        unit = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}.get(c)
        if unit is None or not number:
            raise ValueError(f"bad duration {text!r}: expected e.g. 90s, 10m, 1h30m")
        total, number = total + float(number) * unit, ""
    if number or total <= 0:
        raise ValueError(f"bad duration {text!r}: expected e.g. 90s, 10m, 1h30m")
    return total


def megabytes(path):
    """Size of a file, or of every file under a folder, in 10^6 bytes."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def read_split(path, label, regression):
    """A CSV with the label kept as its text for classification (digits' "0".."9" stay strings)."""
    return pd.read_csv(path, dtype=None if regression else {label: str})


# ---------------------------------------------------------------- worker mode (one tool, one child)

def single_row_latency_ms(predict, x):
    """Median ms of LATENCY_RUNS one-row predictions of the rows of x, after LATENCY_WARMUP calls."""
    n = len(x)
    for i in range(LATENCY_WARMUP):
        predict(x.iloc[[i % n]])
    times = []
    for i in range(LATENCY_RUNS):
        row = x.iloc[[i % n]]
        t0 = time.perf_counter()
        predict(row)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def batch_rows_per_s(predict, x):
    """Rows/s of one predict call on all of x (median of BATCH_RUNS calls)."""
    times = []
    for _ in range(BATCH_RUNS):
        t0 = time.perf_counter()
        predict(x)
        times.append(time.perf_counter() - t0)
    return len(x) / max(statistics.median(times), 1e-9)


def flaml_estimators(regression):
    """FLAML's default estimator list (flaml/automl/task/generic_task.py) minus missing packages."""
    def importable(module):
        try:
            __import__(module)
            return True
        except ImportError:
            return False

    names = ["lgbm", "rf"]
    if importable("xgboost"):
        names += ["xgboost"]
    names += ["extra_tree"]
    if importable("xgboost"):
        names += ["xgb_limitdepth"]
    try:
        from flaml.automl.model import SGDEstimator  # noqa: F401  (FLAML >= 2.2 lists "sgd")
        names += ["sgd"]
    except ImportError:
        pass
    if importable("catboost"):
        names += ["catboost"]
    if not regression:
        names += ["lrl1"]
    return names


def fit_flaml(x, y, regression, limit, out_dir):
    from flaml import AutoML

    estimators = flaml_estimators(regression)
    automl = AutoML()
    t0 = time.perf_counter()
    automl.fit(x, y, task="regression" if regression else "classification", time_budget=limit,
               seed=0, verbose=0, estimator_list=estimators)
    fit_s = time.perf_counter() - t0
    artifact = out_dir / "flaml.pkl"
    with open(artifact, "wb") as f:
        pickle.dump(automl, f, protocol=pickle.HIGHEST_PROTOCOL)
    info = f"{automl.best_estimator} (of {'/'.join(estimators)})"
    proba = None if regression else (lambda xt: (automl.predict_proba(xt), automl.classes_))
    return automl.predict, proba, fit_s, artifact, info


def fit_autogluon(train, label, regression, limit, out_dir):
    from autogluon.tabular import TabularPredictor

    path = out_dir / "autogluon"
    if regression:
        problem, metric = "regression", "root_mean_squared_error"
    else:
        problem = "binary" if train[label].nunique() == 2 else "multiclass"
        metric = "accuracy"
    predictor = TabularPredictor(label=label, path=str(path), verbosity=0, eval_metric=metric,
                                 problem_type=problem)
    t0 = time.perf_counter()
    predictor.fit(train, time_limit=limit, presets=AUTOGLUON_PRESET)
    fit_s = time.perf_counter() - t0
    best = getattr(predictor, "model_best", None) or predictor.get_model_best()
    info = f"{best} ({AUTOGLUON_PRESET})"

    def proba(xt):
        p = predictor.predict_proba(xt)
        return p.to_numpy(), list(p.columns)

    return predictor.predict, None if regression else proba, fit_s, path, info


def fit_lightgbm(x, y, regression, out_dir):
    import lightgbm as lgb

    est = lgb.LGBMRegressor(verbose=-1) if regression else lgb.LGBMClassifier(verbose=-1)
    t0 = time.perf_counter()
    est.fit(x, y)
    fit_s = time.perf_counter() - t0
    artifact = out_dir / "lightgbm.pkl"
    with open(artifact, "wb") as f:
        pickle.dump(est, f, protocol=pickle.HIGHEST_PROTOCOL)
    proba = None if regression else (lambda xt: (est.predict_proba(xt), est.classes_))
    return est.predict, proba, fit_s, artifact, "defaults"


def worker(args):
    out = Path(args.out)
    out_dir = out.parent / f"{args.worker}_artifact"
    out_dir.mkdir(parents=True, exist_ok=True)
    train = read_split(args.train, args.label, args.regression)
    test = read_split(args.test, args.label, args.regression)
    x, y = train.drop(columns=[args.label]), train[args.label]
    xt = test.drop(columns=[args.label])
    if args.worker in ("flaml", "lightgbm"):
        # Text columns become pandas categoricals (one category list for both parts), as a user of
        # LightGBM's or FLAML's scikit-learn API would pass them; AutoGluon reads raw frames.
        for column in x.columns:
            if x[column].dtype == object or xt[column].dtype == object:
                kinds = sorted(set(x[column].dropna().astype(str)) | set(xt[column].dropna().astype(str)))
                x[column] = pd.Categorical(x[column].astype(object).where(x[column].isna(), x[column].astype(str)),
                                           categories=kinds)
                xt[column] = pd.Categorical(xt[column].astype(object).where(xt[column].isna(), xt[column].astype(str)),
                                            categories=kinds)
    if args.worker == "flaml":
        predict, proba, fit_s, artifact, info = fit_flaml(x, y, args.regression, args.limit, out_dir)
    elif args.worker == "autogluon":
        predict, proba, fit_s, artifact, info = fit_autogluon(train, args.label, args.regression,
                                                              args.limit, out_dir)
    else:
        predict, proba, fit_s, artifact, info = fit_lightgbm(x, y, args.regression, out_dir)
    pred = np.asarray(predict(xt))
    result = {"fit_s": fit_s, "info": info}
    if args.regression:
        result["pred"] = [float(v) for v in pred]
    else:
        result["pred"] = [str(v) for v in pred]
        p, classes = proba(xt)
        p = np.asarray(p, dtype=float)
        result["proba"] = {str(c): [float(v) for v in p[:, j]] for j, c in enumerate(classes)}
    result["latency_ms"] = single_row_latency_ms(predict, xt)
    result["batch_rows_s"] = batch_rows_per_s(predict, xt)
    result["size_mb"] = megabytes(artifact)
    out.write_text(json.dumps(result))


# ---------------------------------------------------------------- driver mode

# A child forked straight from this driver (pandas, numpy, ... loaded: ~200 MB) would report at
# least the driver's RSS: Linux keeps a process's peak RSS from before its exec in ru_maxrss. So a
# small launcher (python -I -S, ~10 MB) spawns the tool, waits for it with os.wait4 and writes its
# exit code, wall time and ru_maxrss; the tool's peak then includes at most the launcher's RSS.
LAUNCHER = r"""
import json, os, sys, time
stats, log, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
t0 = time.perf_counter()
try:
    pid = os.posix_spawnp(cmd[0], cmd, os.environ,
                          file_actions=[(os.POSIX_SPAWN_DUP2, fd, 1), (os.POSIX_SPAWN_DUP2, fd, 2)])
except OSError as e:
    os.write(fd, f"cannot start {cmd[0]}: {e}\n".encode())
    rc, wall, maxrss = 127, 0.0, 0
else:
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    rc, maxrss = os.waitstatus_to_exitcode(status), usage.ru_maxrss
with open(stats, "w") as f:
    json.dump({"rc": rc, "wall_s": wall, "maxrss_kib": maxrss}, f)
"""


def run_child(cmd, log, timeout_s):
    """Run cmd to completion; (exit code, wall s, peak RSS MB of cmd's process from os.wait4)."""
    stats = Path(f"{log}.stats.json")
    stats.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", LAUNCHER, str(stats), str(log)] + [str(c) for c in cmd],
                            stdin=subprocess.DEVNULL, start_new_session=True)
    def kill():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    watchdog = threading.Timer(timeout_s, kill)
    watchdog.start()
    try:
        proc.wait()
    finally:
        watchdog.cancel()
    if not stats.exists():
        return proc.returncode or -1, float("nan"), float("nan")
    s = json.loads(stats.read_text())
    return s["rc"], s["wall_s"], s["maxrss_kib"] * 1024 / 1e6  # ru_maxrss is in KiB on Linux


def log_tail(log, n=15):
    lines = Path(log).read_text(errors="replace").splitlines()
    return "\n".join("    " + line for line in lines[-n:])


def exeml_latency_ms(manifest):
    """latency_ms of the leaderboard row of the chosen model (trial family/params = the manifest's)."""
    rows = [r for r in manifest["leaderboard"]
            if r["trial"]["family"] == manifest["family"] and r["trial"]["params"] == manifest["params"]
            and r["outcome"].get("latency_ms") is not None]
    members = manifest.get("ensemble") or []
    ids = {m.get("trial") for m in members} if len(members) == 1 else set()
    preferred = [r for r in rows if r["trial"]["id"] in ids]
    chosen = (preferred or rows or [None])[-1]
    return float("nan") if chosen is None else float(chosen["outcome"]["latency_ms"])


def run_exeml(binary, train, test, label, limit, limit_s, work, regression, extra_args=()):
    model, preds = work / "exeml_model", work / "exeml_preds.csv"
    rc, wall, rss = run_child([binary, "train", "--task", "tabular", "--data", str(train), "--label", label,
                               "--time-limit", limit, "--out", str(model), *extra_args],
                              work / "exeml_train.log", 10 * limit_s + 600)
    if rc != 0:
        raise RuntimeError(f"exeml train exited with {rc}:\n{log_tail(work / 'exeml_train.log')}")
    rc, _, _ = run_child([binary, "predict", "--model", str(model), "--data", str(test), "--output", str(preds)],
                         work / "exeml_predict.log", 600)
    if rc != 0:
        raise RuntimeError(f"exeml predict exited with {rc}:\n{log_tail(work / 'exeml_predict.log')}")
    rc, _, _ = run_child([binary, "speed", "--model", str(model), "--data", str(test), "--runs",
                          str(LATENCY_RUNS), "--batch-runs", str(BATCH_RUNS), "--batch-size", "100000000", "--json"],
                         work / "exeml_speed.json", 600)
    if rc != 0:
        raise RuntimeError(f"exeml speed exited with {rc}:\n{log_tail(work / 'exeml_speed.json')}")
    speed = json.loads((work / "exeml_speed.json").read_text().strip().splitlines()[-1])
    manifest = json.loads((model / "manifest.json").read_text())
    frame = pd.read_csv(preds, dtype={"prediction": float if regression else str})
    result = {"fit_s": wall, "process_s": wall, "rss_mb": rss, "info": manifest["family"],
              "latency_ms": speed["single_ms_median"], "batch_rows_s": speed["batch_per_second"],
              "search_latency_ms": exeml_latency_ms(manifest), "size_mb": megabytes(model)}
    if regression:
        result["pred"] = frame["prediction"].astype(float).tolist()
    else:
        result["pred"] = frame["prediction"].astype(str).tolist()
        result["proba"] = {c[len("proba_"):]: frame[c].astype(float).tolist()
                           for c in frame.columns if c.startswith("proba_")}
    return result


def run_worker(tool, train, test, label, limit_s, work, regression):
    out = work / f"{tool}_result.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", tool, "--train", str(train),
           "--test", str(test), "--label", label, "--limit", repr(limit_s), "--out", str(out)]
    if regression:
        cmd.append("--regression")
    log = work / f"{tool}.log"
    rc, wall, rss = run_child(cmd, log, 10 * limit_s + 600)
    if rc != 0 or not out.exists():
        raise RuntimeError(f"{tool} worker exited with {rc}:\n{log_tail(log)}")
    result = json.loads(out.read_text())
    result.update(process_s=wall, rss_mb=rss)
    return result


def evaluate(result, truth, regression, classes):
    from compare_lightgbm import scores  # the metrics of the exeml-vs-LightGBM script

    if regression:
        return scores(truth, np.asarray(result["pred"], dtype=float), None, None)
    proba = pd.DataFrame(result["proba"])
    for c in classes:
        if c not in proba:
            proba[c] = 0.0
    return scores(truth, np.asarray(result["pred"], dtype=str), proba, classes)


def version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def exeml_version(binary):
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
        return out.stdout.strip() or "?"
    except OSError as e:
        return f"? ({e})"


def fmt(v, digits=4):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "—"
    return f"{v:.{digits}f}"


def sig(v, n=3):
    """v with n significant digits, without exponent (latencies and sizes span 1e-4 to 1e4)."""
    if v is None or not np.isfinite(v):
        return "—"
    if v == 0:
        return "0"
    return f"{v:.{max(0, n - 1 - int(np.floor(np.log10(abs(v)))))}f}"


def ratio(a, b):
    if a is None or b is None or np.isnan(a) or np.isnan(b) or b == 0:
        return float("nan")
    return a / b


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(args, limit_s, sets, results, metrics, errors):
    tools = [NAMES[t] for t in TOOLS]
    flaml_list = {False: flaml_estimators_driver(False), True: flaml_estimators_driver(True)}
    out = [
        "# exeml vs FLAML vs AutoGluon vs LightGBM defaults (tabular)",
        "",
        f"- exeml binary: `{Path(args.binary).resolve()}` ({exeml_version(args.binary)})",
        f"- time limit: {args.time_limit} = {limit_s:g} s for every tool (LightGBM defaults: one fit, no budget)",
        f"- versions: flaml {version('flaml')}, autogluon.tabular {version('autogluon.tabular')}, "
        f"lightgbm {version('lightgbm')}, scikit-learn {version('scikit-learn')}, pandas {version('pandas')}, "
        f"numpy {version('numpy')}, Python {platform.python_version()}",
        f"- AutoGluon: presets=\"{AUTOGLUON_PRESET}\" (its default preset), eval_metric accuracy / "
        "root_mean_squared_error",
        f"- FLAML: default metric, estimator_list {flaml_list[False]} (classification), "
        f"{flaml_list[True]} (regression)",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}; "
        f"run {time.strftime('%Y-%m-%d %H:%M')}",
        "- data: fixed 75/25 splits of export_datasets.py (seed 0; stratified for classification); metrics on the 25 % test part",
        "- fit s: the whole `exeml train` process; the `fit()` call for the Python tools. process s: the "
        f"whole training process. 1-row ms: median of {LATENCY_RUNS} one-row `predict` calls (after {LATENCY_WARMUP} warm-up calls) "
        "on test rows in the tool's process; exeml's by `exeml speed` on the saved model (in Rust, the "
        "same calls, the whole feature pipeline). batch rows/s: one `predict` call on the whole test part, "
        f"median of {BATCH_RUNS}. "
        "MB = 10^6 bytes; peak RSS = ru_maxrss of the training process (spawned by a ~10 MB launcher).",
        "",
    ]
    for kind, names, note in (
            ("Classification", ["accuracy", "log_loss", "roc_auc"], "accuracy, roc_auc higher is better; log_loss lower"),
            ("Regression", ["rmse", "r2"], "rmse lower is better; r2 higher")):
        rows = []
        for name in sets:
            for metric in names:
                values = [metrics[name].get(t, {}).get(metric) for t in TOOLS]
                if metric in metrics[name].get("_metrics", []):
                    rows.append([name, metric] + [fmt(v) for v in values])
        if rows:
            out += [f"## {kind} test metrics ({note})", "", table(["data set", "metric"] + tools, rows), ""]
    rows = []
    for name in sets:
        for t in TOOLS:
            r = results[name].get(t)
            if r is None:
                rows.append([name, NAMES[t], "failed"] + ["—"] * 7)
                continue
            rows.append([name, NAMES[t], r["info"], fmt(r["fit_s"], 2), fmt(r["fit_s"] / limit_s, 2),
                         fmt(r["process_s"], 2), sig(r["latency_ms"]), sig(r.get("batch_rows_s")),
                         sig(r["size_mb"]), fmt(r["rss_mb"], 0)])
    out += ["## Cost", "", table(["data set", "tool", "model", "fit s", "fit s / limit", "process s",
                                  "1-row predict ms", "batch rows/s", "artifact MB", "peak RSS MB"], rows), ""]

    # Summary: mean rank on the primary metric, max wall/limit, peak memory.
    ranks = []
    for name in sets:
        primary = "rmse" if "rmse" in metrics[name].get("_metrics", []) else "accuracy"
        values = pd.Series([metrics[name].get(t, {}).get(primary, np.nan) for t in TOOLS], index=TOOLS,
                           dtype=float)
        ranks.append(values.rank(ascending=primary == "rmse", method="average", na_option="bottom"))
    mean_rank = pd.concat(ranks, axis=1).mean(axis=1) if ranks else pd.Series(np.nan, index=TOOLS)
    rows = []
    for t in TOOLS:
        done = [results[n][t] for n in sets if t in results[n]]
        rows.append([NAMES[t], fmt(mean_rank[t], 2),
                     fmt(max((r["fit_s"] / limit_s for r in done), default=np.nan), 2),
                     fmt(max((r["rss_mb"] for r in done), default=np.nan), 0),
                     f"{len(done)}/{len(sets)}"])
    out += ["## Summary", "",
            f"Mean rank over {len(sets)} (data set, primary metric) pairs: accuracy for classification, "
            "rmse for regression; 1 = best, ties averaged, a failed run ranks last.", "",
            table(["tool", "mean rank", "max fit s / limit", "max peak RSS MB", "runs ok"], rows), ""]
    rows = []
    for name in sets:
        r = {t: results[name].get(t) for t in TOOLS}
        lat = {t: (r[t]["latency_ms"] if r[t] else np.nan) for t in TOOLS}
        size = {t: (r[t]["size_mb"] if r[t] else np.nan) for t in TOOLS}
        batch = {t: (r[t].get("batch_rows_s", np.nan) if r[t] else np.nan) for t in TOOLS}
        rows.append([name, sig(ratio(lat["flaml"], lat["exeml"])), sig(ratio(lat["autogluon"], lat["exeml"])),
                     sig(ratio(batch["exeml"], batch["flaml"])), sig(ratio(batch["exeml"], batch["autogluon"])),
                     sig(ratio(size["autogluon"], size["exeml"]))]
                    + [fmt(r[t]["rss_mb"] if r[t] else np.nan, 0) for t in TOOLS])
    out += [table(["data set", "latency FLAML/exeml", "latency AutoGluon/exeml", "batch rows/s exeml/FLAML",
                   "batch rows/s exeml/AutoGluon", "size AutoGluon/exeml"]
                  + [f"peak RSS MB {NAMES[t]}" for t in TOOLS], rows), "",
            "Latency ratios compare a one-row `predict` of a pandas DataFrame in Python with exeml's "
            "`exeml speed` (Rust, a one-row table prepared beforehand): much of the gap is per-call Python "
            "overhead, which is what a Python user pays and an embedding Rust or HTTP user does not. "
            "Batch ratios compare whole-test-part calls, where that overhead is spread over every row.", ""]
    if errors:
        out += ["## Failures", ""] + [f"- {name} / {NAMES[t]}: {msg.splitlines()[0]}" for name, t, msg in errors] + [""]
    return "\n".join(out)


def flaml_estimators_driver(regression):
    try:
        return flaml_estimators(regression)
    except Exception as e:  # noqa: BLE001 - only for the report header
        return f"? ({e})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary", nargs="?", help="the exeml binary (driver mode)")
    ap.add_argument("--time-limit", default="60s")
    ap.add_argument("--sets", default=",".join(export_datasets.ALL))
    ap.add_argument("--out", default=None, help="Markdown report (driver) or result JSON (worker)")
    ap.add_argument("--worker", choices=["flaml", "autogluon", "lightgbm"])
    ap.add_argument("--train")
    ap.add_argument("--test")
    ap.add_argument("--label")
    ap.add_argument("--limit", type=float, help="seconds (worker)")
    ap.add_argument("--regression", action="store_true")
    args = ap.parse_args()
    if args.worker:
        if not (args.train and args.test and args.label and args.limit and args.out):
            ap.error("--worker needs --train, --test, --label, --limit and --out")
        worker(args)
        return
    if not args.binary:
        ap.error("EXEML_BINARY is required")
    if args.out is None:
        args.out = str(HERE / "last-automl-results.md")
    limit_s = parse_seconds(args.time_limit)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in sets if s not in export_datasets.ALL]
    if unknown:
        ap.error(f"unknown data sets {unknown}; known: {', '.join(export_datasets.ALL)}")

    work_root = Path(tempfile.mkdtemp(prefix="exeml-automl-bench-"))
    export_datasets.export(work_root, split=True, names=sets)
    results, metrics, errors = {}, {}, []
    for name in sets:
        label, regression = export_datasets.describe(name)
        train, test = work_root / f"{name}_train.csv", work_root / f"{name}_test.csv"
        truth = read_split(test, label, regression)[label]
        work = work_root / f"run_{name}"
        work.mkdir()
        results[name], metrics[name] = {}, {}
        for tool in TOOLS:
            print(f"[{time.strftime('%H:%M:%S')}] {name}: {NAMES[tool]} ...", file=sys.stderr, flush=True)
            try:
                if tool == "exeml":
                    results[name][tool] = run_exeml(args.binary, train, test, label, args.time_limit, limit_s,
                                                    work, regression)
                else:
                    results[name][tool] = run_worker(tool, train, test, label, limit_s, work, regression)
            except Exception as e:  # noqa: BLE001 - one failed tool must not end the benchmark
                print(f"  {NAMES[tool]} failed on {name}: {e}", file=sys.stderr, flush=True)
                errors.append((name, tool, str(e)))
        classes = None
        if not regression:
            classes = sorted(set(truth.astype(str))
                             | {c for r in results[name].values() for c in r.get("proba", {})})
        for tool, r in results[name].items():
            metrics[name][tool] = evaluate(r, truth, regression, classes)
        metrics[name]["_metrics"] = (["rmse", "r2"] if regression
                                     else ["accuracy", "log_loss"] + (["roc_auc"] if len(classes) == 2 else []))
    text = report(args, limit_s, sets, results, metrics, errors)
    print(text)
    Path(args.out).write_text(text + "\n")
    print(f"\nwritten to {args.out}; work files in {work_root}", file=sys.stderr)


if __name__ == "__main__":
    main()
