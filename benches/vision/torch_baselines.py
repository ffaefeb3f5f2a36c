"""The PyTorch side of the vision benchmark, on the same CPU and the same MobileNetV2 weights.

    python torch_baselines.py probe    DATA WEIGHTS            -> logistic regression on frozen features
    python torch_baselines.py heads    DATA WEIGHTS            -> that, and MLP heads on the same features
    python torch_baselines.py adabn    DATA WEIGHTS            -> that probe with ImageNet's batch norm
                                                                   statistics and with ones re-estimated
                                                                   on the training images (AdaBN)
    python torch_baselines.py finetune DATA WEIGHTS SECONDS    -> torchvision fine-tuning for SECONDS
                                                                   (--frozen-bn: BN statistics frozen;
                                                                    --fixed-views: two views per image
                                                                    computed once, as exeml does)
    python torch_baselines.py speed    WEIGHTS [RES] [BATCH]   -> training images/s and latency

DATA holds train/<class>/*.png and test/<class>/*.png. Each mode prints one JSON line.
Threads are pinned to the machine's cores (torch.set_num_threads), like exeml's rayon pool.
`--device cuda` (anywhere on the line) runs on the GPU instead: timings then wait for the GPU
(torch.cuda.synchronize) and images are decoded by 8 loader workers, as a GPU user would.
"""

import json
import math
import os
import sys
import time

import numpy as np
import torch
import torchvision
from torchvision import datasets, transforms

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
torch.set_num_threads(os.cpu_count() or 1)
torch.manual_seed(0)
DEVICE = "cpu"
if "--device" in sys.argv:
    _at = sys.argv.index("--device")
    DEVICE = sys.argv[_at + 1]
    del sys.argv[_at:_at + 2]
WORKERS = 8 if DEVICE != "cpu" else 0
# `finetune ... --frozen-bn`: batch norm keeps its ImageNet statistics while the network trains
# (its scale and shift still learn), as in exeml, where batch norm is folded into the convolutions.
FROZEN_BN = "--frozen-bn" in sys.argv
if FROZEN_BN:
    sys.argv.remove("--frozen-bn")
# `finetune ... --fixed-views`: every image's plain view and one augmented view are computed once
# (inside the budget) and the network trains on those every epoch, as exeml does, instead of a
# fresh random crop of every image each epoch.
FIXED_VIEWS = "--fixed-views" in sys.argv
if FIXED_VIEWS:
    sys.argv.remove("--fixed-views")


def sync():
    if DEVICE != "cpu":
        torch.cuda.synchronize()


def mobilenet(weights_path, classes=None):
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    if classes is not None:
        model.classifier[1] = torch.nn.Linear(1280, classes)
    return model.to(DEVICE)


def plain(res):
    # The same view as exeml's evaluation: centre crop of 224/256 of the shorter side.
    return transforms.Compose([
        transforms.Resize(int(res * 256 / 224)), transforms.CenterCrop(res),
        transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


def features(model, folder, res):
    data = datasets.ImageFolder(folder, plain(res))
    loader = torch.utils.data.DataLoader(data, batch_size=64, num_workers=WORKERS)
    model.eval()
    xs, ys = [], []
    with torch.no_grad():
        for x, y in loader:
            f = model.features(x.to(DEVICE)).mean((2, 3))
            xs.append(f.cpu().numpy())
            ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def probe(data, weights, res=224):
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t0 = time.time()
    model = mobilenet(weights)
    xtr, ytr = features(model, os.path.join(data, "train"), res)
    clf = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=[0.01, 0.1, 1.0], cv=3, max_iter=500))
    clf.fit(xtr, ytr)
    fit_s = time.time() - t0
    xte, yte = features(model, os.path.join(data, "test"), res)
    return {"baseline": "sklearn logistic regression on frozen MobileNetV2 features",
            "accuracy": float((clf.predict(xte) == yte).mean()), "fit_s": round(fit_s, 1)}


def heads(data, weights, res=224):
    """Is a head other than linear worth searching? Logistic regression and one-hidden-layer
    MLPs (scikit-learn, early stopping on a tenth of the training images) on the same frozen
    features, test accuracy of each."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = mobilenet(weights)
    xtr, ytr = features(model, os.path.join(data, "train"), res)
    xte, yte = features(model, os.path.join(data, "test"), res)
    candidates = {"linear (LogisticRegressionCV)": LogisticRegressionCV(Cs=[0.01, 0.1, 1.0], cv=3, max_iter=500)}
    for hidden, alpha in [(256, 1.0), (512, 1e-2), (512, 1e-1), (1024, 1.0)]:
        candidates[f"MLP {hidden} units, alpha {alpha}"] = MLPClassifier(
            (hidden,), alpha=alpha, early_stopping=True, max_iter=300, random_state=0)
    out = {}
    for name, clf in candidates.items():
        fitted = make_pipeline(StandardScaler(), clf).fit(xtr, ytr)
        out[name] = float((fitted.predict(xte) == yte).mean())
    return out


def adabn(data, weights, res=224):
    """Do batch norm statistics of the target images help frozen features? The logistic
    regression probe of `probe`, once with ImageNet's statistics (exeml folds those into its
    convolutions) and once after re-estimating every batch norm's mean and variance over the
    training images (AdaBN: a cumulative average of batch statistics, weights unchanged)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def probe_accuracy(model):
        xtr, ytr = features(model, os.path.join(data, "train"), res)
        xte, yte = features(model, os.path.join(data, "test"), res)
        clf = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=[0.01, 0.1, 1.0], cv=3, max_iter=500))
        return float((clf.fit(xtr, ytr).predict(xte) == yte).mean())

    model = mobilenet(weights)
    out = {"imagenet statistics": probe_accuracy(model)}
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over every batch
    loader = torch.utils.data.DataLoader(
        datasets.ImageFolder(os.path.join(data, "train"), plain(res)), batch_size=64, shuffle=True,
        num_workers=WORKERS)
    model.train()
    with torch.no_grad():
        for x, _ in loader:
            model.features(x.to(DEVICE))
    out["statistics of the training images (AdaBN)"] = probe_accuracy(model)
    return out


