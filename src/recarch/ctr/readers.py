"""Readers for tabular click (CTR) files: libfm (Frappe), Criteo, Avazu, KDD Cup 2012, MovieLens as CTR.

Every reader streams its file in chunks of lines (pandas ``read_csv(chunksize=...)``) and yields
:class:`RawChunk` s: the raw categorical strings of each field (``""`` = missing), raw numeric values
(NaN = missing) and 0/1 labels, *before* any vocabulary, hashing or log transform (those are in
:mod:`recarch.ctr.encode`). ``read_*`` functions concatenate the chunks of a small file.

Malformed rows. The checks are vectorised over a chunk with :class:`~recarch.data.errors.BadRowCounter`:
each bad row gives a :class:`~recarch.data.errors.DataFormatError` naming the file, the 1-based line,
the field and what was expected. Without ``skip_bad_rows`` the first bad line raises as soon as its
chunk is read (a broken 10 GB file fails fast); with it, bad rows are counted, dropped and reported in
one warning per file. Blank lines are ignored. Lines are physical lines: a quoted CSV field holding a
line break is not supported.

Format choices:

* libfm (Frappe): ``label id:1 id:1 ...``; label ``1``/``-1`` (or ``1``/``0``) becomes 1/0; every line
  has the same number of features (fixed by the caller, else taken from the first line); the k-th
  feature is field k and its feature id is the field's raw value. Only one-hot features (value 1)
  are accepted: a libfm file with real-valued features is not a categorical CTR table.
* Criteo: ``label, I1..I13, C1..C26``. The Kaggle ``train.txt`` (tab-separated, no header) and the
  DeepCTR sample (comma-separated, header ``label,I1,...``) are both accepted, told apart by the first
  line. Empty ``I`` fields are missing (NaN); ``I`` values must be numbers (negative ones are kept
  here; :func:`recarch.ctr.encode.log1p_numeric` clamps them). Empty ``C`` fields are missing.
* Avazu: CSV with a header; label = ``click``; every other column except ``id`` is categorical, in
  file order, with ``hour`` (``YYMMDDHH``) replaced by the hour of day (``00``..``23``) and two fields
  appended, ``weekday`` (0 = Sunday .. 6) and ``weekend`` (1/0), as FuxiCTR's Avazu preprocessing does
  (NASRec instead keeps ``id`` and the raw ``hour`` as categorical fields).
* KDD Cup 2012 track 2 ``training.txt``: tab-separated, no header, 12 columns ``Click, Impression,
  DisplayURL, AdID, AdvertiserID, Depth, Position, QueryID, KeywordID, TitleID, DescriptionID,
  UserID``; label = ``Click > 0``. As in NASRec's preprocessing: numeric ``Impression, Depth,
  Position``; categorical the 8 id columns plus ``Gender`` and ``Age`` joined from
  ``userid_profile.txt`` (missing for users absent there). The token side tables are not used.
* MovieLens as CTR (RecBole atomic ``ml-100k.{inter,user,item}``, GroupLens ``u.data``/``u.user``/
  ``u.item``, or the DeepCTR ``movielens_sample.txt``): label = ``rating >= 4``; fields ``user_id,
  item_id, age, gender, occupation, zip_code, release_year, genre``; no numeric features, timestamps
  unused. ``genre`` is the *first* listed genre: the CTR models take one id per field, so the
  multi-hot genre set is reduced to its first genre (in the GroupLens genre order, which the atomic
  files keep). A release year that is not four digits (the atomic ml-100k.item has ``unkonwn`` and
  ``V``) is missing; so are the user/item fields of ids absent from the side tables.
"""
from __future__ import annotations

import csv
import gzip
import io
import re
from contextlib import contextmanager
from dataclasses import dataclass, field as dc_field, replace
from pathlib import Path
from typing import IO, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from ..data.errors import BadRowCounter, DataFormatError

PathLike = Union[str, Path]
DEFAULT_CHUNKSIZE = 200_000

FRAPPE_FIELDS = ("user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather",
                 "country", "city")
