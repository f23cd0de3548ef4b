"""LabelSpace: the ordered label names and the task they belong to."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from labelwise.errors import LabelwiseError

Task = Literal["multilabel", "multiclass"]
TASKS: tuple[str, ...] = ("multilabel", "multiclass")


@dataclass(frozen=True)
class LabelSpace:
    """Ordered label names plus the task.

    >>> ls = LabelSpace(("cat", "dog"), "multiclass")
    >>> ls.index("dog")
    1
    """

    names: tuple[str, ...]
    task: Task

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        if self.task not in TASKS:
            raise LabelwiseError(f"task must be one of {TASKS}, got {self.task!r}")
        if len(set(self.names)) != len(self.names):
            raise LabelwiseError(f"label names must be unique, got {list(self.names)}")
        if not self.names:
            raise LabelwiseError("a dataset needs at least one label")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def multilabel(self) -> bool:
        return self.task == "multilabel"

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise LabelwiseError(f"unknown label {name!r}; known labels: {', '.join(self.names)}") from None

    def to_dict(self) -> dict:
        return {"names": list(self.names), "task": self.task}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelSpace":
        return cls(tuple(d["names"]), d["task"])

    @classmethod
    def sorted(cls, names: Sequence[str], task: Task) -> "LabelSpace":
        return cls(tuple(sorted(set(names))), task)


def split_label_names(cell: str, known: set[str] | frozenset[str]) -> tuple[list[str], list[str]]:
    """Label names joined by spaces -> (names, unknown tokens). A name may itself contain spaces (a class
    folder "t shirt"), so tokens are joined greedily into the longest known name."""
    tokens, names, unknown, i = cell.split(), [], [], 0
    while i < len(tokens):
        for j in range(len(tokens), i, -1):
            if " ".join(tokens[i:j]) in known:
                names.append(" ".join(tokens[i:j]))
                i = j
                break
        else:
            unknown.append(tokens[i])
            i += 1
    return names, unknown
