"""Class-activation maps: a model trained to see bright squares at known places points at them."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import labelwise
from labelwise.data.decoded import decode_all
from labelwise.infer.explain import class_activation_maps, explain_images
from labelwise.models.bundle import load_model
from labelwise.models.classifier import Classifier
from labelwise.models.ensemble import Ensemble

SIDE = 48  # px
SQUARE = 12  # px
# label -> the colour of its square, drawn at a random place on dark noise
COLOURS = {"red": (250, 30, 30), "blue": (30, 30, 250)}


def _image(rng: np.random.Generator, tags: list[str]) -> tuple[Image.Image, dict[str, tuple[int, int]]]:
    """A noisy dark image with the tagged squares at random, non-overlapping places; returns their corners."""
    a = rng.integers(0, 60, size=(SIDE, SIDE, 3), dtype=np.uint8)
    where: dict[str, tuple[int, int]] = {}
    halves = rng.permutation(2)  # one square in the top half, the other in the bottom half
    for t, half in zip(tags, halves):
        y = int(rng.integers(2, SIDE // 2 - SQUARE - 1)) + int(half) * SIDE // 2
        x = int(rng.integers(2, SIDE - SQUARE - 2))
        a[y:y + SQUARE, x:x + SQUARE] = COLOURS[t]
        where[t] = (y, x)
    return Image.fromarray(a, "RGB"), where


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    root = tmp_path_factory.mktemp("squares")
    rng = np.random.default_rng(0)
    (root / "data" / "images").mkdir(parents=True)
    rows = []
    for i in range(240):
        tags = [t for t, keep in zip(COLOURS, (i % 4 in (1, 3), i % 4 in (2, 3))) if keep]
        _image(rng, tags)[0].save(root / "data" / "images" / f"{i}.png")
        rows.append([f"{i}.png", " ".join(tags)])
    with open(root / "data" / "labels.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([["image", "tags"], *rows])
    # monitor the loss: mAP reaches 1.0 after one epoch and would keep that barely trained model
    labelwise.train(root / "data", out=root / "run", backbone="cnn-small", pretrained=False, epochs=5,
                    image_size=SIDE, batch_size=16, progress=False, seed=0, cache="off", monitor="loss")
    # fresh test images: each shape alone, and both together (the maps must tell them apart)
    test = root / "test"
    test.mkdir()
    rng = np.random.default_rng(7)
    places = {}
    for k in range(3):
        for name, tags in (("red", ["red"]), ("blue", ["blue"]), ("both", ["red", "blue"])):
            img, places[f"{name}{k}"] = _image(rng, tags)
            img.save(test / f"{name}{k}.png")
    return root, places


def _peak(cam: np.ndarray) -> tuple[int, int]:
    y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return int(y), int(x)


def _centroid(cam: np.ndarray) -> tuple[int, int]:
    """Centre of mass of the map's squared values: where it points, robust to a ring around the object."""
    yy, xx = np.mgrid[:cam.shape[0], :cam.shape[1]]
    m = cam.astype(np.float64) ** 2
    return int((m * yy).sum() / m.sum()), int((m * xx).sum() / m.sum())


def _box_mean(cam: np.ndarray, label: str, corner: tuple[int, int]) -> float:
    y, x = corner
    return float(cam[y:y + SQUARE, x:x + SQUARE].mean())


def _inside(peak: tuple[int, int], label: str, corner: tuple[int, int], margin: int) -> bool:
    y, x = corner
    return y - margin <= peak[0] < y + SQUARE + margin and x - margin <= peak[1] < x + SQUARE + margin


def test_map_peaks_on_the_square_of_its_label(squares):
    root, places = squares
    model, meta = load_model(root / "run")
    names = list(meta.labels.names)
    images = sorted(places)
    pixels, bad = decode_all([root / "test" / f"{n}.png" for n in images], meta.image_size, meta.in_chans)
    assert not bad
    pairs = [(i, names.index(t)) for i, n in enumerate(images) for t in places[n]]
    maps = class_activation_maps(model, pixels, pairs)
    assert maps.shape == (len(pairs), SIDE, SIDE) and maps.min() >= 0 and np.isclose(maps.max(), 1)
    for (i, c), cam in zip(pairs, maps):
        where, label = places[images[i]], names[c]
        # The map of a 48 px image comes from cnn-small's 12x12 layer (4 px cells); edge-detecting
        # filters may light a ring around a flat square, so the peak is allowed two cells off the
        # square, and the map's centre of mass must fall on the square itself.
        assert _inside(_peak(cam), label, where[label], margin=8), (images[i], label, _peak(cam), where)
        assert _inside(_centroid(cam), label, where[label], margin=3), (images[i], label, _centroid(cam), where)
        # with both shapes in the image, each label's map is far stronger on its own square
        for other in set(where) - {label}:
            assert _box_mean(cam, label, where[label]) > 2 * _box_mean(cam, other, where[other]), (images[i], label)


def test_ensemble_and_late_fusion_give_maps():
    torch.manual_seed(0)
    pixels = np.random.default_rng(0).integers(0, 255, size=(2, 5, 32, 32), dtype=np.uint8)
    late = Classifier("cnn-small", 3, in_chans=5, fusion="late")
    torch.nn.init.normal_(late.head.weight)  # a zero head has no gradient to show
    ens = Ensemble([late, late], multilabel=True)
    for model in (late, ens):
        maps = class_activation_maps(model, pixels, [(0, 1), (1, 2)])
        assert maps.shape == (2, 32, 32) and np.isfinite(maps).all() and maps.max() > 0


def test_predict_explain_writes_one_png_per_image_and_label(squares, tmp_path):
    from labelwise.cli import app

    root, places = squares
    out = tmp_path / "maps"
    result = CliRunner().invoke(app, ["predict", str(root / "run"), str(root / "test"),
                                      "--out", str(tmp_path / "p.csv"), "--explain", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    with open(out / "explanations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    got = sorted((r["image"].rsplit("/", 1)[-1], r["label"]) for r in rows)
    assert got == sorted((f"{n}.png", t) for n in places for t in places[n])
    for r in rows:
        img = Image.open(out / r["file"])
        assert img.mode == "RGB" and min(img.size) >= 224


def test_explain_images_reports_unreadable_files(squares, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    root, _ = squares
    res = explain_images(root / "run", [broken, root / "test" / "red0.png"], tmp_path / "maps")
    assert [r.error != "" for r in res] == [True, False]
    assert res[1].file is not None and res[1].file.is_file()
