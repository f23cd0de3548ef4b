"""The augmentation presets (``--augment``): names and one line of help each, importable without torch.

transforms.augment_batch implements them; adding a preset is one registration here plus its branch
there.
"""
from __future__ import annotations

from labelwise.registry import Registry

AUGMENT_PRESETS: Registry[str] = Registry("augmentation preset", option="--augment")
for _name, _help in (
    ("none", "no augmentation"),
    ("light", "random horizontal flip"),
    ("default", "horizontal flip + random shift of up to 1/8 of the side, 1/16 for images of 32 px or less "
                "(reflect padding)"),
    ("strong", "flip + random resized crop (scale 0.35-1) + rotation (±15°) + shift + brightness/contrast "
               "jitter + random erasing"),
    ("trivial", "flip + TrivialAugmentWide (one random op of random strength per group of 8 images; "
                "N-band images get 'strong' instead)"),
):
    AUGMENT_PRESETS.add(_name, _name, _help)


def check_preset(name: str) -> str:
    """``name`` if it is a preset; else a ConfigError naming --augment, with a did-you-mean and the presets."""
    return AUGMENT_PRESETS.check(name)
