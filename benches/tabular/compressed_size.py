"""exeml's model folder size with and without the zstd compression of its tree and stored-row
files (model format 3: `*.zst`), for the same models, on the AutoML comparison's data sets.

    benches/tabular/.venv/bin/python benches/tabular/compressed_size.py target/release/exeml \
        [--time-limit 60s] [--sets iris,wine,…]

Trains exeml on each set's training split as compare_automl.py does, then measures the folder as
saved and as format 2 wrote it (every `.zst` file expanded: the same bytes, uncompressed). Needs
the `zstd` command (Debian package zstd) to expand the files. Prints a markdown table.
"""

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import export_datasets


def expanded_bytes(path: Path) -> int:
    if path.suffix != ".zst":
        return path.stat().st_size
    out = subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout
    return len(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--time-limit", default="60s")
    ap.add_argument("--sets", default=",".join(export_datasets.ALL))
    args = ap.parse_args()
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    work = Path(tempfile.mkdtemp(prefix="exeml-size-bench-"))
    export_datasets.export(work, split=True, names=sets)
    print(f"exeml {args.binary}, --time-limit {args.time_limit}\n")
    print("| data set | model | folder MB (format 3, compressed) | same files uncompressed MB | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name in sets:
        label, _ = export_datasets.describe(name)
        model = work / f"model_{name}"
        subprocess.run([args.binary, "train", "--task", "tabular", "--data", str(work / f"{name}_train.csv"),
                        "--label", label, "--time-limit", args.time_limit, "--out", str(model)],
                       check=True, capture_output=True)
        files = [p for p in model.rglob("*") if p.is_file()]
        packed = sum(p.stat().st_size for p in files) / 1e6
        plain = sum(expanded_bytes(p) for p in files) / 1e6
        family = json.loads((model / "manifest.json").read_text())["family"]
        print(f"| {name} | {family} | {packed:.3g} | {plain:.3g} | {plain / packed:.1f}× |", flush=True)


if __name__ == "__main__":
    main()
