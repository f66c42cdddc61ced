"""Generic tables (CSV, TSV, Parquet) with named columns, for interaction logs from elsewhere.

Returns the same frame as every reader (``user``, ``item``, ``timestamp``/``rating`` when present,
``order``); timestamps may be numbers, ISO strings or a strftime format.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from ..registry import suggest
from .errors import BadRowCounter, DataFormatError
from .readers import _EXPECT, _FLOAT, _INT, PathLike, _decode, _require_rows, _sep_hint, read_bytes


# ---- generic CSV / TSV / Parquet ---------------------------------------------------------------
CHUNK_ROWS = 1 << 20  # CSV rows parsed at once: their id strings live only while their chunk is encoded


def read_table(path: PathLike, *, user: str = "user", item: str = "item",
               timestamp: Optional[str] = "timestamp", rating: Optional[str] = None,
               features: Sequence[str] = (), sep: Optional[str] = None,
               timestamp_format: Optional[str] = None, numeric_ids: bool = False,
               skip_bad_rows: bool = False) -> pd.DataFrame:
    """CSV/TSV/Parquet with a header naming the columns; returns user, item, [timestamp], [rating],
    the ``features`` columns (strings, kept under their own names) and ``order``.

    ``sep`` defaults from the suffix (.csv ',', .tsv/.tab/.txt tab). ``timestamp_format`` None wants
    numbers (seconds); "iso" or a strftime format parses dates into seconds since the epoch.

    ``user`` and ``item`` come back as categoricals: integer codes per row and each distinct id once.
    A CSV is parsed and checked in chunks of ``CHUNK_ROWS`` rows, so that no column of per-row
    Python strings outlives its chunk (30 M interactions held 5.8 GB of them before)."""
    file = str(path)
    wanted = {"user": user, "item": item, "timestamp": timestamp, "rating": rating}
    wanted = {k: v for k, v in wanted.items() if v}
    suffix = "".join(Path(file).suffixes[-2:]).lower().replace(".gz", "")
    typed = dict(file=file, wanted=wanted, features=features, numeric_ids=numeric_ids,
                 timestamp_format=timestamp_format)
    if suffix.endswith(".parquet"):
        df = pd.read_parquet(path)
        bad = BadRowCounter(file, skip_bad_rows)
        out, total = _typed([(df, np.arange(1, len(df) + 1, dtype=np.int64))], bad=bad, sep=None, **typed)
        first_line = 1
    else:
        sep = sep or ("," if suffix.endswith(".csv") else "\t")
        raw = read_bytes(path)
        _require_rows(raw, file)
        try:
            bad = BadRowCounter(file, skip_bad_rows)
            out, total = _typed(_csv_chunks(raw, sep), bad=bad, sep=sep, **typed)
        except (pd.errors.ParserError, UnicodeDecodeError):
            bad = BadRowCounter(file, skip_bad_rows)  # what the chunks before the error flagged is read again
            out, total = _typed([_csv_records(raw, file, sep, bad)], bad=bad, sep=sep, **typed)
        first_line = 2
    bad.finish(total)
    if len(out) == 0:
        raise DataFormatError(file, first_line, "file", "at least one row of data", "no data rows")
    out["order"] = np.arange(len(out), dtype=np.int64)
    return out


def _typed(chunks: Iterable[Tuple[pd.DataFrame, np.ndarray]], *, file: str, wanted: Dict[str, str],
           features: Sequence[str], sep: Optional[str], numeric_ids: bool, timestamp_format: Optional[str],
           bad: BadRowCounter) -> Tuple[pd.DataFrame, int]:
    """(the checked rows of every (all-string chunk, 1-based line per row), rows read): the header
    checked on the first chunk, each chunk typed by ``_table_types`` and its ids made categorical."""
    parts, total = [], 0
    for df, lines in chunks:
        if not parts:
            _check_header(list(df.columns), wanted, features, file, sep)
        out = pd.DataFrame({k: df[v] for k, v in wanted.items()})
        for f in features:
            out[f] = df[f].astype(str)
        total += len(out)
        out, _ = _table_types(out, lines, file, numeric_ids, timestamp_format, bad)
        parts.append(out.astype({"user": "category", "item": "category"}))
    columns = {c: union_categoricals([p[c] for p in parts]) if c in ("user", "item")
               else pd.concat([p[c] for p in parts], ignore_index=True) for c in parts[0].columns}
    return pd.DataFrame(columns), total


def _check_header(header: List, wanted: Dict[str, str], features: Sequence[str], file: str, sep: Optional[str]) -> None:
    for col in list(wanted.values()) + list(features):
        if col not in header:
            found = ", ".join(map(str, header))[:80]
            if len(header) == 1 and sep and _sep_hint(str(header[0]), sep):
                found += _sep_hint(str(header[0]), sep)
            raise DataFormatError(file, 1, col, f"a column named {col!r}{suggest(col, header)}", found)


def _csv_chunks(raw: bytes, sep: str) -> Iterator[Tuple[pd.DataFrame, np.ndarray]]:
    """(all-string chunk, 1-based line of each row), blank lines dropped; rows are lines when no
    field spans lines. A malformed file raises ParserError or UnicodeDecodeError (``_csv_records`` then)."""
    first = 2
    reader = pd.read_csv(io.BytesIO(raw), sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=False,
                         engine="c", chunksize=CHUNK_ROWS)
    for df in reader:
        lines = np.arange(first, first + len(df), dtype=np.int64)
        first += len(df)
        yield _drop_blank(df, lines)


def _csv_records(raw: bytes, file: str, sep: str, bad: BadRowCounter) -> Tuple[pd.DataFrame, np.ndarray]:
    """A malformed file, whole: the csv module gives each record's line number."""
    reader = csv.reader(io.StringIO(_decode(raw, file, "utf-8", bad)), delimiter=sep)
    header = next(reader)
    rows, nums = [], []
    for rec in reader:
        rows.append(rec)
        nums.append(reader.line_num)
    lines = np.asarray(nums, dtype=np.int64)
    n = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    keep = bad.flag((n != len(header)) & (n > 0), lines, "line",
                    f"{len(header)} fields separated by {sep!r}",
                    lambda r: f"{n[r]} field(s)")
    keep &= n > 0
    df = pd.DataFrame([r for r, k in zip(rows, keep) if k], columns=header, dtype=str)
    return _drop_blank(df, lines[keep])


