"""timm / Hugging Face Hub door: RUN/hub/ loads in timm and reproduces `labelwise predict`; model card; push.

Bundles are written directly (ImageNet EfficientNet-Lite0 backbone, random head) rather than trained:
the folder must reproduce whatever weights it is given. Images are real: Fashion-MNIST PNGs and
scikit-image's photos. One small training run checks that every run writes hub/ and README.md.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml
from PIL import Image

import labelwise
from labelwise.data.demo import build_multiclass
from labelwise.infer.export import export_model
from labelwise.infer.predict import Predictor, list_images
from labelwise.labels import LabelSpace
from labelwise.models import hub
from labelwise.models.bundle import ModelMeta, save_model
from labelwise.models.card import render_card, write_card
from labelwise.models.classifier import Classifier

TOL = 1e-3  # the bar for probabilities; measured ~1e-6 here


def _bundle(run: Path, backbone: str, labels: LabelSpace, in_chans: int, size: int, pretrained: bool,
            fusion: str = "early") -> Path:
    torch.manual_seed(0)
    model = Classifier(backbone, len(labels), in_chans=in_chans, pretrained=pretrained, fusion=fusion)
    with torch.no_grad():
        model.head.weight.normal_(0, 0.05)
        model.head.bias.normal_(0, 0.3)
        if not pretrained:
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 1.5)
    meta = ModelMeta(labels=labels, backbone=backbone, in_chans=in_chans, image_size=size,
                     thresholds=tuple(np.linspace(0.3, 0.6, len(labels)).round(3)), fusion=fusion,
                     mean=tuple(model.mean.flatten().tolist()), std=tuple(model.std.flatten().tolist()))
    save_model(run, model.eval(), meta)
    return run


def _timm_probs(folder: Path, paths: list[Path], mode: str, multilabel: bool) -> np.ndarray:
    """What a timm user does: create_model(local-dir:...), timm's eval transform, the activation."""
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    x = torch.stack([transform(Image.open(p).convert(mode)) for p in paths])
    with torch.inference_mode():
        logits = model(x)
    return (logits.sigmoid() if multilabel else logits.softmax(-1)).numpy()


def _labelwise_probs(run: Path, paths: list[Path]) -> np.ndarray:
    preds = Predictor.load(run).predict(paths)
    assert not any(p.error for p in preds)
    names = list(preds[0].probs)
    return np.array([[p.probs[n] for n in names] for p in preds])


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> list[Path]:
    root = build_multiclass(tmp_path_factory.mktemp("fm") / "set", 4, split="test", seed=1)
    return list_images([root])


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    import skimage

    src = Path(skimage.__file__).parent / "data"
    out = tmp_path_factory.mktemp("photos")
    names = ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg"]
    for name in names:
        shutil.copy(src / name, out / name)
    return [out / n for n in names if n.endswith(".png")]  # PNG: no reduced-size JPEG decoding (see card)


@pytest.fixture(scope="module")
def gray_run(tmp_path_factory) -> Path:
    labels = LabelSpace(("trouser", "bag", "sneaker", "dress"), "multilabel")
    return _bundle(tmp_path_factory.mktemp("g") / "run", "efficientnet_lite0", labels, 1, 64, pretrained=True)


def test_timm_reproduces_labelwise_on_fashion_mnist(gray_run, fashion):
    result = export_model(gray_run, "timm")
    assert result.path == gray_run / "hub" and result.max_prob_diff < 1e-4
    cfg = json.loads((gray_run / "hub" / "config.json").read_text())
    assert cfg["architecture"] == "tf_efficientnet_lite0" and cfg["num_classes"] == 4
    assert cfg["label_names"] == ["trouser", "bag", "sneaker", "dress"]
    assert cfg["pretrained_cfg"]["crop_pct"] == 1.0 and cfg["model_args"] == {"in_chans": 1}
    assert cfg["labelwise"]["task"] == "multilabel" and len(cfg["labelwise"]["thresholds"]) == 4
    from safetensors.torch import load_file
    keys = set(load_file(str(gray_run / "hub" / "model.safetensors")))
    assert keys == set(timm.create_model("tf_efficientnet_lite0", num_classes=4, in_chans=1).state_dict())

    ours = _labelwise_probs(gray_run, fashion)
    theirs = _timm_probs(gray_run / "hub", fashion, "L", multilabel=True)
    diff = float(np.abs(ours - theirs).max())
    print(f"timm vs labelwise, {len(fashion)} Fashion-MNIST PNGs: max |dp| = {diff:.2e}")
    assert diff < TOL
    assert ours.std(0).max() > 0.01  # the images do move the probabilities: the comparison means something


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_timm_reproduces_labelwise_on_photos(backbone, photos, tmp_path):
    labels = LabelSpace(("cat", "person", "cup", "bike", "other"), "multiclass")
    run = _bundle(tmp_path / "run", backbone, labels, 3, 224, pretrained=backbone == "efficientnet_lite0")
    export_model(run, "timm")
    ours = _labelwise_probs(run, photos)
    theirs = _timm_probs(run / "hub", photos, "RGB", multilabel=False)
    diff = float(np.abs(ours - theirs).max())
    print(f"timm vs labelwise ({backbone}), {len(photos)} photos: max |dp| = {diff:.2e}")
    assert diff < TOL


