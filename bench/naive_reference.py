"""The naive PyTorch training loop that bench/speed.py compares labelwise against.

What most tutorials write: a Dataset that opens and decodes every image from disk on every
``__getitem__`` (``PIL.Image.open(path).convert("RGB")`` + torchvision transforms), a DataLoader with
worker processes, and a plain loop with AdamW and cross-entropy. The model is the same labelwise
Classifier (same backbone, same pretrained weights), so the difference measured is the data path
and the training loop, not the network.

The Classifier normalises [0, 1] inputs itself; here ``transforms.Normalize`` does it (as a naive
script would), so the forward pass skips the Classifier's own normalisation: same compute, no
double normalisation.

Run alone: .venv/bin/python bench/naive_reference.py FOLDER [--epochs 2] [--workers 2]
(FOLDER: one subfolder per class). A benchmark helper: prints, never asserts.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class NaiveImageDataset(Dataset):
    """Decodes the full-size file on every access, then applies torchvision transforms."""

    def __init__(self, paths: Sequence[Path], targets: Sequence[int], transform):
        self.paths = [Path(p) for p in paths]
        self.targets = [int(t) for t in targets]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        img = Image.open(self.paths[i]).convert("RGB")
        return self.transform(img), self.targets[i]


def train_transform(size: int = 224):
    return transforms.Compose([
        transforms.RandomResizedCrop(size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def eval_transform(size: int = 224):
    return transforms.Compose([
        transforms.Resize(round(size * 256 / 224)),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def make_loaders(paths: Sequence[Path], targets: Sequence[int], train_idx: Sequence[int], val_idx: Sequence[int],
                 *, size: int = 224, batch_size: int = 64, workers: int = 2) -> tuple[DataLoader, DataLoader]:
    paths, targets = list(paths), list(targets)
    train_ds = NaiveImageDataset([paths[i] for i in train_idx], [targets[i] for i in train_idx], train_transform(size))
    val_ds = NaiveImageDataset([paths[i] for i in val_idx], [targets[i] for i in val_idx], eval_transform(size))
    train_dl = DataLoader(train_ds, batch_size=batch_size, shuffle=True, num_workers=workers)
    val_dl = DataLoader(val_ds, batch_size=batch_size, shuffle=False, num_workers=workers)
    return train_dl, val_dl


def build_model(backbone: str, n_classes: int, pretrained: bool = True) -> torch.nn.Module:
    from labelwise.models.classifier import Classifier

    return Classifier(backbone, n_classes, in_chans=3, pretrained=pretrained)


def _forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    # x is already normalised by transforms.Normalize: skip the Classifier's own (x - mean) / std
    return model.head(model.drop(model.backbone(x)))


def data_path_epoch(loader: DataLoader) -> tuple[float, int]:
    """Seconds to iterate the loader once without a model (worker start-up included), and images seen."""
    start = time.perf_counter()
    n = 0
    for x, _ in loader:
        n += len(x)
    return time.perf_counter() - start, n


def train(paths: Sequence[Path], targets: Sequence[int], n_classes: int, train_idx: Sequence[int],
          val_idx: Sequence[int], *, backbone: str = "efficientnet_lite0", pretrained: bool = True,
          epochs: int = 2, size: int = 224, batch_size: int = 64, workers: int = 2, lr: float = 1e-3,
          seed: int = 0, log=None) -> dict:
    """Train and validate like a naive script; return per-epoch wall times (s) and val accuracy.

    epoch_s[0] starts before the datasets and the model are built (so it includes set-up, like
    labelwise's first epoch includes its decoding); every epoch includes its validation pass.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    start = time.perf_counter()
    torch.manual_seed(seed)
    train_dl, val_dl = make_loaders(paths, targets, train_idx, val_idx, size=size, batch_size=batch_size,
                                    workers=workers)
    model = build_model(backbone, n_classes, pretrained)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    epoch_s, train_s, val_acc = [], [], []
    mark = start
    for epoch in range(epochs):
        model.train()
        for x, y in train_dl:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(_forward(model, x), y)
            loss.backward()
            opt.step()
        train_end = time.perf_counter()
        model.eval()
        correct = total = 0
        with torch.inference_mode():
            for x, y in val_dl:
                correct += int((_forward(model, x).argmax(1) == y).sum())
                total += len(y)
        now = time.perf_counter()
        train_s.append(train_end - mark)
        epoch_s.append(now - mark)
        val_acc.append(correct / max(1, total))
        log(f"  naive epoch {epoch + 1}: {now - mark:.1f} s (val accuracy {val_acc[-1]:.3f})")
        mark = now
    return {"epoch_s": epoch_s, "train_s": train_s, "val_accuracy": val_acc, "train_images": len(train_idx),
            "val_images": len(val_idx), "batch_size": batch_size, "workers": workers, "backbone": backbone}


def list_folder(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths, targets = [], []
    for k, name in enumerate(classes):
        for p in sorted((folder / name).iterdir()):
            if p.suffix.lower() in EXTENSIONS:
                paths.append(p)
                targets.append(k)
    return paths, targets, classes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    args = ap.parse_args()
    paths, targets, classes = list_folder(args.folder)
    order = np.random.default_rng(0).permutation(len(paths))
    n_val = round(len(paths) * 0.2)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    r = train(paths, targets, len(classes), train_idx, val_idx, backbone=args.backbone, epochs=args.epochs,
              batch_size=args.batch_size, workers=args.workers)
    data_s, n = data_path_epoch(make_loaders(paths, targets, train_idx, val_idx, batch_size=args.batch_size,
                                             workers=args.workers)[0])
    print(f"{len(train_idx)} train / {len(val_idx)} val images; epoch wall (s): "
          + ", ".join(f"{s:.1f}" for s in r["epoch_s"]) + f"; data path alone: {data_s:.1f} s for {n} images")


if __name__ == "__main__":
    main()
