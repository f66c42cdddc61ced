"""Errors for malformed data files, and the bookkeeping that lets readers skip bad rows.

Every error names the file, the 1-based line, the field and what was expected; with skipping on,
bad rows are counted, dropped, and reported once as a warning with the first few examples.
"""
from __future__ import annotations

import gzip
import warnings
import zlib
from typing import Callable, List, Optional, Sequence, Union

import numpy as np


GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)  # what a gzip file cut short or corrupted raises


def broken_gzip(file: str, err: BaseException) -> "DataFormatError":
    return DataFormatError(file, None, "file", "a complete gzip file", f"one cut short or corrupt ({err})")


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
    """Collect bad rows from vectorised checks; :meth:`finish` raises or warns.

    Readers call :meth:`flag` with a mask per check and filter their rows by the returned
    keep-mask, so a row is counted once even when several of its fields are wrong. Without
    ``skip``, :meth:`finish` raises for the earliest bad line in the file (whichever check found
    it); with ``skip``, it warns with the count and the first few file:line examples."""

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
        """Record rows where ``bad`` is true; returns the mask of rows to keep (``~bad``).

        ``lines`` holds each row's 1-based line number; ``found`` is either the offending values
        aligned with ``bad`` or a function row -> description (called for the few rows reported)."""
        bad = np.asarray(bad, dtype=bool)
        hits = np.flatnonzero(bad)
        if len(hits) == 0:
            return ~bad
        self.count += len(hits)
        # rows are in file order, so the first hits of each check are its earliest lines
        self.examples.extend(self._error(r, lines, field, expected, found)
                             for r in hits[: self.max_examples])
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
        """Raise for the earliest bad line (or, skipping, when every row was bad); else warn."""
        if self.count == 0:
            return
        self.examples.sort(key=lambda e: e.line)
        del self.examples[self.max_examples:]
        first = self.examples[0]
        if not self.skip:
            raise first
        if self.count >= rows_read:
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
