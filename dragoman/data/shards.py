"""Token ids stored once, read through memory maps.

A shard is two files: `{prefix}.ids`, every sequence's int32 token ids back to back, and
`{prefix}.offsets.npy`, where sequence i is ids[offsets[i]:offsets[i+1]]. Reading maps both
files, so a corpus of any size costs only the pages a batch touches.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dragoman.errors import DragomanError


class ShardWriter:
    """Appends sequences to a shard; `close()` makes it visible under its final name."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = Path(prefix)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.prefix.with_name(self.prefix.name + f".ids.tmp{os.getpid()}")
        self._file = open(self._tmp, "wb")
        self._offsets = [0]

    def extend(self, sequences: Iterable[list[int]]) -> None:
        for seq in sequences:
            self._file.write(np.asarray(seq, dtype=np.int32).tobytes())
            self._offsets.append(self._offsets[-1] + len(seq))

    def close(self) -> int:
        """Flush, fsync and rename into place; returns the number of sequences written."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        offsets_tmp = self.prefix.with_name(self.prefix.name + f".offsets.tmp{os.getpid()}.npy")
        np.save(offsets_tmp, np.asarray(self._offsets, dtype=np.int64), allow_pickle=False)
        os.replace(offsets_tmp, f"{self.prefix}.offsets.npy")
        os.replace(self._tmp, f"{self.prefix}.ids")
        return len(self._offsets) - 1


class Shard:
    """Read-only, memory-mapped sequences: `shard[i]` is an int32 array, `shard.lengths` all lengths."""

    def __init__(self, prefix: Path) -> None:
        ids_path, offsets_path = Path(f"{prefix}.ids"), Path(f"{prefix}.offsets.npy")
        try:
            self.offsets = np.load(offsets_path, mmap_mode="r", allow_pickle=False)
            size = ids_path.stat().st_size // 4
            self.ids = np.memmap(ids_path, dtype=np.int32, mode="r") if size else np.zeros(0, np.int32)
        except (OSError, ValueError) as exc:
            raise DragomanError(
                f"cannot read prepared data: {exc}",
                file=ids_path,
                fix="run `dragoman prepare CONFIG` again",
            ) from None
        if int(self.offsets[-1]) != size:
            raise DragomanError(
                "prepared data is truncated",
                file=ids_path,
                fix="run `dragoman prepare CONFIG` again",
            )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)
