"""Reader of a user's own delimited click log (CSV, TSV, RecBole atomic; gzip detected).

A :class:`DelimitedFormat` says which column is the label, which columns are numeric and which are
categorical fields; the column names come from the file's first line (``header``) or from
``columns``. RecBole atomic headers are accepted: ``user_id:token`` names the column ``user_id``.

* **Label**: the values ``0``/``1``; or, with ``label_threshold: t``, any number, 1 when it is ``>= t``
  (``rating`` with ``t = 4`` is MovieLens-as-CTR's label). An empty label is a bad row.
* **Numeric** columns: numbers or nothing (missing; :mod:`recarch.ctr.encode` takes ``log(1 + x)``).
* **Categorical** columns: any string, ``""`` = missing.

:func:`resolve_columns` fixes the numeric and categorical columns once, from the first file's
header, so every file of a data set yields the same fields in the same order.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ...data.errors import BadRowCounter, DataFormatError
from .core import (DEFAULT_CHUNKSIZE, ChunkParser, MakeParser, PathLike, RawChunk, _01, _check_choice,
                   _check_regex, _labels, _numeric_columns, _open_binary, _require, _stream, concat_chunks,
                   split_fields)

NUMERIC_TYPES = ("float",)  # RecBole atomic types read as numbers when no column lists are given
CATEGORICAL_TYPES = ("token",)


@dataclass(frozen=True)
class DelimitedFormat:
    label: str
    sep: str = ","
    header: bool = True  # the first line names the columns
    columns: Tuple[str, ...] = ()  # the column names when there is no header line
    numeric: Tuple[str, ...] = ()
    categorical: Tuple[str, ...] = ()
    label_threshold: Optional[float] = None  # None: labels 0/1; else 1 where value >= threshold
    quoted: bool = True  # CSV double quotes may protect separators


def header_columns(first: str, sep: str) -> List[Tuple[str, str]]:
    """(name, RecBole type or "") of each column of a header line."""
    out = []
    for raw in first.rstrip("\r\n").split(sep):
        name, _, kind = raw.strip().strip('"').partition(":")
        out.append((name, kind))
    return out


def first_line(path: PathLike) -> Tuple[str, int]:
    """The first non-blank line of a file (gzip detected) and its 1-based number."""
    with _open_binary(path) as (fh, _):
        for number, raw in enumerate(fh, 1):
            line = raw.decode("utf-8", errors="replace")
            if line.strip():
                return line, number
    raise DataFormatError(str(path), 1, "file", "at least one line", "an empty file")


def delimited_columns(path: PathLike, fmt: DelimitedFormat) -> Tuple[List[Tuple[str, str]], str, int]:
    """(the (name, RecBole type or "") of each column, the header as found, its line) of a delimited file."""
    if not fmt.header:
        return [(c, "") for c in fmt.columns], ", ".join(fmt.columns), 1
    first, lineno = first_line(path)
    return header_columns(first, fmt.sep), first.strip(), lineno


def resolve_columns(file: str, typed: Sequence[Tuple[str, str]], header: str, lineno: Optional[int],
                    fmt: DelimitedFormat, numeric: Optional[Sequence[str]],
                    categorical: Optional[Sequence[str]], drop: Sequence[str]) -> DelimitedFormat:
    """``fmt`` with its numeric and categorical columns fixed from a file's columns ``typed`` ((name,
    type) pairs; ``header`` and ``lineno`` are what errors quote).

    ``numeric`` None: the ``float`` columns (RecBole types, or a Parquet file's floating-point columns),
    else none. ``categorical`` None: every column that is not the label, numeric or dropped, in file
    order. Raises DataFormatError naming the file when a named column is absent or a column's type is
    unsupported."""
    names = [n for n, _ in typed]
    named = [fmt.label, *(numeric or ()), *(categorical or ()), *drop]
    _require(file, lineno, names, list(dict.fromkeys(named)), header)
    used = {fmt.label, *drop}
    if numeric is None:
        numeric = [n for n, t in typed if t in NUMERIC_TYPES and n not in used]
    used |= set(numeric)
    if categorical is None:
        categorical = [n for n in names if n not in used]
    for n, t in typed:
        if t and n in set(numeric) | set(categorical) and t not in NUMERIC_TYPES + CATEGORICAL_TYPES:
            raise DataFormatError(file, lineno, n, "a token or float column (multi-valued "
                                  "token_seq/float_seq columns are not supported: drop it)", f"type {t!r}")
    twice = (set(numeric) & set(categorical)) | ({fmt.label} & (set(numeric) | set(categorical)))
    if twice:
        raise DataFormatError(file, lineno, sorted(twice)[0], "one role per column: the label, numeric or "
                              "categorical", "it named for two")
    if not categorical:
        raise DataFormatError(file, lineno, "header", "at least one categorical column besides the "
                              "label, the numeric and the dropped ones", repr(header))
    return replace(fmt, numeric=tuple(numeric), categorical=tuple(categorical))


def typed_chunk(df: pd.DataFrame, linenos: np.ndarray, fmt: DelimitedFormat, bad: BadRowCounter) -> RawChunk:
    """A chunk of str columns checked and typed: the label, the numeric columns and the fields."""
    if fmt.label_threshold is None:
        df, linenos = _check_choice(df, linenos, fmt.label, _01, bad, "a label 0 or 1")
        df, linenos, num = _numeric_columns(df, linenos, fmt.numeric, bad)
        label = _labels(df[fmt.label], _01)
    else:
        df, linenos = _check_regex(df, linenos, fmt.label, r".*\S.*", bad, "a number")
        df, linenos, values = _numeric_columns(df, linenos, [fmt.label, *fmt.numeric], bad)
        label, num = (values[:, 0] >= fmt.label_threshold).astype(np.float32), values[:, 1:]
    return RawChunk(df[list(fmt.categorical)].reset_index(drop=True), num, label, list(fmt.numeric))


def _delimited_parser(file: str, fmt: DelimitedFormat) -> MakeParser:
    def make(first: str, lineno: int) -> ChunkParser:
        names = [n for n, _ in header_columns(first, fmt.sep)] if fmt.header else list(fmt.columns)
        _require(file, lineno, names, [fmt.label, *fmt.numeric, *fmt.categorical], first)

        def parse(lines: pd.Series, linenos: np.ndarray, bad: BadRowCounter) -> RawChunk:
            df, linenos = split_fields(lines, linenos, fmt.sep, names, bad, quoted=fmt.quoted)
            return typed_chunk(df, linenos, fmt, bad)

        return parse
    return make


def iter_delimited(path: PathLike, fmt: DelimitedFormat, chunksize: int = DEFAULT_CHUNKSIZE,
                   skip_bad_rows: bool = False) -> Iterator[RawChunk]:
    """Stream a delimited click log whose columns ``fmt`` names (see :func:`resolve_columns`)."""
    return _stream(path, _delimited_parser(str(path), fmt), header=fmt.header, chunksize=chunksize,
                   skip_bad_rows=skip_bad_rows)


def read_delimited(path: PathLike, fmt: DelimitedFormat, skip_bad_rows: bool = False,
                   chunksize: int = DEFAULT_CHUNKSIZE) -> RawChunk:
    return concat_chunks(list(iter_delimited(path, fmt, chunksize, skip_bad_rows)))
