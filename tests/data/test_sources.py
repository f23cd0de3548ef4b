"""Data formats: detection, loading, and a clear DataError (file + line) for each malformed input."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from labelwise.data.sources import FORMATS, detect_format, load_samples
from labelwise.errors import ConfigError, DataError

# A valid 1x1 PNG: sources only check existence, but real bytes keep the fixtures honest.
_PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010800000000"
                     "3a7e9b550000000a49444154789c63600000000200015d0a2d270000000049454e44ae426082")


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_PNG)
    return path


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def _rows(samples) -> dict[str, set[str]]:
    """image file name -> set of label names."""
    names = samples.labels.names
    return {p.name: {names[j] for j in np.flatnonzero(t)} for p, t in zip(samples.paths, samples.targets)}


def _tags_dataset(root: Path, header: str = "image,tags", ext: str = ".jpg") -> Path:
    for n in ("a", "b", "c"):
        _touch(root / "images" / f"{n}.jpg")
    rows = [f"a{ext},cat dog", f"b{ext},dog", f"c{ext},"]
    return _write(root / "labels.csv", "\n".join([header, *rows]) + "\n")


# --------------------------------------------------------------------------- folder


def test_class_folders(tmp_path):
    for label, names in {"dog": ["b.png", "a.jpg"], "cat": ["z.jpeg"], "bird": ["x.JPG", "sub/y.png"]}.items():
        for n in names:
            _touch(tmp_path / label / n)
    _write(tmp_path / "README.txt", "ignored")
    _touch(tmp_path / ".hidden" / "q.jpg")
    _write(tmp_path / "dog" / "notes.txt", "ignored too")
    assert detect_format(tmp_path) == "folder"
    s = load_samples(tmp_path)
    assert s.source == "folder" and s.labels.task == "multiclass"
    assert s.labels.names == ("bird", "cat", "dog")
    rel = [p.relative_to(tmp_path.resolve()).as_posix() for p in s.paths]
    assert rel == ["bird/sub/y.png", "bird/x.JPG", "cat/z.jpeg", "dog/a.jpg", "dog/b.png"]
    assert all(p.is_absolute() and p.exists() for p in s.paths)
    assert s.class_index().tolist() == [0, 0, 1, 2, 2]
    assert s.targets.sum(axis=1).tolist() == [1] * 5 and s.origin == tmp_path.resolve()


def test_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        load_samples(empty)
    loose = tmp_path / "loose"
    _touch(loose / "cat" / "a.jpg")
    _touch(loose / "stray.jpg")
    with pytest.raises(DataError, match="stray.jpg"):
        load_samples(loose)
    hollow = tmp_path / "hollow"
    _touch(hollow / "cat" / "a.jpg")
    (hollow / "dog").mkdir()
    with pytest.raises(DataError, match="'dog' has no images"):
        load_samples(hollow)
    only_images = tmp_path / "only"
    _touch(only_images / "images" / "a.jpg")
    with pytest.raises(DataError, match="no labels"):
        load_samples(only_images)
    with pytest.raises(DataError, match="does not exist"):
        load_samples(tmp_path / "missing")
    with pytest.raises(ConfigError, match="did you mean 'folder'"):
        load_samples(loose, fmt="folders")
    assert "auto" in FORMATS


# --------------------------------------------------------------------------- csv-tags


def test_csv_tags_folder_and_file(tmp_path):
    csv_path = _tags_dataset(tmp_path)
    assert detect_format(tmp_path) == "csv-tags" and detect_format(csv_path) == "csv-tags"
    for data in (tmp_path, csv_path):
        s = load_samples(data)
        assert s.source == "csv-tags" and s.labels.task == "multilabel"
        assert s.labels.names == ("cat", "dog")
        assert _rows(s) == {"a.jpg": {"cat", "dog"}, "b.jpg": {"dog"}, "c.jpg": set()}
        assert [p.name for p in s.paths] == ["a.jpg", "b.jpg", "c.jpg"]  # row order
        assert all(p.is_absolute() for p in s.paths)
        assert s.origin == data.resolve()


def test_csv_tags_names_without_extension_and_header_aliases(tmp_path):
    _tags_dataset(tmp_path, header="Image_Name,Labels", ext="")
    s = load_samples(tmp_path)
    assert _rows(s) == {"a.jpg": {"cat", "dog"}, "b.jpg": {"dog"}, "c.jpg": set()}


def test_csv_tags_custom_delimiter_bom_quotes_and_crlf(tmp_path):
    for n in ("x", "y"):
        _touch(tmp_path / f"{n}.png")  # beside the CSV this time
    text = 'filename,tags\r\nx.png,"sky;sea water;sky"\r\n\r\ny,sea water\r\n'
    path = _write(tmp_path / "train.csv", text, encoding="utf-8-sig")
    s = load_samples(path, delimiter=";")
    assert s.labels.names == ("sea water", "sky")
    assert _rows(s) == {"x.png": {"sky", "sea water"}, "y.png": {"sea water"}}


def test_images_override(tmp_path):
    _touch(tmp_path / "pics" / "a.jpg")
    _touch(tmp_path / "images" / "a.jpg")  # ignored when images= is given
    path = _write(tmp_path / "meta" / "labels.csv", "image,tags\na,cat\n")
    s = load_samples(path, images=tmp_path / "pics")
    assert s.paths == [(tmp_path / "pics" / "a.jpg").resolve()]
    with pytest.raises(DataError, match="line 2"):
        load_samples(path)  # nothing beside meta/labels.csv
    with pytest.raises(DataError, match="does not exist"):
        load_samples(path, images=tmp_path / "nope")


def test_nested_names_in_csv(tmp_path):
    _touch(tmp_path / "images" / "train" / "a.jpg")
    path = _write(tmp_path / "labels.csv", "path,label\nimages/train/a.jpg,cat\ntrain/a,dog\n")
    with pytest.raises(DataError, match="line 3.*already listed on line 2"):
        load_samples(path)


# --------------------------------------------------------------------------- csv-onehot


def test_csv_onehot(tmp_path):
    for n in ("a", "b", "c"):
        _touch(tmp_path / "images" / f"{n}.jpg")
    _write(tmp_path / "labels.csv", "id,zebra,ant\na,1,0\nb,1,1\nc,0,0\n")
    assert detect_format(tmp_path) == "csv-onehot"
    s = load_samples(tmp_path)
    assert s.source == "csv-onehot" and s.labels.names == ("zebra", "ant")  # column order kept
    assert s.targets.tolist() == [[1, 0], [1, 1], [0, 0]]


def test_two_column_01_csv_is_onehot_and_tags_otherwise(tmp_path):
    _touch(tmp_path / "images" / "a.jpg")
    _touch(tmp_path / "images" / "b.jpg")
    binary = _write(tmp_path / "binary.csv", "image,defect\na,1\nb,0\n")
    assert detect_format(binary) == "csv-onehot"
    words = _write(tmp_path / "words.csv", "image,what\na,ok\nb,defect ok\n")
    assert detect_format(words) == "csv-tags"
    assert load_samples(words).labels.names == ("defect", "ok")
    assert load_samples(binary, fmt="csv-tags").labels.names == ("0", "1")  # forced


# --------------------------------------------------------------------------- annotations/


def test_annotations_bare_ids_and_names(tmp_path):
    _touch(tmp_path / "images" / "im1.jpg")
    _touch(tmp_path / "images" / "im2.jpg")
    _touch(tmp_path / "images" / "123.png")
    _touch(tmp_path / "images" / "im7.jpg")  # in no label file: kept, no label
    _write(tmp_path / "annotations" / "sky.txt", "1\n\n123\n")
    _write(tmp_path / "annotations" / "dog.txt", "im2.jpg\nim1\n")
    _write(tmp_path / "annotations" / ".DS_Store", "junk")
    assert detect_format(tmp_path) == "annotations"
    s = load_samples(tmp_path)
    assert s.source == "annotations" and s.labels.task == "multilabel"
    assert s.labels.names == ("dog", "sky")
    assert [p.name for p in s.paths] == ["123.png", "im1.jpg", "im2.jpg", "im7.jpg"]
    assert _rows(s) == {"123.png": {"sky"}, "im1.jpg": {"dog", "sky"}, "im2.jpg": {"dog"}, "im7.jpg": set()}


def test_annotations_exact_stem_beats_im_prefix(tmp_path):
    _touch(tmp_path / "images" / "im5.jpg")
    _touch(tmp_path / "images" / "5.jpg")
    _write(tmp_path / "annotations" / "a.txt", "5\n")
    assert _rows(load_samples(tmp_path)) == {"5.jpg": {"a"}, "im5.jpg": set()}


def test_annotations_list_the_image_folder_once(tmp_path, monkeypatch):
    # 5,000 ids resolved from one listing of images/: no per-id globbing or stat calls.
    n = 5_000
    images = tmp_path / "images"
    images.mkdir()
    for i in range(n):
        os.close(os.open(images / f"im{i}.jpg", os.O_CREAT | os.O_WRONLY))
    _write(tmp_path / "annotations" / "even.txt", "\n".join(str(i) for i in range(0, n, 2)))
    _write(tmp_path / "annotations" / "odd.txt", "\n".join(f"im{i}.jpg" for i in range(1, n, 2)))
    calls = {"scandir": 0, "stat": 0}
    real_scandir, real_stat = os.scandir, os.stat

    def scandir(*args, **kw):
        calls["scandir"] += 1
        return real_scandir(*args, **kw)

    def stat(*args, **kw):
        calls["stat"] += 1
        return real_stat(*args, **kw)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "stat", stat)
    s = load_samples(tmp_path)
    monkeypatch.undo()
    assert len(s) == n and s.targets.sum() == n
    assert calls["scandir"] == 1 and calls["stat"] < 50


def test_annotation_errors(tmp_path):
    _touch(tmp_path / "images" / "im1.jpg")
    _write(tmp_path / "annotations" / "cat.txt", "1\n\n42\n")
    with pytest.raises(DataError, match=r"cat\.txt: line 3: '42' matches no image"):
        load_samples(tmp_path)
    no_images = tmp_path / "x"
    _write(no_images / "annotations" / "cat.txt", "1\n")
    with pytest.raises(DataError, match="no images/ folder"):
        load_samples(no_images)


# --------------------------------------------------------------------------- malformed CSVs


def _bad(tmp_path: Path, text: str, name: str = "labels.csv", **kw) -> str:
    for n in ("a", "b"):
        _touch(tmp_path / "images" / f"{n}.jpg")
    path = _write(tmp_path / name, text)
    with pytest.raises(DataError) as err:
        load_samples(path, **kw)
    msg = str(err.value)
    assert name in msg
    return msg


def test_missing_image(tmp_path):
    msg = _bad(tmp_path, "image,tags\na.jpg,x\nghost.jpg,y\n")
    assert "line 3" in msg and "ghost.jpg" in msg and "not found" in msg


def test_duplicate_row(tmp_path):
    msg = _bad(tmp_path, "image,tags\na.jpg,x\nb.jpg,y\na,z\n")
    assert "line 4" in msg and "line 2" in msg


def test_unknown_columns_are_listed(tmp_path):
    msg = _bad(tmp_path, "picture,stuff\na.jpg,x\n")
    assert "line 1" in msg and "'picture'" in msg and "'stuff'" in msg


def test_missing_tags_column(tmp_path):
    msg = _bad(tmp_path, "image,split,notes\na.jpg,train,blurry\n")
    assert "line 2" in msg and "'split'" in msg and "'train'" in msg
    msg = _bad(tmp_path, "image,split,notes\na.jpg,train,blurry\n", name="forced.csv", fmt="csv-tags")
    assert "line 1" in msg and "no tags column" in msg


def test_value_not_01(tmp_path):
    msg = _bad(tmp_path, "image,cat,dog\na.jpg,1,0\nb.jpg,0,2\n", fmt="csv-onehot")
    assert "line 3" in msg and "'dog'" in msg and "'2'" in msg


def test_empty_csv_and_header_only(tmp_path):
    assert "empty" in _bad(tmp_path, "")
    assert "no data rows" in _bad(tmp_path, "image,tags\n", name="header.csv")


def test_ragged_row(tmp_path):
    msg = _bad(tmp_path, "image,tags\na.jpg,x\nb.jpg,y,extra\n")
    assert "line 3" in msg and "3 cells" in msg


def test_blank_image_cell(tmp_path):
    assert "line 2" in _bad(tmp_path, "image,tags\n,x\n")


def test_line_numbers_count_blank_lines(tmp_path):
    msg = _bad(tmp_path, "image,tags\n\na.jpg,x\n\nghost,y\n")
    assert "line 5" in msg


def test_no_tags_at_all(tmp_path):
    assert "no row has a tag" in _bad(tmp_path, "image,tags\na.jpg,\nb.jpg,\n")


def test_several_csvs(tmp_path):
    _touch(tmp_path / "images" / "a.jpg")
    _write(tmp_path / "one.csv", "image,tags\na,x\n")
    _write(tmp_path / "two.csv", "image,tags\na,y\n")
    with pytest.raises(DataError, match="one.csv, two.csv.*pass the CSV"):
        load_samples(tmp_path)
    _write(tmp_path / "train.csv", "image,tags\na,z\n")
    assert load_samples(tmp_path).labels.names == ("z",)


def test_not_utf8(tmp_path):
    _touch(tmp_path / "images" / "a.jpg")
    path = tmp_path / "labels.csv"
    path.write_bytes(b"image,tags\na,caf\xe9\n")
    with pytest.raises(DataError, match="labels.csv.*UTF-8"):
        load_samples(path)


def test_images_option_rejected_for_folders(tmp_path):
    _touch(tmp_path / "cat" / "a.jpg")
    with pytest.raises(ConfigError):
        load_samples(tmp_path, fmt="folder", images=tmp_path)


def test_semicolon_csv_with_comma_separated_tags_is_read_without_options(tmp_path):
    # what a spreadsheet in many locales exports: ';' between fields, ',' between tags
    for n in ("a", "b", "c"):
        _touch(tmp_path / "images" / f"{n}.png")
    path = _write(tmp_path / "labels.csv", "file;tags\na;even,zero\nb;\nc;big|even\n")
    s = load_samples(path)
    assert s.labels.names == ("big", "even", "zero")
    assert _rows(s) == {"a.png": {"even", "zero"}, "b.png": set(), "c.png": {"big", "even"}}
    tsv = _write(tmp_path / "labels.tsv.csv", "file\ttags\na\teven zero\n")
    assert _rows(load_samples(tsv, images=tmp_path / "images")) == {"a.png": {"even", "zero"}}


def test_a_ragged_semicolon_csv_names_the_semicolons(tmp_path):
    _touch(tmp_path / "images" / "a.png")
    path = _write(tmp_path / "labels.csv", "file;tags\na;x;y\n")
    with pytest.raises(DataError, match="line 2: 3 cells .* check the semicolons"):
        load_samples(path)
