"""Class-activation maps for the report's gallery tiles: one small JPEG overlay per (image, label).

The maps come from the run's own bundle (labelwise/infer/explain.py, Grad-CAM), drawn over the same
thumbnail the tile shows, so a click can swap one for the other. At most MAX_MAPS are drawn (the
first tiles of each gallery come first) so that a big run's report stays small and quick to build.
When the model cannot be loaded or has no spatial feature map, the report says so instead.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelwise.errors import LabelwiseError
from labelwise.report.gallery import JPEG_QUALITY, Thumb, thumbnail
from labelwise.report.rundata import RunData
from labelwise.report.tiles import Tile

MAX_MAPS = 400  # overlays per report (about 5 kB each at 128 px)
MAP_QUALITY = min(JPEG_QUALITY, 80)


@dataclass(frozen=True)
class MapThumb(Thumb):
    label: str = ""


class MapWriter:
    """Collects (tile, label) pairs, then draws every map in batches and attaches them to the tiles."""

    def __init__(self, run: RunData, folder: Path, href: str, enabled: bool = True) -> None:
        self.run, self.folder, self.href, self.enabled = run, Path(folder), href.rstrip("/"), enabled
        self._wanted: dict[tuple[Path, int], list[Tile]] = {}  # insertion-ordered

    def add(self, tile: Tile, label: int) -> None:
        if self.enabled:
            self._wanted.setdefault((Path(tile.path), int(label)), []).append(tile)

    def write(self, thumbs: dict[Path, Thumb | None]) -> dict[str, Any]:
        """Draw the maps of every tile that has a thumbnail; returns the galleries' note on maps."""
        if not self.enabled:
            return {"count": 0, "note": "Class-activation maps were not asked for (build_report(..., maps=False))."}
        pairs = [k for k in self._wanted if thumbs.get(k[0]) is not None][:MAX_MAPS]
        if not pairs:
            return {"count": 0, "note": ""}
        try:
            made = self._draw(pairs)
        except (LabelwiseError, OSError, RuntimeError) as e:
            first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
            return {"count": 0, "note": f"Class-activation maps could not be drawn: {first}"}
        for key, m in made.items():
            for t in self._wanted[key]:
                t.map = m
        left = sum(1 for k in self._wanted if thumbs.get(k[0]) is not None) - len(pairs)
        note = f"Maps are drawn for the first {MAX_MAPS} gallery images; {left} more have none." if left > 0 else ""
        return {"count": len(made), "note": note}

    def _draw(self, pairs: list[tuple[Path, int]]) -> dict[tuple[Path, int], MapThumb]:
        from labelwise.data.decoded import decode_all
        from labelwise.infer.explain import class_activation_maps, overlay
        from labelwise.models.bundle import load_model

        model, meta = load_model(self.run.run_dir)
        names = list(meta.labels.names)
        paths = list(dict.fromkeys(p for p, _ in pairs))
        pixels, bad = decode_all(paths, meta.image_size, meta.in_chans, pixel_spec=meta.pixel_spec)
        row = {p: i for i, p in enumerate(paths)}
        todo = [(p, c) for p, c in pairs if p not in bad]
        maps = class_activation_maps(model, pixels, [(row[p], c) for p, c in todo])
        self.folder.mkdir(parents=True, exist_ok=True)
        out: dict[tuple[Path, int], MapThumb] = {}
        for (p, c), cam in zip(todo, maps):
            img = overlay(thumbnail(p, meta.in_chans, pixel_spec=meta.pixel_spec), np.asarray(cam))
            name = hashlib.sha1(f"{p}|{c}".encode()).hexdigest()[:20] + ".jpg"
            img.save(self.folder / name, format="JPEG", quality=MAP_QUALITY)
            out[(p, c)] = MapThumb(f"{self.href}/{name}", img.width, img.height, label=names[c])
        return out
