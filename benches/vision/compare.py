"""Run the vision benchmark: exeml vs PyTorch/scikit-learn on a Fashion-MNIST subset, in one run.

    python compare.py EXEML_BIN SPEED_BIN DATA WEIGHTS --budgets 2m 10m 30m --out last-results.md

EXEML_BIN is the exeml binary, SPEED_BIN the `vision_speed` example (release builds), DATA the
folder export_fashion_mnist.py wrote, WEIGHTS MobileNetV2's .pth (the same file both sides load).
Every number is measured here, in this run; the markdown tables go to --out.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from uncalibrated import copy_without_temperature  # noqa: E402


def run_json(cmd, **kw):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout
    return json.loads(out.strip().splitlines()[-1])


def seconds(budget):
    m = re.fullmatch(r"(\d+)([smh]?)", budget)
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def torch_mode(*args):
    return run_json([sys.executable, os.path.join(HERE, "torch_baselines.py"), *args])


def exeml_fit(bin_, data, out, budget, preference, extra=()):
    t0 = time.time()
    subprocess.run([bin_, "train", "--task", "image", "--data", os.path.join(data, "train"),
                    "--out", out, "--time-limit", budget, "--preference", preference, *extra],
                   check=True, capture_output=True, text=True)
    wall = time.time() - t0
    ev = run_json([bin_, "evaluate", "--model", out, "--data", os.path.join(data, "test"), "--json"])
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    chosen = next(t for t in manifest["leaderboard"] if t["status"] == "chosen")
    how = "fine-tuned last %d blocks" % chosen["fine_tune"]["unfrozen_blocks"] if chosen.get("fine_tune") else "linear probe"
    if len(manifest.get("ensemble") or []) > 1:
        how += " (ensemble of %d)" % len(manifest["ensemble"])
    if any(manifest.get("refit_epochs") or []):
        how += ", refitted"
    return {"accuracy": ev["accuracy"], "log_loss": ev["log_loss"], "wall_s": round(wall, 1),
            "temperature": manifest.get("temperature", 1.0),
            "model": "%s %dpx, %s" % (manifest["backbone"], manifest["resolution"], how)}


def uncalibrated_log_loss(bin_, data, model):
    """Test log loss of the same model with its fitted temperature deleted from the manifest:
    what calibration (docs/images.md, step 4) gained. A second evaluation of the test images."""
    raw = copy_without_temperature(model)
    return run_json([bin_, "evaluate", "--model", raw, "--data", os.path.join(data, "test"),
                     "--json"])["log_loss"]


def save(path, lines):
    """Writes the tables so far, so that a run cut short keeps what it measured."""
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("exeml")
    p.add_argument("speed")
    p.add_argument("data")
    p.add_argument("weights")
    p.add_argument("--budgets", nargs="+", default=["2m", "10m", "30m"])
    p.add_argument("--preference-budget", default="2m")
    p.add_argument("--skip-preferences", action="store_true",
                   help="leave out the preference and latency-target runs (the budget table only)")
    # The same search with `--refit-full false`, for comparison: a third run of each budget.
    p.add_argument("--search-alone", nargs="*", default=None,
                   help="budgets also run without the refit (default: all of --budgets)")
    p.add_argument("--out", default=os.path.join(HERE, "last-results.md"))
    p.add_argument("--work", default="target/bench-vision")
    a = p.parse_args()
    search_alone = a.budgets if a.search_alone is None else a.search_alone
    os.makedirs(a.work, exist_ok=True)
    lines = ["# Vision benchmark: exeml vs PyTorch / scikit-learn (one run)", "",
             "Machine: %d cores, no GPU. Data: %s." % (os.cpu_count(), a.data), ""]

    print("speed…", file=sys.stderr)
    ours = run_json([a.speed, "224", "32"])
    theirs = torch_mode("speed", a.weights, "224", "32")
    lines += ["## MobileNetV2 at 224 px (batch 32 training; single-image latency)", "",
              "| | exeml | %s | exeml / PyTorch |" % theirs["framework"], "| --- | --- | --- | --- |",
              "| training images/s (fwd+bwd+AdamW, whole network) | %.1f | %.1f | %.2f× |" % (
                  ours["train_images_per_s"], theirs["train_images_per_s"],
                  ours["train_images_per_s"] / theirs["train_images_per_s"]),
              "| latency ms (1 image, eval) | %.2f | %.2f | %.2f× |" % (
                  ours["latency_ms"], theirs["latency_ms"], ours["latency_ms"] / theirs["latency_ms"]),
              ""]

    print("probe baseline…", file=sys.stderr)
    probe = torch_mode("probe", a.data, a.weights)
    tests = sum(len(files) for _, _, files in os.walk(os.path.join(a.data, "test")))
    lines += ["## Test accuracy by time budget (%s held-out test images)" % f"{tests:,}", "",
              "Accuracy / log loss. T: the temperature exeml fitted on its validation images; "
              "the log loss of the same model without it follows.", "",
              "| budget | exeml (balance) | T, log loss without it | exeml model | exeml wall s "
              "| exeml (balance, `--refit-full false`) | its model | its wall s "
              "| PyTorch fine-tuning | epochs | LR on frozen features |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for budget in a.budgets:
        print("budget %s…" % budget, file=sys.stderr)
        model = os.path.join(a.work, "balance-" + budget)
        ours = exeml_fit(a.exeml, a.data, model, budget, "balance")
        raw = uncalibrated_log_loss(a.exeml, a.data, model)
        if budget in search_alone:
            searched = exeml_fit(a.exeml, a.data, os.path.join(a.work, "balance-no-refit-" + budget),
                                 budget, "balance", ["--refit-full", "false"])
            alone = "%.4f / %.3f | %s | %.0f" % (searched["accuracy"], searched["log_loss"],
                                                  searched["model"], searched["wall_s"])
        else:
            alone = "not run | | "
        ft = torch_mode("finetune", a.data, a.weights, str(seconds(budget)))
        lines.append("| %s | %.4f / %.3f | %.2f, %.3f | %s | %.0f | %s | %.4f / %.3f | %d | %.4f (%.0f s) |" % (
            budget, ours["accuracy"], ours["log_loss"], ours["temperature"], raw, ours["model"],
            ours["wall_s"], alone,
            ft["accuracy"], ft["log_loss"], ft["epochs"], probe["accuracy"], probe["fit_s"]))
        save(a.out, lines)
    if a.skip_preferences:
        print("\n".join(lines))
        return
    lines += ["", "## What each preference returns (budget %s)" % a.preference_budget, "",
              "| preference | test accuracy | model | latency ms | size MB |", "| --- | --- | --- | --- | --- |"]
    for pref in ["performance_first", "balance", "accuracy_first"]:
        print("preference %s…" % pref, file=sys.stderr)
        out = os.path.join(a.work, "pref-" + pref)
        ours = exeml_fit(a.exeml, a.data, out, a.preference_budget, pref)
        lat = run_json([a.speed, "--model", out])
        lines.append("| %s | %.4f | %s | %.2f | %.1f |" % (
            pref, ours["accuracy"], ours["model"], lat["latency_ms"], lat["size_mb"]))
        save(a.out, lines)
        if pref == "balance":
            balance_latency = lat["latency_ms"]
    # A latency target half of what balance returned: the search lowers the resolution.
    target = round(balance_latency / 2, 1)
    print("latency target %s ms…" % target, file=sys.stderr)
    out = os.path.join(a.work, "latency-target")
    ours = exeml_fit(a.exeml, a.data, out, a.preference_budget, "balance",
                     ["--max-latency-ms", str(target)])
    lat = run_json([a.speed, "--model", out])
    lines += ["", "## A latency target (`--max-latency-ms %s`, balance, budget %s)" % (
        target, a.preference_budget), "",
              "| test accuracy | model | latency ms (with preprocessing) | size MB |",
              "| --- | --- | --- | --- |",
              "| %.4f | %s | %.2f | %.1f |" % (ours["accuracy"], ours["model"], lat["latency_ms"],
                                              lat["size_mb"])]
    save(a.out, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
