"""Near-duplicates across a split: planted copies are found with their indices, distinct real
Fashion-MNIST items are not."""
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelwise.data.decoded import decode_all
from labelwise.data.duplicates import DEFAULT_MIN_SIMILARITY, Duplicate, Fingerprints, content_hashes, cross_split_duplicates, describe_duplicates, exact_duplicates, fold_duplicates, fingerprint_gray, fingerprint_paths, fingerprint_pixels, split_duplicates
from labelwise.data.demo import fashion_available, load_fashion

needs_fashion = pytest.mark.skipif(not fashion_available(), reason="Fashion-MNIST (dataset-fashion-mnist) not installed")


def _items(n_train: int, n_val: int) -> tuple[np.ndarray, np.ndarray]:
    images, _ = load_fashion("train")
    idx = np.random.default_rng(0).permutation(len(images))[: n_train + n_val]
    return images[idx[:n_train]], images[idx[n_train:]]


def _save(a: np.ndarray, path: Path, **kw) -> Path:
    Image.fromarray(a).save(path, **kw)
    return path


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """200 training and 40 validation files; validation 0-3 are altered copies of training images."""
    root = tmp_path_factory.mktemp("planted")
    train, val = _items(200, 40)
    (root / "train").mkdir()
    (root / "val").mkdir()
    t_paths = [_save(a, root / "train" / f"{i}.png") for i, a in enumerate(train)]
    v_paths = [_save(a, root / "val" / f"{j}.png") for j, a in enumerate(val)]
    shutil.copyfile(t_paths[5], v_paths[0])  # byte-identical copy
    big = np.asarray(Image.fromarray(train[10]).resize((61, 61), Image.BICUBIC))
    _save(big, v_paths[1])  # resized
    v_paths[2] = _save(train[20], root / "val" / "2.jpg", quality=85)  # JPEG re-encoded
    _save(np.clip(train[30].astype(int) + 5, 0, 255).astype(np.uint8), v_paths[3])  # brightness +5
    return t_paths, v_paths


@needs_fashion
def test_planted_copies_are_reported_with_their_indices(planted):
    t_paths, v_paths = planted
    fp_t, bad_t = fingerprint_paths(t_paths, channels=1)
    fp_v, bad_v = fingerprint_paths(v_paths, channels=1)
    assert not bad_t and not bad_v
    dups = cross_split_duplicates(fp_t, fp_v)
    pairs = {(d.train, d.val) for d in dups}
    assert {(5, 0), (10, 1), (20, 2), (30, 3)} <= pairs
    assert len(pairs - {(5, 0), (10, 1), (20, 2), (30, 3)}) <= 1  # distinct items: at most a stray pair
    by_val = {d.val: d for d in dups}
    assert by_val[0].identical and by_val[3].identical  # brightness cancels out
    assert all(d.similarity >= DEFAULT_MIN_SIMILARITY for d in dups)
    assert dups == sorted(dups, key=lambda d: -d.similarity)
    # the byte-identical file is also found by its content hash
    assert exact_duplicates(content_hashes(t_paths), content_hashes(v_paths)) == [(5, 0)]


@needs_fashion
def test_pixels_route_matches_and_split_duplicates_index_the_whole_set(planted):
    t_paths, v_paths = planted
    paths = list(t_paths) + list(v_paths)
    pixels, bad = decode_all(paths, 32, 3)  # as training decodes: here 3 channels at 32 px
    assert not bad
    fp = fingerprint_pixels(pixels)
    train_idx, val_idx = np.arange(len(t_paths)), np.arange(len(t_paths), len(paths))
    dups = split_duplicates(fp, train_idx, val_idx)
    n = len(t_paths)
    assert {(5, n), (10, n + 1), (20, n + 2), (30, n + 3)} <= {(d.train, d.val) for d in dups}
    # k folds: the same pairs, each once, whichever fold holds which side
    folds = [(val_idx, train_idx), (train_idx, val_idx)]
    assert {frozenset((d.train, d.val)) for d in fold_duplicates(fp, folds)} == \
        {frozenset((d.train, d.val)) for d in dups}
    lines = describe_duplicates(dups, paths, limit=2)
    assert "validation image(s) are near-duplicates" in lines[0] and "--group-by" in lines[0]
    assert str(paths[dups[0].val]) in lines[1] and str(paths[dups[0].train]) in lines[1]
    assert lines[-1].strip().startswith("... and")


@needs_fashion
def test_distinct_fashion_items_are_not_reported():
    train, val = _items(2000, 500)
    dups = cross_split_duplicates(fingerprint_gray(train), fingerprint_gray(val))
    assert len(dups) <= 3  # of 1,000,000 pairs of distinct real items


def test_flat_images_are_never_paired_and_sizes_are_pooled():
    rng = np.random.default_rng(0)
    blank = np.full((3, 64, 64), 7, np.uint8)
    textured = rng.integers(0, 255, (2, 64, 64), dtype=np.uint8)
    fp = fingerprint_gray(np.concatenate([blank, textured]))
    assert fp.vectors.shape == (5, 32 * 32) and list(fp.flat) == [True, True, True, False, False]
    dups = cross_split_duplicates(fp.take([0, 3]), fp.take([1, 2, 4]))
    assert dups == []  # blank images match nothing, not even each other
    same = cross_split_duplicates(fp.take([3]), fp.take([3]))
    assert same == [Duplicate(0, 0, pytest.approx(1.0))]


def test_empty_inputs():
    empty = Fingerprints(np.zeros((0, 32 * 32), np.float32), np.zeros(0, bool))
    fp = fingerprint_pixels(np.random.default_rng(1).integers(0, 255, (2, 3, 32, 32), dtype=np.uint8))
    assert cross_split_duplicates(empty, fp) == [] and cross_split_duplicates(fp, empty) == []
    assert describe_duplicates([], []) == []
