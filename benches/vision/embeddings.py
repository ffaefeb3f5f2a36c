"""How good and how fast exeml's image embeddings are, on the benchmark's Fashion-MNIST subset.

    python embeddings.py quality DIR NAME...   -> for each NAME, DIR/NAME-train.csv and
                                                  DIR/NAME-test.csv (written by `exeml embed`):
                                                  k-NN accuracy (cosine, k = 1, 5, 10) of the test
                                                  images against the training images, precision
                                                  of the 10 nearest training images, and logistic
                                                  regression on the embeddings
    python embeddings.py torch DATA WEIGHTS     -> PyTorch's extraction of the same features
                                                  (torchvision MobileNetV2, same weights, same
                                                  centre crop) of DATA/train and DATA/test: seconds
                                                  and the same quality numbers

Each prints one JSON line per model. A row's class is the first folder of its `id`.
"""

import json
import os
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler


def read_embeddings(path):
    """`exeml embed`'s CSV: `id,emb_0,…`; the label is the id's first folder."""
    with open(path) as f:
        next(f)
        rows = [line.rstrip("\n").split(",") for line in f]
    return (np.array([r[1:] for r in rows], dtype=np.float32),
            np.array([r[0].split("/")[0] for r in rows]))


def quality(xtr, ytr, xte, yte):
    out = {}
    for k in (1, 5, 10):
        knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(xtr, ytr)
        out[f"knn{k}"] = round(float(np.mean(knn.predict(xte) == yte)), 4)
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    nearest = np.argsort(-(unit(xte) @ unit(xtr).T), axis=1)[:, :10]
    out["precision_at_10"] = round(float(np.mean(ytr[nearest] == yte[:, None])), 4)
    scaler = StandardScaler().fit(xtr)
    lr = LogisticRegression(max_iter=2000, C=0.1).fit(scaler.transform(xtr), ytr)
    out["logistic_regression"] = round(float(np.mean(lr.predict(scaler.transform(xte)) == yte)), 4)
    return out


def torch_features(data, weights):
    import torch
    sys.path.insert(0, os.path.dirname(__file__))
    import torch_baselines as tb

    model = tb.mobilenet(weights)
    t0 = time.time()
    xtr, ytr = tb.features(model, os.path.join(data, "train"), 224)
    xte, yte = tb.features(model, os.path.join(data, "test"), 224)
    seconds = time.time() - t0
    out = {"model": f"pytorch {torch.__version__} pretrained", "seconds": round(seconds, 1),
           "images_per_s": round((len(xtr) + len(xte)) / seconds, 1)}
    out.update(quality(xtr, ytr, xte, yte))
    return out


if __name__ == "__main__":
    if sys.argv[1] == "quality":
        folder = sys.argv[2]
        for name in sys.argv[3:]:
            xtr, ytr = read_embeddings(os.path.join(folder, f"{name}-train.csv"))
            xte, yte = read_embeddings(os.path.join(folder, f"{name}-test.csv"))
            print(json.dumps({"model": name, "dim": xtr.shape[1], **quality(xtr, ytr, xte, yte)}),
                  flush=True)
    elif sys.argv[1] == "torch":
        print(json.dumps(torch_features(sys.argv[2], sys.argv[3])), flush=True)
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
