"""The model card (RUN/README.md) states a run's bands and band scaling and its epochs against the plan
(interrupted or stopped early), from a hand-written bundle: no training."""
from __future__ import annotations

import json

import yaml

from labelwise.data.band_scaling import PixelSpec
from labelwise.labels import LabelSpace
from labelwise.models.bundle import ModelMeta, save_model
from labelwise.models.card import render_card
from labelwise.models.classifier import Classifier
from labelwise.models.facts import epochs_text, pixel_spec_text

SPEC = PixelSpec(bands=(3, 2, 1), low=(812.0, 640.5, 415.0), high=(3510.0, 2904.0, 2230.0))


def _bundle(run, spec=SPEC, run_record=None, train=None):
    model = Classifier("cnn-small", 2, in_chans=3)
    save_model(run, model, ModelMeta(labels=LabelSpace(("bare", "green"), "multiclass"), backbone="cnn-small",
                                     in_chans=3, image_size=16, thresholds=(0.5, 0.5), pixel_spec=spec))
    (run / "metrics.json").write_text(json.dumps({"model": {"accuracy": 0.9}, "run": run_record or {}}))
    (run / "config.yaml").write_text(yaml.safe_dump({"train": train or {}}))
    return run


def test_card_states_bands_scaling_and_an_interrupted_run(tmp_path):
    run = _bundle(tmp_path / "r", run_record={"epochs": 3, "interrupted": True, "best_checkpoint_epoch": 2},
                  train={"epochs": 10})
    text = render_card(run)
    assert ("Input bands and scaling: bands 3,2,1; per-band 1st-99th percentile scaling: 812..3510, 640.5..2904, "
            "415..2230") in text
    assert "- epochs: 3 of 10 · interrupted (Ctrl-C / SIGTERM)" in text
    assert "- best epoch: 2" in text


def test_card_of_a_plain_run_says_nothing_of_bands(tmp_path):
    run = _bundle(tmp_path / "r", spec=PixelSpec(), run_record={"epochs": 10}, train={"epochs": 10})
    text = render_card(run)
    assert "Input bands" not in text and "percentile" not in text
    assert "- epochs: 10 of 10\n" in text


def test_wording_of_bands_and_epochs():
    assert pixel_spec_text(PixelSpec()) is None
    assert pixel_spec_text(PixelSpec(bands=(4,))) == "bands 4"
    assert pixel_spec_text(PixelSpec(low=(0.25,), high=(0.5,))) == "per-band 1st-99th percentile scaling: 0.25..0.5"
    assert epochs_text({"epochs": 4}, {"epochs": 20, "early_stopping": 3}) == "4 of 20 · stopped early " \
        "(--early-stopping 3)"
    assert epochs_text({"epochs": 4}, {"epochs": 20}) == "4 of 20 · stopped early"
    assert epochs_text({"folds": 3}, {"epochs": 5}) == "5 planned per fold"
    assert epochs_text({"epochs": 7}, {}).startswith("7 of ")  # unset --epochs: the schema's default
