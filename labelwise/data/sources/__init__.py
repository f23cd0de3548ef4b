"""Data formats people actually have -> Samples. Auto-detected; nothing is decoded here.

Layouts (``data`` is a folder or a CSV file), one module each, registered in ``FORMATS``
(base.py says how to add one):

* ``folder``       root/<label>/**/*.jpg                         -> multiclass
* ``csv-tags``     labels.csv (image,tags "a b c") + images/     -> multilabel
* ``csv-onehot``   labels.csv (image,a,b,c with 0/1) + images/   -> multilabel
* ``annotations``  annotations/<label>.txt (ids or names) + images/ -> multilabel

Image names in a CSV are looked up beside the CSV, then in images/ beside it, then in folders named
after the CSV (train/, train-tif/, train-jpg/ beside train.csv or Planet's train_v2.csv), or only in the
``images=`` folder when given, with or without an extension. Only existence is checked here;
unreadable images are found when they are decoded.

Groups (``group_by=``, the CLI's ``--group-by``): images sharing a group key never cross a split.
A CSV column of that name gives the key (and is not a label column); anything else is a regular
expression searched in each image's path relative to its folder, with forward slashes
(``cat/img_0012_aug3.jpg`` for class folders, ``img_0012_aug3.jpg`` for a CSV's images/): the
first capture group, or the whole match, is the key, e.g. ``group_by="img_([0-9]+)"``.

>>> samples = load_samples("planet/train.csv")          # doctest: +SKIP
>>> samples.source, samples.labels.task
('csv-tags', 'multilabel')
"""
from __future__ import annotations

from pathlib import Path

from labelwise.data.samples import Samples
from labelwise.data.sources import annotation_lists, csv_formats, folder  # noqa: F401  (each registers its format)
from labelwise.data.sources.base import (FORMATS, IMAGE_EXTENSIONS, LoadRequest, detect_format, existing,
                                         register_format)
from labelwise.data.sources.csv_formats import AUTO_TAG_SEPARATORS
from labelwise.data.sources.csv_read import IMAGE_COLUMNS, PREFERRED_CSVS, SEPARATOR_NAMES, TAG_COLUMNS
from labelwise.data.sources.groups import regex_groups
from labelwise.errors import ConfigError

__all__ = ["AUTO_TAG_SEPARATORS", "FORMATS", "IMAGE_COLUMNS", "IMAGE_EXTENSIONS", "PREFERRED_CSVS", "SEPARATOR_NAMES",
           "TAG_COLUMNS", "LoadRequest", "detect_format", "load_samples", "register_format"]


def load_samples(data: Path | str, fmt: str = "auto", images: Path | str | None = None,
                 delimiter: str = "auto", group_by: str | None = None) -> Samples:
    """Read a dataset's image paths and labels (see the module docstring for the layouts).

    fmt: one of FORMATS; images: the image folder for CSV/annotations data (overrides the
    default lookup); delimiter: what separates tags in a csv-tags cell ("auto": runs of whitespace,
    commas, semicolons or |; " ": any whitespace; else that exact string);
    group_by: a CSV column or a regular expression giving each image's group (``Samples.groups``).
    """
    if group_by is not None and not group_by.strip():
        raise ConfigError("--group-by is empty; give a CSV column name or a regular expression")
    load = FORMATS.get(fmt)
    req = LoadRequest(existing(data), existing(images, "the images folder") if images is not None else None,
                      delimiter, group_by)
    samples, folders = load(req)  # folders: what the paths are relative to, deepest first
    if group_by is not None and samples.groups is None:
        samples.groups = regex_groups(samples, folders, group_by)
    return samples
