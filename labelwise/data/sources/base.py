"""The registry of data formats, and what every format shares: the load request, detection, path helpers.

A data format is one loader plus one registration::

    @register_format("my-format", "one line for --help", detect=my_detector)
    def load_my_format(req: LoadRequest) -> tuple[Samples, list[Path]]:
        ...

``detect(data, group_by)`` returns a format name when it recognises the layout, else None;
detectors run in ``rank`` order (lower first), so a catch-all such as class folders goes last.
This module imports no image decoder and no torch, so the CLI can list the formats in --help.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from labelwise.errors import DataError
from labelwise.registry import Registry

if TYPE_CHECKING:
    from labelwise.data.samples import Samples

# Kept here (the light module) so that format detection needs no decoder; images.py re-exports it.
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
LAYOUTS = ("class folders (DATA/<label>/*.jpg), a CSV beside an images/ folder, "
           "or an annotations/ folder beside an images/ folder")


@dataclass(frozen=True)
class LoadRequest:
    """What a loader is asked to read: ``data`` exists; ``images`` is the image folder the user named."""

    data: Path
    images: Path | None = None
    delimiter: str = "auto"
    group_by: str | None = None


Loader = Callable[[LoadRequest], "tuple[Samples, list[Path]]"]  # -> (samples, folders their paths are relative to)
Detector = Callable[[Path, "str | None"], "str | None"]

FORMATS: Registry[Loader] = Registry("data format", option="--format")


def register_format(name: str, help: str, detect: Detector | None = None, rank: int = 50) -> Callable[[Loader], Loader]:
    """Register a loader under ``name``; ``detect`` (optional) takes part in ``--format auto``."""
    return FORMATS.register(name, help, detect=detect, rank=rank)


def detect_format(data: Path, group_by: str | None = None) -> str:
    """Tell the layout of a folder or CSV file: one of FORMATS without "auto".

    A folder is checked in this order: an annotations/ folder, a CSV file, class folders.
    ``group_by``: a CSV column of that name holds groups, so it is not taken for a label column."""
    data = existing(data)
    detectors = sorted((e for e in FORMATS if e.extra.get("detect")), key=lambda e: e.extra["rank"])
    for entry in detectors:
        found = entry.extra["detect"](data, group_by)
        if found is not None:
            return found
    raise DataError(f"{data}: not a layout labelwise reads; expected {LAYOUTS}")


@register_format("auto", "detect the layout from the files")
def load_auto(req: LoadRequest) -> tuple[Samples, list[Path]]:
    return FORMATS.get(detect_format(req.data, req.group_by))(req)


def existing(path: Path | str | None, what: str = "the data path") -> Path:
    path = Path(path)  # type: ignore[arg-type]
    if not path.exists():
        raise DataError(f"{path}: {what} does not exist; check the path")
    return path


def is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")  # .DS_Store, .ipynb_checkpoints, __MACOSX


def ext_rank(name: str) -> int:
    return IMAGE_EXTENSIONS.index(os.path.splitext(name)[1].lower())
