"""Errors for malformed data files, and the bookkeeping that lets readers skip bad rows.

Every error names the file, the 1-based line, the field and what was expected; with skipping on,
bad rows are counted, dropped, and reported once as a warning with the first few examples.
"""
from __future__ import annotations

import warnings
from typing import Callable, List, Optional, Sequence, Union

import numpy as np


class DataFormatError(ValueError):
    """A data file does not have the expected form at ``file:line`` in ``field``."""

    def __init__(
        self, file: str, line: Optional[int], field: str, expected: str, found: Optional[str] = None
    ) -> None:
        # ``found`` is shown verbatim: callers pass repr(value) for values, prose for descriptions
        self.file = str(file)
        self.line = line
        self.field = field
        self.expected = expected
        self.found = found
        where = f"{self.file}:{line}" if line is not None else self.file
        msg = f"{where}: field {field!r}: expected {expected}"
        if found is not None:
            msg += f", found {_clip(found, 200)}"
        super().__init__(msg)


class DataWarning(UserWarning):
    """Rows were skipped while reading a data file."""


def _clip(text: str, width: int = 60) -> str:
    text = str(text)
    return text if len(text) <= width else text[: width - 3] + "..."


class BadRowCounter:
    """Raise at the first bad row, or (``skip=True``) count bad rows and keep a few examples.

    Readers call :meth:`flag` with a vectorised mask per check and filter their rows by the returned
    keep-mask, so a row is counted once even when several of its fields are wrong."""

    def __init__(self, file: str, skip: bool = False, max_examples: int = 5) -> None:
        self.file = str(file)
        self.skip = skip
        self.max_examples = max_examples
        self.count = 0
        self.examples: List[DataFormatError] = []

    def flag(
        self,
        bad: np.ndarray,
        lines: np.ndarray,
        field: str,
        expected: str,
        found: Union[Sequence, Callable[[int], str], None] = None,
    ) -> np.ndarray:
        """Handle rows where ``bad`` is true; returns the mask of rows to keep (``~bad``).

        ``lines`` holds each row's 1-based line number; ``found`` is either the offending values
        aligned with ``bad`` or a function row -> description (called for the few rows reported).
        Raises :class:`DataFormatError` for the first bad row unless skipping."""
        bad = np.asarray(bad, dtype=bool)
        hits = np.flatnonzero(bad)
        if len(hits) == 0:
            return ~bad
        if not self.skip:
            raise self._error(hits[0], lines, field, expected, found)
        self.count += len(hits)
        for r in hits[: max(0, self.max_examples - len(self.examples))]:
            self.examples.append(self._error(r, lines, field, expected, found))
        return ~bad

    def _error(self, r, lines, field, expected, found) -> DataFormatError:
        if found is None:
            value = None
        elif callable(found):
            value = found(int(r))
        else:
            value = repr(_clip(str(found[r])))
        return DataFormatError(self.file, int(lines[r]), field, expected, value)

    def finish(self, rows_read: int) -> None:
        """Warn about skipped rows; raise when every row was bad (the format is wrong, not a row)."""
        if self.count == 0:
            return
        if self.count >= rows_read and self.examples:
            first = self.examples[0]
            raise DataFormatError(
                first.file, first.line, first.field,
                first.expected + " (every row was bad: is this the right reader?)", first.found,
            )
        shown = "; ".join(str(e) for e in self.examples)
        warnings.warn(
            f"skipped {self.count} bad row(s) of {rows_read} in {self.file}; first: {shown}",
            DataWarning,
            stacklevel=3,
        )
