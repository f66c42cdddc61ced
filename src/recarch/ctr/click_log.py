"""A user's own click log as a CTR data set: the ``data.table`` section of a CTR, search or iHAS config.

As in the sequential track (``data.table.path``), a run reads your file instead of a registered data
set when ``data.table.path`` (or ``train``/``valid``/``test``) is set::

    recarch ctr train --model deepfm --set data.table.path=clicks.csv.gz --set data.table.label=click \\
                      --set data.table.drop=[id]
    recarch ihas --backbone deepfm --config my-clicks.yaml      # a config file with the same data.table keys

``data.table`` keys (a run folder's ``config.yaml`` keeps the paths absolute, so ``evaluate`` and
``--resume`` work from any folder):

* ``path``: one file (CSV, TSV or RecBole atomic, gzip detected; or ``.parquet``, with pyarrow), split
  8:1:1 stratified by label with ``data.split_seed``; or ``train``, ``valid`` and ``test``: the three
  splits as files.
* ``label`` (default ``label``): values 0/1; with ``label_threshold: t``, numbers, 1 where ``>= t``
  (``label: rating, label_threshold: 4`` is MovieLens-as-CTR's label).
* ``numeric``: columns read as numbers (default: the RecBole ``float`` columns, or a Parquet file's
  floating-point columns; else none);
  ``categorical``: the fields (default: every column that is not the label, numeric or in ``drop``).
* ``sep``: ``comma``, ``tab``, ``semicolon``, ``pipe``, ``space`` or one character (default, as the
  sequential track: comma for ``.csv``, else tab); ``header`` (default true), else ``columns`` names them.

Reading is :func:`~recarch.ctr.readers.delimited.iter_delimited` (or
:func:`~recarch.ctr.readers.parquet.iter_parquet`): a malformed row raises an error naming the file,
line (Parquet: row) and column (or is skipped with ``data.skip_bad_rows``). The encoded arrays are cached like
a registered data set's, keyed by the files' fingerprints and everything here that changes the reading.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..config import ConfigError
from .readers import DEFAULT_CHUNKSIZE, RawChunk
from .readers.delimited import DelimitedFormat, delimited_columns, iter_delimited, resolve_columns
from .readers.parquet import is_parquet, iter_parquet, parquet_columns

SEPARATORS = {"comma": ",", "tab": "\t", "semicolon": ";", "pipe": "|", "space": " "}
SPLITS = ("train", "valid", "test")


@dataclass
class ClickTableConfig:
    """The ``data.table`` section (see the module docstring)."""

    path: str = ""
    train: str = ""
    valid: str = ""
    test: str = ""
    label: str = "label"
    label_threshold: Optional[float] = None
    numeric: Optional[List[str]] = None
    categorical: Optional[List[str]] = None
    drop: List[str] = field(default_factory=list)
    sep: Optional[str] = None
    header: bool = True
    columns: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for key in ("path",) + SPLITS:
            if getattr(self, key):
                setattr(self, key, str(Path(getattr(self, key)).expanduser().resolve()))

    @property
    def enabled(self) -> bool:
        return bool(self.path or self.train or self.valid or self.test)

    def validate(self) -> None:
        if not self.enabled:
            return
        given = [k for k in SPLITS if getattr(self, k)]
        if self.path and given:
            raise ConfigError(f"data.table: set either path or train/valid/test, not both (got path and "
                              f"{', '.join(given)})")
        if given and len(given) < 3:
            raise ConfigError(f"data.table: the splits as files need train, valid and test; missing "
                              f"{', '.join(k for k in SPLITS if k not in given)}")
        if not self.label:
            raise ConfigError("data.table.label: expected the name of the label column")
        if self.sep is not None and self.sep not in SEPARATORS and len(self.sep) != 1:
            raise ConfigError(f"data.table.sep: expected one of {', '.join(SEPARATORS)} or one character, "
                              f"got {self.sep!r}")
        if not self.header and not self.columns:
            raise ConfigError("data.table.columns: required when data.table.header is false "
                              "(the column names, in order)")

    def files(self) -> List[Tuple[Path, Optional[str]]]:
        """(path, split or None) per file, in reading order."""
        if self.path:
            return [(Path(self.path), None)]
        return [(Path(getattr(self, k)), k) for k in SPLITS]

    @property
    def name(self) -> str:
        """Names the run folders and the cache: the file's stem (the train file's)."""
        return self.files()[0][0].name.split(".")[0]

    def format(self) -> DelimitedFormat:
        first = self.files()[0][0].name.lower().removesuffix(".gz")
        sep = SEPARATORS.get(self.sep, self.sep) if self.sep else ("," if first.endswith(".csv") else "\t")
        return DelimitedFormat(self.label, sep, self.header, tuple(self.columns),
                               label_threshold=self.label_threshold, quoted=sep == ",")

    def reading_key(self) -> Dict[str, Any]:
        """What the encoded arrays depend on besides the files' contents and the encode settings."""
        keys = asdict(self)
        for k in ("path",) + SPLITS:
            keys.pop(k)
        return {"splits": [s for _, s in self.files()], **keys}

    def chunks(self, paths: Tuple[Path, ...], chunksize: int = DEFAULT_CHUNKSIZE,
               skip_bad_rows: bool = False) -> Iterator[RawChunk]:
        """The rows of every file, each tagged with its split when the files are the splits; the
        columns are fixed once, from the first file's header (or Parquet schema)."""
        fmt = self.format()
        columns = parquet_columns(paths[0]) if is_parquet(paths[0]) else delimited_columns(paths[0], fmt)
        fmt = resolve_columns(str(paths[0]), *columns, fmt, self.numeric, self.categorical, self.drop)
        for path, (_, split) in zip(paths, self.files()):
            read = iter_parquet if is_parquet(path) else iter_delimited
            for chunk in read(path, fmt, chunksize, skip_bad_rows):
                yield replace(chunk, split=split)