def _drop_blank(df: pd.DataFrame, lines: np.ndarray) -> Tuple[pd.DataFrame, np.ndarray]:
    blank = (df == "").all(axis=1).to_numpy() if len(df.columns) else np.zeros(len(df), bool)
    return df[~blank].reset_index(drop=True), lines[~blank]


def _table_types(out: pd.DataFrame, lines: np.ndarray, file: str, numeric_ids: bool,
                 timestamp_format: Optional[str], bad: BadRowCounter):
    for col in ("user", "item"):
        s = out[col].astype(str)
        ok = s.str.fullmatch(_INT) if numeric_ids else (s != "") & out[col].notna()
        keep = bad.flag(~ok.to_numpy(bool), lines, col,
                        _EXPECT["id"] if numeric_ids else "a non-empty id", s.to_numpy())
        out, lines = out[keep].assign(**{col: s[keep]}), lines[keep]
    for col in ("timestamp", "rating"):
        if col not in out:
            continue
        s = out[col]
        if col == "timestamp" and pd.api.types.is_datetime64_any_dtype(s):
            keep = bad.flag(s.isna().to_numpy(), lines, col, "a date", s.astype(str).to_numpy())
            out, lines = out[keep].assign(**{col: epoch_seconds(s[keep])}), lines[keep]
            continue
        if col == "timestamp" and timestamp_format:
            fmt = "ISO8601" if timestamp_format == "iso" else timestamp_format
            t = pd.to_datetime(s, format=fmt, errors="coerce", utc=True)
            keep = bad.flag(t.isna().to_numpy(), lines, col, f"a date ({timestamp_format})",
                            s.astype(str).to_numpy())
            out, lines = out[keep].assign(**{col: epoch_seconds(t[keep])}), lines[keep]
            continue
        if pd.api.types.is_numeric_dtype(s):
            ok = np.isfinite(s.to_numpy(np.float64))
        else:
            ok = s.astype(str).str.fullmatch(_FLOAT).fillna(False).to_numpy(bool)
        keep = bad.flag(~ok, lines, col, _EXPECT["float"], s.astype(str).to_numpy())
        out, lines = out[keep], lines[keep]
        out[col] = out[col].astype(np.float64)
    return out, lines


def epoch_seconds(t: pd.Series) -> pd.Series:
    """Datetimes (naive ones taken as UTC) -> float64 seconds since the Unix epoch."""
    if t.dt.tz is None:
        t = t.dt.tz_localize("UTC")
    return (t - pd.Timestamp(0, tz="UTC")).dt.total_seconds().astype(np.float64)