CRITEO_NUMERIC = tuple(f"I{i}" for i in range(1, 14))
CRITEO_CATEGORICAL = tuple(f"C{i}" for i in range(1, 27))
KDD12_COLUMNS = ("Click", "Impression", "DisplayURL", "AdID", "AdvertiserID", "Depth", "Position",
                 "QueryID", "KeywordID", "TitleID", "DescriptionID", "UserID")
KDD12_NUMERIC = ("Impression", "Depth", "Position")
KDD12_CATEGORICAL = ("DisplayURL", "AdID", "AdvertiserID", "QueryID", "KeywordID", "TitleID",
                     "DescriptionID", "UserID")
MOVIELENS_FIELDS = ("user_id", "item_id", "age", "gender", "occupation", "zip_code", "release_year",
                    "genre")

_LINE_SEP = "\x1f"  # a byte text files do not hold: each physical line is read as one column
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


@dataclass
class RawChunk:
    """Rows of a CTR file before encoding."""

    cat: pd.DataFrame  # one str column per categorical field, "" = missing
    num: np.ndarray  # float64 (n, D), NaN = missing
    label: np.ndarray  # float32 (n,), 0 or 1
    numeric: List[str] = dc_field(default_factory=list)  # names of num's columns
    source: str = ""  # the file the rows came from
    offset: int = 0  # bytes of ``source`` read so far (drives progress bars)
    split: Optional[str] = None  # 'train' / 'valid' / 'test' when the file is a given split

    def __len__(self) -> int:
        return len(self.label)

    @property
    def fields(self) -> List[str]:
        return [str(c) for c in self.cat.columns]


ChunkParser = Callable[[pd.Series, np.ndarray, BadRowCounter], RawChunk]
MakeParser = Callable[[str, int], ChunkParser]  # (first line, its number) -> parser of the data rows


def concat_chunks(chunks: Sequence[RawChunk]) -> RawChunk:
    """One chunk holding the rows of ``chunks`` (which must have the same fields), in order."""
    if not chunks:
        raise ValueError("concat_chunks: no chunks")
    first = chunks[0]
    return RawChunk(
        cat=pd.concat([c.cat for c in chunks], ignore_index=True),
        num=np.concatenate([c.num for c in chunks]),
        label=np.concatenate([c.label for c in chunks]),
        numeric=list(first.numeric), source=first.source, offset=chunks[-1].offset, split=first.split,
    )


# ---- line machinery ----------------------------------------------------------------------------
@contextmanager
def _open_binary(path: PathLike) -> Iterator[Tuple[IO[bytes], IO[bytes]]]:
    """(stream to parse, raw file whose ``tell()`` is the bytes read); gzip is detected by magic."""
    raw = open(path, "rb")
    try:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        yield (gzip.GzipFile(fileobj=raw) if gz else raw), raw
    finally:
        raw.close()


def iter_lines(path: PathLike, chunksize: int = DEFAULT_CHUNKSIZE,
               encoding: str = "utf-8") -> Iterator[Tuple[pd.Series, np.ndarray, int]]:
    """(physical lines, their 1-based numbers, bytes of the file read so far) per chunk.

    Undecodable bytes become U+FFFD (the caller flags those lines)."""
    file = str(path)
    start = 1
    with _open_binary(path) as (fh, raw):
        try:
            reader = pd.read_csv(fh, sep=_LINE_SEP, header=None, names=["line"], dtype=str,
                                 quoting=csv.QUOTE_NONE, na_filter=False, skip_blank_lines=False,
                                 index_col=False, chunksize=chunksize, engine="c", encoding=encoding,
                                 encoding_errors="replace")
            for df in reader:
                lines = df["line"].reset_index(drop=True)
                yield lines, np.arange(start, start + len(lines), dtype=np.int64), raw.tell()
                start += len(lines)
        except pd.errors.EmptyDataError:
            return
        except pd.errors.ParserError as err:
            m = re.search(r"line (\d+)", str(err))
            raise DataFormatError(file, int(m.group(1)) if m else None, "line",
                                  "text without the control byte \\x1f", "a line containing it") from None


def _take(df: pd.DataFrame, lines: np.ndarray, keep: np.ndarray) -> Tuple[pd.DataFrame, np.ndarray]:
    if keep.all():
        return df, lines
    return df[keep].reset_index(drop=True), lines[keep]


