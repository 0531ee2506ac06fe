"""The classes of a classifier: label strings ↔ ids, saved as `labels.json` in the model directory.

The labels are the distinct labels of the training data, sorted, so the same data always gives the
same ids. A label that training never saw is an error that names the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from dragoman.errors import DragomanError
from dragoman.io import atomic_write_text


class Labels:
    """`vocab_size` classes (the target side of a classifier, as a tokenizer is of a translator)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        self.ids = {name: i for i, name in enumerate(self.names)}
        self.vocab_size = len(self.names)

    @classmethod
    def from_data(cls, labels: Iterable[str]) -> Labels:
        return cls(sorted(set(labels)))

    def id(self, label: str, file: str | Path | None = None, line: int | None = None) -> int:
        try:
            return self.ids[label]
        except KeyError:
            known = ", ".join(self.names[:20]) + (" …" if len(self.names) > 20 else "")
            raise DragomanError(
                f"unknown label {label!r}: the training data has only {known}",
                file=file,
                line=line,
                fix="use the training data's labels (a label is matched exactly, case and spaces included)",
            ) from None

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps({"labels": self.names}, ensure_ascii=False, indent=1))

    @classmethod
    def load(cls, path: Path) -> Labels:
        try:
            names = json.loads(Path(path).read_text(encoding="utf-8"))["labels"]
        except FileNotFoundError:
            raise DragomanError(
                "labels file not found", file=path, fix="train the classifier again"
            ) from None
        except (ValueError, KeyError, TypeError):
            raise DragomanError("damaged labels file", file=path, fix="train the classifier again") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DragomanError("damaged labels file", file=path, fix="train the classifier again")
        return cls(names)
