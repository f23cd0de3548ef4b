"""`labelwise inspect DATA`: what a dataset holds, before any training.

>>> summary = summarize(load_samples("data/"))            # doctest: +SKIP
>>> render_summary(summary, rich.console.Console())       # doctest: +SKIP
"""
from __future__ import annotations

from collections import Counter

import numpy as np
from rich.console import Console
from rich.table import Table

from labelwise.data.images import ImageInfo, image_channels, probe
from labelwise.data.samples import Samples

TOP_PAIRS = 10
_SHOW_LABELS = 50  # rows of the label table before "... and N more"
_SHOW_UNREADABLE = 20


def summarize(samples: Samples, max_probe: int = 2000, seed: int = 0) -> dict:
    """A JSON-serialisable summary: label counts and pairs, image sizes, modes, unreadable files.

    Image headers are probed (no full decode) on at most ``max_probe`` images, a sample drawn
    with ``seed`` when there are more, so ``unreadable`` covers the probed images only, and only
    what a header shows (a truncated body is found when the image is decoded).
    """
    n = len(samples)
    targets = samples.targets.astype(np.int64)
    counts = targets.sum(axis=0)
    per_image = targets.sum(axis=1)
    order = sorted(range(len(samples.labels)), key=lambda i: (-int(counts[i]), samples.labels.names[i]))
    summary: dict = {
        "images": n,
        "task": samples.labels.task,
        "source": samples.source,
        "origin": str(samples.origin) if samples.origin is not None else None,
        "num_labels": len(samples.labels),
        "labels": [{"name": samples.labels.names[i], "count": int(counts[i]),
                    "share": _share(counts[i], n)} for i in order],
        "no_label_count": int((per_image == 0).sum()),
        "no_label_share": _share((per_image == 0).sum(), n),
        "mean_labels_per_image": round(float(per_image.mean()), 4) if n else 0.0,
        "top_pairs": _top_pairs(targets, samples.labels.names) if samples.labels.multilabel else [],
        "skipped": [{"path": str(p), "reason": r} for p, r in samples.skipped],
    }
    summary.update(_probe_images(samples, max_probe, seed))
    return summary


def _share(count: int | np.integer, total: int) -> float:
    return round(float(count) / total, 4) if total else 0.0


def _top_pairs(targets: np.ndarray, names: tuple[str, ...]) -> list[dict]:
    co = targets.T.astype(np.float64) @ targets.astype(np.float64)  # BLAS; exact for counts < 2**53
    i, j = np.triu_indices(len(names), k=1)
    pair_counts = co[i, j].astype(np.int64)
    keep = [k for k in np.lexsort((j, i, -pair_counts)) if pair_counts[k] > 0][:TOP_PAIRS]
    return [{"labels": [names[i[k]], names[j[k]]], "count": int(pair_counts[k])} for k in keep]


def _probe_images(samples: Samples, max_probe: int, seed: int) -> dict:
    n = len(samples)
    if n > max_probe:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=max_probe, replace=False))
    else:
        idx = np.arange(n)
    infos: list[ImageInfo] = []
    unreadable = []
    for k in idx:
        path = samples.paths[int(k)]
        try:
            infos.append(probe(path))
        except Exception as exc:  # ImageError, plus anything odd: inspect must never crash on a file
            reason = str(exc).removesuffix(f": {path}")  # the path has its own column
            unreadable.append({"path": str(path), "reason": reason})
    sizes = None
    if infos:
        w = np.array([i.width for i in infos])
        h = np.array([i.height for i in infos])
        sizes = {axis: {"min": int(a.min()), "median": float(np.median(a)), "max": int(a.max())}
                 for axis, a in (("width", w), ("height", h))}
    return {
        "probed": len(idx),
        "probe_sampled": bool(n > max_probe),
        "sizes": sizes,
        "modes": dict(Counter(i.mode for i in infos).most_common()),
        "formats": dict(Counter(i.format for i in infos).most_common()),
        # keys are strings so the summary survives a JSON round trip unchanged
        "channels": {str(c): k for c, k in sorted(Counter(image_channels(i) for i in infos).items())},
        "unreadable": unreadable,
    }


def render_summary(summary: dict, console: Console) -> None:
    """Print the summary as a few rich tables."""
    multilabel = summary["task"] == "multilabel"
    overview = Table(title="Dataset", show_header=False)
    overview.add_column(style="bold")
    overview.add_column()
    overview.add_row("images", f"{summary['images']:,}")
    overview.add_row("task", summary["task"])
    overview.add_row("format", summary["source"] or "-")
    if summary.get("origin"):
        overview.add_row("from", summary["origin"])
    overview.add_row("labels", str(summary["num_labels"]))
    if multilabel:
        overview.add_row("images with no label",
                         f"{summary['no_label_count']:,} ({summary['no_label_share']:.1%})")
        overview.add_row("labels per image (mean)", f"{summary['mean_labels_per_image']:.2f}")
    console.print(overview)

    labels = Table(title="Label counts")
    labels.add_column("label")
    labels.add_column("images", justify="right")
    labels.add_column("share", justify="right")
    for row in summary["labels"][:_SHOW_LABELS]:
        labels.add_row(row["name"], f"{row['count']:,}", f"{row['share']:.1%}")
    if len(summary["labels"]) > _SHOW_LABELS:
        labels.add_row(f"... and {len(summary['labels']) - _SHOW_LABELS} more", "", "")
    console.print(labels)

    if summary["top_pairs"]:
        pairs = Table(title="Most frequent label pairs")
        pairs.add_column("labels")
        pairs.add_column("images", justify="right")
        for row in summary["top_pairs"]:
            pairs.add_row(" + ".join(row["labels"]), f"{row['count']:,}")
        console.print(pairs)

    sampled = " (a sample)" if summary["probe_sampled"] else ""
    images = Table(title=f"Images: {summary['probed']:,} headers read{sampled}", show_header=False)
    images.add_column(style="bold")
    images.add_column()
    if summary["sizes"]:
        for axis in ("width", "height"):
            s = summary["sizes"][axis]
            images.add_row(f"{axis} min / median / max", f"{s['min']} / {s['median']:g} / {s['max']}")
    images.add_row("formats", _counts(summary["formats"]))
    images.add_row("modes", _counts(summary["modes"]))
    images.add_row("channels", _counts(summary["channels"]))
    console.print(images)

    bad = summary["unreadable"] + summary["skipped"]
    if bad:
        table = Table(title=f"Unreadable files: {len(bad)}", title_style="bold red")
        table.add_column("file", overflow="fold")
        table.add_column("reason", overflow="fold")
        for row in bad[:_SHOW_UNREADABLE]:
            table.add_row(row["path"], row["reason"])
        if len(bad) > _SHOW_UNREADABLE:
            table.add_row(f"... and {len(bad) - _SHOW_UNREADABLE} more", "")
        console.print(table)


def _counts(counts: dict) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in counts.items()) or "-"
