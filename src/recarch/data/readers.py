"""Readers for interaction and item files: MovieLens .dat, RecBole atomic, SASRec / S3-Rec text, CSV/TSV/Parquet.

Each returns a pandas DataFrame with ``user``/``item`` (str), ``timestamp``/``rating`` (float64) when the
source has them, and ``order`` (int64 row position, for stable ties); bad rows raise or are skipped.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from ..registry import suggest
from .errors import GZIP_ERRORS, BadRowCounter, DataFormatError, broken_gzip

PathLike = Union[str, Path]

_INT = r"\d+"
_FLOAT = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_EXPECT = {"id": "a non-negative integer id", "float": "a number"}
# column name -> kind for the standard interaction columns of headerless files
_STANDARD = {"user": "id", "item": "id", "timestamp": "float", "rating": "float"}
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)


# ---- shared text machinery --------------------------------------------------------------------
def read_bytes(path: PathLike) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic number; a text file holds no NUL
    byte (a UTF-16 or binary file would: its ids would be cut at the NUL)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except GZIP_ERRORS as err:
            raise broken_gzip(str(path), err) from None
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise DataFormatError(str(path), raw.count(b"\n", 0, nul) + 1, "line", "UTF-8 text",
                              "a NUL byte (a UTF-16 or binary file? save it as UTF-8)")
    return raw


def _require_rows(raw: bytes, file: str) -> None:
    if not raw or raw.isspace():  # isspace stops at the first byte of data; strip() would copy
        raise DataFormatError(file, 1, "file", "at least one row of data", "an empty file")


def _single_char_sep(raw: bytes, sep: str) -> Tuple[bytes, str]:
    """The C parser needs a one-character separator; swap '::' for a control byte the file lacks."""
    if len(sep) == 1:
        return raw, sep
    for sub in ("\x1f", "\x1e", "\x1d", "\x1c"):
        if sub.encode() not in raw:
            return raw.replace(sep.encode(), sub.encode()), sub
    raise ValueError(f"cannot parse separator {sep!r}: the file uses every substitute byte")


def _sep_hint(line: str, sep: str) -> str:
    for other in ("\t", ",", ";", "::", " ", "|"):
        if other != sep and other in line and other not in sep:
            return f" (the line contains {other!r}: wrong separator?)"
    return ""


def _decode(raw: bytes, file: str, encoding: str, bad: BadRowCounter) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        if not bad.skip:
            line = raw.count(b"\n", 0, e.start) + 1
            raise DataFormatError(file, line, "encoding", f"{encoding} text",
                                  repr(raw[e.start:e.start + 8])) from None
        return raw.decode(encoding, errors="replace")


def _text_lines(raw: bytes, file: str, encoding: str, skip: int, bad: BadRowCounter):
    """(Series of non-blank lines after ``skip`` header lines, their 1-based line numbers)."""
    text = _decode(raw, file, encoding, bad)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    s = pd.Series(lines[skip:], dtype=str)
    lineno = np.arange(skip + 1, skip + 1 + len(s), dtype=np.int64)
    blank = (s.str.strip() == "").to_numpy()
    s, lineno = s[~blank].reset_index(drop=True), lineno[~blank]
    if bad.skip:  # undecodable bytes became U+FFFD: drop those lines
        keep = bad.flag(s.str.contains("\ufffd", regex=False).to_numpy(), lineno, "encoding",
                        f"{encoding} text", s.to_numpy())
        s, lineno = s[keep].reset_index(drop=True), lineno[keep]
    return s, lineno


def _convert(df: pd.DataFrame, lines: np.ndarray, kinds: Dict[str, str], bad: BadRowCounter):
    """Check each typed column vectorised (regex), drop or raise on bad rows, convert types."""
    for name, kind in kinds.items():
        if kind not in _EXPECT:
            continue
        col = df[name]
        ok = col.str.fullmatch(_INT if kind == "id" else _FLOAT).fillna(False).to_numpy(bool)
        keep = bad.flag(~ok, lines, name, _EXPECT[kind], col.to_numpy())
        if not keep.all():
            df, lines = df[keep].reset_index(drop=True), lines[keep]
    for name, kind in kinds.items():
        if kind == "id":  # canonical form, as the fast path's int -> str gives ("007" -> "7")
            s = df[name].str.lstrip("0")
            df[name] = s.mask(s == "", "0")
        elif kind == "float":
            df[name] = df[name].astype(np.float64)
    return df, lines


def _fast_parse(raw: bytes, sep: str, names: List[str], kinds: Dict[str, str], skip: int,
                encoding: str) -> Optional[pd.DataFrame]:
    """Typed C-parser read; None when anything looks off (the careful path then finds the line)."""
    dtype = {n: {"id": "int64", "float": "float64"}.get(k, str) for n, k in kinds.items()}
    try:
        df = pd.read_csv(io.BytesIO(raw), sep=sep, header=None, names=names, dtype=dtype,
                         skiprows=skip, engine="c", quoting=csv.QUOTE_NONE, encoding=encoding,
                         keep_default_na=False, skip_blank_lines=False)
    except (ValueError, OverflowError):  # ParserError, bad number, decode error
        return None
    for n, k in kinds.items():
        col = df[n].to_numpy()
        if k == "id" and len(col) and col.min() < 0:
            return None
        if k == "float" and not np.isfinite(col).all():
            return None
        if k == "str" and (df[n] == "").any():  # may be a missing field: let the careful path count
            return None
    for n, k in kinds.items():
        if k == "id":
            df[n] = df[n].astype(str)
    return df


def parse_delimited(raw: bytes, file: str, sep: str, kinds: Dict[str, str], *, skip: int = 0,
                    encoding: str = "utf-8", bad: Optional[BadRowCounter] = None) -> pd.DataFrame:
    """Parse headerless delimited text whose columns are ``kinds`` (name -> "id" | "float" | "str").

    Fast path: one typed pandas C-parser pass. If that fails or finds a suspicious value, the
    careful path counts fields per line and checks each column with a regex, so the error (or the
    skipped row) names the exact line. Blank lines are ignored. Adds ``order``."""
    bad = bad or BadRowCounter(file)
    _require_rows(raw, file)
    raw1, sep1 = _single_char_sep(raw, sep)
    names = list(kinds)
    df = _fast_parse(raw1, sep1, names, kinds, skip, encoding)
    if df is None:
        s, lineno = _text_lines(raw1, file, encoding, skip, bad)
        total = len(s)
        nf = s.str.count(re.escape(sep1)).to_numpy() + 1

        def describe(r: int) -> str:
            line = s.iloc[r].replace(sep1, sep)
            return f"{nf[r]} field(s) in {line[:60]!r}{_sep_hint(line, sep)}"

        keep = bad.flag(nf != len(names), lineno, "line",
                        f"{len(names)} fields separated by {sep!r}", describe)
        s, lineno = s[keep], lineno[keep]
        df = pd.read_csv(io.StringIO("\n".join(s.tolist())), sep=sep1, header=None, names=names,
                         dtype=str, engine="c", quoting=csv.QUOTE_NONE, keep_default_na=False,
                         skip_blank_lines=False) if len(s) else pd.DataFrame(
                             {n: pd.Series([], dtype=str) for n in names})
        df, lineno = _convert(df, lineno, kinds, bad)
        bad.finish(total)
    if len(df) == 0:
        raise DataFormatError(file, skip + 1, "file", "at least one row of data", "no data rows")
    df["order"] = np.arange(len(df), dtype=np.int64)
    return df


# ---- headerless interaction files ---------------------------------------------------------------
def read_delimited(path: PathLike, columns: Sequence[str], sep: str, *, numeric_ids: bool = True,
                   encoding: str = "utf-8", skip_bad_rows: bool = False) -> pd.DataFrame:
    """Headerless interactions whose fields are ``columns`` (user, item, timestamp, rating, other).

    Covers SASRec ``user item`` (sep ' '), Gowalla check-ins (tab), ml-100k ``u.data`` (tab) and
    GroupLens ``ratings.dat`` ('::'). Other column names are kept as strings."""
    kinds = {c: _STANDARD.get(c, "str") for c in columns}
    if not numeric_ids:
        kinds.update({c: "str" for c in ("user", "item") if c in kinds})
    file = str(path)
    return parse_delimited(read_bytes(path), file, sep, kinds, encoding=encoding,
                           bad=BadRowCounter(file, skip_bad_rows))


def read_user_item_pairs(path: PathLike, sep: str = " ", skip_bad_rows: bool = False) -> pd.DataFrame:
    """SASRec-style ``user item`` lines, one interaction per line, already in time order."""
    return read_delimited(path, ("user", "item"), sep, skip_bad_rows=skip_bad_rows)


def read_movielens_ratings(path: PathLike, skip_bad_rows: bool = False) -> pd.DataFrame:
    """GroupLens ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``."""
    return read_delimited(path, ("user", "item", "rating", "timestamp"), "::",
                          skip_bad_rows=skip_bad_rows)


def read_ml100k_ratings(path: PathLike, skip_bad_rows: bool = False) -> pd.DataFrame:
    """GroupLens ml-100k ``u.data``: tab-separated ``user item rating timestamp``."""
    return read_delimited(path, ("user", "item", "rating", "timestamp"), "\t",
                          skip_bad_rows=skip_bad_rows)


def read_user_sequences(path: PathLike, sep: str = " ", skip_bad_rows: bool = False) -> pd.DataFrame:
    """S3-Rec-style ``user item1 item2 ...`` lines, one line per user, items in time order."""
    file = str(path)
    bad = BadRowCounter(file, skip_bad_rows)
    raw = read_bytes(path)
    _require_rows(raw, file)
    s, lineno = _text_lines(raw, file, "utf-8", 0, bad)
    total = len(s)
    n = s.str.count(re.escape(sep)).to_numpy() + 1
    keep = bad.flag(n < 2, lineno, "line",
                    f"a user id followed by item ids separated by {sep!r}",
                    lambda r: f"{s.iloc[r][:60]!r}{_sep_hint(s.iloc[r], sep)}")
    s, lineno, n = s[keep], lineno[keep], n[keep]
    # one split of the joined text; token counts per line come from the same separator count
    tokens = pd.Series(sep.join(s.tolist()).split(sep) if len(s) else [], dtype=str)
    starts = np.cumsum(n) - n
    ok = tokens.str.fullmatch(_INT).to_numpy(bool)
    tokens = tokens.to_numpy()
    row = np.repeat(np.arange(len(n)), n)
    is_user = np.zeros(len(tokens), dtype=bool)
    is_user[starts] = True
    line_ok = np.ones(len(n), dtype=bool)
    for field, mask in (("user", is_user), ("item", ~is_user)):
        # a line is reported once, for its first bad token
        bad_tok = np.flatnonzero(~ok & mask & line_ok[row])
        first_rows, first = np.unique(row[bad_tok], return_index=True)
        line_bad = np.zeros(len(n), dtype=bool)
        line_bad[first_rows] = True
        found = np.full(len(n), "", dtype=object)
        found[first_rows] = tokens[bad_tok[first]]
        line_ok &= bad.flag(line_bad, lineno, field, _EXPECT["id"], found)
    bad.finish(total)
    ok = line_ok[row]
    tokens, row, is_user = tokens[ok], row[ok], is_user[ok]
    users = tokens[is_user]
    user_of_row = np.empty(len(n), dtype=object)
    user_of_row[row[is_user]] = users
    items = pd.Series(tokens[~is_user], dtype=str).str.lstrip("0")
    user = pd.Series(user_of_row[row[~is_user]], dtype=str).str.lstrip("0")
    df = pd.DataFrame({"user": user.mask(user == "", "0"), "item": items.mask(items == "", "0")})
    if len(df) == 0:
        raise DataFormatError(file, None, "file", "at least one interaction", "no data rows")
    df["order"] = np.arange(len(df), dtype=np.int64)
    return df


# ---- MovieLens metadata ------------------------------------------------------------------------
def _year(text: pd.Series, pattern: str) -> pd.Series:
    return pd.to_numeric(text.str.extract(pattern, expand=False), errors="coerce").astype("Int64")


def read_movielens_movies(path: PathLike, skip_bad_rows: bool = False) -> pd.DataFrame:
    """GroupLens ``movies.dat`` (ISO-8859-1): item, title, genres ('|'-joined), year (from the title)."""
    file = str(path)
    df = parse_delimited(read_bytes(path), file, "::", {"item": "id", "title": "str", "genres": "str"},
                         encoding="latin-1", bad=BadRowCounter(file, skip_bad_rows))
    df["year"] = _year(df["title"], r"\((\d{4})\)\s*$")
    return df.drop(columns="order")


def read_movielens_users(path: PathLike, skip_bad_rows: bool = False) -> pd.DataFrame:
    """GroupLens ``users.dat``: user, gender, age (code), occupation (code), zip."""
    file = str(path)
    kinds = {"user": "id", "gender": "str", "age": "str", "occupation": "str", "zip": "str"}
    df = parse_delimited(read_bytes(path), file, "::", kinds, encoding="latin-1",
                         bad=BadRowCounter(file, skip_bad_rows))
    return df.drop(columns="order")


def read_ml100k_items(path: PathLike, skip_bad_rows: bool = False) -> pd.DataFrame:
    """ml-100k ``u.item`` ('|', ISO-8859-1, 19 genre flags): item, title, genres, year (release date)."""
    file = str(path)
    kinds = {"item": "id", "title": "str", "release": "str", "video": "str", "url": "str"}
    kinds.update({f"g{i}": "id" for i in range(len(ML100K_GENRES))})
    df = parse_delimited(read_bytes(path), file, "|", kinds, encoding="latin-1",
                         bad=BadRowCounter(file, skip_bad_rows))
    flags = df[[f"g{i}" for i in range(len(ML100K_GENRES))]].to_numpy(np.int64) > 0
    rows, cols = np.nonzero(flags)
    names = pd.Series(np.asarray(ML100K_GENRES, dtype=object)[cols]).groupby(rows).agg("|".join)
    genres = pd.Series("", index=range(len(df)), dtype=str)
    genres[names.index] = names.to_numpy()
    out = pd.DataFrame({"item": df["item"], "title": df["title"], "genres": genres})
    out["year"] = _year(df["release"], r"(\d{4})\s*$")
    return out


def movielens_item_features(movies: pd.DataFrame) -> pd.DataFrame:
    """Long (item, feature) table: ``genre=<g>`` for each '|'-separated genre, ``year=<yyyy>``."""
    g = movies[["item", "genres"]].assign(genres=movies["genres"].str.split("|")).explode("genres")
    g = g[g["genres"].notna() & (g["genres"] != "")]
    genre = pd.DataFrame({"item": g["item"], "feature": "genre=" + g["genres"].astype(str)})
    y = movies[movies["year"].notna()]
    year = pd.DataFrame({"item": y["item"], "feature": "year=" + y["year"].astype(str)})
    return pd.concat([genre, year], ignore_index=True)


# ---- RecBole atomic files ----------------------------------------------------------------------
_ATOMIC_TYPES = {"token": "str", "token_seq": "str", "float": "float", "float_seq": "str"}


def read_atomic(path: PathLike, skip_bad_rows: bool = False) -> pd.DataFrame:
    """A RecBole atomic file (.inter/.item/.user): tab-separated, header ``name:type``.

    token / token_seq / float_seq columns stay strings (sequences space-separated); float columns
    become float64. Columns are named without their type suffix."""
    file = str(path)
    raw = read_bytes(path)
    _require_rows(raw, file)
    header = raw.split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip("\r")
    cols = header.split("\t")
    if len(cols) == 1 and _sep_hint(header, "\t"):
        raise DataFormatError(file, 1, "header", "tab-separated 'name:type' columns",
                              repr(header[:60]) + _sep_hint(header, "\t"))
    kinds: Dict[str, str] = {}
    for col in cols:
        name, _, typ = col.partition(":")
        if typ not in _ATOMIC_TYPES or not name:
            raise DataFormatError(file, 1, col, "'name:type' with type token, token_seq, float "
                                  "or float_seq", repr(col))
        kinds[name] = _ATOMIC_TYPES[typ]
    df = parse_delimited(raw, file, "\t", kinds, skip=1, bad=BadRowCounter(file, skip_bad_rows))
    return df


def read_atomic_inter(path: PathLike, skip_bad_rows: bool = False, user_field: str = "user_id",
                      item_field: str = "item_id", time_field: str = "timestamp",
                      rating_field: str = "rating") -> pd.DataFrame:
    """A RecBole ``.inter`` file with its user/item/timestamp/rating columns renamed to ours."""
    df = read_atomic(path, skip_bad_rows)
    for need in (user_field, item_field):
        if need not in df.columns:
            raise DataFormatError(str(path), 1, need, f"a column named {need!r}"
                                  f"{suggest(need, df.columns)}", ", ".join(df.columns[:-1]))
    rename = {user_field: "user", item_field: "item", time_field: "timestamp",
              rating_field: "rating"}
    return df.rename(columns={k: v for k, v in rename.items() if k in df.columns})


def atomic_item_features(items: pd.DataFrame, fields: Dict[str, str], item_field: str = "item_id",
                         ) -> pd.DataFrame:
    """Long (item, feature) table from atomic item columns; ``fields`` maps column -> feature prefix.

    token_seq values are split on spaces, e.g. class 'Action Comedy' -> genre=Action, genre=Comedy."""
    parts = []
    for col, prefix in fields.items():
        v = items[[item_field, col]].assign(**{col: items[col].str.split(" ")}).explode(col)
        v = v[v[col].notna() & (v[col] != "")]
        parts.append(pd.DataFrame({"item": v[item_field].astype(str),
                                   "feature": prefix + "=" + v[col].astype(str)}))
    return pd.concat(parts, ignore_index=True)


# ---- S3-Rec attributes -------------------------------------------------------------------------
def read_item_attributes_json(path: PathLike, prefix: str = "attr") -> pd.DataFrame:
    """S3-Rec ``*_item2attributes.json`` ({"item": [attribute ids]}) as a long (item, feature) table."""
    file = str(path)
    try:
        data = json.loads(read_bytes(path).decode("utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(file, e.lineno, "json", "a JSON object {item id: [attribute ids]}",
                              e.msg) from None
    if not isinstance(data, dict):
        raise DataFormatError(file, 1, "json", "a JSON object {item id: [attribute ids]}",
                              type(data).__name__)
    keys = list(data)
    lens = np.fromiter((len(v) if isinstance(v, list) else -1 for v in data.values()), np.int64,
                       len(keys))
    if (lens < 0).any():
        k = keys[int(np.argmax(lens < 0))]
        raise DataFormatError(file, None, f"item {k}", "a list of attribute ids", repr(data[k]))
    values = [str(a) for v in data.values() for a in v]
    return pd.DataFrame({"item": np.repeat(np.asarray(keys, dtype=object), lens),
                         "feature": [f"{prefix}={a}" for a in values]})
