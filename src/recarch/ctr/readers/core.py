"""Shared machinery of the CTR readers: :class:`RawChunk`, chunked line streaming (gzip detected),
field splitting, the per-file driver :func:`_stream`, vectorised bad-row checks and the small
header / label / join helpers that several formats use (see the package docstring for the
malformed-row policy)."""
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

from ...data.errors import GZIP_ERRORS, BadRowCounter, DataFormatError, broken_gzip

PathLike = Union[str, Path]
DEFAULT_CHUNKSIZE = 200_000

_LINE_SEP = "\x1f"  # a byte text files do not hold: each physical line is read as one column


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
        if not gz:
            yield raw, raw
            return
        try:
            yield gzip.GzipFile(fileobj=raw), raw
        except GZIP_ERRORS as err:
            raise broken_gzip(str(path), err) from None
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


def _parse(text: str, sep: str, names: Sequence[str], quoted: bool) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), sep=sep, header=None, names=list(names), dtype=str, na_filter=False,
                       skip_blank_lines=False, index_col=False, engine="c",
                       quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)


def _parse_clean(lines: pd.Series, sep: str, names: Sequence[str], quoted: bool) -> Optional[pd.DataFrame]:
    """The lines parsed in one pass when each has exactly ``len(names)`` fields, else None.

    No per-line counting: the C parser raises on a line with too many fields, so when it does not and
    the chunk holds (n - 1) separators per line in all, no line can have too few. Text with a double
    quote in quoted mode (where a separator may be data) takes the line-by-line path."""
    text = "\n".join(lines.tolist())
    if quoted and '"' in text:
        return None
    try:
        df = _parse(text, sep, names, quoted)
    except pd.errors.ParserError:
        return None
    if len(df) != len(lines) or text.count(sep) != (len(names) - 1) * len(lines):
        return None
    return df


def split_fields(lines: pd.Series, linenos: np.ndarray, sep: str, names: Sequence[str],
                 bad: BadRowCounter, quoted: bool = False, what: str = "",
                 field: str = "row") -> Tuple[pd.DataFrame, np.ndarray]:
    """Split lines into ``names`` columns (str); rows with another number of fields are flagged.

    A chunk whose lines are all well-formed is parsed in one pass (:func:`_parse_clean`); otherwise
    each line's fields are counted so that the bad ones can be named. ``quoted``: CSV double quotes
    may protect separators (counted with the csv module, line by line, only for the lines that hold
    a quote)."""
    clean = _parse_clean(lines, sep, names, quoted)
    if clean is not None:
        return clean, linenos
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
    df = _parse("\n".join(lines.tolist()), sep, names, quoted)
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


# ---- helpers shared by several formats ---------------------------------------------------------
_01 = {"0": 0.0, "1": 1.0}


def _header(first: str, sep: str) -> List[str]:
    return [c.strip().strip('"') for c in first.strip().split(sep)]


def _require(file: str, lineno: int, columns: Sequence[str], required: Sequence[str], first: str) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataFormatError(file, lineno, "header", f"columns {', '.join(required)}",
                              f"{first.strip()!r} (no {', '.join(missing)})")


def _lookup(keys: pd.Series, table: pd.DataFrame, key: str, col: str) -> pd.Series:
    mapping = table.drop_duplicates(key).set_index(key)[col]
    return keys.map(mapping).fillna("")
