"""Resource limits of a server; light (no FastAPI), so the CLI can show them in --help."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

from labelwise.errors import ConfigError, did_you_mean

TOKEN_ENV = "LABELWISE_TOKEN"


@dataclass(frozen=True)
class ServeLimits:
    """Resource limits of one server; each is checked before any pixel is decoded."""

    max_body_bytes: int = 32 * 2**20  # one request, multipart overhead included
    max_files: int = 32  # images per request
    max_pixels: int = 40_000_000  # per image, from its header (a 40 MP camera photo passes)
    queue_size: int = 32  # requests admitted at once: reading, decoding, waiting or inferring
    decode_workers: int = min(8, os.cpu_count() or 1)  # threads: Pillow releases the GIL
    model_workers: int = 1  # concurrent forward passes; one already uses every core
    max_batch: int = 32  # images per forward pass when requests wait for the model together
    retry_after_s: int = 1  # what a 503 tells the client to wait
    read_timeout_s: int = 60  # to send a whole body: a slow client must not hold a slot for ever (408)

    def check(self) -> "ServeLimits":
        for f in fields(self):
            if int(getattr(self, f.name)) < 1:
                raise ConfigError(f"serve limit {f.name} must be at least 1, got {getattr(self, f.name)}")
        return self


def make_limits(**overrides: Any) -> ServeLimits:
    """ServeLimits with some fields changed; an unknown name is a ConfigError with a hint."""
    names = [f.name for f in fields(ServeLimits)]
    for key in overrides:
        if key not in names:
            raise ConfigError(f"unknown serve option {key!r}{did_you_mean(key, names)}. Options: {', '.join(names)}")
    return replace(ServeLimits(), **overrides).check()


