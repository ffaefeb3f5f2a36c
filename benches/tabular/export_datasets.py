#!/usr/bin/env python3
"""Export public data sets to CSV for tests and benchmarks.

usage: export_datasets.py OUT_DIR [--split] [--sets a,b,...]
  --split  also writes NAME_train.csv / NAME_test.csv, a fixed (stratified for classification)
           75/25 split with seed 0
  --sets   which sets (default: the scikit-learn built-ins of SETS)

SETS: scikit-learn's built-ins (label last), all numeric.
MODELDATA: sets of the R package modeldata (Debian `r-cran-modeldata`, read with Rscript): real
tables with categories, free-text-like codes and missing values.
fashion_mnist_14px: Debian `dataset-fashion-mnist` as a table, 70,000 images pooled 2x2 to 14x14
pixels (196 numeric columns), the one set over 50,000 rows.
The extra sets need their Debian packages; benches/tabular/run.sh installs them when asked for.
"""
import csv
import gzip
import subprocess
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


# name: (modeldata data set, label column, "classification" or "regression")
MODELDATA = {
    "attrition": ("attrition", "Attrition", "classification"),
    "credit_data": ("credit_data", "Status", "classification"),
    "wa_churn": ("wa_churn", "churn", "classification"),
    "penguins": ("penguins", "species", "classification"),
    "hpc_data": ("hpc_data", "class", "classification"),
    "ames": ("ames", "Sale_Price", "regression"),
    "sacramento": ("Sacramento", "price", "regression"),
}
FASHION = "fashion_mnist_14px"
FASHION_SOURCE = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle_boot"]
ALL = list(SETS) + list(MODELDATA) + [FASHION]


def describe(name):
    """(label column, True when the set is a regression) of any set of ALL."""
    if name in SETS:
        return SETS[name][1], SETS[name][2] is None
    if name in MODELDATA:
        return MODELDATA[name][1], MODELDATA[name][2] == "regression"
    if name == FASHION:
        return "item", False
    raise KeyError(name)


def rows(bunch, classes):
    for x, t in zip(bunch.data, bunch.target):
        yield [f"{v:g}" for v in x] + [classes[t] if classes else f"{t:g}"]


def write(path, header, body):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(body)


def write_split(out, name, header, body, label_index, classification, strat=None):
    """NAME_train.csv / NAME_test.csv: a fixed 75/25 split, stratified for classification (by
    `strat` when given, else by the label's text)."""
    if classification and strat is None:
        strat = [r[label_index] for r in body]
    train, test = train_test_split(body, test_size=0.25, random_state=0, stratify=strat)
    write(out / f"{name}_train.csv", header, train)
    write(out / f"{name}_test.csv", header, test)


def export_sklearn(out, name, split):
    load, label, classes = SETS[name]
    bunch = load()
    names = [str(c).replace(" ", "_").replace("(", "").replace(")", "") for c in bunch.feature_names]
    header = names + [label]
    body = list(rows(bunch, classes))
    write(out / f"{name}.csv", header, body)
    if split:
        # Stratified by the class numbers, as this split has always been made (by the names,
        # breast_cancer's rows would be shuffled differently).
        write_split(out, name, header, body, len(header) - 1, classes is not None,
                    strat=bunch.target if classes else None)


def export_modeldata(out, name, split):
    data, label, task = MODELDATA[name]
    path = out / f"{name}.csv"
    # R writes its missing values as empty fields; factors as their labels.
    script = (f"library(modeldata); e <- new.env(); data(list = '{data}', envir = e); "
              f"write.csv(get('{data}', envir = e), '{path}', row.names = FALSE, na = '')")
    subprocess.run(["Rscript", "-e", script], check=True, capture_output=True)
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    header, body = table[0], table[1:]
    if split:
        write_split(out, name, header, body, header.index(label), task == "classification")


def read_idx(images, labels):
    with gzip.open(labels, "rb") as f:
        y = f.read()[8:]
    with gzip.open(images, "rb") as f:
        raw = f.read()
    count, height, width = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    pixels = raw[16:]
    return [pixels[i * height * width:(i + 1) * height * width] for i in range(count)], y, height, width


def pooled(image, height, width):
    """Mean of each 2x2 block, as an integer 0-255."""
    return [(image[r * width + c] + image[r * width + c + 1] + image[(r + 1) * width + c]
             + image[(r + 1) * width + c + 1]) // 4 for r in range(0, height, 2) for c in range(0, width, 2)]


def export_fashion(out, split):
    header = [f"p{i}" for i in range(14 * 14)] + ["item"]
    parts = {}
    for part, prefix in (("train", "train"), ("test", "t10k")):
        images, labels, height, width = read_idx(FASHION_SOURCE / f"{prefix}-images-idx3-ubyte.gz",
                                                 FASHION_SOURCE / f"{prefix}-labels-idx1-ubyte.gz")
        parts[part] = [[str(v) for v in pooled(img, height, width)] + [FASHION_CLASSES[lab]]
                       for img, lab in zip(images, labels)]
    body = parts["train"] + parts["test"]
    write(out / f"{FASHION}.csv", header, body)
    if split:
        write_split(out, FASHION, header, body, len(header) - 1, True)


def export(out, split, names=None):
    """Write the sets `names` (default: every set of SETS) into `out`, with their fixed 75/25
    split when `split`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in names or list(SETS):
        if name in SETS:
            export_sklearn(out, name, split)
        elif name in MODELDATA:
            export_modeldata(out, name, split)
        elif name == FASHION:
            export_fashion(out, split)
        else:
            raise KeyError(f"unknown data set {name}; known: {', '.join(ALL)}")


if __name__ == "__main__":
    chosen = None
    if "--sets" in sys.argv:
        chosen = sys.argv[sys.argv.index("--sets") + 1].split(",")
    export(sys.argv[1], "--split" in sys.argv, chosen)
