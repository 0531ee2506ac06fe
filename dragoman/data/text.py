"""Reading and checking plain text: UTF-8, one segment per line.

Corpora can have tens of millions of lines, so everything here streams the file in binary with
bounded memory. Only the line ending ("\\n" or "\\r\\n") is removed; cleaning is `prepare`'s job.
Every problem a user can cause (missing file, wrong encoding, misaligned pair) becomes a
`DragomanError` that names the file, and the line where there is one.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dragoman.errors import DragomanError

_CHUNK = 1 << 20  # bytes read at a time when counting or scanning


def open_binary(path: str | Path) -> BinaryIO:
    """Open `path` for reading bytes; OS errors become a `DragomanError` that says what to do."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        fix = f"check the path (relative paths start from {os.getcwd()})"
        raise DragomanError("file not found", file=path, fix=fix) from None
    except IsADirectoryError:
        fix = "give the path of a text file inside it"
        raise DragomanError("is a directory, not a file", file=path, fix=fix) from None
    except PermissionError:
        fix = "make it readable for this user (e.g. chmod a+r)"
        raise DragomanError("permission denied", file=path, fix=fix) from None
    except OSError as error:
        fix = "check that the path names a readable file"
        raise DragomanError(f"cannot open ({error.strerror})", file=path, fix=fix) from None


def check_readable(path: str | Path) -> None:
    """Fail unless `path` is a readable file with some non-whitespace content."""
    size = 0
    with open_binary(path) as file:
        for chunk in iter(lambda: file.read(_CHUNK), b""):
            if chunk.strip():
                return
            size += len(chunk)
    problem = "file is empty" if size == 0 else "file is empty (only whitespace)"
    fix = "check that the right file was given and that it was written completely"
    raise DragomanError(problem, file=path, fix=fix)


def iter_lines(path: str | Path) -> Iterator[str]:
    """Yield each line of a UTF-8 file without its "\\n" or "\\r\\n", decoding strictly.

    Lines are read lazily, so an unopenable file raises on the first `next()`. Invalid UTF-8
    raises a `DragomanError` with the 1-based line number and the 0-based byte offset.
    """
    offset = 0  # of the current line's first byte in the file
    with open_binary(path) as file:
        for number, raw in enumerate(file, start=1):
            yield _decode_line(raw, path, number, offset)
            offset += len(raw)


def _decode_line(raw: bytes, path: str | Path, number: int, offset: int) -> str:
    if raw.endswith(b"\n"):
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        problem = (
            f"invalid UTF-8 byte 0x{raw[error.start]:02x} at byte offset {offset + error.start}"
            f" (byte {error.start + 1} of the line)"
        )
        name = Path(path).name
        fix = f"save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 {name} > {name}.utf8)"
        raise DragomanError(problem, file=path, line=number, fix=fix) from None


def read_lines(path: str | Path) -> list[str]:
    """All lines of a non-empty UTF-8 file, as `iter_lines` gives them."""
    check_readable(path)
    return list(iter_lines(path))


def count_lines(path: str | Path) -> int:
    """Number of lines, counting a last line that lacks its "\\n"; reads in binary chunks."""
    lines, last = 0, b"\n"
    with open_binary(path) as file:
        for chunk in iter(lambda: file.read(_CHUNK), b""):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def check_parallel(src_path: str | Path, tgt_path: str | Path) -> int:
    """Check that two files are readable and aligned line by line; return their line count."""
    check_readable(src_path)
    check_readable(tgt_path)
    src_lines, tgt_lines = count_lines(src_path), count_lines(tgt_path)
    if src_lines != tgt_lines:
        problem = f"line counts differ: {src_path} has {src_lines} lines, {tgt_path} has {tgt_lines}"
        fix = (
            "line i of one file must translate line i of the other; check that neither file "
            "was cut short and that neither has extra lines (a blank line at the end counts)"
        )
        raise DragomanError(problem, fix=fix)
    return src_lines


def iter_pairs(src_path: str | Path, tgt_path: str | Path) -> Iterator[tuple[str, str]]:
    """(source, target) line pairs of two aligned files; checks alignment before returning."""
    check_parallel(src_path, tgt_path)
    return zip(iter_lines(src_path), iter_lines(tgt_path), strict=True)


def iter_csv(path: str | Path, columns: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(line number, [values of `columns`]) for each row of a UTF-8 CSV file with a header row.

    A missing column, a short row or a quoting error is a `DragomanError` naming the file and line.
    """
    check_readable(path)
    lines = iter_lines(path)  # strict UTF-8 with line numbers; csv splits the fields
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
        index = []
        for column in columns:
            if column not in header:
                raise DragomanError(
                    f"no column {column!r}; the header has {', '.join(map(repr, header))}",
                    file=path,
                    line=1,
                    fix="set data.text_column / data.label_column to the right names",
                )
            index.append(header.index(column))
        for row in reader:
            if not row:
                continue
            if len(row) <= max(index):
                raise DragomanError(
                    f"row has {len(row)} fields, the header {len(header)}",
                    file=path,
                    line=reader.line_num,
                    fix="quote fields that contain commas or line breaks",
                )
            yield reader.line_num, [row[i] for i in index]
    except csv.Error as error:
        raise DragomanError(f"not valid CSV: {error}", file=path, line=reader.line_num) from None
