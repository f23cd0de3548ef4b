"""One table of metric names: how each metric key is shown (CLI table, report, warnings) and what it means.

Adding a metric's display name is one ``METRIC_NAMES.add(key, label, help)``; every printer reads it.
"""
from __future__ import annotations

from labelwise.registry import Registry

METRIC_NAMES: Registry[str] = Registry("metric", option="--monitor")
for _key, _label, _help in (
    ("map", "mAP", "mean over labels of average precision: how well the scores rank images (threshold-free)"),
    ("auroc_macro", "macro AUROC", "mean over labels of the area under the ROC curve; 0.5 = chance"),
    ("f1_macro", "macro F1", "F1 per label, averaged: every label counts the same"),
    ("f1_micro", "micro F1", "F1 over all (image, label) decisions pooled: frequent labels count more"),
    ("f1_weighted", "weighted F1", "F1 per label, averaged with weights by how often each label is given"),
    ("f1_samples", "per-image F1", "F1 per image, averaged"),
    ("precision_macro", "macro precision", "precision per label, averaged"),
    ("recall_macro", "macro recall", "recall per label, averaged"),
    ("precision_micro", "micro precision", "precision over all (image, label) decisions pooled"),
    ("recall_micro", "micro recall", "recall over all (image, label) decisions pooled"),
    ("exact_match", "exact match", "share of images whose predicted label set is exactly right"),
    ("hamming_accuracy", "Hamming accuracy", "share of (image, label) decisions that are right"),
    ("mean_pred_labels", "labels predicted per image", "labels predicted per image (compare with the truth: {truth})"),
    ("empty_pred_share", "images predicted with no label", "share of images predicted with no label (truth: {truth})"),
    ("accuracy", "accuracy", "share of images whose predicted class is right"),
    ("balanced_accuracy", "balanced accuracy", "recall averaged over classes: every class counts the same"),
    ("top_pred_share", "share of the most common prediction", "share of images given the most common predicted class (truth: {truth})"),
    ("loss", "loss", "the training loss on these images"),
    ("mean_true_labels", "labels per image (truth)", ""),
    ("empty_true_share", "images with no label (truth)", ""),
    ("top_true_share", "share of the most common truth", ""),
):
    METRIC_NAMES.add(_key, _label, _help)


def metric_label(key: str) -> str:
    """'map' -> 'mAP', 'top5_accuracy' -> 'top-5 accuracy', anything else with spaces for underscores."""
    if key in METRIC_NAMES:
        return METRIC_NAMES.get(key)
    if key.startswith("top") and key.endswith("_accuracy"):
        return f"top-{key[3:-9]} accuracy"
    return key.replace("_", " ")


def metric_help(key: str) -> str:
    return METRIC_NAMES.entry(key).help if key in METRIC_NAMES else ""
