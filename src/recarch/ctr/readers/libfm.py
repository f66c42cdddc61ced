"""libfm (Frappe) reader.

* libfm (Frappe): ``label id:1 id:1 ...``; label ``1``/``-1`` (or ``1``/``0``) becomes 1/0; every line
  has the same number of features (fixed by the caller, else taken from the first line); the k-th
  feature is field k and its feature id is the field's raw value. Only one-hot features (value 1)
  are accepted: a libfm file with real-valued features is not a categorical CTR table.
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np
import pandas as pd

from ...data.errors import BadRowCounter, DataFormatError
from .core import (DEFAULT_CHUNKSIZE, ChunkParser, MakeParser, PathLike, RawChunk, _check_choice, _labels,
                   _stream, _take, concat_chunks, split_fields)

FRAPPE_FIELDS = ("user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather",
                 "country", "city")

_ONE_HOT = r"^(\d+):(?:1|1\.0*|\+1)$"
_LIBFM_LABELS = {"1": 1.0, "+1": 1.0, "1.0": 1.0, "-1": 0.0, "-1.0": 0.0, "0": 0.0, "0.0": 0.0}


def _libfm_parser(file: str, n_features: Optional[int], fields: Optional[Sequence[str]]) -> MakeParser:
    def make(first: str, lineno: int) -> ChunkParser:
        k = n_features if n_features is not None else len(first.split()) - 1
        if k < 1:
            raise DataFormatError(file, lineno, "features", "a label and at least one feature", repr(first))
        names = list(fields) if fields is not None else [f"f{j}" for j in range(1, k + 1)]
        if len(names) != k:
            raise ValueError(f"libfm reader: {len(names)} field names for {k} features")

        def parse(lines: pd.Series, linenos: np.ndarray, bad: BadRowCounter) -> RawChunk:
            norm = lines.str.strip().str.replace(r"\s+", " ", regex=True)
            df, linenos = split_fields(norm, linenos, " ", ["label"] + names, bad,
                                       what=f"a label and {k} features", field="features")
            df, linenos = _check_choice(df, linenos, "label", _LIBFM_LABELS, bad, "a label 1 or -1 (or 0)")
            ids = {}
            alive = np.ones(len(df), dtype=bool)
            for name in names:  # one regex pass per field both checks and extracts the id
                ids[name] = df[name].str.extract(_ONE_HOT, expand=False)
                wrong = ids[name].isna().to_numpy() & alive  # a row is counted at its first bad field
                bad.flag(wrong, linenos, name, "a one-hot feature 'id:1'", df[name].to_numpy())
                alive &= ~wrong
            cat, _ = _take(pd.DataFrame(ids), linenos, alive)
            df, linenos = _take(df, linenos, alive)
            return RawChunk(cat, np.zeros((len(df), 0)), _labels(df["label"], _LIBFM_LABELS), [])

        return parse
    return make


def iter_libfm(path: PathLike, n_features: Optional[int] = None, fields: Optional[Sequence[str]] = None,
               chunksize: int = DEFAULT_CHUNKSIZE, skip_bad_rows: bool = False) -> Iterator[RawChunk]:
    """Stream a libfm file; ``fields`` names the features in order (default f1..fk)."""
    if fields is not None and n_features is None:
        n_features = len(fields)
    return _stream(path, _libfm_parser(str(path), n_features, fields), header=False,
                   chunksize=chunksize, skip_bad_rows=skip_bad_rows)


def read_libfm(path: PathLike, n_features: Optional[int] = None, fields: Optional[Sequence[str]] = None,
               skip_bad_rows: bool = False, chunksize: int = DEFAULT_CHUNKSIZE) -> RawChunk:
    return concat_chunks(list(iter_libfm(path, n_features, fields, chunksize, skip_bad_rows)))


def iter_frappe(path: PathLike, chunksize: int = DEFAULT_CHUNKSIZE,
                skip_bad_rows: bool = False) -> Iterator[RawChunk]:
    return iter_libfm(path, fields=FRAPPE_FIELDS, chunksize=chunksize, skip_bad_rows=skip_bad_rows)
