"""KDD Cup 2012 track 2 reader.

* KDD Cup 2012 track 2 ``training.txt``: tab-separated, no header, 12 columns ``Click, Impression,
  DisplayURL, AdID, AdvertiserID, Depth, Position, QueryID, KeywordID, TitleID, DescriptionID,
  UserID``; label = ``Click > 0``. As in NASRec's preprocessing: numeric ``Impression, Depth,
  Position``; categorical the 8 id columns plus ``Gender`` and ``Age`` joined from
  ``userid_profile.txt`` (missing for users absent there). The token side tables are not used.
"""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import pandas as pd

from ...data.errors import BadRowCounter
from .core import (DEFAULT_CHUNKSIZE, ChunkParser, MakeParser, PathLike, RawChunk, _check_regex, _lookup,
                   _numeric_columns, _stream, concat_chunks, split_fields)

KDD12_COLUMNS = ("Click", "Impression", "DisplayURL", "AdID", "AdvertiserID", "Depth", "Position",
                 "QueryID", "KeywordID", "TitleID", "DescriptionID", "UserID")
KDD12_NUMERIC = ("Impression", "Depth", "Position")
KDD12_CATEGORICAL = ("DisplayURL", "AdID", "AdvertiserID", "QueryID", "KeywordID", "TitleID",
                     "DescriptionID", "UserID")


def _kdd12_parser(file: str, profiles: Optional[pd.DataFrame]) -> MakeParser:
    def make(first: str, lineno: int) -> ChunkParser:
        def parse(lines: pd.Series, linenos: np.ndarray, bad: BadRowCounter) -> RawChunk:
            df, linenos = split_fields(lines, linenos, "\t", KDD12_COLUMNS, bad)
            df, linenos = _check_regex(df, linenos, "Click", r"\d+", bad, "a click count")
            df, linenos, num = _numeric_columns(df, linenos, KDD12_NUMERIC, bad)
            cat = df[list(KDD12_CATEGORICAL)].reset_index(drop=True)
            for c in ("Gender", "Age"):
                cat[c] = _lookup(cat["UserID"], profiles, "UserID", c) if profiles is not None else ""
            label = (df["Click"].astype(np.int64) > 0).to_numpy(np.float32)
            return RawChunk(cat, num, label, list(KDD12_NUMERIC))
        return parse
    return make


def read_kdd12_profiles(path: PathLike, skip_bad_rows: bool = False) -> pd.DataFrame:
    """``userid_profile.txt``: UserID, Gender, Age (tab-separated, no header), as str columns."""
    def make(first: str, lineno: int) -> ChunkParser:
        def parse(lines: pd.Series, linenos: np.ndarray, bad: BadRowCounter) -> RawChunk:
            df, _ = split_fields(lines, linenos, "\t", ("UserID", "Gender", "Age"), bad)
            return RawChunk(df, np.zeros((len(df), 0)), np.zeros(len(df), np.float32), [])
        return parse
    chunks = list(_stream(path, make, header=False, chunksize=DEFAULT_CHUNKSIZE, skip_bad_rows=skip_bad_rows))
    return concat_chunks(chunks).cat


def iter_kdd12(path: PathLike, profiles: Optional[pd.DataFrame] = None, chunksize: int = DEFAULT_CHUNKSIZE,
               skip_bad_rows: bool = False) -> Iterator[RawChunk]:
    """Stream KDD Cup 2012 track 2 ``training.txt`` (joined with ``profiles`` when given)."""
    return _stream(path, _kdd12_parser(str(path), profiles), header=False, chunksize=chunksize,
                   skip_bad_rows=skip_bad_rows)
