"""Would averaging a model's predictions over each test image and its mirror image help?

    python flip_tta.py EXEML MODEL TEST_DIR

EXEML is the `exeml` binary, MODEL a saved image model, TEST_DIR holds <class>/<image> files.
The images are mirrored left to right into a temporary folder; `exeml predict` scores both
folders, and the script prints one JSON line: test accuracy and log loss of the plain
predictions, the mirrored ones and their average (test-time augmentation by flips).
"""

import csv
import json
import math
import os
import subprocess
import sys
import tempfile

from PIL import Image, ImageOps


def mirror_folder(source, target):
    for label in sorted(os.listdir(source)):
        os.makedirs(os.path.join(target, label), exist_ok=True)
        for name in sorted(os.listdir(os.path.join(source, label))):
            with Image.open(os.path.join(source, label, name)) as image:
                ImageOps.mirror(image).save(os.path.join(target, label, name))


def predict(exeml, model, folder, out):
    subprocess.run([exeml, "predict", "--model", model, "--data", folder, "--output", out], check=True)
    with open(out, newline="") as f:
        return {row["id"]: row for row in csv.DictReader(f)}


def scores(rows):
    """Accuracy and log loss of {id: probabilities by label}, the true label being id's folder."""
    right, loss = 0, 0.0
    for id_, probabilities in rows.items():
        truth = id_.split("/")[0]
        right += max(probabilities, key=probabilities.get) == truth
        loss -= math.log(max(probabilities[truth], 1e-15))
    return {"accuracy": round(right / len(rows), 4), "log_loss": round(loss / len(rows), 4)}


def main():
    exeml, model, test = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp:
        mirrored = os.path.join(tmp, "mirrored")
        mirror_folder(test, mirrored)
        plain = predict(exeml, model, test, os.path.join(tmp, "plain.csv"))
        flipped = predict(exeml, model, mirrored, os.path.join(tmp, "mirrored.csv"))

    def probabilities(row):
        return {k[len("proba_"):]: float(v) for k, v in row.items() if k.startswith("proba_")}

    plain = {i: probabilities(r) for i, r in plain.items()}
    flipped = {i: probabilities(r) for i, r in flipped.items()}
    averaged = {i: {k: (p[k] + flipped[i][k]) / 2 for k in p} for i, p in plain.items()}
    print(json.dumps({"images": len(plain), "plain": scores(plain), "mirrored": scores(flipped),
                      "averaged": scores(averaged)}))


if __name__ == "__main__":
    main()
