"""The report's figures, drawn with matplotlib's object API (no pyplot, no global backend switch).

Each function returns a ``Figure``; ``save`` writes it as PNG at 2x resolution for sharp display.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from labelwise.evaluation.thresholds import rank_columns

DPI = 144  # saved pixels per inch; shown at 96 px per inch -> 1.5x for sharp lines on HiDPI screens
CSS_DPI = 96
BLUE, GRAY, GREEN, RED, ORANGE, INK = "#2563eb", "#9ca3af", "#16a34a", "#dc2626", "#f59e0b", "#1f2937"
STYLE = {
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 8.5, "xtick.labelsize": 8, "ytick.labelsize": 8,
    "legend.fontsize": 8, "axes.spines.top": False, "axes.spines.right": False, "axes.edgecolor": "#9ca3af",
    "axes.grid": True, "grid.color": "#e5e7eb", "grid.linewidth": 0.6, "axes.axisbelow": True,
    "axes.titleweight": "bold", "axes.titlelocation": "left", "text.color": INK, "axes.labelcolor": INK,
    "xtick.color": "#4b5563", "ytick.color": "#4b5563", "legend.frameon": False,
}
MAX_PANELS = 24  # per-class small multiples shown at most


def style():
    """rc settings for one figure (a context manager: nothing leaks into the caller's matplotlib)."""
    return rc_context(STYLE)


def save(fig: Figure, path: Path) -> tuple[int, int]:
    """Write ``fig`` to ``path`` (PNG); returns its display size in CSS px (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png", facecolor="white")
    w, h = fig.get_size_inches()
    return round(w * CSS_DPI), round(h * CSS_DPI)


def label_bars(names: Sequence[str], counts: Sequence[int], total: int, no_label: int | None = None,
               limit: int = 40) -> Figure:
    """Horizontal bars: images per label, most frequent first; "(no label)" in gray for multi-label."""
    order = np.argsort(-np.asarray(counts), kind="stable")[:limit]
    rows = [(names[i], int(counts[i]), BLUE) for i in order]
    if no_label is not None:
        rows.append(("(no label)", int(no_label), GRAY))
    with style():
        fig = Figure(figsize=(6.4, 0.8 + 0.24 * len(rows)), layout="constrained")
        ax = fig.subplots()
        y = np.arange(len(rows))
        ax.barh(y, [r[1] for r in rows], color=[r[2] for r in rows], height=0.7)
        ax.set_yticks(y, [_short(r[0]) for r in rows])
        ax.invert_yaxis()
        ax.grid(axis="y", visible=False)
        top = max([r[1] for r in rows] + [1])
        for yi, (_, v, _) in zip(y, rows):
            ax.text(v + top * 0.01, yi, f"{v:,} ({v / max(total, 1):.0%})", va="center", fontsize=7.5, color="#374151")
        ax.set_xlim(0, top * 1.22)
        ax.set_xlabel("images")
        more = f" (top {limit} of {len(names)})" if len(names) > limit else ""
        ax.set_title(f"Images per label{more}")
    return fig


def cooccurrence(names: Sequence[str], targets: np.ndarray, limit: int = 30) -> Figure:
    """Heatmap: images carrying both labels. The diagonal (each label's own count) is printed in
    gray and left out of the colour scale, so that the pairs are what stands out."""
    t = np.asarray(targets, dtype=np.float64)
    keep = np.argsort(-t.sum(0), kind="stable")[:limit]
    co = t[:, keep].T @ t[:, keep]
    n = len(keep)
    off = co.copy()
    np.fill_diagonal(off, np.nan)
    top = max(np.nanmax(off) if n > 1 else 1.0, 1.0)
    side = min(7.5, 1.8 + 0.45 * n)
    with style():
        fig = Figure(figsize=(side + 1.0, side), layout="constrained")
        ax = fig.subplots()
        ax.grid(False)
        im = ax.imshow(off, cmap="Blues", vmin=0, vmax=top)
        ax.imshow(np.where(np.eye(n, dtype=bool), 1.0, np.nan), cmap="Greys", vmin=0, vmax=8)
        labels = [_short(names[i], 14) for i in keep]
        ax.set_xticks(range(n), labels, rotation=45, ha="right")
        ax.set_yticks(range(n), labels)
        if n <= 15:
            for i in range(n):
                for j in range(n):
                    v = int(co[i, j])
                    color = "#6b7280" if i == j else ("white" if v > 0.6 * top else INK)
                    ax.text(j, i, f"{v:,}", ha="center", va="center", fontsize=7.5, color=color)
        fig.colorbar(im, ax=ax, shrink=0.8, label="images with both labels")
        ax.set_xlabel("gray diagonal: all images with the label", fontsize=7.5, color="#6b7280")
        ax.set_title("Labels that appear together")
    return fig


def training(history: list[dict[str, float]], monitor: str, monitor_name: str, best_epoch: int | None) -> Figure:
    """Loss (train vs validation), the monitored metric and the learning rate per epoch."""
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(history)]

    def col(key: str) -> np.ndarray:
        return np.array([r.get(key, math.nan) for r in history], dtype=np.float64)

    with style():
        fig = Figure(figsize=(10.5, 2.9), layout="constrained")
        axes = fig.subplots(1, 3)
        marker = "o" if len(history) <= 30 else None
        panels = [(axes[0], [("train_loss", "train", ORANGE), ("val_loss", "validation", BLUE)], "Loss"),
                  (axes[1], [(monitor, f"validation {monitor_name}", BLUE)], monitor_name),
                  (axes[2], [("lr", "learning rate", GRAY)], "Learning rate (end of epoch)")]
        for ax, series, title in panels:
            for key, name, color in series:
                v = col(key)
                if np.isfinite(v).any():
                    ax.plot(epochs, v, color=color, marker=marker, ms=3.5, lw=1.6, label=name)
            if best_epoch:
                ax.axvline(best_epoch, color=GREEN, ls="--", lw=1.1, label=f"best epoch ({best_epoch})")
            ax.set_xlabel("epoch")
            ax.set_title(title)
            ax.xaxis.get_major_locator().set_params(integer=True)
        axes[0].legend(loc="best")
        axes[1].legend(loc="best")
        axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    return fig


def _curves(p: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
    """Every cut of one label's scores: threshold, precision (of the images above it), recall, F1, k."""
    values, cum_tp, end = rank_columns(p[:, None], t[:, None])
    v, tp, e = values[0][end[0]], cum_tp[0][end[0]].astype(np.float64), end[0]
    k = (np.flatnonzero(e) + 1).astype(np.float64)
    pos = max(float(t.sum()), 1.0)
    precision = tp / k
    recall = tp / pos
    f1 = 2 * tp / (k + pos)
    return {"threshold": v, "precision": precision, "recall": recall, "f1": f1, "k": k}


def _grid(n: int, width: float = 2.3, height: float = 2.0, title_in: float = 0.55):
    """A figure of n small panels sharing both axes (0..1), laid out with fixed margins in inches.

    Fixed margins instead of constrained layout: the layout engine measures every tick label of
    every panel, which made a 24-panel figure take seconds.
    """
    # 5 panels fill the page width (about 12 in at 96 px/in); 7-8 panels read better as 4 + 4
    ncols = max(1, n if n <= 5 else (4 if n <= 8 else 5))
    nrows = math.ceil(n / ncols)
    left, right, bottom, gap_w, gap_h = 0.55, 0.15, 0.5, 0.22, 0.4
    fig_w = left + right + ncols * width + (ncols - 1) * gap_w
    fig_h = title_in + bottom + nrows * height + (nrows - 1) * gap_h
    fig = Figure(figsize=(fig_w, fig_h))
    fig.subplots_adjust(left=left / fig_w, right=1 - right / fig_w, bottom=bottom / fig_h,
                        top=1 - title_in / fig_h, wspace=gap_w / width, hspace=gap_h / height)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    flat = axes.ravel()
    for i, ax in enumerate(flat):
        ax.set_xticks([0, 0.5, 1], ["0", ".5", "1"])
        ax.set_yticks([0, 0.5, 1], ["0", ".5", "1"])
        # x labels only where no panel sits below (the last row may be short)
        ax.tick_params(labelbottom=i + ncols >= n, labelleft=i % ncols == 0, length=2)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n], ncols


def _outer_label(ax, i: int, n: int, ncols: int, x: str, y: str) -> None:
    if i + ncols >= n:
        ax.set_xlabel(x, labelpad=2)
    if i % ncols == 0:
        ax.set_ylabel(y)


def pr_grid(names: Sequence[str], probs: np.ndarray, targets: np.ndarray, classes: Sequence[int],
            op_points: dict[int, tuple[float, float, str]]) -> Figure:
    """Precision-recall curve per class; ``op_points`` {class: (recall, precision, label)} marked."""
    with style():
        fig, axes, ncols = _grid(len(classes))
        for i, (ax, c) in enumerate(zip(axes, classes)):
            t = np.asarray(targets)[:, c].astype(bool)
            cur = _curves(np.asarray(probs)[:, c], t)
            ax.plot(np.r_[0.0, cur["recall"]], np.r_[1.0, cur["precision"]], color=BLUE, lw=1.5,
                    drawstyle="steps-post")
            ax.axhline(t.mean() if len(t) else 0, color=GRAY, ls=":", lw=1)
            if c in op_points:
                r, pr, text = op_points[c]
                ax.plot([r], [pr], "o", color=RED, ms=6, zorder=5)
                ax.annotate(text, (r, pr), xytext=(-6, -12), textcoords="offset points", ha="right",
                            fontsize=7, color=RED)
            ap = _average_precision(cur, t)
            ax.set_title(f"{_short(names[c], 18)}  AP {ap:.2f}" if ap is not None else _short(names[c], 18))
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.02, 1.05)
            _outer_label(ax, i, len(classes), ncols, "recall", "precision")
        fig.suptitle("Precision-recall per class (red: the operating point; dotted: share of positives)",
                     fontsize=9, x=0.01, y=0.995, ha="left", va="top")
    return fig


