"""Criteo reader.

* Criteo: ``label, I1..I13, C1..C26``. The Kaggle ``train.txt`` (tab-separated, no header) and the
  DeepCTR sample (comma-separated, header ``label,I1,...``) are both accepted, told apart by the first
  line. Empty ``I`` fields are missing (NaN); ``I`` values must be numbers (negative ones are kept
  here; :func:`recarch.ctr.encode.log1p_numeric` clamps them). Empty ``C`` fields are missing.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd

from ...data.errors import BadRowCounter, DataFormatError
from .core import (DEFAULT_CHUNKSIZE, ChunkParser, MakeParser, PathLike, RawChunk, _01, _check_choice,
                   _labels, _numeric_columns, _stream, concat_chunks, split_fields)

CRITEO_NUMERIC = tuple(f"I{i}" for i in range(1, 14))
CRITEO_CATEGORICAL = tuple(f"C{i}" for i in range(1, 27))
CRITEO_COLUMNS = ("label",) + CRITEO_NUMERIC + CRITEO_CATEGORICAL


def _is_criteo_header(first: str) -> bool:
    return first.strip().lower().startswith("label")


def _criteo_parser(file: str) -> MakeParser:
    def make(first: str, lineno: int) -> ChunkParser:
        header = _is_criteo_header(first)
        sep = "\t" if "\t" in first or "," not in first else ","
        if header and [c.strip() for c in first.strip().split(sep)] != list(CRITEO_COLUMNS):
            raise DataFormatError(file, lineno, "header", "label,I1..I13,C1..C26", repr(first.strip()))

        def parse(lines: pd.Series, linenos: np.ndarray, bad: BadRowCounter) -> RawChunk:
            df, linenos = split_fields(lines, linenos, sep, CRITEO_COLUMNS, bad)
            df, linenos = _check_choice(df, linenos, "label", _01, bad, "a label 0 or 1")
            df, linenos, num = _numeric_columns(df, linenos, CRITEO_NUMERIC, bad)
            return RawChunk(df[list(CRITEO_CATEGORICAL)].reset_index(drop=True), num,
                            _labels(df["label"], _01), list(CRITEO_NUMERIC))

        return parse
    return make


def iter_criteo(path: PathLike, chunksize: int = DEFAULT_CHUNKSIZE,
                skip_bad_rows: bool = False) -> Iterator[RawChunk]:
    """Stream a Criteo file: Kaggle train.txt (TSV, no header) or a CSV with a header line."""
    return _stream(path, _criteo_parser(str(path)), header=_is_criteo_header, chunksize=chunksize,
                   skip_bad_rows=skip_bad_rows)


def read_criteo(path: PathLike, skip_bad_rows: bool = False, chunksize: int = DEFAULT_CHUNKSIZE) -> RawChunk:
    return concat_chunks(list(iter_criteo(path, chunksize, skip_bad_rows)))
