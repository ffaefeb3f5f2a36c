#!/usr/bin/env python3
"""Export scikit-learn's built-in data sets to CSV (label last) for tests and benchmarks.

usage: export_datasets.py OUT_DIR [--split]   (--split also writes NAME_train.csv / NAME_test.csv,
a fixed stratified 75/25 split with seed 0)
"""
import csv
import sys
from pathlib import Path

from sklearn import datasets
from sklearn.model_selection import train_test_split

SETS = {
    # name: (loader, label column, class names or None for regression)
    "iris": (lambda: datasets.load_iris(), "species", ["setosa", "versicolor", "virginica"]),
    "wine": (lambda: datasets.load_wine(), "cultivar", ["class_0", "class_1", "class_2"]),
    "breast_cancer": (lambda: datasets.load_breast_cancer(), "diagnosis", ["malignant", "benign"]),
    "diabetes": (lambda: datasets.load_diabetes(scaled=False), "progression", None),
    "digits": (lambda: datasets.load_digits(), "digit", [str(i) for i in range(10)]),
}


def rows(bunch, classes):
    for x, t in zip(bunch.data, bunch.target):
        yield [f"{v:g}" for v in x] + [classes[t] if classes else f"{t:g}"]


def write(path, header, body):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(body)


def export(out, split):
    """Write every set of SETS into `out` (and its fixed 75/25 split when `split`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, (load, label, classes) in SETS.items():
        bunch = load()
        names = [str(c).replace(" ", "_").replace("(", "").replace(")", "") for c in bunch.feature_names]
        header = names + [label]
        body = list(rows(bunch, classes))
        write(out / f"{name}.csv", header, body)
        if split:
            strat = bunch.target if classes else None
            train, test = train_test_split(body, test_size=0.25, random_state=0, stratify=strat)
            write(out / f"{name}_train.csv", header, train)
            write(out / f"{name}_test.csv", header, test)


if __name__ == "__main__":
    export(sys.argv[1], "--split" in sys.argv)
