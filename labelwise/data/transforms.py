"""Whole-batch augmentation as tensor ops (no per-image Python in the hot loop).

Input and output: float batches (B, C, H, W) in [0, 1]. Randomness comes from an explicit
``torch.Generator`` so the same seed gives the same augmentations.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError

AUGMENT_PRESETS = {
    "none": "no augmentation",
    "default": "random horizontal flip + random shift of up to 1/8 of the side (reflect padding)",
}


def check_preset(name: str) -> str:
    if name not in AUGMENT_PRESETS:
        import difflib

        hint = difflib.get_close_matches(name, AUGMENT_PRESETS, n=1)
        did = f" Did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(f"--augment {name!r} is not a preset.{did} Presets: "
                          + "; ".join(f"{k}: {v}" for k, v in AUGMENT_PRESETS.items()))
    return name


def random_hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=gen, device="cpu").to(x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_shift(x: torch.Tensor, max_frac: float, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by its own random offset (up to max_frac of the side), reflect-padded."""
    b, _, h, w = x.shape
    pad = max(1, int(round(min(h, w) * max_frac)))
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indexing gathers every image's own crop at once: result (B, H, W, C).
    return xp.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def augment_batch(x: torch.Tensor, preset: str, gen: torch.Generator) -> torch.Tensor:
    if preset == "none":
        return x
    x = random_hflip(x, gen)
    return random_shift(x, 0.125, gen)
