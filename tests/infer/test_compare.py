"""labelwise compare: two bundles on the same images, paired bootstrap, end to end through the CLI."""
from __future__ import annotations

import json
import shutil

import pytest
from builders import shades
from typer.testing import CliRunner

import labelwise
from labelwise.cli import app
from labelwise.errors import DataError
from labelwise.infer.compare import compare

FAST = dict(backbone="cnn-small", pretrained=False, image_size=16, progress=False, cache="off", precision="32",
            optimizer="adamw")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    train = shades(root / "train", 60, seed=1)
    test = shades(root / "test", 100, seed=2)
    trained = labelwise.train(train, root / "trained", epochs=3, lr=5e-3, **FAST).run_dir
    # lr 0: the untrained network, a model that is surely worse (chance is 0.5)
    untrained = labelwise.train(train, root / "untrained", epochs=1, lr=0.0, **FAST).run_dir
    return root, trained, untrained, test


def test_a_real_difference_is_called_real(runs, tmp_path):
    _, trained, untrained, test = runs
    result = CliRunner().invoke(app, ["compare", str(trained), str(untrained), str(test),
                                      "--out", str(tmp_path / "cmp.json")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    r = json.loads((tmp_path / "cmp.json").read_text())
    assert r["n_images"] == 200 and r["bootstrap"]["paired"] and r["bootstrap"]["draws"] == 1000
    acc = r["metrics"]["accuracy"]
    assert acc["a"] > 0.9 and acc["b"] < 0.75, acc  # trained against untrained
    assert acc["real"] and acc["interval"][0] > 0
    assert set(r["metrics"]) == {"accuracy", "balanced_accuracy", "f1_macro"}
    assert "Model A is better on accuracy" in r["summary"] and "real" in result.output


def test_a_model_against_itself_shows_no_difference(runs):
    _, trained, _, test = runs
    r = compare(trained, trained, test)
    for m in r["metrics"].values():
        assert m["difference"] == 0 and m["interval"] == [0.0, 0.0] and not m["real"]
    assert r["summary"].startswith("No real difference")
    assert compare(trained, trained, test, seed=0) == r  # deterministic


def test_models_of_different_labels_are_refused(runs, tmp_path):
    root, trained, _, test = runs
    other = tmp_path / "two_classes"
    shutil.copytree(test / "dark", other / "dark")
    shutil.copytree(test / "dark", other / "black")
    two = labelwise.train(other, tmp_path / "two", epochs=1, **FAST).run_dir
    with pytest.raises(DataError, match="not comparable"):
        compare(trained, two, other)