def threshold_grid(names: Sequence[str], probs: np.ndarray, targets: np.ndarray, classes: Sequence[int],
                   chosen: dict[int, float]) -> Figure:
    """Per class against the threshold: F1, precision of the images scored above it (tail accuracy), recall."""
    with style():
        fig, axes, ncols = _grid(len(classes))
        for i, (ax, c) in enumerate(zip(axes, classes)):
            t = np.asarray(targets)[:, c].astype(bool)
            cur = _curves(np.asarray(probs)[:, c], t)
            x = cur["threshold"]
            ax.plot(x, cur["precision"], color=GREEN, lw=1.3, label="precision of top-k (tail accuracy)")
            ax.plot(x, cur["recall"], color=ORANGE, lw=1.3, label="recall")
            ax.plot(x, cur["f1"], color=BLUE, lw=1.9, label="F1")
            title = _short(names[c], 18)
            if c in chosen:
                th = chosen[c]
                ax.axvline(th, color=RED, ls="--", lw=1.1)
                above = int((np.asarray(probs)[:, c] >= th).sum())
                title += f"  cut {th:.2f} (k={above})"
            ax.set_title(title)
            ax.set_xlim(0, 1)
            ax.set_ylim(-0.02, 1.05)
            _outer_label(ax, i, len(classes), ncols, "threshold", "")
        handles, names_ = axes[0].get_legend_handles_labels()
        fig.legend(handles, names_, loc="upper right", ncols=3, fontsize=8, bbox_to_anchor=(0.995, 0.995))
        fig.suptitle("Against the threshold (red: the chosen cut; k = images at or above it)",
                     fontsize=9, x=0.01, y=0.995, ha="left", va="top")
    return fig