def finetune(data, weights, seconds, res=224):
    """Standard transfer recipe: the whole network, AdamW + cosine over the epochs the budget
    allows (estimated after the first), random-resized-crop + flip, label smoothing 0.1."""
    train_tf = transforms.Compose([
        transforms.RandomResizedCrop(res, scale=(0.35, 1.0)), transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(0.2, 0.2, 0.2), transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    t0 = time.time()
    train = datasets.ImageFolder(os.path.join(data, "train"), train_tf)
    classes = len(train.classes)
    if FIXED_VIEWS:
        plain_train = datasets.ImageFolder(os.path.join(data, "train"), plain(res))
        views = [plain_train[i] for i in range(len(plain_train))] + [train[i] for i in range(len(train))]
        train = torch.utils.data.TensorDataset(torch.stack([x for x, _ in views]),
                                               torch.tensor([y for _, y in views]))
    test = datasets.ImageFolder(os.path.join(data, "test"), plain(res))
    model = mobilenet(weights, classes)
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True, num_workers=WORKERS,
                                         persistent_workers=WORKERS > 0)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=1e-2)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    epochs, planned, step, images = 0, None, 0, 0
    deadline = t0 + seconds
    done = False
    while not done:
        model.train()
        if FROZEN_BN:
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        for x, y in loader:
            if time.time() >= deadline:
                done = True
                break
            total = planned * len(loader) if planned else 10 ** 9
            for g in opt.param_groups:
                g["lr"] = 5e-4 * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0)))
            opt.zero_grad()
            loss_fn(model(x.to(DEVICE)), y.to(DEVICE)).backward()
            opt.step()
            step += 1
            images += len(y)
        else:
            epochs += 1
            if planned is None:
                planned = max(1, int(seconds / (time.time() - t0)))
    sync()
    train_s = time.time() - t0
    model.eval()
    correct = n = 0
    loss_sum = 0.0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(test, batch_size=64, num_workers=WORKERS):
            logits = model(x.to(DEVICE)).cpu()
            correct += (logits.argmax(1) == y).sum().item()
            loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
            n += len(y)
    return {"baseline": "PyTorch fine-tuning of MobileNetV2 (whole network"
                        + (", batch norm statistics frozen" if FROZEN_BN else "")
                        + (", two views per image computed once" if FIXED_VIEWS else "") + ")",
            "accuracy": correct / n, "log_loss": loss_sum / n, "train_s": round(train_s, 1), "epochs": epochs,
            "images_seen": images, "budget_s": seconds}


def speed(weights, res=224, batch=32):
    return model_speed(mobilenet(weights, 10), res, batch)


def model_speed(model, res=224, batch=32):
    """Training images/s (whole network, AdamW, a 10-class head) and median single-image latency."""
    model = model.to(DEVICE)
    opt = torch.optim.AdamW(model.parameters())
    x = torch.randn(batch, 3, res, res, device=DEVICE)
    y = (torch.arange(batch) % 10).to(DEVICE)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    step()
    sync()
    steps = 5 if DEVICE == "cpu" else 50
    t0 = time.time()
    for _ in range(steps):
        step()
    sync()
    train = steps * batch / (time.time() - t0)
    model.eval()
    one = torch.randn(1, 3, res, res, device=DEVICE)
    times = []
    with torch.no_grad():
        for i in range(60):
            t = time.time()
            model(one).cpu()
            if i >= 10:
                times.append((time.time() - t) * 1e3)
    return {"framework": "pytorch " + torch.__version__, "device": DEVICE, "resolution": res, "batch": batch,
            "train_images_per_s": round(train, 2), "latency_ms": round(sorted(times)[len(times) // 2], 3)}


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "probe":
        out = probe(sys.argv[2], sys.argv[3])
    elif mode == "heads":
        out = heads(sys.argv[2], sys.argv[3])
    elif mode == "adabn":
        out = adabn(sys.argv[2], sys.argv[3])
    elif mode == "finetune":
        out = finetune(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    elif mode == "speed":
        out = speed(sys.argv[2], *(int(a) for a in sys.argv[3:5]))
    else:
        sys.exit(f"unknown mode {mode}")
    print(json.dumps(out), flush=True)
