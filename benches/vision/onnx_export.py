"""The exported ONNX file against exeml itself and PyTorch, same CPU, same run: single-image
latency and batch throughput of a trained MobileNetV2 model in exeml (`exeml speed`), in
onnxruntime (the exported file), and of torchvision's MobileNetV2 in PyTorch (eager, the
baseline of the latency rows in docs/benchmarks.md); and whether the exported file, fed inputs
made with PIL as docs/images.md shows, predicts the test images as `exeml predict` does.

Usage: python onnx_export.py EXEML_BIN VISION_SPEED_BIN MODEL_DIR TEST_FOLDER WORK_DIR
"""

import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torchvision
from PIL import Image

exeml, vision_speed, model_dir, test_dir, work = sys.argv[1:]
work = Path(work)
work.mkdir(parents=True, exist_ok=True)
onnx_path = work / "model.onnx"
subprocess.run([exeml, "export", "--model", model_dir, "--output", str(onnx_path)], check=True)
int8_path = work / "model-int8.onnx"
subprocess.run([exeml, "export", "--model", model_dir, "--output", str(int8_path), "--int8"], check=True)
manifest = json.loads((Path(model_dir) / "manifest.json").read_text())
side = manifest["resolution"]
classes = manifest["classes"]


def onnx_input(path: Path) -> np.ndarray:
    """docs/images.md's recipe: centre square of 7/8 of the shorter side, bilinear, / 255, CHW."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    square = min(w, h) * 224 // 256
    left, top = (w - square) // 2, (h - square) // 2
    crop = image.crop((left, top, left + square, top + square)).resize((side, side), Image.BILINEAR)
    return (np.asarray(crop, np.float32) / 255).transpose(2, 0, 1)


files = sorted(p for p in Path(test_dir).rglob("*.png"))
# Every 10th test image: 1,000 of the 10,000.
sample = files[::10]
truth = [p.parent.name for p in sample]

acc = lambda p: float(np.mean([classes[i] == t for i, t in zip(np.argmax(p, 1), truth)]))

# exeml's own predictions and timing.
sample_dir = work / "sample"
if not sample_dir.exists():
    for p in sample:
        (sample_dir / p.parent.name).mkdir(parents=True, exist_ok=True)
        os.link(p, sample_dir / p.parent.name / p.name)
preds_csv = work / "exeml.csv"
subprocess.run([exeml, "predict", "--model", model_dir, "--data", str(sample_dir), "--output", str(preds_csv)],
               check=True, stdout=subprocess.DEVNULL)
with open(preds_csv) as f:
    rows = {r["id"]: r for r in csv.DictReader(f)}
ids = [f"{p.parent.name}/{p.name}" for p in sample]
exeml_proba = np.array([[float(rows[i][f"proba_{c}"]) for c in classes] for i in ids], np.float32)
speed = json.loads(subprocess.run([exeml, "speed", "--model", model_dir, "--data", str(sample_dir), "--json",
                                   "--runs", "200", "--batch-size", "256"],
                                  check=True, capture_output=True, text=True).stdout)

# onnxruntime on the exported file.
session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
x = np.stack([onnx_input(p) for p in sample])
start = time.perf_counter()
ort_proba = np.concatenate([session.run(["probabilities"], {"pixels": x[i:i + 32]})[0] for i in range(0, len(x), 32)])
ort_batch_s = time.perf_counter() - start
one = x[:1]
for _ in range(20):
    session.run(["probabilities"], {"pixels": one})
times = []
for _ in range(200):
    t = time.perf_counter()
    session.run(["probabilities"], {"pixels": one})
    times.append((time.perf_counter() - t) * 1000)
ort_latency = statistics.median(times)

# PyTorch eager MobileNetV2 (random weights: the cost is the same), single image.
torch.set_num_threads(os.cpu_count() or 1)
net = torchvision.models.mobilenet_v2().eval()
t1 = torch.from_numpy(one.copy())
with torch.inference_mode():
    for _ in range(20):
        net(t1)
    times = []
    for _ in range(200):
        t = time.perf_counter()
        net(t1)
        times.append((time.perf_counter() - t) * 1000)
torch_latency = statistics.median(times)

agree = float(np.mean(np.argmax(ort_proba, 1) == np.argmax(exeml_proba, 1)))
exeml_latency = round(speed["single_ms_median"], 2)
# exeml's latency without decoding: the trained model (preprocessing, network, head), and the
# network alone (backbone + pooling + a 10-class head on a ready tensor), as ONNX runtimes time it.
model_run = json.loads(subprocess.run([vision_speed, "--model", model_dir], check=True, capture_output=True,
                                      text=True).stdout.strip().splitlines()[-1])
network_run = json.loads(subprocess.run([vision_speed, str(side), "--latency-only", "--backbone", manifest["backbone"]],
                                        check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
# The exact input (exeml's own crop and resize, through the Python package when installed).
exact = {}
try:
    import exeml as exeml_py

    predictor = exeml_py.ImagePredictor.load(model_dir, verbosity=0)
    exact_x = predictor.onnx_input([str(p) for p in sample])
    exact_proba = np.concatenate(
        [session.run(["probabilities"], {"pixels": exact_x[i:i + 32]})[0] for i in range(0, len(exact_x), 32)])
    int8_session = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
    int8_proba = np.concatenate(
        [int8_session.run(["probabilities"], {"pixels": exact_x[i:i + 32]})[0] for i in range(0, len(exact_x), 32)])
    log_loss = lambda p: float(-np.mean([np.log(max(p[j, classes.index(t)], 1e-15)) for j, t in enumerate(truth)]))
    exact_int8 = {
        "mb": round(int8_path.stat().st_size / 1e6, 2),
        "accuracy": acc(int8_proba),
        "log_loss": log_loss(int8_proba),
        "float_log_loss": log_loss(exact_proba),
        "same_prediction": float(np.mean(np.argmax(int8_proba, 1) == np.argmax(exeml_proba, 1))),
        "better_after": int(np.sum((np.argmax(int8_proba, 1) != np.argmax(exeml_proba, 1))
                                   & ([classes[i] == t for i, t in zip(np.argmax(int8_proba, 1), truth)]))),
        "worse_after": int(np.sum((np.argmax(int8_proba, 1) != np.argmax(exeml_proba, 1))
                                  & ([classes[i] == t for i, t in zip(np.argmax(exeml_proba, 1), truth)]))),
    }
    exact = {
        "int8_weights": exact_int8,
        "same_prediction": float(np.mean(np.argmax(exact_proba, 1) == np.argmax(exeml_proba, 1))),
        "max_probability_difference": float(np.abs(exact_proba - exeml_proba).max()),
        "pil_input_max_difference_grey_levels": float(np.abs(exact_x - x).max() * 255),
    }
except ImportError:
    pass
result = {
    "model": model_dir,
    "onnx_mb": round(onnx_path.stat().st_size / 1e6, 1),
    "images": len(sample),
    "exeml_accuracy": acc(exeml_proba),
    "onnxruntime_accuracy": acc(ort_proba),
    "same_prediction_pil_input": agree,
    "max_probability_difference_pil_input": float(np.abs(ort_proba - exeml_proba).max()),
    "exact_input": exact,
    "latency_ms": {
        "exeml_file_bytes_decoded": exeml_latency,
        "exeml_model_from_pixels": model_run,
        "exeml_network_only": network_run,
        "onnxruntime_network_only": round(ort_latency, 2),
        "pytorch_network_only": round(torch_latency, 2),
    },
    "onnxruntime_images_per_s_batches_of_32_preprocessed": round(len(x) / ort_batch_s, 1),
    "exeml_speed": speed,
}
print(json.dumps(result, indent=1))
