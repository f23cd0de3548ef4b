"""labelwise models"""
from __future__ import annotations

from labelwise.cli.console import (
    out,
)


def models_cmd() -> None:
    """List the registered backbones (any timm model name works too)."""
    from labelwise.models.backbones import get_spec, list_backbones

    for name in list_backbones():
        spec = get_spec(name)
        out.print(f"[bold]{name}[/]  pretrained: {spec.pretrained}  batch size: {spec.batch_size}  optimizer: {spec.optimizer}"
                  f"{f' lr {spec.lr:g}' if spec.lr else ''}"
                  f"{f' (from {spec.recipe_min_images:,} training images; adamw below)' if spec.recipe_min_images else ''}"
                  f"{'  bf16 on CPUs with bf16 units' if spec.cpu_bf16 else ''}"
                  f"{f'  frozen stages: stem + {spec.frozen_stages} blocks when fine-tuning' if spec.frozen_stages else ''}"
                  f"  {spec.description}")


