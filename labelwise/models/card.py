"""RUN/README.md: a model card with Hugging Face Hub front matter, written from the run's own files.

It reads model.json, metrics.json, config.yaml and, when `labelwise evaluate` has written one,
evaluation.json (held-out scores), so it can be rewritten at any time:

>>> write_card("runs/demo")          # doctest: +SKIP
PosixPath('runs/demo/README.md')
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import yaml

from labelwise.errors import ModelError
from labelwise.io import atomic_write_text
from labelwise.models import hub
from labelwise.models.facts import epochs_text, pixel_spec_of, pixel_spec_text
from labelwise.version import __version__

log = logging.getLogger("labelwise")
CARD_FILE = "README.md"
# (metric key, title) shown per task; the first one is the Hub's headline metric
_KEYS = {
    "multilabel": [("map", "mAP"), ("f1_macro", "F1 macro"), ("f1_micro", "F1 micro"), ("exact_match", "exact match"),
                   ("hamming_accuracy", "Hamming accuracy")],
    "multiclass": [("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("f1_macro", "F1 macro")],
}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _scores_table(m: dict[str, Any], task: str) -> list[str]:
    keys = _KEYS[task]
    rows = [("model" + (" (tuned thresholds)" if task == "multilabel" else ""), m.get("model", {}))]
    if "model_at_0.5" in m:
        rows.append(("model at 0.5", m["model_at_0.5"]))
    rows += [(f"baseline: {name.replace('_', ' ')}", b) for name, b in (m.get("baselines") or {}).items()]
    lines = ["| predictor | " + " | ".join(t for _, t in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(_num(vals.get(k)) for k, _ in keys) + " |" for name, vals in rows]
    return lines


def front_matter(meta: dict[str, Any], metrics: dict[str, Any] | None, hub_arch: str | None) -> dict[str, Any]:
    task = meta["task"]
    fm: dict[str, Any] = {
        "library_name": "timm" if hub_arch else "labelwise",
        "pipeline_tag": "image-classification",
        "tags": ["image-classification", "labelwise", "multi-label" if task == "multilabel" else "multi-class",
                 *(["timm"] if hub_arch else [])],
        "metrics": [k for k, _ in _KEYS[task]][:3],
        "labels": list(meta["labels"]),
    }
    if metrics and metrics.get("model"):
        key, title = _KEYS[task][0]
        value = metrics["model"].get(key)
        if isinstance(value, (int, float)) and not math.isnan(value):
            fm["model-index"] = [{"name": "labelwise", "results": [{
                "task": {"type": "image-classification"},
                "dataset": {"name": "validation split", "type": "custom"},
                "metrics": [{"type": key, "name": f"{title} (validation)", "value": round(float(value), 4)}]}]}]
    return fm


def render_card(run_dir: Path, hub_arch: str | None = None, hub_note: str = "", timm_source: str | None = None) -> str:
    """The card's text. ``hub_arch``: the timm architecture of RUN/hub/, if written; else ``hub_note`` says why not.
    ``timm_source``: what timm.create_model is given (default local-dir:RUN/hub; hf-hub:ID once pushed)."""
    run_dir = Path(run_dir)
    meta = _read_json(run_dir / "model.json") or {}
    metrics = _read_json(run_dir / "metrics.json")
    held_out = _read_json(run_dir / "evaluation.json")
    cfg = _read_yaml(run_dir / "config.yaml")
    task, labels = meta.get("task", "multilabel"), list(meta.get("labels", []))
    inp = meta.get("input", {})
    run = (metrics or {}).get("run", {})
    train, model_cfg, data = cfg.get("train", {}), cfg.get("model", {}), cfg.get("data", {})
    kind = "multi-label (any number of labels per image)" if task == "multilabel" else "multi-class (one label per image)"
    out = ["---", yaml.safe_dump(front_matter(meta, metrics, hub_arch), sort_keys=False).rstrip(), "---", "",
           f"# {run_dir.resolve().name}", "",
           f"A {kind} image classifier over {len(labels)} labels, trained with labelwise {__version__} on the "
           f"`{meta.get('backbone', '?')}` backbone; input {inp.get('channels', '?')} channel(s), "
           f"{inp.get('size', '?')}x{inp.get('size', '?')} px (squashed, not cropped).", ""]
    spec = pixel_spec_of(inp)
    bands = pixel_spec_text(spec) if spec is not None else None
    if bands:
        out += [f"Input bands and scaling: {bands} (model.json `input`; predict, serve and the exports apply "
                "the same).", ""]

    out += ["## Labels", "", "| label | share of training images | threshold |", "|---|---|---|"]
    freq = meta.get("train_label_freq") or [None] * len(labels)
    thresholds = meta.get("thresholds") or [None] * len(labels)
    for name, f, t in zip(labels, freq, thresholds):
        out.append(f"| {name} | {_num(f)} | {_num(t) if task == 'multilabel' else 'argmax'} |")
    if task == "multilabel":
        out += ["", "A label is predicted when its probability (sigmoid) reaches its threshold, tuned on the "
                "validation images" + (" (always at least one label)." if meta.get("at_least_one") else ".")]
    else:
        out += ["", "The predicted label is the most probable one (softmax)."]

    where = repr(str(run_dir)) if not timm_source else \
        f"huggingface_hub.snapshot_download({timm_source.split(':', 1)[1]!r})"
    out += ["", "## Use", "", "```python", "import labelwise", f"predictor = labelwise.load({where})",
            "print(predictor.predict(['photo.jpg'])[0].labels)", "```"]
    if hub_arch:
        mode = "L" if inp.get("channels") == 1 else "RGB"
        act = "sigmoid()" if task == "multilabel" else "softmax(-1)"
        out += ["", f"With timm alone (`hub/` is timm's layout: architecture `{hub_arch}`):", "", "```python",
                "import timm, torch", "from PIL import Image",
                f"model = timm.create_model('{timm_source or f'local-dir:{run_dir / hub.HUB_DIR}'}', pretrained=True).eval()",
                "transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))",
                f"x = transform(Image.open('photo.png').convert('{mode}'))[None]",
                f"probs = model(x).{act}  # labels: model.pretrained_cfg['label_names']", "```", "",
                "timm's eval transform squashes the image to the input size with Pillow's bilinear filter, as "
                "labelwise does; it reproduces labelwise's probabilities on PNG images within 1e-3. JPEG photos "
                "far larger than the input (labelwise decodes them at reduced size) and images with transparency "
                "(labelwise composites them on white) may differ slightly."]
        if bands:
            out[-1] += (" This model's images are not plain pictures: choose the bands and scale them as stated "
                        "above (to 8 bits) before timm's transform.")
    elif hub_note:
        out += ["", f"No timm folder: {hub_note}."]

    out += ["", "## Data", ""]
    out.append(f"- source: `{data.get('data', '?')}` (format {data.get('format', 'auto')})")
    if run:
        out.append(f"- {run.get('train_images', '?')} training and {run.get('val_images', '?')} validation images"
                   + (f" ({run['folds']}-fold cross-validation)" if run.get("folds") else "")
                   + (f"; {run['skipped_images']} unreadable images skipped" if run.get("skipped_images") else ""))
    out += ["", "## Recipe", ""]
    recipe = [("backbone", meta.get("backbone")), ("pretrained", run.get("pretrained")),
              ("strategy", run.get("strategy") or train.get("strategy")),
              ("epochs", epochs_text(run, train) if run else None),
              ("best epoch", run.get("best_checkpoint_epoch")), ("optimizer", train.get("optimizer")),
              ("learning rate", train.get("lr")), ("batch size", train.get("batch_size")),
              ("loss", train.get("loss")), ("augmentation", train.get("augment")),
              ("drop rate", model_cfg.get("drop_rate")), ("seed", train.get("seed")),
              ("training time", f"{run['wall_time_s']} s" if "wall_time_s" in run else None)]
    out += [f"- {k}: {v}" for k, v in recipe if v is not None]
    out += [f"- chose: {c}" for c in run.get("choices", [])]
    out += ["", "The full configuration is in `config.yaml` (`labelwise train --config config.yaml` repeats the run)."]

    if metrics:
        out += ["", f"## Validation scores ({metrics.get('n_images', '?')} images, monitored: "
                f"{metrics.get('monitor', '?')})", "", *_scores_table(metrics, task)]
    if held_out:
        out += ["", f"## Held-out scores ({held_out.get('n_images', '?')} images, `labelwise evaluate`)", "",
                *_scores_table(held_out, task)]

    limits = list((metrics or {}).get("data_warnings", [])) + list((metrics or {}).get("warnings", [])) \
        + list((metrics or {}).get("notes", []))
    if not held_out:
        limits.append("No held-out test set has been scored yet: run `labelwise evaluate RUN TEST_DATA`, "
                      "which adds its scores to this card.")
    out += ["", "## Limitations", ""] + [f"- {line}" for line in limits]
    if not limits:
        out.append("- None recorded by labelwise; the scores hold for images like the training ones only.")
    return "\n".join(out) + "\n"


def hub_status(run_dir: Path) -> tuple[str | None, str]:
    """(timm architecture of RUN/hub/, "") when it is there; else (None, why not)."""
    hub_cfg = _read_json(Path(run_dir) / hub.HUB_DIR / hub.CONFIG_FILE)
    if hub_cfg and hub_cfg.get("architecture"):
        return str(hub_cfg["architecture"]), ""
    meta = _read_json(Path(run_dir) / "model.json") or {}
    try:
        hub.timm_architecture(str(meta.get("backbone", "")), str(meta.get("fusion", "early")),
                              tuple(meta.get("members", ())))
    except hub.NotExpressible as e:
        return None, str(e)
    return None, "run `labelwise export RUN --format timm` to write one"


def write_card(run_dir: str | Path) -> Path:
    """Write RUN/README.md (atomically) from the run's files and return its path."""
    path = Path(run_dir) / CARD_FILE
    atomic_write_text(path, render_card(Path(run_dir), *hub_status(Path(run_dir))))
    return path


def write_hub_and_card(run_dir: str | Path, model: Any, meta_dict: dict[str, Any] | None = None) -> str:
    """End of a training run: RUN/hub/ when timm can express the model, then RUN/README.md.
    ``meta_dict`` defaults to RUN/model.json. Returns "" or the one-line reason there is no hub/ folder
    (a failure here is logged, never fatal: the bundle itself is already written)."""
    run_dir = Path(run_dir)
    meta_dict = meta_dict if meta_dict is not None else (_read_json(run_dir / "model.json") or {})
    note = ""
    try:
        hub.write_hub(run_dir / hub.HUB_DIR, model, meta_dict)
    except ModelError as e:
        note = str(e)
        if not isinstance(e, hub.NotExpressible):
            log.warning("no timm folder for %s: %s", run_dir, e)
    write_card(run_dir)
    return note
