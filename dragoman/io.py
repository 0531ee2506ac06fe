"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The data goes to a temporary file in the same directory, is flushed and fsynced, then renamed over
the target (`os.replace` is atomic on POSIX and Windows); finally the directory is fsynced so the
rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from dragoman.errors import DragomanError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace `path` with `data` atomically; OS errors become a `DragomanError`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        # "x" creates the file afresh (honouring the umask, unlike tempfile's 0600).
        with open(tmp, "xb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as error:
        fix = "check that the directory exists, is writable and that the disk is not full"
        raise DragomanError(f"cannot write ({error.strerror})", file=path, fix=fix) from None
    finally:
        with contextlib.suppress(OSError):  # gone already after a successful replace
            tmp.unlink()
    _fsync_directory(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace `path` with `text` encoded as UTF-8, atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable; best effort (not possible on every OS)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
