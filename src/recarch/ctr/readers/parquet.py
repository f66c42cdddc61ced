"""Reader of a user's own click log in Parquet (needs pyarrow: ``pip install 'recarch[parquet]'``).

The file is streamed in record batches of ``chunksize`` rows, reading only the columns in use. Each
value is turned into the text a CSV would hold (Arrow's own formatting: integers and integral floats
without a decimal point, the shortest round-trip form otherwise, booleans as ``1``/``0``, null as
missing) and then checked and typed exactly as :mod:`.delimited` does, so one log gives the same
arrays from either format. Errors name the 1-based *row* of the file where text files name the line.
Floating-point columns count as the ``float`` type of :func:`.delimited.resolve_columns` (numeric
by default), every other type as a token.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator, List, Tuple

import numpy as np
import pandas as pd

from ...data.errors import BadRowCounter, DataFormatError
from .core import DEFAULT_CHUNKSIZE, PathLike, RawChunk, _require
from .delimited import DelimitedFormat, typed_chunk


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ImportError("reading a Parquet click log needs pyarrow: pip install 'recarch[parquet]'") from None
    return pyarrow, pyarrow.parquet


@contextmanager
def _readable(file: str) -> Iterator[None]:
    """Arrow's errors on a cut-short or corrupt file (no footer, a bad page) as errors naming the file."""
    pa, _ = _pyarrow()
    try:
        yield
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as err:
        raise DataFormatError(file, None, "file", "a readable Parquet file", f"{type(err).__name__}: {err}".strip()) from None


def is_parquet(path: PathLike) -> bool:
    return Path(path).name.lower().endswith(".parquet")


def parquet_columns(path: PathLike) -> Tuple[List[Tuple[str, str]], str, None]:
    """(the (name, "float" or "token") of each column, the column names as one string, no line)."""
    pa, pq = _pyarrow()
    with _readable(str(path)):
        schema = pq.ParquetFile(path).schema_arrow
    typed = [(f.name, "float" if pa.types.is_floating(f.type) else "token") for f in schema]
    return typed, ", ".join(schema.names), None


def _as_text(batch, columns: List[str]) -> pd.DataFrame:
    """The batch's ``columns`` as text, converted by Arrow (pandas then keeps Arrow's strings)."""
    pa, _ = _pyarrow()
    text = {}
    for name in columns:
        column = batch.column(name)
        if pa.types.is_boolean(column.type):
            column = column.cast(pa.int8())
        text[name] = column.cast(pa.string()).fill_null("")
    return pa.table(text).to_pandas()


def iter_parquet(path: PathLike, fmt: DelimitedFormat, chunksize: int = DEFAULT_CHUNKSIZE,
                 skip_bad_rows: bool = False) -> Iterator[RawChunk]:
    """Stream a Parquet click log whose columns ``fmt`` names (see :func:`.delimited.resolve_columns`)."""
    _, pq = _pyarrow()
    file = str(path)
    with _readable(file):
        source = pq.ParquetFile(path)
        names = source.schema_arrow.names
        used = list(dict.fromkeys([fmt.label, *fmt.numeric, *fmt.categorical]))
        _require(file, None, names, used, ", ".join(names))
        rows, size = source.metadata.num_rows, Path(path).stat().st_size
        if rows == 0:
            raise DataFormatError(file, None, "file", "at least one row of data", "an empty file")
        bad = BadRowCounter(file, skip_bad_rows)
        done = 0
        for batch in source.iter_batches(batch_size=chunksize, columns=used):
            df = _as_text(batch, used)
            linenos = np.arange(done + 1, done + len(df) + 1, dtype=np.int64)
            done += len(df)
            chunk = typed_chunk(df, linenos, fmt, bad)
            if bad.count and not bad.skip:
                bad.finish(done)  # raises for the earliest bad row, which is in this batch
            if len(chunk):
                yield replace(chunk, source=file, offset=size * done // rows)
        bad.finish(done)
