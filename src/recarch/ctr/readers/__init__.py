"""Readers for tabular click (CTR) files: libfm (Frappe), Criteo, Avazu, KDD Cup 2012, MovieLens as CTR,
and a user's own log (delimited text or Parquet, described by ``data.table``).

Every reader streams its file in chunks of lines (pandas ``read_csv(chunksize=...)``; Parquet: record
batches) and yields :class:`RawChunk` s: the raw categorical strings of each field (``""`` = missing),
raw numeric values (NaN = missing) and 0/1 labels, *before* any vocabulary, hashing or log transform (those are in
:mod:`recarch.ctr.encode`). ``read_*`` functions concatenate the chunks of a small file.

Malformed rows. The checks are vectorised over a chunk with :class:`~recarch.data.errors.BadRowCounter`:
each bad row gives a :class:`~recarch.data.errors.DataFormatError` naming the file, the 1-based line,
the field and what was expected. Without ``skip_bad_rows`` the first bad line raises as soon as its
chunk is read (a broken 10 GB file fails fast); with it, bad rows are counted, dropped and reported in
one warning per file. Blank lines are ignored. Lines are physical lines: a quoted CSV field holding a
line break is not supported.

One module per job: :mod:`.core` holds the shared chunked streaming, line splitting and vectorised
checks; :mod:`.libfm` (libfm, Frappe), :mod:`.criteo`, :mod:`.avazu`, :mod:`.kdd12` and
:mod:`.movielens` hold one format each, with its format choices in the module docstring;
:mod:`.delimited` and :mod:`.parquet` read a user's own log (:mod:`recarch.ctr.click_log`). This
package re-exports their public names, so ``from recarch.ctr.readers import ...`` and
``from recarch.ctr import readers as R`` work as before.
"""
from .core import (DEFAULT_CHUNKSIZE, ChunkParser, MakeParser, PathLike, RawChunk, concat_chunks,
                   iter_lines, split_fields)
from .libfm import FRAPPE_FIELDS, iter_frappe, iter_libfm, read_libfm
from .criteo import CRITEO_CATEGORICAL, CRITEO_COLUMNS, CRITEO_NUMERIC, iter_criteo, read_criteo
from .avazu import iter_avazu, read_avazu
from .kdd12 import KDD12_CATEGORICAL, KDD12_COLUMNS, KDD12_NUMERIC, iter_kdd12, read_kdd12_profiles
from .ml1m_ctr import ML1M_CTR_FIELDS, iter_ml1m_ctr, popularity_matched_negatives
from .movielens import (MOVIELENS_FIELDS, iter_movielens_atomic, iter_movielens_csv,
                        iter_movielens_grouplens, read_atomic_table)

__all__ = [
    "PathLike", "DEFAULT_CHUNKSIZE", "RawChunk", "ChunkParser", "MakeParser", "concat_chunks",
    "iter_lines", "split_fields",
    "FRAPPE_FIELDS", "iter_libfm", "read_libfm", "iter_frappe",
    "CRITEO_NUMERIC", "CRITEO_CATEGORICAL", "CRITEO_COLUMNS", "iter_criteo", "read_criteo",
    "iter_avazu", "read_avazu",
    "KDD12_COLUMNS", "KDD12_NUMERIC", "KDD12_CATEGORICAL", "read_kdd12_profiles", "iter_kdd12",
    "MOVIELENS_FIELDS", "read_atomic_table", "iter_movielens_atomic", "iter_movielens_grouplens",
    "iter_movielens_csv", "ML1M_CTR_FIELDS", "iter_ml1m_ctr", "popularity_matched_negatives",
]
