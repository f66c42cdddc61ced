"""MovieLens-as-CTR readers.

* MovieLens as CTR (RecBole atomic ``ml-100k.{inter,user,item}``, GroupLens ``u.data``/``u.user``/
  ``u.item``, or the DeepCTR ``movielens_sample.txt``): label = ``rating >= 4``; fields ``user_id,
  item_id, age, gender, occupation, zip_code, release_year, genre``; no numeric features, timestamps
  unused. ``genre`` is the *first* listed genre: the CTR models take one id per field, so the
  multi-hot genre set is reduced to its first genre (in the GroupLens genre order, which the atomic
  files keep). A release year that is not four digits (the atomic ml-100k.item has ``unkonwn`` and
  ``V``) is missing; so are the user/item fields of ids absent from the side tables.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from ...data.errors import BadRowCounter
from .core import (DEFAULT_CHUNKSIZE, ChunkParser, MakeParser, PathLike, RawChunk, _check_regex, _header,
                   _lookup, _require, _stream, concat_chunks, split_fields)

MOVIELENS_FIELDS = ("user_id", "item_id", "age", "gender", "occupation", "zip_code", "release_year",
                    "genre")

_RATING_OK = r"\d+(?:\.\d*)?"


def _first_genre(s: pd.Series, sep: str) -> pd.Series:
    return s.str.strip().str.split(sep, n=1, regex=False).str[0].fillna("")


def _year_or_missing(s: pd.Series) -> pd.Series:
    s = s.str.strip()
    return s.where(s.str.fullmatch(r"\d{4}"), "")


def _ctr_movielens(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({f: df[f].fillna("").astype(str).str.strip() for f in MOVIELENS_FIELDS})


def _atomic_parser(file: str, required: Sequence[str], table: Callable[..., RawChunk]) -> MakeParser:
    def make(first: str, lineno: int) -> ChunkParser:
        columns = [c.split(":", 1)[0] for c in _header(first, "\t")]
        _require(file, lineno, columns, required, first)

        def parse(lines: pd.Series, linenos: np.ndarray, bad: BadRowCounter) -> RawChunk:
            df, linenos = split_fields(lines, linenos, "\t", columns, bad)
            for c in required:
                df, linenos = _check_regex(df, linenos, c, r".*\S.*", bad, "a value")
            return table(df, linenos, bad)
        return parse
    return make


def _plain_table(df: pd.DataFrame, linenos: np.ndarray, bad: BadRowCounter) -> RawChunk:
    return RawChunk(df, np.zeros((len(df), 0)), np.zeros(len(df), np.float32), [])


def read_atomic_table(path: PathLike, required: Sequence[str], skip_bad_rows: bool = False) -> pd.DataFrame:
    """A RecBole atomic side table (``name:type`` header) as str columns named without types."""
    chunks = list(_stream(path, _atomic_parser(str(path), required, _plain_table), header=True,
                          chunksize=DEFAULT_CHUNKSIZE, skip_bad_rows=skip_bad_rows))
    return concat_chunks(chunks).cat


def _rated_rows(df: pd.DataFrame, linenos: np.ndarray, bad: BadRowCounter, users: pd.DataFrame,
                items: pd.DataFrame) -> RawChunk:
    """Rating rows (user_id, item_id, rating) → CTR rows: user and item fields joined, label rating ≥ 4."""
    df, linenos = _check_regex(df, linenos, "rating", _RATING_OK, bad, "a rating (a number ≥ 0)")
    out = df[["user_id", "item_id"]].copy()
    for c in ("age", "gender", "occupation", "zip_code"):
        out[c] = _lookup(out["user_id"], users, "user_id", c)
    for c in ("release_year", "genre"):
        out[c] = _lookup(out["item_id"], items, "item_id", c)
    label = (df["rating"].astype(np.float64) >= 4).to_numpy(np.float32)
    return RawChunk(_ctr_movielens(out), np.zeros((len(df), 0)), label, [])


def iter_movielens_atomic(folder: PathLike, stem: str = "ml-100k", chunksize: int = DEFAULT_CHUNKSIZE,
                          skip_bad_rows: bool = False) -> Iterator[RawChunk]:
    """Stream ``<stem>.inter`` joined with ``<stem>.user`` and ``<stem>.item`` as CTR rows."""
    folder = Path(folder)
    users = read_atomic_table(folder / f"{stem}.user", ("user_id",), skip_bad_rows)
    items = read_atomic_table(folder / f"{stem}.item", ("item_id",), skip_bad_rows)
    for c in ("age", "gender", "occupation", "zip_code"):
        if c not in users:
            users[c] = ""
    items["genre"] = _first_genre(items["class"], " ") if "class" in items else ""
    items["release_year"] = _year_or_missing(items["release_year"]) if "release_year" in items else ""

    def table(df: pd.DataFrame, linenos: np.ndarray, bad: BadRowCounter) -> RawChunk:
        return _rated_rows(df, linenos, bad, users, items)

    make = _atomic_parser(str(folder / f"{stem}.inter"), ("user_id", "item_id", "rating"), table)
    return _stream(folder / f"{stem}.inter", make, header=True, chunksize=chunksize,
                   skip_bad_rows=skip_bad_rows)


def _grouplens_users(path: Path, skip_bad_rows: bool) -> pd.DataFrame:
    """ml-100k ``u.user``: ``user id | age | gender | occupation | zip code``."""
    names = ("user_id", "age", "gender", "occupation", "zip_code")

    def make(first: str, lineno: int) -> ChunkParser:
        def parse(lines: pd.Series, linenos: np.ndarray, bad: BadRowCounter) -> RawChunk:
            df, _ = split_fields(lines, linenos, "|", names, bad)
            return RawChunk(df, np.zeros((len(df), 0)), np.zeros(len(df), np.float32), [])
        return parse
    return concat_chunks(list(_stream(path, make, header=False, chunksize=DEFAULT_CHUNKSIZE,
                                      skip_bad_rows=skip_bad_rows))).cat


def iter_movielens_grouplens(folder: PathLike, chunksize: int = DEFAULT_CHUNKSIZE,
                             skip_bad_rows: bool = False) -> Iterator[RawChunk]:
    """Stream GroupLens ml-100k ``u.data`` joined with ``u.user`` and ``u.item`` (ISO-8859-1) as CTR
    rows, the same fields as :func:`iter_movielens_atomic` (genre = the first genre flag set)."""
    from ...data.readers import read_ml100k_items  # the sequential track's tested u.item parser

    folder = Path(folder)
    users = _grouplens_users(folder / "u.user", skip_bad_rows)
    movies = read_ml100k_items(folder / "u.item", skip_bad_rows)
    items = pd.DataFrame({"item_id": movies["item"].astype(str),
                          "genre": _first_genre(movies["genres"].astype(str), "|"),
                          "release_year": movies["year"].astype("string").fillna("").astype(str)})
    names = ("user_id", "item_id", "rating", "timestamp")

    def make(first: str, lineno: int) -> ChunkParser:
        def parse(lines: pd.Series, linenos: np.ndarray, bad: BadRowCounter) -> RawChunk:
            df, linenos = split_fields(lines, linenos, "\t", names, bad)
            return _rated_rows(df, linenos, bad, users, items)
        return parse
    return _stream(folder / "u.data", make, header=False, chunksize=chunksize, skip_bad_rows=skip_bad_rows)


_ML_SAMPLE = ("user_id", "movie_id", "rating", "title", "genres", "gender", "age", "occupation", "zip")


def _movielens_csv_parser(file: str) -> MakeParser:
    def make(first: str, lineno: int) -> ChunkParser:
        columns = _header(first, ",")
        _require(file, lineno, columns, _ML_SAMPLE, first)

        def parse(lines: pd.Series, linenos: np.ndarray, bad: BadRowCounter) -> RawChunk:
            df, linenos = split_fields(lines, linenos, ",", columns, bad, quoted=True)
            df, linenos = _check_regex(df, linenos, "rating", _RATING_OK, bad, "a rating (a number ≥ 0)")
            out = pd.DataFrame({
                "user_id": df["user_id"], "item_id": df["movie_id"], "age": df["age"],
                "gender": df["gender"], "occupation": df["occupation"], "zip_code": df["zip"],
                "release_year": df["title"].str.extract(r"\((\d{4})\)\s*$", expand=False).fillna(""),
                "genre": _first_genre(df["genres"], "|"),
            })
            label = (df["rating"].astype(np.float64) >= 4).to_numpy(np.float32)
            return RawChunk(_ctr_movielens(out), np.zeros((len(df), 0)), label, [])
        return parse
    return make


def iter_movielens_csv(path: PathLike, chunksize: int = DEFAULT_CHUNKSIZE,
                       skip_bad_rows: bool = False) -> Iterator[RawChunk]:
    """Stream DeepCTR's ``movielens_sample.txt`` (user_id,movie_id,rating,timestamp,title,genres,...)."""
    return _stream(path, _movielens_csv_parser(str(path)), header=True, chunksize=chunksize,
                   skip_bad_rows=skip_bad_rows)
