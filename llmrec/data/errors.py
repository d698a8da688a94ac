"""The error raised for bad input data: it names the file, row and column, and how to fix it."""

from __future__ import annotations

from typing import Any


class DataError(ValueError):
    """Bad input data.

    ``row`` is the 1-based line number in the file where one is known (the header is line 1 for
    delimited text files), otherwise the 0-based record index, as ``row_label`` says.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        column: str | None = None,
        expected: str | None = None,
        got: Any = None,
        hint: str | None = None,
        row_label: str = "line",
    ) -> None:
        self.message = message
        self.source = source
        self.row = row
        self.column = column
        self.expected = expected
        self.got = got
        self.hint = hint
        where = []
        if source:
            where.append(str(source))
        if row is not None:
            where.append(f"{row_label} {row}")
        if column:
            where.append(f"column {column!r}")
        text = (", ".join(where) + ": " if where else "") + message
        if expected is not None:
            text += f" (expected {expected}, got {got!r})"
        if hint:
            text += f". {hint}"
        super().__init__(text)
