"""Avazu reader.

* Avazu: CSV with a header; label = ``click``; every other column except ``id`` is categorical, in
  file order, with ``hour`` (``YYMMDDHH``) replaced by the hour of day (``00``..``23``) and two fields
  appended, ``weekday`` (0 = Sunday .. 6) and ``weekend`` (1/0), as FuxiCTR's Avazu preprocessing does
  (NASRec instead keeps ``id`` and the raw ``hour`` as categorical fields).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd

from ...data.errors import BadRowCounter
from .core import (DEFAULT_CHUNKSIZE, ChunkParser, MakeParser, PathLike, RawChunk, _01, _check_choice,
                   _check_regex, _header, _labels, _require, _stream, _take, concat_chunks, split_fields)


def _avazu_parser(file: str) -> MakeParser:
    def make(first: str, lineno: int) -> ChunkParser:
        columns = _header(first, ",")
        _require(file, lineno, columns, ("click", "hour"), first)
        cats = [c for c in columns if c not in ("id", "click")]

        def parse(lines: pd.Series, linenos: np.ndarray, bad: BadRowCounter) -> RawChunk:
            df, linenos = split_fields(lines, linenos, ",", columns, bad)
            df, linenos = _check_choice(df, linenos, "click", _01, bad, "a click 0 or 1")
            df, linenos = _check_regex(df, linenos, "hour", r"\d{8}", bad, "an hour YYMMDDHH")
            when = pd.to_datetime(df["hour"], format="%y%m%d%H", errors="coerce")
            keep = bad.flag(when.isna().to_numpy(), linenos, "hour", "an hour YYMMDDHH",
                            df["hour"].to_numpy())
            df, linenos = _take(df, linenos, keep)
            when = when[keep].reset_index(drop=True)
            weekday = ((when.dt.day_of_week + 1) % 7).astype(int)  # 0 = Sunday, as strftime('%w')
            cat = df[cats].copy()
            cat["hour"] = df["hour"].str[6:8]
            cat["weekday"] = weekday.astype(str)
            cat["weekend"] = weekday.isin([0, 6]).astype(int).astype(str)
            return RawChunk(cat, np.zeros((len(df), 0)), _labels(df["click"], _01), [])

        return parse
    return make


def iter_avazu(path: PathLike, chunksize: int = DEFAULT_CHUNKSIZE,
               skip_bad_rows: bool = False) -> Iterator[RawChunk]:
    """Stream an Avazu CSV (Kaggle train, or a sample with the same header)."""
    return _stream(path, _avazu_parser(str(path)), header=True, chunksize=chunksize,
                   skip_bad_rows=skip_bad_rows)


def read_avazu(path: PathLike, skip_bad_rows: bool = False, chunksize: int = DEFAULT_CHUNKSIZE) -> RawChunk:
    return concat_chunks(list(iter_avazu(path, chunksize, skip_bad_rows)))