def _take_series(s: pd.Series, lines: np.ndarray, keep: np.ndarray) -> Tuple[pd.Series, np.ndarray]:
    if keep.all():
        return s, lines
    return s[keep].reset_index(drop=True), lines[keep]


def _sep_name(sep: str) -> str:
    return {"\t": "tab", ",": "comma", " ": "space"}.get(sep, repr(sep))


def split_fields(lines: pd.Series, linenos: np.ndarray, sep: str, names: Sequence[str],
                 bad: BadRowCounter, quoted: bool = False, what: str = "",
                 field: str = "row") -> Tuple[pd.DataFrame, np.ndarray]:
    """Split lines into ``names`` columns (str); rows with another number of fields are flagged.

    ``quoted``: CSV double quotes may protect separators (counted with the csv module, line by line,
    only for the lines that hold a quote)."""
    n = len(names)
    counts = lines.str.count(re.escape(sep)).to_numpy() + 1
    if quoted:
        has_quote = lines.str.contains('"', regex=False).to_numpy()
        odd = (lines.str.count('"').to_numpy() % 2) == 1
        keep = bad.flag(odd, linenos, "row", "balanced double quotes", lines.to_numpy())
        lines, linenos = _take_series(lines, linenos, keep)
        counts, has_quote = counts[keep], has_quote[keep]
        for i in np.flatnonzero(has_quote):
            counts[i] = len(next(csv.reader([lines.iat[i]])))
    keep = bad.flag(counts != n, linenos, field, what or f"{n} {_sep_name(sep)}-separated fields",
                    lambda r: f"{counts[r] - 1} features" if field == "features" else f"{counts[r]} fields")
    lines, linenos = _take_series(lines, linenos, keep)
    if len(lines) == 0:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in names}), linenos
    df = pd.read_csv(io.StringIO("\n".join(lines.tolist())), sep=sep, header=None, names=list(names),
                     dtype=str, na_filter=False, skip_blank_lines=False, index_col=False, engine="c",
                     quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
    if len(df) != len(lines):  # cannot happen for validated lines; guard against silent misalignment
        raise DataFormatError(bad.file, int(linenos[0]), "row", "one row per line", f"{len(df)} rows")
    return df, linenos


def _stream(path: PathLike, make: MakeParser, *, header: Union[bool, Callable[[str], bool]],
            chunksize: int, skip_bad_rows: bool, encoding: str = "utf-8") -> Iterator[RawChunk]:
    """Run a format's parser over a file's chunks; ``make`` sees the first non-blank line first,
    which is a header (not data) when ``header`` is true or, if callable, says so of that line."""
    file = str(path)
    bad = BadRowCounter(file, skip_bad_rows)
    parse: Optional[ChunkParser] = None
    rows = 0
    for lines, linenos, offset in iter_lines(path, chunksize, encoding):
        lines, linenos = _take_series(lines, linenos, (lines.str.strip() != "").to_numpy())
        keep = bad.flag(lines.str.contains("\ufffd", regex=False).to_numpy(), linenos, "encoding",
                        f"{encoding} text", lines.to_numpy())
        lines, linenos = _take_series(lines, linenos, keep)
        if parse is None:
            if len(lines) == 0:
                continue
            parse = make(lines.iat[0], int(linenos[0]))
            header = header(lines.iat[0]) if callable(header) else header
            if header:
                lines, linenos = lines.iloc[1:].reset_index(drop=True), linenos[1:]
        rows += len(lines)
        chunk = parse(lines, linenos, bad)
        if bad.count and not bad.skip:
            bad.finish(rows)  # raises for the earliest bad line, which is in this chunk
        if len(chunk):
            yield replace(chunk, source=file, offset=offset)
    if parse is None:
        raise DataFormatError(file, 1, "file", "at least one row of data", "an empty file")
    if header and rows == 0:
        raise DataFormatError(file, 1, "file", "rows of data after the header", "only a header")
    bad.finish(rows)


# ---- typed checks (vectorised) -----------------------------------------------------------------
def _check_choice(df: pd.DataFrame, lines: np.ndarray, col: str, allowed: Dict[str, float],
                  bad: BadRowCounter, expected: str) -> Tuple[pd.DataFrame, np.ndarray]:
    keep = bad.flag(~df[col].isin(list(allowed)).to_numpy(), lines, col, expected, df[col].to_numpy())
    return _take(df, lines, keep)


def _check_regex(df: pd.DataFrame, lines: np.ndarray, col: str, pattern: str, bad: BadRowCounter,
                 expected: str, allow_empty: bool = False) -> Tuple[pd.DataFrame, np.ndarray]:
    s = df[col]
    ok = s.str.fullmatch(pattern).to_numpy(bool)
    if allow_empty:
        ok |= (s == "").to_numpy()
    return _take(df, lines, bad.flag(~ok, lines, col, expected, s.to_numpy()))


def _numeric_columns(df: pd.DataFrame, lines: np.ndarray, cols: Sequence[str],
                    bad: BadRowCounter) -> Tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """float64 (n, len(cols)) of str columns, "" -> NaN; a non-empty non-number is a bad row."""
    num = np.empty((len(df), len(cols)))
    alive = np.ones(len(df), dtype=bool)
    for j, c in enumerate(cols):
        s = df[c]
        empty = (s == "").to_numpy()
        x = pd.to_numeric(s.where(~empty), errors="coerce").to_numpy(np.float64)
        wrong = ~empty & ~np.isfinite(x) & alive  # count a row once, at its first bad field
        bad.flag(wrong, lines, c, "a number or nothing", s.to_numpy())
        alive &= ~wrong
        num[:, j] = x
    df, lines = _take(df, lines, alive)
    return df, lines, num[alive]


def _labels(s: pd.Series, allowed: Dict[str, float]) -> np.ndarray:
    return s.map(allowed).to_numpy(np.float32)


# ---- libfm -------------------------------------------------------------------------------------
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


# ---- Criteo ------------------------------------------------------------------------------------
_01 = {"0": 0.0, "1": 1.0}
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


# ---- Avazu -------------------------------------------------------------------------------------
def _header(first: str, sep: str) -> List[str]:
    return [c.strip().strip('"') for c in first.strip().split(sep)]


def _require(file: str, lineno: int, columns: Sequence[str], required: Sequence[str], first: str) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataFormatError(file, lineno, "header", f"columns {', '.join(required)}",
                              f"{first.strip()!r} (no {', '.join(missing)})")


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


# ---- KDD Cup 2012 track 2 ----------------------------------------------------------------------
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


# ---- MovieLens as CTR --------------------------------------------------------------------------
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


def _lookup(keys: pd.Series, table: pd.DataFrame, key: str, col: str) -> pd.Series:
    mapping = table.drop_duplicates(key).set_index(key)[col]
    return keys.map(mapping).fillna("")


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
        df, linenos = _check_regex(df, linenos, "rating", _RATING_OK, bad, "a rating (a number ≥ 0)")
        out = df[["user_id", "item_id"]].copy()
        for c in ("age", "gender", "occupation", "zip_code"):
            out[c] = _lookup(out["user_id"], users, "user_id", c)
        for c in ("release_year", "genre"):
            out[c] = _lookup(out["item_id"], items, "item_id", c)
        label = (df["rating"].astype(np.float64) >= 4).to_numpy(np.float32)
        return RawChunk(_ctr_movielens(out), np.zeros((len(df), 0)), label, [])

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
    from ..data.readers import read_ml100k_items  # the sequential track's tested u.item parser

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
            df, linenos = _check_regex(df, linenos, "rating", _RATING_OK, bad, "a rating (a number ≥ 0)")
            out = df[["user_id", "item_id"]].copy()
            for c in ("age", "gender", "occupation", "zip_code"):
                out[c] = _lookup(out["user_id"], users, "user_id", c)
            for c in ("release_year", "genre"):
                out[c] = _lookup(out["item_id"], items, "item_id", c)
            label = (df["rating"].astype(np.float64) >= 4).to_numpy(np.float32)
            return RawChunk(_ctr_movielens(out), np.zeros((len(df), 0)), label, [])
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
