"""Write a multi-label image set from Fashion-MNIST: garments on a 2x2 grid (stdlib + Pillow only).

    python export_fashion_pairs.py OUT [--train 1000] [--test 2000] [--size 96]

Each image is a SIZE px square split into four cells; each cell holds a garment with probability
one half (at least one per image), upscaled (bicubic) to fill it, on black. Its labels are the
classes present (one to four), written beside it as SPEC's side-by-side text file, one label a
line: OUT/train/<i>.png + <i>.txt from the official training file, OUT/test/... from t10k. The
draw is seeded, so every run sees the same images.
"""

import argparse
import os
import random

from PIL import Image

from export_fashion_mnist import CLASSES, SOURCE, read_idx


def export(split_name, images, labels, count, size, out, seed):
    data, dims = read_idx(os.path.join(SOURCE, images), os.path.join(SOURCE, labels))
    rng = random.Random(seed)
    folder = os.path.join(out, split_name)
    os.makedirs(folder, exist_ok=True)
    cell = size // 2
    for j in range(count):
        filled = [rng.random() < 0.5 for _ in range(4)]
        if not any(filled):
            filled[rng.randrange(4)] = True
        canvas = Image.new("L", (size, size))
        present = set()
        for c, full in enumerate(filled):
            if not full:
                continue
            pixels, y = data[rng.randrange(len(data))]
            garment = Image.frombytes("L", dims, pixels).resize((cell, cell), Image.BICUBIC)
            canvas.paste(garment, ((c % 2) * cell, (c // 2) * cell))
            present.add(CLASSES[y])
        canvas.convert("RGB").save(os.path.join(folder, f"{j:05d}.png"))
        with open(os.path.join(folder, f"{j:05d}.txt"), "w") as f:
            f.write("\n".join(sorted(present)) + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--size", type=int, default=96)
    a = p.parse_args()
    export("train", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", a.train, a.size,
           a.out, 3)
    export("test", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", a.test, a.size,
           a.out, 4)


if __name__ == "__main__":
    main()
