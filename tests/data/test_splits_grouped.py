"""Grouped splits and k folds: groups never cross, label shares kept, every image in one fold.

Also --group-by in the data sources (a CSV column or a regular expression on the image path).
"""
from pathlib import Path

import numpy as np
import pytest

from labelwise.data.samples import Samples
from labelwise.data.sources import detect_format, load_samples
from labelwise.data.splits import kfold_splits, train_val_split
from labelwise.errors import ConfigError, DataError
from labelwise.labels import LabelSpace


def _grouped(task: str, n_groups: int = 400, seed: int = 0) -> Samples:
    """Skewed labels, groups of 1-8 images (augmented copies) that mostly share their labels."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 9, n_groups)
    gid = np.repeat(np.arange(n_groups), sizes)
    if task == "multilabel":
        freq = np.array([0.5, 0.3, 0.1, 0.05, 0.03])
        targets = (rng.random((n_groups, 5)) < freq)[gid]
        targets ^= rng.random(targets.shape) < 0.02  # a copy may gain or lose a label (a crop)
    else:
        classes = rng.choice(5, n_groups, p=[0.4, 0.3, 0.15, 0.1, 0.05])[gid]
        targets = np.eye(5, dtype=np.uint8)[classes]
    names = tuple(f"l{i}" for i in range(5))
    groups = np.array([f"scene{g:04d}" for g in gid])
    return Samples([Path(f"{i}.png") for i in range(len(gid))], targets, LabelSpace(names, task), groups=groups)


def _assert_shares(samples: Samples, idx: np.ndarray) -> None:
    share_all = samples.targets.mean(0)
    share = samples.targets[idx].mean(0)
    assert np.all(np.abs(share - share_all) <= 0.02 + 0.1 * share_all), (share, share_all)


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_grouped_split_keeps_groups_apart_and_label_shares(task):
    s = _grouped(task)
    tr, va = train_val_split(s, 0.2, seed=3)
    assert not set(s.groups[tr]) & set(s.groups[va])
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(len(s)))
    assert abs(len(va) / len(s) - 0.2) < 0.02  # the share is meant in images, not in groups
    _assert_shares(s, va)
    _assert_shares(s, tr)
    assert s.targets[va].sum(0).min() >= 1  # the rarest label reaches validation
    tr2, va2 = train_val_split(s, 0.2, seed=3)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)
    _, va3 = train_val_split(s, 0.2, seed=4)
    assert not np.array_equal(va, va3)


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_kfold_every_image_once_and_groups_apart(task, grouped):
    s = _grouped(task, seed=1)
    if not grouped:
        s.groups = None
    folds = kfold_splits(s, 5, seed=0)
    assert len(folds) == 5
    seen = np.concatenate([va for _, va in folds])
    assert np.array_equal(np.sort(seen), np.arange(len(s)))  # every image in exactly one val fold
    for tr, va in folds:
        assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(len(s)))
        assert abs(len(va) / len(s) - 0.2) < 0.02
        _assert_shares(s, va)
        if grouped:
            assert not set(s.groups[tr]) & set(s.groups[va])
    again = kfold_splits(s, 5, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))


def test_int_groups_and_a_dominant_group():
    y = np.repeat([0, 1], 50)
    groups = np.arange(100) // 2  # pairs
    groups[:30] = 999  # one group holds 30% of the images
    s = Samples([Path(f"{i}.png") for i in range(100)], np.eye(2, dtype=np.uint8)[y],
                LabelSpace(("a", "b"), "multiclass"), groups=groups)
    tr, va = train_val_split(s, 0.25, seed=0)
    assert not set(groups[tr]) & set(groups[va])
    assert 999 in set(groups[tr])  # too big for a 25% validation part


def test_grouped_split_errors():
    s = _grouped("multiclass", n_groups=3)
    with pytest.raises(DataError, match="groups are too few for 4 folds"):
        kfold_splits(s, 4, seed=0)
    with pytest.raises(ConfigError, match="--folds"):
        kfold_splits(s, 1, seed=0)
    s.groups = np.array(["same"] * len(s))
    with pytest.raises(DataError, match="one group"):
        train_val_split(s, 0.2, seed=0)


def test_subset_and_drop_carry_groups():
    s = _grouped("multiclass", n_groups=5)
    sub = s.subset([2, 0])
    assert list(sub.groups) == [s.groups[2], s.groups[0]]
    dropped = s.drop({s.paths[0]: "unreadable"})
    assert len(dropped.groups) == len(s) - 1 and list(dropped.groups) == list(s.groups[1:])


# --------------------------------------------------------------------------- --group-by in sources


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_group_column_in_a_onehot_csv_is_not_a_label(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _touch(tmp_path / "images" / name)
    (tmp_path / "labels.csv").write_text("image,patient,cat,dog\na.jpg,p1,1,0\nb.jpg,p1,0,1\nc.jpg,p2,1,1\n")
    assert detect_format(tmp_path, group_by="patient") == "csv-onehot"
    s = load_samples(tmp_path, group_by="patient")
    assert s.labels.names == ("cat", "dog") and s.source == "csv-onehot"
    assert list(s.groups) == ["p1", "p1", "p2"]
    assert load_samples(tmp_path, group_by="Patient").groups is not None  # case-insensitive when unique
    with pytest.raises(ConfigError, match="names the image column"):
        load_samples(tmp_path, group_by="image")


def test_group_column_in_a_tags_csv(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        _touch(tmp_path / "images" / name)
    (tmp_path / "labels.csv").write_text("image,tags,scene\na,cloudy road,s1\nb,clear,s2\n")
    s = load_samples(tmp_path, group_by="scene")
    assert s.labels.names == ("clear", "cloudy", "road") and list(s.groups) == ["s1", "s2"]
    assert load_samples(tmp_path).groups is None


def test_empty_group_cell_names_the_line(tmp_path):
    _touch(tmp_path / "images" / "a.jpg")
    _touch(tmp_path / "images" / "b.jpg")
    (tmp_path / "labels.csv").write_text("image,tags,scene\na.jpg,x,s1\nb.jpg,y,\n")
    with pytest.raises(DataError, match=r"line 3: the group column 'scene' is empty"):
        load_samples(tmp_path, group_by="scene")


def test_regex_groups_on_class_folders(tmp_path):
    for rel in ("cat/img_001.jpg", "cat/img_001_aug1.jpg", "cat/img_002.jpg", "dog/img_003_aug2.png"):
        _touch(tmp_path / rel)
    s = load_samples(tmp_path, group_by=r"img_(\d+)")
    assert dict(zip((p.name for p in s.paths), s.groups)) == {
        "img_001.jpg": "001", "img_001_aug1.jpg": "001", "img_002.jpg": "002", "img_003_aug2.png": "003"}
    # no capture group: the whole match is the key; the path searched includes the class folder
    s = load_samples(tmp_path, group_by=r"^[a-z]+/img_\d+")
    assert sorted(set(s.groups)) == ["cat/img_001", "cat/img_002", "dog/img_003"]


def test_regex_groups_on_csv_images(tmp_path):
    for name in ("x_1_a.jpg", "x_1_b.jpg", "x_2_a.jpg"):
        _touch(tmp_path / "images" / name)
    (tmp_path / "labels.csv").write_text("image,tags\nx_1_a,p\nx_1_b,p\nx_2_a,q\n")
    s = load_samples(tmp_path, group_by=r"^x_(\d+)_")  # relative to images/, so ^ anchors at the name
    assert list(s.groups) == ["1", "1", "2"]


def test_regex_errors_name_the_file_and_the_expression(tmp_path):
    for rel in ("cat/img_001.jpg", "cat/photo.jpg"):
        _touch(tmp_path / rel)
    with pytest.raises(DataError, match=r"does not match image 'cat/photo.jpg'.*1 of 2") as e:
        load_samples(tmp_path, group_by=r"img_(\d+)")
    assert r"img_(\\d+)" in str(e.value)
    with pytest.raises(DataError, match="matches none of the 2 image paths"):
        load_samples(tmp_path, group_by="patient")
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        load_samples(tmp_path, group_by="img_(")
    with pytest.raises(ConfigError, match="--group-by is empty"):
        load_samples(tmp_path, group_by=" ")


def test_unknown_csv_column_is_taken_as_a_regex_and_said_so(tmp_path):
    _touch(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels.csv").write_text("image,tags\na.jpg,x\n")
    with pytest.raises(DataError, match=r"not a column of .*labels.csv \(columns: image, tags\), so it was used "
                                        r"as a regular expression"):
        load_samples(tmp_path, group_by="patient")
