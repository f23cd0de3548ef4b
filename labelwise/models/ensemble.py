"""Ensembles: average the probabilities of several models, as one module that outputs logits.

The output is chosen so that sigmoid / softmax of it gives back the mean member probability, so
everything downstream (thresholds, metrics, export, serving) treats an ensemble like one model.
"""
from __future__ import annotations

import torch
from torch import nn

from labelwise.errors import LabelwiseError

EPS = 1e-7  # keeps logit/log finite when a mean probability is exactly 0 or 1


class Ensemble(nn.Module):
    def __init__(self, members: list[nn.Module], multilabel: bool):
        super().__init__()
        if not members:
            raise LabelwiseError("an ensemble needs at least one model")
        self.members = nn.ModuleList(members)
        self.multilabel = multilabel
        first = members[0]
        # input spec of the first member (they all share it; checked when building from runs)
        self.register_buffer("mean", first.mean.clone())
        self.register_buffer("std", first.std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.multilabel:
            p = torch.stack([torch.sigmoid(m(x)) for m in self.members]).mean(0).clamp(EPS, 1 - EPS)
            return torch.log(p) - torch.log1p(-p)
        p = torch.stack([torch.softmax(m(x), 1) for m in self.members]).mean(0)
        return torch.log(p.clamp_min(EPS))

    @property
    def head(self) -> nn.Module:
        """The first member's head (not registered here: the weights are stored once, in members.0)."""
        return self.members[0].head


