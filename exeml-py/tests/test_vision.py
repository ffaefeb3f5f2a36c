"""ImagePredictor end to end on generated images: fit, predict, evaluate, save/load, warm start,
and the errors a user meets (unreadable image, unfitted predictor, bad parameters).

The backbone weights come from the pip packages scripts/setup.sh installs (EXEML_WEIGHTS_DIR);
without them these tests skip, except under CI=true, where they fail."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest

import exeml

WEIGHTS = Path(os.environ.get("EXEML_WEIGHTS_DIR", "/nonexistent"))


def _weights_or_skip() -> None:
    if not any(WEIGHTS.rglob("mobilenet_v2-*.pth")):
        if os.environ.get("CI") == "true":
            pytest.fail("CI must install the backbone weights (scripts/setup.sh)")
        pytest.skip("backbone weights not installed")


def _picture(kind: str, rng: random.Random):
    from PIL import Image

    side, period = 48, rng.randrange(4, 10)
    fg = np.array([rng.randrange(0, 90) for _ in range(3)], dtype=np.uint8)
    bg = np.array([rng.randrange(170, 255) for _ in range(3)], dtype=np.uint8)
    y, x = np.mgrid[0:side, 0:side]
    if kind == "disc":
        cx, cy, r = rng.randrange(14, 34), rng.randrange(14, 34), rng.randrange(8, 14)
        on = (x - cx) ** 2 + (y - cy) ** 2 < r * r
    elif kind == "stripes":
        on = (y // period) % 2 == 0
    else:
        on = ((x // period) + (y // period)) % 2 == 0
    return Image.fromarray(np.where(on[..., None], fg, bg).astype(np.uint8))


def _folders(root: Path, per_class: int, seed: int, kinds=("disc", "stripes", "checks")) -> Path:
    rng = random.Random(seed)
    for kind in kinds:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _picture(kind, rng).save(root / kind / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def image_predictor(tmp_path_factory):
    _weights_or_skip()
    data = _folders(tmp_path_factory.mktemp("images"), 10, 1)
    # ensemble=False reaches the engine (performance_first keeps one model anyway).
    return exeml.ImagePredictor(
        preference="performance_first",
        backbones=["mobilenet_v2"],
        resolution=64,
        ensemble=False,
        verbosity=0,
    ).fit(data, time_limit=120)


def test_fit_predict_evaluate(image_predictor, tmp_path):
    p = image_predictor
    assert p.class_labels == ["checks", "disc", "stripes"]
    assert p.problem == "multiclass"
    assert p.validation()["accuracy"] >= 0.8
    fresh = _folders(tmp_path / "fresh", 3, 9)
    proba = p.predict_proba(fresh)
    assert proba.shape == (9, 3)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    labels = p.predict(fresh)
    truth = [Path(f).parent.name for f in sorted(map(str, fresh.rglob("*.png")))]
    assert np.mean([a == b for a, b in zip(labels, truth)]) >= 0.75
    body = p.predict_json([fresh / "disc" / "00.png"])[0]
    assert body["predicted_label"] == body["scores"][0][0]
    assert len(body["scores"][0][1].split(".")[1]) == 3
    evaluation = p.evaluate(fresh)
    assert evaluation["accuracy"] >= 0.75
    assert all("disc/" in case["id"] or "/" in case["id"] for case in evaluation.get("bad_cases", []))
    board = p.leaderboard()
    assert any(row["note"] == "chosen" for row in board)
    assert any("fine-tune" in row["model"] for row in board), board


def test_leaderboard_and_html_name_an_ensemble(image_predictor, monkeypatch):
    m = image_predictor.manifest()
    last = m["leaderboard"][-1]
    m["leaderboard"].append(
        dict(last, members=[1, 2], fine_tune={"unfrozen_blocks": 5}, status="chosen")
    )
    m["ensemble"] = [{"weight": 0.75}, {"weight": 0.25}]
    monkeypatch.setattr(image_predictor, "manifest", lambda: m)
    row = image_predictor.leaderboard()[-1]
    assert row["model"].endswith("ensemble of 2 fine-tuned models (rows 1, 2)"), row
    assert row["params"]["members"] == [1, 2]
    assert "2 fine-tuned models" in image_predictor._repr_html_()


def test_leaderboard_shows_a_refused_ensemble_and_why(image_predictor, monkeypatch):
    m = image_predictor.manifest()
    last = m["leaderboard"][-1]
    why = "not kept: no other arm lowered the validation log loss"
    m["leaderboard"].append(
        dict(last, members=[1], fine_tune={"unfrozen_blocks": 5}, status=why)
    )
    monkeypatch.setattr(image_predictor, "manifest", lambda: m)
    row = image_predictor.leaderboard()[-1]
    assert row["model"].endswith("ensemble of 1 fine-tuned model (rows 1)"), row
    assert row["note"] == why


def test_a_search_reruns_with_its_fine_tuning_arms_edited(image_predictor, tmp_path):
    tuned = [t["fine_tune"] for t in image_predictor.manifest()["leaderboard"] if t.get("fine_tune")]
    assert tuned, "the fixture fine-tuned"
    sgd = {"kind": "sgd", "momentum": 0.9}
    edited = [
        dict(tuned[0], learning_rate=3e-4, mixing={"kind": "mixup", "alpha": 0.2}),
        {"unfrozen_blocks": 1, "optimizer": sgd, "learning_rate": 0.01},
    ]
    rerun = exeml.ImagePredictor(
        preference="performance_first",
        backbones=["mobilenet_v2"],
        resolution=64,
        fine_tune_arms=edited,
        refit_full=True,
        verbosity=0,
    ).fit(_folders(tmp_path / "data", 10, 1), time_limit=120)
    # refit_full reaches the engine: a chosen fine-tuned model records its refit epochs (the
    # preference's default, None, is off under performance_first, as the fixture shows).
    assert exeml.ImagePredictor().refit_full is None
    assert "refit_epochs" not in image_predictor.manifest()
    m = rerun.manifest()
    assert ("refit_epochs" in m) == (m.get("fine_tune") is not None), m.get("refit_epochs")
    arms = [t["fine_tune"] for t in rerun.manifest()["leaderboard"] if t.get("fine_tune") and not t.get("members")]
    assert [(a["unfrozen_blocks"], a["learning_rate"], a["mixing"], a["optimizer"]) for a in arms] == [
        (tuned[0]["unfrozen_blocks"], 3e-4, {"kind": "mixup", "alpha": 0.2}, {"kind": "adamw"}),
        (1, 0.01, {"kind": "none"}, sgd),
    ], arms
    # Given arms run as given: never lengthened, whatever the budget leaves.
    assert [a["max_epochs"] for a in arms] == [tuned[0]["max_epochs"], 8], arms
    with pytest.raises(exeml.InvalidParameterError, match="unknown field `learnig_rate`"):
        exeml.ImagePredictor(fine_tune_arms=[{"learnig_rate": 0.1}], verbosity=0).fit(tmp_path / "data", time_limit=30)
    with pytest.raises(exeml.InvalidParameterError, match="momentum"):
        exeml.ImagePredictor(fine_tune_arms=[{"optimizer": {"kind": "sgd", "momentum": 1.5}}], verbosity=0).fit(
            tmp_path / "data", time_limit=30
        )
    with pytest.raises(exeml.InvalidParameterError, match="max_epochs"):
        exeml.ImagePredictor(fine_tune_arms=[{"max_epochs": 0}], verbosity=0).fit(tmp_path / "data", time_limit=30)


def test_multi_label_text_files_give_label_lists_and_multi_label_metrics(tmp_path):
    """Side-by-side ``.txt`` files with several lines train a multi-label model: ``predict``
    returns a list of labels per image, the scores are independent sigmoids, and the
    evaluation's headline carries the multi-label metrics."""
    from PIL import Image

    _weights_or_skip()
    rng = random.Random(3)
    data = tmp_path / "tagged"
    data.mkdir()
    truth = {}
    # Two independent tags: `striped` (else `plain`, a disc) and `dark` (a dimmed picture).
    for i in range(40):
        striped, dark = i % 2 == 0, (i // 2) % 2 == 0
        picture = np.asarray(_picture("stripes" if striped else "disc", rng))
        if dark:
            picture = picture // 3
        Image.fromarray(picture).save(data / f"{i:02d}.png")
        labels = ["striped" if striped else "plain"] + (["dark"] if dark else [])
        (data / f"{i:02d}.txt").write_text("\n".join(labels), encoding="utf-8")
        truth[f"{i:02d}.png"] = sorted(labels)
    p = exeml.ImagePredictor(
        preference="performance_first", backbones=["mobilenet_v2"], resolution=64, verbosity=0
    ).fit(data, time_limit=120)
    assert p.problem == "multilabel"
    assert p.class_labels == ["dark", "plain", "striped"]
    proba = p.predict_proba(data)
    assert proba.shape == (40, 3)
    assert ((proba >= 0) & (proba <= 1)).all()
    # Sigmoids, not a softmax: the rows of images with two tags do not sum to one.
    assert not np.allclose(proba.sum(axis=1), 1.0, atol=1e-2)
    predicted = p.predict(data)
    assert all(isinstance(labels, list) for labels in predicted)
    names = sorted(truth)
    exact = np.mean([sorted(labels) == truth[n] for labels, n in zip(predicted, names)])
    assert exact >= 0.7, (exact, predicted)
    evaluation = p.evaluate(data)
    headline = evaluation.headline
    for key in ("accuracy", "micro_f1", "macro_f1", "hamming_loss", "log_loss", "n"):
        assert key in headline, headline
    assert headline["n"] == 40
    assert headline["micro_f1"] >= 0.8 and headline["hamming_loss"] <= 0.2, headline
    assert set(evaluation["per_class"]) == {"dark", "plain", "striped"}
    assert list(evaluation.per_class_frame().index) == ["dark", "plain", "striped"]
    bad = evaluation.bad_cases_frame()
    assert all(truth[i] != sorted(p.split(";")) for i, p in zip(bad["id"], bad["predicted"]))
    assert p.leaderboard(), "the search history is listed"


def test_save_load_and_warm_start_with_a_new_class(image_predictor, tmp_path):
    image_predictor.save(tmp_path / "model")
    loaded = exeml.ImagePredictor.load(tmp_path / "model", verbosity=0)
    picture = _folders(tmp_path / "one", 1, 5)
    assert np.allclose(loaded.predict_proba(picture), image_predictor.predict_proba(picture), atol=1e-6)
    data = _folders(tmp_path / "v2", 8, 3, kinds=("disc", "stripes", "checks", "grid"))
    child = exeml.ImagePredictor(preference="performance_first", verbosity=0).fit(
        data, time_limit=120, warm_start=loaded
    )
    assert child.class_labels == ["checks", "disc", "grid", "stripes"]
    assert child.manifest()["lineage"]["parent"].startswith("python:")


def test_errors_name_the_problem(image_predictor, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    with pytest.raises(exeml.DataError, match="broken.png"):
        image_predictor.predict([broken])
    with pytest.raises(exeml.InvalidParameterError, match="not fitted"):
        exeml.ImagePredictor().predict([broken])
    with pytest.raises(exeml.InvalidParameterError, match="preference"):
        exeml.ImagePredictor(preference="fastest")
    too_few = _folders(tmp_path / "few", 2, 1)
    with pytest.raises(exeml.DataCheckError):
        exeml.ImagePredictor(verbosity=0).fit(too_few, time_limit=30)
    with pytest.raises(exeml.InvalidParameterError, match="backbone"):
        exeml.ImagePredictor(backbones=["resnet9000"], verbosity=0).fit(
            _folders(tmp_path / "ok", 6, 2), time_limit=30
        )
    assert json.loads(image_predictor.model.manifest())["task"] == "image"


def test_predict_folder_writes_the_cli_csv_and_lists_unreadable_images(image_predictor, tmp_path):
    fresh = _folders(tmp_path / "fresh", 2, 4)
    (fresh / "disc" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    report = image_predictor.predict_folder(fresh, tmp_path / "preds.csv", chunk_images=2)
    assert report["inputs"] == 7 and report["predicted"] == 6 and report["skipped"] == 1
    assert "broken.png" in Path(report["errors_file"]).read_text()
    lines = (tmp_path / "preds.csv").read_text().splitlines()
    assert lines[0].split(",")[:2] == ["id", "prediction"]
    ids = [line.split(",")[0] for line in lines[1:]]
    assert ids == sorted(ids) and ids[0] == "checks/00.png"
    expected = image_predictor.predict([fresh / i for i in ids])
    assert [line.split(",")[1] for line in lines[1:]] == expected


def test_embeddings_of_files_and_of_a_folder(image_predictor, tmp_path):
    p = image_predictor
    fresh = _folders(tmp_path / "fresh", 2, 6)
    dim = p.embedding_dim
    assert dim == 1280  # MobileNetV2's pooled features
    files = sorted(fresh.rglob("*.png"))
    emb = p.extract_embedding(fresh)
    assert emb.shape == (6, dim) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    # Each file alone gives its row; two different pictures differ.
    assert np.allclose(p.extract_embedding(files[2]), emb[2:3], atol=1e-5)
    assert not np.allclose(emb[0], emb[3], atol=1e-3)
    # Images of a class lie nearer each other than images of another (cosine similarity).
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    similarity = unit @ unit.T
    classes = [f.parent.name for f in files]
    same = [similarity[i, j] for i in range(6) for j in range(i + 1, 6) if classes[i] == classes[j]]
    other = [similarity[i, j] for i in range(6) for j in range(i + 1, 6) if classes[i] != classes[j]]
    assert np.mean(same) > np.mean(other), (same, other)

    (fresh / "disc" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(exeml.DataError, match="broken.png"):
        p.extract_embedding(fresh)
    report = p.embed_folder(fresh, tmp_path / "emb.csv", chunk_images=4)
    assert report["inputs"] == 7 and report["predicted"] == 6 and report["skipped"] == 1
    assert "broken.png" in Path(report["errors_file"]).read_text()
    lines = (tmp_path / "emb.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:2] == ["id", "emb_0"] and len(header) == dim + 1
    rows = {line.split(",")[0]: np.array(line.split(",")[1:], dtype=np.float32) for line in lines[1:]}
    ids = [str(f.relative_to(fresh)) for f in files]
    assert sorted(rows) == ids
    assert np.allclose(np.stack([rows[i] for i in ids]), emb, atol=1e-5)


def test_arrays_and_pil_images_predict_as_their_files(image_predictor, tmp_path):
    from PIL import Image

    p = image_predictor
    fresh = _folders(tmp_path / "fresh", 2, 8)
    files = sorted(fresh.rglob("*.png"))
    from_files = p.predict_proba(files)
    pil = [Image.open(f) for f in files]
    arrays = np.stack([np.asarray(im.convert("RGB")) for im in pil])
    # PNG is lossless: the same pixels give the same scores, whatever carries them.
    assert np.allclose(p.predict_proba(pil), from_files, atol=1e-5)
    assert np.allclose(p.predict_proba(arrays), from_files, atol=1e-5)
    assert np.allclose(p.predict_proba(arrays[3]), from_files[3:4], atol=1e-5)
    rgba = np.concatenate([arrays[0], np.full(arrays[0].shape[:2] + (1,), 7, np.uint8)], axis=2)
    mixed = [files[0], rgba, str(files[5]), pil[2]]
    assert np.allclose(p.predict_proba(mixed), from_files[[0, 0, 5, 2]], atol=1e-5)
    assert p.predict(arrays) == p.predict(files)
    import pandas as pd  # a Series of paths, as a DataFrame column gives them

    assert np.allclose(p.predict_proba(pd.Series([str(f) for f in files])), from_files, atol=1e-5)
    assert np.allclose(p.extract_embedding(arrays), p.extract_embedding(files), atol=1e-5)
    grey = np.asarray(pil[1].convert("L"))
    assert p.predict_proba(grey).shape == (1, 3)
    with pytest.raises(exeml.InvalidParameterError, match="uint8"):
        p.predict_proba(arrays.astype(np.float32) / 255)
    with pytest.raises(exeml.InvalidParameterError, match=r"images\[1\].*shape \(3, 4, 5\)"):
        p.predict_proba([files[0], np.zeros((3, 4, 5), np.uint8)])
    with pytest.raises(exeml.InvalidParameterError, match="no pixels"):
        p.predict_proba(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(exeml.InvalidParameterError, match="images"):
        p.predict_proba(42)
    with pytest.raises(exeml.InvalidParameterError, match=r"images\[0\].*bytes"):
        p.model.predict_pixels([(b"\x00" * 10, 2, 2)])


def test_an_exported_onnx_model_predicts_and_embeds_as_the_predictor(image_predictor, tmp_path):
    import onnxruntime as ort
    from PIL import Image

    p = image_predictor
    fresh = _folders(tmp_path / "fresh", 2, 9)
    files = sorted(fresh.rglob("*.png"))
    path = p.export_onnx(tmp_path / "model.onnx")
    assert path == str(tmp_path / "model.onnx")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    pixels = p.onnx_input(files)
    side = p.manifest()["resolution"]
    assert pixels.shape == (6, 3, side, side) and pixels.dtype == np.float32
    assert 0.0 <= pixels.min() and pixels.max() <= 1.0
    proba, embedding = session.run(["probabilities", "embedding"], {"pixels": pixels})
    assert np.allclose(proba, p.predict_proba(files), atol=1e-4)
    emb = p.extract_embedding(files)
    assert np.abs(embedding - emb).max() <= 1e-4 * np.abs(emb).max()
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["exeml.classes"]) == p.class_labels
    assert meta["exeml.resolution"] == str(side) == "64"
    # In-memory images give the same input as their files (PNG is lossless).
    arrays = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    assert np.array_equal(p.onnx_input(arrays), pixels)
    # The input written out with PIL, as a user without exeml would (docs/images.md): the centre
    # square of 7/8 of the shorter side, resized bilinearly, / 255, channels first.
    image = Image.open(files[0]).convert("RGB")
    w, h = image.size
    square = min(w, h) * 224 // 256
    left, top = (w - square) // 2, (h - square) // 2
    crop = image.crop((left, top, left + square, top + square)).resize((side, side), Image.BILINEAR)
    by_hand = (np.asarray(crop, dtype=np.float32) / 255).transpose(2, 0, 1)
    assert np.abs(by_hand - pixels[0]).max() <= 2 / 255
    (by_hand_proba,) = session.run(["probabilities"], {"pixels": by_hand[None]})
    assert np.argmax(by_hand_proba) == np.argmax(proba[0])
    # 8-bit weights: about a third of the file, the same predictions on these images.
    small = p.export_onnx(tmp_path / "model-int8.onnx", int8=True)
    assert os.path.getsize(small) < 0.35 * os.path.getsize(path)
    small_session = ort.InferenceSession(small, providers=["CPUExecutionProvider"])
    (small_proba,) = small_session.run(["probabilities"], {"pixels": pixels})
    assert np.abs(small_proba - proba).max() < 0.05
    assert (small_proba.argmax(1) == proba.argmax(1)).all()
    assert small_session.get_modelmeta().custom_metadata_map["exeml.weights"].startswith("int8")
    with pytest.raises(exeml.DataError, match="broken.png"):
        (fresh / "broken.png").write_bytes(b"not an image")
        p.onnx_input(fresh / "broken.png")


def test_fit_and_evaluate_on_images_in_memory(tmp_path):
    import pandas as pd

    _weights_or_skip()
    rng = random.Random(4)
    kinds = ["disc", "stripes", "checks"] * 8
    batch = np.stack([np.asarray(_picture(k, rng)) for k in kinds])
    p = exeml.ImagePredictor(
        preference="performance_first", backbones=["mobilenet_v2"], resolution=64, verbosity=0
    ).fit(batch, kinds, time_limit=60)
    assert p.class_labels == ["checks", "disc", "stripes"]
    assert p.validation()["accuracy"] >= 0.8
    assert p.manifest()["lineage"]["data"] == "python: images with 24 labels"
    # PIL images with labels; bad cases are named by position.
    fresh_kinds = ["disc", "stripes", "checks"] * 2
    evaluation = p.evaluate([_picture(k, rng) for k in fresh_kinds], fresh_kinds)
    assert evaluation["n"] == 6 and evaluation["accuracy"] >= 0.8
    assert {c["id"] for c in evaluation.get("bad_cases", [])} <= {f"{i:06d}.png" for i in range(6)}
    # A DataFrame of paths and labels, and a list of files with their labels.
    files = sorted(_folders(tmp_path / "files", 2, 5).rglob("*.png"))
    frame = pd.DataFrame({"image": [str(f) for f in files], "label": [f.parent.name for f in files]})
    assert p.evaluate(frame)["n"] == 6
    assert p.evaluate(files, [[f.parent.name] for f in files])["accuracy"] == p.evaluate(frame)["accuracy"]
    # Refused by name: counts that differ, a label that is not one, a frame without its
    # columns, files without labels, a file that is not there.
    with pytest.raises(exeml.InvalidParameterError, match="2 labels for 6 images"):
        p.evaluate(files, ["disc", "disc"])
    with pytest.raises(exeml.InvalidParameterError, match=r"labels\[1\]"):
        p.evaluate(files[:2], ["disc", "two\nlines"])
    with pytest.raises(exeml.InvalidParameterError, match="'image'"):
        p.evaluate(pd.DataFrame({"path": [str(files[0])], "label": ["disc"]}))
    with pytest.raises(exeml.InvalidParameterError, match="need their labels"):
        p.evaluate(files)
    with pytest.raises(exeml.DataError, match="missing.png"):
        p.evaluate([tmp_path / "missing.png"], ["disc"])


def test_ctrl_c_during_the_first_extraction_raises_keyboard_interrupt(tmp_path):
    """The first configuration of a search runs to its end however short the time limit, but
    Ctrl-C stops its feature extraction: with no model yet, KeyboardInterrupt is raised."""
    _weights_or_skip()
    # Enough images that the extraction lasts far longer than the callback takes to cancel it.
    data = _folders(tmp_path / "images", 300, 3)

    def watch(kind, value):
        if kind == "phase" and "extracting features" in str(value):
            raise KeyboardInterrupt

    # Before the change that made a cancel stop the first extraction, the search finished it,
    # fitted a model and returned it with a TrainingInterruptedWarning.
    with pytest.raises(KeyboardInterrupt):
        exeml._exeml.fit_image(
            path=os.fspath(data), time_limit=600.0, preference="performance_first",
            backbones=["mobilenet_v2"], resolution=64, progress=watch,
        )


def test_a_gpu_device_in_a_cpu_build_is_not_compiled(tmp_path):
    data = _folders(tmp_path / "data", 5, 2)
    with pytest.raises(exeml.errors.NotCompiledError, match="cuda"):
        exeml.ImagePredictor(device="cuda:0", verbosity=0).fit(data, time_limit=5)
    with pytest.raises(exeml.errors.InvalidParameterError, match="tpu"):
        exeml.ImagePredictor(device="tpu", verbosity=0).fit(data, time_limit=5)


def test_hub_backbones_are_looked_up_in_the_cache_or_the_given_file(tmp_path, monkeypatch):
    data = _folders(tmp_path / "data", 6, 3)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    with pytest.raises(exeml.errors.NotFoundError, match="timm/resnet18.a1_in1k"):
        exeml.ImagePredictor(backbones=["resnet18"], verbosity=0).fit(data, time_limit=20)
    missing = tmp_path / "my-resnet50.safetensors"
    with pytest.raises(exeml.errors.NotFoundError, match="my-resnet50.safetensors"):
        exeml.ImagePredictor(
            backbones=["resnet50"], weights={"resnet50": missing}, verbosity=0
        ).fit(data, time_limit=20)
    with pytest.raises(exeml.InvalidParameterError, match="resnet9000"):
        exeml.ImagePredictor(weights={"resnet9000": missing}, verbosity=0).fit(data, time_limit=20)


def test_an_image_project_is_imported_labelled_and_trained_into_versions(tmp_path):
    _weights_or_skip()
    data = _folders(tmp_path / "shapes", 6, 3)
    rng = random.Random(4)
    for name in ("loose_a.png", "loose_b.png"):
        _picture("disc", rng).save(data / name)
    (data / "disc" / "anim.gif").write_bytes(b"GIF89a")
    project = exeml.Project("shapes", task="image", home=tmp_path / "ws")
    assert project.task == "image"
    report = project.import_images(data)
    assert (report["imported"], report["labelled"], report["unlabelled"]) == (20, 18, 2)
    assert [s["reason"] for s in report["skipped"]] == [
        "unsupported image format (GIF): exeml reads JPG, JPEG, PNG and BMP"
    ]
    assert project.import_images(data)["already_present"] == 20
    loose = [s["id"] for s in project.samples("unlabelled")]
    assert project.add_label(loose, "disc") == 2
    assert project.label_counts()["disc"] == 8
    project.set_labels(loose[0], ["斑点"])
    assert project.rename_label("斑点", "disc") == 1
    assert project.samples("unlabelled") == []
    plan = project.delete_label("checks", mode="samples")
    assert len(plan["samples_deleted"]) == 6 and project.label_counts()["checks"] == 6
    with pytest.raises(exeml.InvalidParameterError, match="mode"):
        project.delete_label("checks", mode="everything")
    with pytest.raises(exeml.InvalidParameterError, match="which"):
        project.samples("some")

    settings = exeml.ImagePredictor(backbones=["mobilenet_v2"], resolution=64, fine_tune=False, verbosity=0)
    first = project.train(time_limit=60, predictor=settings, verbosity=0)
    assert (first["version"], first["dataset_version"]) == ("0.0.1", "V001")
    project.set_labels(loose[1], ["spot"])
    extra = tmp_path / "extra" / "spot"
    extra.mkdir(parents=True)
    for i in range(5):
        _picture("checks", rng).rotate(30).save(extra / f"{i}.png")
    project.import_images(extra.parent)
    second = project.train(time_limit=60, parent="0.0.1", predictor=settings, verbosity=0)
    assert (second["version"], second["parent"], second["dataset_version"]) == ("0.0.2", "0.0.1", "V002")
    model = project.load_model("0.0.2", verbosity=0)
    assert isinstance(model, exeml.ImagePredictor)
    assert model.class_labels == ["checks", "disc", "spot", "stripes"]
    assert len(model.predict(extra)) == 5
    with pytest.raises(exeml.InvalidParameterError, match="image projects"):
        exeml.Project("table", home=tmp_path / "ws").train(predictor=settings, verbosity=0)
