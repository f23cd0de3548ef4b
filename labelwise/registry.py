"""Registries: name -> implementation + one line of help, the one extension point of labelwise.

Losses, optimizers, schedulers, data formats, export formats, inference engines, augmentation
presets and metric names are each a ``Registry``. Adding one is one function and one decorator;
the CLI's choices and help, config validation and the did-you-mean all read the registry.

>>> LOSSES = Registry("loss", option="--loss")
>>> @LOSSES.register("bce", "binary cross-entropy per label")
... def bce(ctx): ...
>>> LOSSES.names()
('bce',)
>>> LOSSES.check("bec")  # doctest: +SKIP
ConfigError: --loss 'bec' is not known; choose one of bce (did you mean 'bce'?)

A registry holds no heavy imports itself: implementations import torch, onnx and the like inside
their bodies, so ``labelwise --help`` can list every choice without loading them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from labelwise.errors import check_choice

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    value: T
    help: str
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. tasks a loss supports, default lr of an optimizer


class Registry(Generic[T]):
    """An ordered name -> Entry map that refuses duplicate names (as torchvision's register_model does)."""

    def __init__(self, kind: str, option: str | None = None):
        self.kind = kind
        self.option = option or f"--{kind.replace(' ', '-')}"
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, help: str, **extra: Any) -> Callable[[T], T]:
        def add(value: T) -> T:
            self.add(name, value, help, **extra)
            return value

        return add

    def add(self, name: str, value: T, help: str, **extra: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, value, help, dict(extra))

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def check(self, name: str, option: str | None = None) -> str:
        return check_choice(option or self.option, name, self._entries)

    def entry(self, name: str, option: str | None = None) -> Entry[T]:
        return self._entries[self.check(name, option)]

    def get(self, name: str, option: str | None = None) -> T:
        return self.entry(name, option).value

    def help_text(self) -> str:
        """'a: help; b: help' for --help."""
        return "; ".join(f"{e.name}: {e.help}" for e in self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)
