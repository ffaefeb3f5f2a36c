"""Write a class-folder subset of Fashion-MNIST as PNG files (stdlib + Pillow only).

    python export_fashion_mnist.py OUT [--train-per-class 200] [--test-per-class 100] [--size 96] [--train-offset 0]

The 28x28 grey images are upscaled (bicubic) to SIZE px and written as RGB, so the backbones
see inputs in their usual range. Train images come from the official training file, test
images from t10k: OUT/train/<class>/<i>.png and OUT/test/<class>/<i>.png. The choice is
seeded and stratified, so every run of the benchmark sees the same images.
"""

import argparse
import gzip
import os
import random
import struct

from PIL import Image

CLASSES = [
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
]
SOURCE = "/usr/share/datasets/fashion-mnist"


def read_idx(images_path, labels_path):
    with gzip.open(labels_path, "rb") as f:
        magic, n = struct.unpack(">II", f.read(8))
        assert magic == 2049, f"{labels_path}: not an IDX label file"
        labels = f.read(n)
    with gzip.open(images_path, "rb") as f:
        magic, n2, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 2051 and n2 == n, f"{images_path}: not matching IDX images"
        pixels = f.read(n * rows * cols)
    return [(pixels[i * rows * cols:(i + 1) * rows * cols], labels[i]) for i in range(n)], (cols, rows)


def export(split_name, images, labels, size, per_class, out, seed, offset=0):
    data, dims = read_idx(os.path.join(SOURCE, images), os.path.join(SOURCE, labels))
    by_class = {c: [] for c in range(10)}
    for i, (_, y) in enumerate(data):
        by_class[y].append(i)
    rng = random.Random(seed)
    for c, idx in by_class.items():
        rng.shuffle(idx)
        folder = os.path.join(out, split_name, CLASSES[c])
        os.makedirs(folder, exist_ok=True)
        for j, i in enumerate(idx[offset:offset + per_class]):
            img = Image.frombytes("L", dims, data[i][0]).resize((size, size), Image.BICUBIC)
            img.convert("RGB").save(os.path.join(folder, f"{j:04d}.png"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--train-per-class", type=int, default=200)
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--train-offset", type=int, default=0,
                   help="skip this many of each class's shuffled training images: "
                        "--train-offset 200 gives a training set disjoint from the default one")
    a = p.parse_args()
    export("train", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", a.size,
           a.train_per_class, a.out, 1, a.train_offset)
    export("test", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", a.size,
           a.test_per_class, a.out, 2)


if __name__ == "__main__":
    main()
