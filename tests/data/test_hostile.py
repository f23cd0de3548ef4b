"""Hostile and odd files (tests/hostile.py) through the decoder, training and Predictor.predict.

One small model is trained on a folder of class subfolders that also holds the whole corpus: four
classes, one per orientation of a picture ("up", "left", "down", "right"), so the model is sensitive
to rotation and an EXIF-rotated file can be checked against a physically rotated copy.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import labelwise
from labelwise.data.images import read_resized
from labelwise.errors import ImageError
from labelwise.infer.predict import Predictor

from hostile import EXIF_ORIENTATIONS, default_base, make_hostile_corpus

# class name -> k of np.rot90(upright, k) (k=1 turns counter-clockwise: the top edge goes left)
ORIENTATION_CLASSES = {"up": 0, "left": 1, "down": 2, "right": -1}


def test_corpus_decoder_outcomes(tmp_path):
    corpus = make_hostile_corpus(tmp_path)
    assert {"truncated.jpg", "empty.jpg", "png_named.jpg", "text_named.png", "cmyk.jpg", "gray16.png",
            "palette_alpha.png", "exif_3.jpg", "exif_6.jpg", "exif_8.jpg", "bands5.tif", "bomb.png",
            "huge_header.png", "huge_header.tif"} <= set(corpus)
    assert (tmp_path / "bomb.png").stat().st_size < 200_000  # small file, 144 M pixels
    for name, expected in corpus.items():
        for channels in (1, 3):
            if expected.ok:
                assert read_resized(tmp_path / name, 16, channels).shape == (16, 16, channels), name
            else:
                with pytest.raises(ImageError) as err:
                    read_resized(tmp_path / name, 16, channels)
                assert re.search(expected.reason, str(err.value)), (name, str(err.value))
                assert str(tmp_path / name) in str(err.value)
                assert 400 <= expected.status < 500


def _variant(rng: np.random.Generator, upright: np.ndarray) -> np.ndarray:
    """The upright picture, shifted a little, brighter or darker, with noise: a training image."""
    h, w = upright.shape[:2]
    dy, dx = rng.integers(0, 5, size=2)
    crop = upright[dy:h - 4 + dy, dx:w - 4 + dx].astype(np.float32)
    crop = crop * rng.uniform(0.8, 1.2) + rng.normal(0, 6, crop.shape)
    return np.clip(crop, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train on orientation classes with the corpus dropped into the 'up' folder."""
    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    rng = np.random.default_rng(0)
    upright = default_base()
    for name, k in ORIENTATION_CLASSES.items():
        (data / name).mkdir(parents=True)
        for i in range(24):
            img = np.ascontiguousarray(np.rot90(_variant(rng, upright), k))
            Image.fromarray(img).save(data / name / f"{i:02d}.png")
    corpus = make_hostile_corpus(data / "up" / "odd", base=upright)
    # 6 small epochs (~30 steps) so the model really tells orientations apart; no augmentation,
    # because a horizontal flip would blur "left" and "right".
    result = labelwise.train(data, out=root / "run", epochs=6, batch_size=16, backbone="cnn-small",
                             pretrained=False, augment="none", progress=False, seed=0)
    return result, data / "up" / "odd", corpus


def test_training_lists_each_bad_file_with_its_reason(trained):
    result, folder, corpus = trained
    skipped = {Path(p): reason for p, reason in result.skipped}
    for name, expected in corpus.items():
        path = folder / name
        if expected.ok:
            assert path not in skipped, (name, skipped.get(path))
        else:
            assert path in skipped, f"{name} was not reported as unreadable"
            assert re.search(expected.reason, skipped[path]), (name, skipped[path])
            assert str(path) in skipped[path]
    assert result.metrics["run"]["skipped_images"] == sum(not e.ok for e in corpus.values())
    assert (result.run_dir / "model.safetensors").is_file()


def test_predict_gives_every_file_a_row(trained):
    result, folder, corpus = trained
    predictor = Predictor.load(result.run_dir)
    names = list(corpus)
    rows = predictor.predict([folder / n for n in names])
    assert [Path(r.path).name for r in rows] == names
    for name, row in zip(names, rows):
        expected = corpus[name]
        if expected.ok:
            assert row.error == "" and len(row.labels) == 1, (name, row.error)
            assert set(row.probs) == set(predictor.labels.names)
        else:
            assert row.labels == [] and row.probs == {}, name
            assert re.search(expected.reason, row.error) and str(folder / name) in row.error, (name, row.error)


def test_exif_rotated_image_predicts_like_a_physically_rotated_copy(trained, tmp_path):
    result, folder, _ = trained
    predictor = Predictor.load(result.run_dir)
    upright = default_base()
    # The physically rotated copy: the picture as the viewer shows it, stored without a tag.
    Image.fromarray(upright).save(tmp_path / "physical.jpg", quality=95, subsampling=0)
    raw = []  # the EXIF files' stored pixels without their tag: what ignoring EXIF would see
    for orientation, k in EXIF_ORIENTATIONS.items():
        raw.append(tmp_path / f"raw_{orientation}.jpg")
        Image.fromarray(np.ascontiguousarray(np.rot90(upright, k))).save(raw[-1], quality=95, subsampling=0)
    tagged = [folder / f"exif_{o}.jpg" for o in EXIF_ORIENTATIONS]
    physical, *rest = predictor.predict([tmp_path / "physical.jpg", *tagged, *raw])
    tagged_rows, raw_rows = rest[:len(tagged)], rest[len(tagged):]
    assert physical.labels == ["up"], physical.probs  # the model learned the orientations
    for orientation, row, ignored in zip(EXIF_ORIENTATIONS, tagged_rows, raw_rows):
        assert row.labels == physical.labels, (orientation, row.probs)
        gap = max(abs(row.probs[n] - physical.probs[n]) for n in physical.probs)
        assert gap < 0.05, (orientation, row.probs, physical.probs)  # JPEG rounding only
        # Ignoring the tag would change the answer, so this test can fail.
        assert ignored.labels != physical.labels, (orientation, ignored.probs)
