"""Tests for labelwise.demo_data: real Fashion-MNIST / digits written to disk."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelwise.data import demo as dd
from labelwise.errors import ConfigError, DataError

needs_fashion = pytest.mark.skipif(not dd.fashion_available(),
                                   reason="Debian package dataset-fashion-mnist not installed")


def _read_labels(out: Path) -> list[tuple[str, list[str]]]:
    with open(out / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["image", "tags"]
    return [(name, tags.split()) for name, tags in rows[1:]]


def _cells(path: Path) -> list[np.ndarray]:
    img = np.asarray(Image.open(path))
    return [img[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28] for r in (0, 1) for c in (0, 1)]


@needs_fashion
@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000), ("t10k", 10000)])
def test_load_fashion_shapes(split: str, n: int) -> None:
    images, labels = dd.load_fashion(split)
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert labels.min() == 0 and labels.max() == 9
    assert np.bincount(labels).tolist() == [n // 10] * 10  # Fashion-MNIST is balanced
    assert images.max() == 255


def test_load_fashion_rejects_bad_magic(tmp_path: Path) -> None:
    import gzip

    for img_file, lab_file in dd._FILES.values():
        for f in (img_file, lab_file):  # labels magic in the images file: wrong
            with gzip.open(tmp_path / f, "wb") as fh:
                fh.write((2049).to_bytes(4, "big") + (0).to_bytes(4, "big") * 3)
    assert dd.fashion_available(tmp_path)
    with pytest.raises(DataError, match="magic"):
        dd.load_fashion("train", root=tmp_path)
    with pytest.raises(DataError, match="not found"):
        dd.load_fashion("train", root=tmp_path / "missing")
    with pytest.raises(ConfigError):
        dd.load_fashion("validation")


def test_digits_fallback() -> None:
    images, labels, names = dd.load_digits_images()
    assert images.shape == (1797, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and set(labels.tolist()) == set(range(10))
    assert names == tuple("0123456789")
    assert images.max() > 200 and images[:, :2].max() == 0  # upscaled 0..16 -> 0..255, border
    # the digits "split" is disjoint and covers everything
    tr, tr_y, _, _ = dd._load_source("digits", "train")
    te, te_y, _, _ = dd._load_source("digits", "test")
    assert len(tr) + len(te) == 1797 and len(te) == 360


@needs_fashion
def test_build_multiclass_layout(tmp_path: Path) -> None:
    out = dd.build_multiclass(tmp_path / "mc", 3, split="test", seed=1, source="fashion")
    assert sorted(p.name for p in out.iterdir()) == sorted(dd.FASHION_CLASSES)
    images, labels = dd.load_fashion("test")
    for c, name in enumerate(dd.FASHION_CLASSES):
        files = sorted((out / name).iterdir())
        assert len(files) == 3
        for f in files:
            assert f.name.startswith("test_") and f.suffix == ".png"
            im = Image.open(f)
            assert im.size == (28, 28) and im.mode == "L"
            index = int(f.stem.split("_")[1])  # the file is the source item it names
            assert labels[index] == c
            assert np.array_equal(np.asarray(im), images[index])


def test_build_multiclass_refuses_non_empty_out(tmp_path: Path) -> None:
    (tmp_path / "mc").mkdir()
    (tmp_path / "mc" / "old.png").write_bytes(b"")
    with pytest.raises(DataError, match="not an empty folder"):
        dd.build_multiclass(tmp_path / "mc", 1, source="digits")


def test_build_multiclass_digits_forced(tmp_path: Path) -> None:
    out = dd.build_multiclass(tmp_path / "mc", 2, seed=0, source="digits")
    assert sorted(p.name for p in out.iterdir()) == list("0123456789")
    assert all(len(list((out / d).iterdir())) == 2 for d in "0123456789")
    with pytest.warns(UserWarning, match="fewer than n_per_class"):
        out = dd.build_multiclass(tmp_path / "few", 100, split="test", source="digits")
    assert sum(len(list(p.iterdir())) for p in out.iterdir()) == 360


@needs_fashion
def test_build_mosaics_tags_match_pasted_items(tmp_path: Path) -> None:
    classes = ("tshirt", "trouser", "bag", "sneaker", "dress")
    out = dd.build_mosaics(tmp_path / "ml", 200, split="test", seed=3, empty_fraction=0.25,
                           classes=classes, source="fashion")
    rows = _read_labels(out)
    files = sorted(p.name for p in (out / "images").iterdir())
    assert [name for name, _ in rows] == files and len(files) == 200
    assert sum(not tags for _, tags in rows) == 50  # exactly round(0.25 * 200) empty

    images, labels = dd.load_fashion("test")
    by_bytes: dict[bytes, set[str]] = {}
    for im, y in zip(images, labels):
        by_bytes.setdefault(im.tobytes(), set()).add(dd.FASHION_CLASSES[y])
    used: list[bytes] = []
    for name, tags in rows:
        assert len(tags) <= 4 and tags == [c for c in classes if c in tags]  # canonical order
        assert Image.open(out / "images" / name).size == (56, 56)
        shown: set[str] = set()
        for cell in _cells(out / "images" / name):
            if cell.any():  # a non-blank cell is exactly one source item of a listed class
                found = by_bytes[cell.tobytes()] & set(classes)
                assert found
                shown |= found
                used.append(cell.tobytes())
        assert shown == set(tags)
    assert len(used) == len(set(used))  # drawn without replacement


@needs_fashion
def test_build_mosaics_class_probs_skew(tmp_path: Path) -> None:
    out = dd.build_mosaics(tmp_path / "ml", 300, split="test", seed=0, empty_fraction=0.0,
                           cell_fill=0.5, classes=("bag", "sneaker", "trouser"),
                           class_probs=(8, 1, 0.5), source="fashion")
    counts = {c: 0 for c in ("bag", "sneaker", "trouser")}
    for _, tags in _read_labels(out):
        assert tags  # empty_fraction=0: every image has a label
        for t in tags:
            counts[t] += 1
    assert counts["bag"] > 3 * counts["sneaker"] > 0
    assert counts["sneaker"] > counts["trouser"] > 0


def test_build_mosaics_deterministic(tmp_path: Path) -> None:
    kw = dict(n_images=40, split="train", classes=("0", "1", "2"), source="digits")
    a = dd.build_mosaics(tmp_path / "a", seed=5, **kw)
    b = dd.build_mosaics(tmp_path / "b", seed=5, **kw)
    c = dd.build_mosaics(tmp_path / "c", seed=6, **kw)

    def snapshot(out: Path) -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    assert snapshot(a) == snapshot(b)
    assert snapshot(a) != snapshot(c)
    assert len(snapshot(a)) == 41


def test_build_mosaics_digits_and_bad_options(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="ran out of distinct items"):  # 120 items, 72 exist
        out = dd.build_mosaics(tmp_path / "ml", 30, split="test", seed=0, empty_fraction=0.0,
                               cell_fill=1.0, classes=("7", "8"), source="digits")
    rows = _read_labels(out)
    assert all(set(tags) <= {"7", "8"} and tags for _, tags in rows)
    assert all(all(cell.any() for cell in _cells(out / "images" / name)) for name, _ in rows)
    with pytest.raises(ConfigError, match="unknown"):
        dd.build_mosaics(tmp_path / "x", 5, classes=("tshirt",), source="digits")
    with pytest.raises(ConfigError, match="class_probs"):
        dd.build_mosaics(tmp_path / "y", 5, classes=("1", "2"), class_probs=(1,), source="digits")
    with pytest.raises(ConfigError, match="source"):
        dd.build_mosaics(tmp_path / "z", 5, source="cifar")


def test_build_demo_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dd.main([str(tmp_path / "demo"), "--small", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    for key in ("multiclass", "multiclass_test", "multilabel", "multilabel_test"):
        assert f"{key}: {tmp_path / 'demo' / key}" in printed
    src = dd.resolve_source("auto")
    classes = dd.DEMO_MOSAIC_CLASSES[src]
    train = _read_labels(tmp_path / "demo" / "multilabel")
    test = _read_labels(tmp_path / "demo" / "multilabel_test")
    assert len(train) == 500 and len(test) == 200
    assert {t for _, tags in train + test for t in tags} <= set(classes)
    assert all(p.name.startswith("test_") for p in (tmp_path / "demo" / "multiclass_test").rglob("*.png"))
    assert all(p.name.startswith("train_") for p in (tmp_path / "demo" / "multiclass").rglob("*.png"))
    assert dd.main([str(tmp_path / "demo"), "--small"]) == 2  # not empty: refused, no traceback
