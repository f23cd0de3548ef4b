"""Errors a user can cause. The CLI prints their message (no traceback) and exits with 2.

Every message names the file, the line or the option at fault and says what to do.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class LabelwiseError(Exception):
    """Base class for every error caused by user input or user data."""


class DataError(LabelwiseError):
    """A dataset (folder, CSV, annotations) is malformed."""


class ImageError(LabelwiseError):
    """An image file cannot be decoded safely."""


class ImageTooLargeError(ImageError):
    """An image is over a size limit (pixels from its header, values, memory): a server answers 413, not 422."""


class ConfigError(LabelwiseError):
    """An option or configuration value is invalid."""


class ModelError(LabelwiseError):
    """A backbone cannot be created or its weights cannot be loaded."""


class BundleError(LabelwiseError):
    """A run directory / model bundle is missing files or is not trustworthy."""


def check_choice(option: str, value: str, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; else a ConfigError naming the option, with a did-you-mean."""
    choices = list(choices)
    if value in choices:
        return value
    raise ConfigError(f"{option} {value!r} is not known; choose one of {', '.join(choices)}" + did_you_mean(value, choices))


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest choice, or "" when none is close: the one did-you-mean of labelwise."""
    hint = difflib.get_close_matches(str(value), list(choices), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""
