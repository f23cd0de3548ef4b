"""inspect: dataset summary numbers and their rendering."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console

from labelwise.data.inspect import render_summary, summarize
from labelwise.data.sources import load_samples


def _img(path: Path, w: int, h: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (w, h)).save(path)


def _multilabel(root: Path) -> Path:
    rows = {"a": (10, 20, "sky sea"), "b": (30, 40, "sky sea boat"), "c": (50, 60, "sky"),
            "d": (70, 80, ""), "e": (90, 100, "sea boat")}
    for name, (w, h, _) in rows.items():
        _img(root / "images" / f"{name}.png", w, h, "L" if name == "e" else "RGB")
    (root / "images" / "f.png").write_text("not an image")
    lines = ["image,tags", *(f"{n},{tags}" for n, (_, _, tags) in rows.items()), "f,sky"]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_multilabel_summary(tmp_path):
    summary = summarize(load_samples(_multilabel(tmp_path)))
    assert json.loads(json.dumps(summary)) == summary  # JSON-serialisable as is
    assert summary["images"] == 6 and summary["task"] == "multilabel" and summary["source"] == "csv-tags"
    assert [(r["name"], r["count"]) for r in summary["labels"]] == [("sky", 4), ("sea", 3), ("boat", 2)]
    assert summary["no_label_count"] == 1 and summary["no_label_share"] == round(1 / 6, 4)
    assert summary["mean_labels_per_image"] == round(9 / 6, 4)
    pairs = [(tuple(p["labels"]), p["count"]) for p in summary["top_pairs"]]
    assert pairs == [(("boat", "sea"), 2), (("sea", "sky"), 2), (("boat", "sky"), 1)]  # ties: label order
    assert summary["probed"] == 6 and not summary["probe_sampled"]
    assert summary["sizes"]["width"] == {"min": 10, "median": 50.0, "max": 90}
    assert summary["sizes"]["height"] == {"min": 20, "median": 60.0, "max": 100}
    assert summary["modes"] == {"RGB": 4, "L": 1} and summary["channels"] == {"1": 1, "3": 4}
    assert len(summary["unreadable"]) == 1
    bad = summary["unreadable"][0]
    assert bad["path"].endswith("f.png") and "not an image" in bad["reason"]

    out = io.StringIO()
    render_summary(summary, Console(file=out, width=120))
    text = out.getvalue()
    for word in ("sky", "sea", "boat", "f.png", "csv-tags", "sea + sky"):
        assert word in text


def test_folder_summary_and_sampling(tmp_path):
    for label, n in (("cat", 5), ("dog", 3)):
        for i in range(n):
            _img(tmp_path / label / f"{i}.jpg", 8 + i, 8)
    samples = load_samples(tmp_path)
    summary = summarize(samples, max_probe=4, seed=1)
    assert summary["task"] == "multiclass" and summary["top_pairs"] == []
    assert [(r["name"], r["count"]) for r in summary["labels"]] == [("cat", 5), ("dog", 3)]
    assert summary["no_label_count"] == 0 and summary["mean_labels_per_image"] == 1.0
    assert summary["probed"] == 4 and summary["probe_sampled"]
    assert summarize(samples, max_probe=4, seed=1) == summary  # deterministic sample
    assert summary["formats"] == {"JPEG": 4} and summary["unreadable"] == []
    out = io.StringIO()
    render_summary(summary, Console(file=out, width=100))
    assert "cat" in out.getvalue() and "dog" in out.getvalue()


def test_skipped_samples_are_reported(tmp_path):
    for label in ("cat", "dog"):
        _img(tmp_path / label / "0.png", 4, 4)
    samples = load_samples(tmp_path)
    samples = samples.drop({samples.paths[0]: "truncated"})
    summary = summarize(samples)
    assert summary["skipped"] == [{"path": str(tmp_path.resolve() / "cat" / "0.png"), "reason": "truncated"}]
    assert np.isclose(summary["labels"][0]["share"], 1.0)
    out = io.StringIO()
    render_summary(summary, Console(file=out, width=200))
    assert "truncated" in out.getvalue()
