"""Serve the same binary classifier (breast cancer, 30 numeric columns) with `exeml serve` and with
FastAPI/uvicorn + LightGBM, load both with wrk at concurrency 1, 16 and 64, then overload exeml,
and write a markdown table of throughput, latency, memory and ratios.

With `--server-cpus 0,1 --load-cpus 2-15` the servers are pinned to the first set of cores and
wrk to the second, so that the load generator does not compete with the server it measures."""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import lightgbm as lgb
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "breast_cancer.csv"
LABEL = "diagnosis"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{url} not ready in {timeout} s")


def tree_rss_mib(pid):
    p = psutil.Process(pid)
    procs = [p] + p.children(recursive=True)
    return sum(x.memory_info().rss for x in procs) / 2**20


def cpu_list(text):
    """'0,1' or '2-15' or '0,4-7' -> a set of core numbers (None when not given)."""
    if not text:
        return None
    cpus = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def pinned(cpus):
    """A preexec_fn that pins the child to `cpus` (no pinning when None)."""
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


LOAD_CPUS = None


def wrk(url, body, connections, seconds):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\n')
        f.write('wrk.headers["Content-Type"] = "application/json"\n')
        f.write(f"wrk.body = {json.dumps(body)}\n")
        script = f.name
    threads = min(connections, len(LOAD_CPUS) if LOAD_CPUS else 2)
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
         "-s", script, url],
        capture_output=True, text=True, check=True, preexec_fn=pinned(LOAD_CPUS)).stdout
    os.unlink(script)

    def ms(label):
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": rps, "p50": ms(50), "p99": ms(99), "total": total,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("exeml")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--out", required=True)
    ap.add_argument("--server-cpus", help="pin the servers to these cores, e.g. 0,1")
    ap.add_argument("--load-cpus", help="pin wrk to these cores, e.g. 2-15")
    args = ap.parse_args()
    global LOAD_CPUS
    LOAD_CPUS = cpu_list(args.load_cpus)
    server_cpus = cpu_list(args.server_cpus)
    work = Path(tempfile.mkdtemp(prefix="exeml-serving-"))
    frame = pd.read_csv(DATA)
    features = [c for c in frame.columns if c != LABEL]
    classes = sorted(frame[LABEL].astype(str).unique())
    row = {f: str(frame[f].iloc[0]) for f in features}
    body = json.dumps({"data": {"req_data": [row]}})

    # The same data, one model each: exeml (a short search) and LightGBM (defaults).
    model_dir = work / "exeml-model"
    subprocess.run([args.exeml, "train", "--task", "tabular", "--data", str(DATA), "--label", LABEL,
                    "--time-limit", "20s", "--out", str(model_dir)], check=True,
                   stdout=subprocess.DEVNULL)
    family = json.loads((model_dir / "manifest.json").read_text())["family"]
    y = (frame[LABEL].astype(str) == classes[1]).astype(int)
    booster = lgb.train({"objective": "binary", "verbosity": -1}, lgb.Dataset(frame[features], y))
    booster.save_model(str(work / "lgb.txt"))

    cores = len(server_cpus) if server_cpus else os.cpu_count()
    results = {}
    servers = {
        "exeml serve": lambda port: subprocess.Popen(
            [args.exeml, "serve", "--model", str(model_dir), "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pinned(server_cpus)),
        f"FastAPI + uvicorn[standard] ({cores} workers) + LightGBM": lambda port: subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--port", str(port),
             "--workers", str(cores), "--http", "httptools", "--loop", "uvloop",
             "--log-level", "warning", "--no-access-log"],
            cwd=Path(__file__).parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=pinned(server_cpus),
            env={**os.environ, "MODEL_PATH": str(work / "lgb.txt"),
                 "FEATURES": json.dumps(features), "CLASSES": json.dumps(classes)}),
    }
    for name, start in servers.items():
        port = free_port()
        proc = start(port)
        try:
            wait_ready(f"http://127.0.0.1:{port}/health", proc)
            url = f"http://127.0.0.1:{port}/v1/predict"
            wrk(url, body, 4, 2)  # warm-up
            idle = tree_rss_mib(proc.pid)
            levels = {c: wrk(url, body, c, args.seconds) for c in (1, 16, 64)}
            results[name] = {"levels": levels, "rss_idle": idle, "rss_loaded": tree_rss_mib(proc.pid)}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    # Overload: far more connections than exeml admits.
    port = free_port()
    proc = subprocess.Popen([args.exeml, "serve", "--model", str(model_dir), "--port", str(port),
                             "--replicas", "1", "--max-pending", "8"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=pinned(server_cpus))
    wait_ready(f"http://127.0.0.1:{port}/health", proc)
    overload = wrk(f"http://127.0.0.1:{port}/v1/predict", body, 256, args.seconds)
    alive = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).status == 200
    proc.send_signal(signal.SIGTERM)
    clean_exit = proc.wait(timeout=30) == 0

    names = list(results)
    exeml_r, py_r = results[names[0]], results[names[1]]
    lines = [
        f"Breast cancer (30 numeric columns, binary), one row per request, wrk {args.seconds} s per "
        + (f"level, servers pinned to cores {args.server_cpus} and wrk to {args.load_cpus}"
           if server_cpus else f"level, {cores} cores shared by the servers and wrk")
        + f"; exeml model: `{family}`.",
        "",
        "| concurrency | server | requests/s | p50 ms | p99 ms | non-2xx |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in (1, 16, 64):
        for name in names:
            r = results[name]["levels"][c]
            lines.append(f"| {c} | {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                         f"{r['non2xx'] + r['socket_errors']} |")
    lines += ["", "| concurrency | throughput exeml / Python | p99 Python / exeml |", "| --- | --- | --- |"]
    for c in (1, 16, 64):
        e, p = exeml_r["levels"][c], py_r["levels"][c]
        lines.append(f"| {c} | {e['rps'] / p['rps']:.1f}× | {p['p99'] / e['p99']:.1f}× |")
    lines += [
        "",
        "| server | memory idle MiB | memory after load MiB |",
        "| --- | --- | --- |",
    ]
    for name in names:
        lines.append(f"| {name} | {results[name]['rss_idle']:.0f} | {results[name]['rss_loaded']:.0f} |")
    lines += [
        "",
        f"Overload (exeml, `--replicas 1 --max-pending 8`, 256 connections): {overload['total']} "
        f"requests, {overload['non2xx']} answered 503, {overload['socket_errors']} socket errors, "
        f"p99 {overload['p99']:.2f} ms; still healthy afterwards: {'yes' if alive else 'NO'}; "
        f"clean exit on SIGTERM: {'yes' if clean_exit else 'NO'}.",
    ]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
