"""Training throughput and single-image latency of each backbone in exeml and PyTorch, same CPU,
same run, alternating (docs/benchmarks.md, "Backbones: exeml vs PyTorch").

    benches/vision/.venv/bin/python benches/vision/backbone_speed.py target/release/examples/vision_speed \
        [--backbones mobilenet_v2 convnext_atto vit_tiny_patch16_224 …] [--runs 3] [--res 224] [--batch 32]
        [--device cuda]

PyTorch's side is torchvision's MobileNetV2 and timm's ConvNeXt and ResNet with random weights
(speed does not depend on the values; exeml's side loads installed weights or random ones the
same way): a whole-network training step (forward, backward, AdamW) on a batch with a 10-class
head, and the median of 50 single-image eval forwards. Threads = cores on both sides. Prints a
markdown table with the medians of the runs and the ratios exeml / PyTorch. `--device cuda` runs
both on the first GPU (exeml's `vision_speed` then needs the `cuda` feature).
"""

import argparse
import json
import os
import statistics
import subprocess

import timm
import torch
import torchvision
# The same training step and timing as the MobileNetV2 runs. torch_baselines takes `--device`
# off the command line when it is imported (DEVICE): both sides run there.
from torch_baselines import DEVICE, model_speed


def torch_model(name: str) -> torch.nn.Module:
    if name == "mobilenet_v2":
        return torchvision.models.mobilenet_v2(num_classes=10)
    return timm.create_model(name, pretrained=False, num_classes=10)


def torch_speed(name: str, res: int, batch: int) -> dict:
    return model_speed(torch_model(name), res, batch)


def exeml_speed(binary: str, name: str, res: int, batch: int, device: str) -> dict:
    device = "cuda:0" if device == "cuda" else device
    out = subprocess.run(
        [binary, str(res), str(batch), "--backbone", name, "--device", device],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("vision_speed")
    parser.add_argument("--backbones", nargs="+",
                        default=["mobilenet_v2", "convnext_atto", "vit_tiny_patch16_224"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, timm {timm.__version__}, {os.cpu_count()} threads, "
          f"device {DEVICE}, "
          f"{args.res} px, training batch {args.batch}, medians of {args.runs} alternating runs\n")
    print("| backbone | exeml train img/s | PyTorch train img/s | ratio | exeml latency ms "
          "| PyTorch latency ms | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.backbones:
        ours, theirs = [], []
        for _ in range(args.runs):
            ours.append(exeml_speed(args.vision_speed, name, args.res, args.batch, DEVICE))
            theirs.append(torch_speed(name, args.res, args.batch))
        med = lambda rows, key: statistics.median(r[key] for r in rows)  # noqa: E731
        tr_o, tr_t = med(ours, "train_images_per_s"), med(theirs, "train_images_per_s")
        la_o, la_t = med(ours, "latency_ms"), med(theirs, "latency_ms")
        print(f"| {name} | {tr_o:.2f} | {tr_t:.2f} | {tr_o / tr_t:.2f}× | {la_o:.1f} | {la_t:.1f} "
              f"| {la_o / la_t:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
