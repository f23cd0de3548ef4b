"""Training data glue: choose the input spec, decode once, split, and batch-fetching loaders."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from labelwise.config import DataConfig, TrainConfig, field_choices
from labelwise.data import images
from labelwise.data.samples import Samples
from labelwise.errors import ConfigError

PROBE_LIMIT = 200  # images probed (header only) to choose size and channels


@dataclass(frozen=True)
class InputSpec:
    size: int  # px, square
    channels: int


def probe_images(samples: Samples, cfg: DataConfig) -> tuple[list[int], list[int]]:
    """Shorter sides and channel counts of up to PROBE_LIMIT images (headers only; unreadable ones left out)."""
    rng = np.random.default_rng(0)
    idx = np.arange(len(samples))
    if len(idx) > PROBE_LIMIT:
        idx = np.sort(rng.choice(idx, PROBE_LIMIT, replace=False))
    sides, chans = [], []
    for i in idx:
        try:
            info = images.probe(samples.paths[i], max_pixels=cfg.max_pixels)
        except Exception:  # unreadable files are reported when decoding
            continue
        sides.append(min(info.width, info.height))
        chans.append(images.image_channels(info))
    return sides, chans


def median_side(probed: tuple[list[int], list[int]]) -> int | None:
    sides, _ = probed
    return int(np.median(sides)) if sides else None


def choose_input(samples: Samples, cfg: DataConfig, min_size: int = 32, max_size: int = 224,
                 multiple: int = 32, probed: tuple[list[int], list[int]] | None = None) -> InputSpec:
    """Pick image size and channel count from the data unless the user set them.

    Size: the median shorter side, rounded up to ``multiple`` (the backbone's total stride: 32 for
    EfficientNet, 4 for cnn-small), within [min_size, max_size] — a 28 px Fashion-MNIST item trains
    at 28 px with cnn-small (32 px with EfficientNet) instead of being upsampled to 224.
    Channels: 1 when every probed image is gray, N for N-band images, else 3.
    """
    sides, chans = probed if probed is not None else probe_images(samples, cfg)
    size = cfg.image_size
    if size is None:
        median = int(np.median(sides)) if sides else max_size
        size = int(min(max(-(-median // multiple) * multiple, min_size), max_size))
    if size < 8:
        raise ConfigError(f"--image-size {size} is too small; use at least 8 px (32 or more is better)")
    channels = cfg.channels
    if channels is None:
        counts = Counter(chans)
        bands, n = counts.most_common(1)[0] if counts else (3, 0)
        # N bands only when most images have them: a stray 5-band TIFF is skipped, not every photo.
        if bands > 3 and 2 * n > len(chans):
            channels = bands
        else:
            channels = 1 if chans and all(c == 1 for c in chans if c <= 3) else 3
    return InputSpec(size=int(size), channels=int(channels))


class ArrayDataset(Dataset):
    """Pre-decoded uint8 images (N, C, S, S) with multi-hot float targets.

    ``__getitems__`` lets the DataLoader fetch a whole batch with one fancy-index instead of N
    ``__getitem__`` calls and a collate.
    """

    def __init__(self, pixels: np.ndarray, targets: np.ndarray):
        self.pixels = torch.from_numpy(pixels)
        self.targets = torch.from_numpy(np.asarray(targets, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int):
        return self.pixels[i], self.targets[i], i

    def __getitems__(self, idx: list[int]):
        # The row indices travel with the batch so that validation can drop the duplicates a
        # DistributedSampler pads with, and gather exactly one prediction per image across processes.
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        return self.pixels[idx_t], self.targets[idx_t], idx_t


def _keep_batch(batch):
    return batch


def make_loader(ds: ArrayDataset, batch_size: int, *, shuffle: bool, seed: int = 0, drop_last: bool = False
                ) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    # Data are already decoded in memory: worker processes would only add copying overhead. Pinned
    # memory only pays off when batches go to a GPU.
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, num_workers=0,
                      collate_fn=_keep_batch, generator=gen, pin_memory=torch.cuda.is_available())


SAMPLERS = field_choices(TrainConfig, "sampler")


def sampling_weights(targets: np.ndarray, multilabel: bool, balanced: bool,
                     max_empty_fraction: float | None = None) -> np.ndarray | None:
    """Per-image sampling weights (sum 1), or None for plain shuffling.

    balanced: an image is drawn in proportion to the inverse frequency of its rarest label (multi-label;
    images with no label count as one more "label"), or of its class (multi-class).
    max_empty_fraction: images with no label make up at most this share of the draws (multi-label).
    """
    t = np.asarray(targets, dtype=bool)
    n = len(t)
    if not balanced and max_empty_fraction is None:
        return None
    empty = ~t.any(1)
    w = np.ones(n)
    if balanced:
        cols = np.concatenate([t, empty[:, None]], 1) if multilabel else t
        freq = cols.sum(0).astype(np.float64)
        inv = np.where(freq > 0, 1.0 / np.maximum(freq, 1), 0.0)
        w = (cols * inv).max(1)
    w = w / w.sum()
    if max_empty_fraction is not None and empty.any() and not empty.all():
        share = w[empty].sum()
        if share > max_empty_fraction:
            # scale the empty images down so that they carry exactly the allowed share
            w[empty] *= max_empty_fraction / share * (1 - share) / (1 - max_empty_fraction)
            w = w / w.sum()
    return w


def make_train_loader(ds: ArrayDataset, batch_size: int, *, seed: int, drop_last: bool,
                      weights: np.ndarray | None) -> DataLoader:
    if weights is None:
        return make_loader(ds, batch_size, shuffle=True, seed=seed, drop_last=drop_last)
    from torch.utils.data import WeightedRandomSampler

    gen = torch.Generator().manual_seed(seed)
    sampler = WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples=len(ds),
                                    replacement=True, generator=gen)
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=0,
                      collate_fn=_keep_batch, pin_memory=torch.cuda.is_available())
