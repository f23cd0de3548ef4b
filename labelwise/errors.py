"""Errors a user can cause. The CLI prints their message (no traceback) and exits with 2.

Every message names the file, the line or the option at fault and says what to do.
"""
from __future__ import annotations


class LabelwiseError(Exception):
    """Base class for every error caused by user input or user data."""


class DataError(LabelwiseError):
    """A dataset (folder, CSV, annotations) is malformed."""


class ImageError(LabelwiseError):
    """An image file cannot be decoded safely."""


class ConfigError(LabelwiseError):
    """An option or configuration value is invalid."""


class ModelError(LabelwiseError):
    """A backbone cannot be created or its weights cannot be loaded."""


class BundleError(LabelwiseError):
    """A run directory / model bundle is missing files or is not trustworthy."""