def test_labelwise_load_accepts_the_hub_folder(gray_run, fashion):
    export_model(gray_run, "timm")
    from_hub = labelwise.load(gray_run / "hub")
    assert from_hub.labels.names == ("trouser", "bag", "sneaker", "dress")
    assert np.allclose(from_hub.thresholds, Predictor.load(gray_run).thresholds)
    a = _labelwise_probs(gray_run, fashion)
    b = np.array([[v for v in p.probs.values()] for p in from_hub.predict(fashion)])
    assert np.abs(a - b).max() < 1e-6


@pytest.mark.parametrize("backbone,fusion,expect", [
    ("cnn-small", "early", "labelwise's own network"),
    ("efficientnet_lite0", "late", "--fusion late"),
])
def test_models_timm_cannot_express_say_so(backbone, fusion, expect, tmp_path):
    labels = LabelSpace(("a", "b"), "multilabel")
    run = _bundle(tmp_path / "run", backbone, labels, 4 if fusion == "late" else 1, 32, pretrained=False, fusion=fusion)
    proc = subprocess.run([sys.executable, "-m", "labelwise", "export", str(run), "--format", "timm"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert expect in proc.stderr and not (run / "hub").exists()


def test_ensembles_are_refused_with_a_pointer_to_one_member():
    with pytest.raises(hub.NotExpressible, match="fold_1"):
        hub.timm_architecture("ensemble", members=("cnn-small", "cnn-small"))


def test_model_card_front_matter_and_limitations(gray_run):
    export_model(gray_run, "timm")
    metrics = {"task": "multilabel", "monitor": "map", "n_images": 40,
               "model": {"map": 0.81, "f1_macro": 0.7}, "model_at_0.5": {"map": 0.81, "f1_macro": 0.6},
               "baselines": {"predict_nothing": {"map": 0.3, "f1_macro": 0.0}},
               "data_warnings": ["12 near-duplicate image pairs cross the train/validation split"],
               "run": {"train_images": 160, "val_images": 40, "epochs": 3}}
    (gray_run / "metrics.json").write_text(json.dumps(metrics))
    text = write_card(gray_run).read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["library_name"] == "timm" and "timm" in front["tags"] and "multi-label" in front["tags"]
    assert front["labels"] == ["trouser", "bag", "sneaker", "dress"] and "map" in front["metrics"]
    assert front["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.81
    assert "near-duplicate image pairs" in text.split("## Limitations")[1]
    assert "baseline: predict nothing" in text and "| trouser |" in text
    assert "local-dir:" in text and "No held-out test set" in text
    (gray_run / "evaluation.json").write_text(json.dumps({**metrics, "n_images": 55}))
    text = render_card(gray_run, "tf_efficientnet_lite0", timm_source="hf-hub:me/model")
    assert "## Held-out scores (55 images" in text and "hf-hub:me/model" in text
    (gray_run / "metrics.json").unlink()
    (gray_run / "evaluation.json").unlink()


def test_push_fails_fast_and_plainly_offline(gray_run, tmp_path):
    export_model(gray_run, "timm")
    for env in ({"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "https://127.0.0.1:9"}):
        proc = subprocess.run([sys.executable, "-m", "labelwise", "push", str(gray_run), "me/model"],
                              capture_output=True, text=True, env={**_env(), **env})
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "nothing was uploaded" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "labelwise", "push", str(gray_run), "no-slash"],
                          capture_output=True, text=True, env=_env())
    assert proc.returncode == 2 and "user/name" in proc.stderr


def test_push_stages_what_timm_reads_from_the_hub(gray_run, tmp_path):
    from labelwise.cli.push import stage

    export_model(gray_run, "timm")
    files = stage(gray_run, "me/model", tmp_path)
    assert {"config.json", "model.safetensors", "README.md", "labelwise/model.json"} <= set(files)
    model = timm.create_model(f"local-dir:{tmp_path}", pretrained=True)  # the repo's root, as hf-hub: sees it
    assert model.pretrained_cfg["label_names"] == ["trouser", "bag", "sneaker", "dress"]
    assert labelwise.load(tmp_path).labels.names == ("trouser", "bag", "sneaker", "dress")


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("HF_")}


@pytest.mark.slow
def test_every_run_writes_hub_and_card(tmp_path):
    data = build_multiclass(tmp_path / "data", 12, split="train", seed=0)
    result = labelwise.train(data, tmp_path / "run", backbone="efficientnet_lite0", strategy="linear-probe",
                             image_size=32, cache="off", progress=False)
    run = result.run_dir
    assert (run / "hub" / "config.json").is_file() and (run / "hub" / "model.safetensors").is_file()
    card = (run / "README.md").read_text()
    assert card.startswith("---\n") and "## Validation scores" in card and "library_name: timm" in card
    small = labelwise.train(data, tmp_path / "small", backbone="cnn-small", epochs=1, cache="off", progress=False)
    assert not (small.run_dir / "hub").exists()
    assert "No timm folder" in (small.run_dir / "README.md").read_text()
