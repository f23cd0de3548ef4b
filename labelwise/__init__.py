"""labelwise: a folder of labelled images in, an honestly evaluated, deployable classifier out.

>>> import labelwise                                                          # doctest: +SKIP
>>> result = labelwise.train("data/", out="runs/demo", epochs=5)              # doctest: +SKIP
>>> labelwise.load("runs/demo").predict(["photo.jpg"])[0].labels              # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from labelwise.errors import LabelwiseError
from labelwise.labels import LabelSpace

from labelwise.version import __version__
__all__ = ["train", "evaluate", "load", "Predictor", "LabelSpace", "LabelwiseError", "__version__"]


def train(data: str | Path | None = None, out: str | Path | None = None, *, config: str | Path | None = None,
          resume: bool = False, progress: bool = True, **options: Any):
    """Train on DATA and write the run directory ``out``; options are the CLI's (``epochs=3``, ``backbone=...``).

    ``config``: a YAML file in the shape of a run's config.yaml; ``options`` override it.
    Returns a TrainResult with ``run_dir``, ``metrics`` (as in metrics.json) and ``warnings``.
    """
    from labelwise.config import RunConfig, make_config
    from labelwise.training.options import check_options
    from labelwise.training.run import train as _train

    base = RunConfig.load(config) if config is not None else None
    cfg = check_options(make_config(data, out, base=base,
                                    **options))
    return _train(cfg, resume=resume, progress=progress)


def evaluate(run_dir: str | Path, data: str | Path, **options: Any) -> dict:
    """Score a saved model on labelled DATA (see ``labelwise evaluate``)."""
    from labelwise.infer.evaluate_bundle import evaluate as _evaluate

    return _evaluate(run_dir, data, **options)


def load(run_dir: str | Path, threshold: float | None = None, engine: str = "torch", tta: bool = False):
    """Load a model bundle (model.safetensors + model.json) as a Predictor (engine "torch" or "onnx")."""
    from labelwise.infer.predict import Predictor

    return Predictor.load(run_dir, threshold=threshold, engine=engine, tta=tta)


def __getattr__(name: str):
    if name == "Predictor":
        from labelwise.infer.predict import Predictor

        return Predictor
    raise AttributeError(name)
