"""Multispectral input: 4-band TIFFs, early fusion (adapted first conv) and late fusion (two branches)."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

import labelwise
from labelwise.errors import ModelError
from labelwise.models.classifier import Classifier


def _nir_dataset(root, n=60):
    """The class is visible only in the 4th (near-infrared) band: RGB is the same noise for both."""
    rng = np.random.default_rng(0)
    for label in ("dry", "wet"):
        (root / label).mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 255, (32, 32, 4), dtype=np.uint8)
            img[..., 3] = 40 if label == "dry" else 210
            img[..., 3] += rng.integers(0, 30, (32, 32), dtype=np.uint8)
            tifffile.imwrite(root / label / f"{i}.tif", img)
    return root


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_four_band_tiffs_train_with_either_fusion(tmp_path, fusion):
    data = _nir_dataset(tmp_path / "data")
    res = labelwise.train(data, tmp_path / fusion, epochs=3, backbone="cnn-small", pretrained=False, fusion=fusion,
                          progress=False, lr=5e-3, optimizer="adamw", val_split=0.25)
    assert res.metrics["model"]["accuracy"] > 0.8  # the signal is only in the extra band
    predictor = labelwise.load(res.run_dir)
    assert predictor.meta.in_chans == 4 and predictor.meta.fusion == fusion
    assert (getattr(predictor.model, "extra", None) is not None) == (fusion == "late")


def test_late_fusion_branches_and_errors():
    m = Classifier("cnn-small", 3, in_chans=5, fusion="late")
    assert m.extra is not None and m(torch.rand(2, 5, 32, 32)).shape == (2, 3)
    with pytest.raises(ModelError, match="more than 3 bands"):
        Classifier("cnn-small", 3, in_chans=3, fusion="late")
    with pytest.raises(ModelError, match="--fusion"):
        Classifier("cnn-small", 3, in_chans=4, fusion="middle")
