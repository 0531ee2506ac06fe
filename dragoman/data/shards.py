"""Token ids stored once, on disk, and read back one sequence at a time.

A shard is two files: `{prefix}.ids`, every sequence's int32 token ids back to back, and
`{prefix}.offsets.npy`, where sequence i is ids[offsets[i]:offsets[i+1]]. Both are written a chunk
at a time and read a sequence at a time: neither the ids nor the offsets of a corpus of any size
are ever held in memory.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from dragoman.errors import DragomanError


class ShardWriter:
    """Appends sequences to a shard; `close()` makes it visible under its final name.

    Ids and sequence ends go straight to temporary files, so writing holds one chunk at a time
    (a Python list of the offsets of 10M sequences alone would take about 360 MB).
    """

    def __init__(self, prefix: Path) -> None:
        self.prefix = Path(prefix)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self._ids_tmp = self._tmp(".ids")
        self._ends_tmp = self._tmp(".ends")  # offsets[1:], raw int64
        self._ids, self._ends = open(self._ids_tmp, "wb"), open(self._ends_tmp, "wb")
        self.count = self.size = 0  # sequences and ids written

    def _tmp(self, suffix: str) -> Path:
        return self.prefix.with_name(f"{self.prefix.name}{suffix}.tmp{os.getpid()}")

    def extend(self, sequences: Iterable[Sequence[int]]) -> None:
        sequences = list(sequences)
        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        ids = np.fromiter(itertools.chain.from_iterable(sequences), np.int32, int(lengths.sum()))
        ends = self.size + np.cumsum(lengths)
        self._ids.write(ids.tobytes())
        self._ends.write(ends.tobytes())
        self.count, self.size = self.count + len(sequences), self.size + len(ids)

    def close(self) -> int:
        """Flush, fsync and rename into place; returns the number of sequences written."""
        for file in (self._ids, self._ends):
            file.flush()
            os.fsync(file.fileno())
            file.close()
        offsets_tmp = self._tmp(".offsets.npy")
        with open(offsets_tmp, "wb") as out, open(self._ends_tmp, "rb") as ends:
            header = {"descr": "<i8", "fortran_order": False, "shape": (self.count + 1,)}
            np.lib.format.write_array_header_1_0(out, header)
            out.write(np.zeros(1, np.int64).tobytes())  # offsets[0]
            shutil.copyfileobj(ends, out)
            out.flush()
            os.fsync(out.fileno())
        os.remove(self._ends_tmp)
        os.replace(offsets_tmp, f"{self.prefix}.offsets.npy")
        os.replace(self._ids_tmp, f"{self.prefix}.ids")
        return self.count


class Shard:
    """Read-only sequences on disk: `shard[i]` is an int32 array, `shard.lengths` all lengths.

    `shard[i]` reads sequence i with two positioned reads (its offsets, then its ids) through the
    page cache. The files are not mapped into the process, whose resident memory (RSS) therefore
    holds only what a batch uses: mapped, every page a shuffled epoch touched would count in it.
    """

    def __init__(self, prefix: Path) -> None:
        ids_path, self._offsets_path = Path(f"{prefix}.ids"), Path(f"{prefix}.offsets.npy")
        try:
            offsets = np.load(self._offsets_path, mmap_mode="r", allow_pickle=False)
            if offsets.dtype != np.int64 or offsets.ndim != 1 or len(offsets) == 0:
                raise ValueError(f"offsets are {offsets.dtype} of shape {offsets.shape}")
            self._count, self._start = len(offsets) - 1, offsets.offset  # .npy header bytes
            truncated = int(offsets[-1]) != ids_path.stat().st_size // 4
            self._ids, self._offsets = open(ids_path, "rb"), open(self._offsets_path, "rb")
        except (OSError, ValueError) as exc:
            raise DragomanError(
                f"cannot read prepared data: {exc}",
                file=ids_path,
                fix="run `dragoman prepare CONFIG` again",
            ) from None
        if truncated:
            raise DragomanError(
                "prepared data is truncated",
                file=ids_path,
                fix="run `dragoman prepare CONFIG` again",
            )

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i: int) -> np.ndarray:
        i = range(self._count)[i]  # negative indices count from the end; out of range: IndexError
        bounds = os.pread(self._offsets.fileno(), 16, self._start + 8 * i)
        start, end = np.frombuffer(bounds, dtype=np.int64).tolist()
        return np.frombuffer(os.pread(self._ids.fileno(), 4 * (end - start), 4 * start), np.int32)

    @property
    def lengths(self) -> np.ndarray:
        """Every sequence's length, as int32 (half the memory of int64 for a large corpus)."""
        offsets = np.load(self._offsets_path, mmap_mode="r", allow_pickle=False)  # unmapped on return
        return np.diff(offsets).astype(np.int32)