def confusion_matrix(names: Sequence[str], cm: np.ndarray) -> Figure:
    """Rows: true class, columns: predicted; colour = share of the row, text = count."""
    cm = np.asarray(cm, dtype=np.int64)
    n = len(names)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = min(9.5, 2.4 + 0.5 * n)
    with style():
        fig = Figure(figsize=(side + 1.2, side), layout="constrained")
        ax = fig.subplots()
        ax.grid(False)
        im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        labels = [_short(x, 14) for x in names]
        ax.set_xticks(range(n), labels, rotation=45, ha="right")
        ax.set_yticks(range(n), labels)
        if n <= 25:
            for i in range(n):
                for j in range(n):
                    if cm[i, j]:
                        ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7 if n > 12 else 8.5,
                                color="white" if share[i, j] > 0.55 else (RED if i != j else INK))
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class")
        ax.set_title("Confusion matrix (validation)")
    return fig


def label_confusion(names: Sequence[str], tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, limit: int = 40) -> Figure:
    """Per label: correct (TP), missed (FN) and wrongly added (FP), worst labels first."""
    errors = np.asarray(fp) + np.asarray(fn)
    order = np.argsort(-errors, kind="stable")[:limit]
    with style():
        fig = Figure(figsize=(6.8, 0.9 + 0.26 * len(order)), layout="constrained")
        ax = fig.subplots()
        y = np.arange(len(order))
        left = np.zeros(len(order))
        for values, color, name in ((tp, GREEN, "correct (TP)"), (fn, ORANGE, "missed (FN)"), (fp, RED, "added wrongly (FP)")):
            v = np.asarray(values)[order]
            ax.barh(y, v, left=left, color=color, height=0.7, label=name)
            left += v
        ax.set_yticks(y, [_short(names[i]) for i in order])
        ax.invert_yaxis()
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("images")
        fig.legend(loc="outside lower center", ncols=3)
        ax.set_title("Per-label decisions at the chosen thresholds")
    return fig


def _average_precision(cur: dict[str, np.ndarray], t: np.ndarray) -> float | None:
    if not t.any():
        return None
    recall = np.r_[0.0, cur["recall"]]
    return float(np.sum(np.diff(recall) * cur["precision"]))


def _short(text: str, n: int = 22) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def metric_curves(history: list[dict[str, float]], keys: Sequence[str], titles: Sequence[str],
                  best_epoch: int | None) -> Figure:
    """One small panel per metric: validation (blue) and the training sample (orange) per epoch."""
    epochs = [r.get("epoch", i + 1) for i, r in enumerate(history)]
    n = len(keys)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    with style():
        fig = Figure(figsize=(2.75 * ncols, 0.5 + 2.1 * nrows), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        marker = "o" if len(history) <= 30 else None
        for ax, key, title in zip(axes, keys, titles):
            for col, name, color in ((key, "validation", BLUE), (f"train_{key}", "training sample", ORANGE)):
                v = np.array([r.get(col, math.nan) for r in history], dtype=np.float64)
                if np.isfinite(v).any():
                    ax.plot(epochs, v, color=color, marker=marker, ms=3, lw=1.5, label=name)
            if best_epoch:
                ax.axvline(best_epoch, color=GREEN, ls="--", lw=1)
            ax.set_title(title)
            ax.xaxis.get_major_locator().set_params(integer=True)
        for ax in axes[n:]:
            ax.set_visible(False)
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside upper right", ncols=2)
    return fig
