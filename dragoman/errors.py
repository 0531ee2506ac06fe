"""The one user-facing error type.

Every mistake a user can make (a missing file, a bad line, a wrong config value) becomes a
`DragomanError` that says where (file, line), what is wrong, and what to do. The CLI prints it on
one line and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations

from pathlib import Path


class DragomanError(Exception):
    """A problem the user can fix: `file:line: problem. fix`."""

    def __init__(
        self,
        problem: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = None if file is None else str(file)
        self.line = line
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
            where += ": "
        text = f"{where}{self.problem}"
        if self.fix:
            text = f"{text.rstrip('.')}. {self.fix}"
        return text
