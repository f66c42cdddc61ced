"""Encode raw CTR rows into the arrays the models consume: ids, log-numeric features, splits.

Choices:

* **Split.** By default a seeded random split, stratified by label: the rows of each label are
  permuted with ``np.random.default_rng(seed)`` (labels in sorted order) and cut 8:1:1 (rounded), so
  every split has the same click rate up to one row. This is NASRec's protocol for Criteo, Avazu and
  KDD12 (a stratified, shuffled 10-fold cut 8:1:1 with seed 2018) but not its exact rows: NASRec
  draws the folds with scikit-learn's ``StratifiedKFold``. The default seed is 2018. When every
  chunk carries a ``split`` tag (files that *are* the train/valid/test files), that split is used.
  Rows keep their file order inside a split (memory-mapped batches then read sequentially).
* **Vocabulary** (default). Built on the *training* split only: a value gets an id when it occurs at
  least ``min_count`` times in train; rarer values, values seen only in valid/test and missing values
  map to 0. Ids are field-local, 1.. in order of the value's first appearance in the file, so a
  re-run gives the same ids; ``vocab_sizes`` count id 0.
* **Hashing** (``hash_buckets=B``). id = FNV-1a-64(utf-8 bytes of the value) mod (B - 1) + 1, missing
  -> 0, every field gets B rows. FNV-1a is a fixed, published function computed here with numpy, so ids
  are stable across runs, machines and library versions (Python's ``hash()`` is salted per process).
  No vocabulary is built, so ``min_count`` does not apply.
* **Numeric features.** log(1 + x) with missing -> 0 and negative values clamped to 0 first, as
  NASRec's transform ``log(max(0, x) + 1)`` and DLRM's Criteo preprocessing (``X_int[X_int < 0] = 0``)
  do (Criteo's I2 holds negative values such as -1).

Big files: :func:`encode_to_folder` spools the rows chunk by chunk to raw binary files in the output
folder (pass 1), then counts training values and writes the per-split ``.npy`` arrays block by block
(passes 2 and 3), so memory holds the labels and one block of rows, not the data set.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .readers import RawChunk
from .table import CTRSchema

SPLITS = ("train", "valid", "test")
ENCODING_VERSION = 1  # bump when the encoded arrays would change for the same files and settings
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_BLOCK_VALUES = 1 << 22  # values (rows x fields) per block in passes 2 and 3


@dataclass(frozen=True)
class EncodeSettings:
    min_count: int = 1
    hash_buckets: Optional[int] = None
    seed: int = 2018
    ratios: Tuple[float, float, float] = (0.8, 0.1, 0.1)

    def validate(self) -> None:
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")
        if self.hash_buckets is not None and self.hash_buckets < 2:
            raise ValueError(f"hash_buckets must be >= 2 (id 0 is kept for missing), "
                             f"got {self.hash_buckets}")
        if len(self.ratios) != 3 or min(self.ratios) < 0 or sum(self.ratios) <= 0:
            raise ValueError(f"ratios: expected three non-negative train/valid/test weights, got {self.ratios}")

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ratios"] = [float(r) for r in self.ratios]
        if self.hash_buckets is not None:
            d["min_count"] = None  # unused when hashing
        return d


# ---- building blocks ---------------------------------------------------------------------------
def stratified_split(label: np.ndarray, seed: int = 2018,
                     ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> np.ndarray:
    """int8 per row: 0 train, 1 valid, 2 test; each label value is cut by ``ratios`` on its own."""
    label = np.asarray(label)
    w = np.asarray(ratios, dtype=np.float64)
    w = w / w.sum()
    rng = np.random.default_rng(seed)
    out = np.empty(len(label), dtype=np.int8)
    for value in np.unique(label):
        rows = rng.permutation(np.flatnonzero(label == value))
        n = len(rows)
        n_train = min(n, int(round(w[0] * n)))
        n_valid = min(n - n_train, int(round(w[1] * n)))
        out[rows[:n_train]] = 0
        out[rows[n_train:n_train + n_valid]] = 1
        out[rows[n_train + n_valid:]] = 2
    return out


def log1p_numeric(x: np.ndarray) -> np.ndarray:
    """float32 log(1 + x); NaN (missing) -> 0, negative -> 0 (DLRM/NASRec clamp)."""
    x = np.asarray(x, dtype=np.float64)
    clean = np.where(np.isnan(x) | (x < 0), 0.0, x)
    return np.log1p(clean).astype(np.float32)


def fnv1a_64(values: Sequence[str]) -> np.ndarray:
    """64-bit FNV-1a of each string's utf-8 bytes (vectorised over the strings), as uint64."""
    arr = np.asarray(values, dtype=object).astype(str)
    if arr.size == 0:
        return np.zeros(0, dtype=np.uint64)
    raw = np.char.encode(arr, "utf-8")
    width = raw.dtype.itemsize
    data = np.frombuffer(raw.tobytes(), dtype=np.uint8).reshape(len(raw), width) if width else \
        np.zeros((len(raw), 0), np.uint8)
    # fixed-width bytes are zero-padded; the padding (and nothing else: text holds no NUL) is skipped
    lengths = np.char.str_len(raw)
    h = np.full(len(raw), _FNV_OFFSET, dtype=np.uint64)
    for j in range(width):
        live = lengths > j
        h = np.where(live, (h ^ data[:, j].astype(np.uint64)) * _FNV_PRIME, h)
    return h


def hash_ids(values: Sequence[str], buckets: int) -> np.ndarray:
    """int64 ids in [1, buckets - 1] for values, 0 for missing (""); deterministic across runs."""
    arr = np.asarray(values, dtype=object)
    h = fnv1a_64(arr)
    ids = (h % np.uint64(buckets - 1)).astype(np.int64) + 1
    ids[arr == ""] = 0
    return ids


def raw_codes(values: pd.Series, table: Dict[str, int]) -> np.ndarray:
    """int64 per value: 0 for "", else its position (1..) in ``table``, which grows with new values."""
    codes, uniques = pd.factorize(values, sort=False)
    ids = np.fromiter((0 if u == "" else table.setdefault(u, len(table) + 1) for u in uniques),
                      dtype=np.int64, count=len(uniques))
    return ids[codes] if len(ids) else np.zeros(len(values), dtype=np.int64)


def vocab_lookup(train_counts: np.ndarray, min_count: int) -> np.ndarray:
    """raw code -> final id: codes counted >= min_count in train get 1.. in code order, others 0."""
    kept = np.asarray(train_counts) >= min_count
    kept[:1] = False  # raw code 0 is the missing value
    return np.cumsum(kept) * kept


def build_vocab(train_values: Sequence[str], min_count: int = 1) -> Dict[str, int]:
    """value -> id (1..) for values seen >= min_count times (first-appearance order), "" excluded."""
    table: Dict[str, int] = {}
    codes = raw_codes(pd.Series(train_values, dtype=object), table)
    lookup = vocab_lookup(np.bincount(codes, minlength=len(table) + 1), min_count)
    return {v: int(lookup[c]) for v, c in table.items() if lookup[c]}


def apply_vocab(values: Sequence[str], vocab: Dict[str, int]) -> np.ndarray:
    """int64 ids of values under ``vocab``; unknown and missing values -> 0."""
    return pd.Series(values, dtype=object).map(vocab).fillna(0).to_numpy(np.int64)


# ---- the streaming encoder ---------------------------------------------------------------------
@dataclass
class _Spool:
    rows: int
    fields: List[str]
    numeric: List[str]
    labels: np.ndarray
    given: Optional[np.ndarray]  # split ids from chunk tags, or None
    tables: List[Dict[str, int]]  # per field: value -> raw code (empty when hashing)


def _spool(chunks: Iterable[RawChunk], folder: Path, settings: EncodeSettings) -> _Spool:
    """Pass 1: write raw codes (or hashed ids) and transformed numerics; keep labels and tags."""
    tables: List[Dict[str, int]] = []
    fields: Optional[List[str]] = None
    numeric: List[str] = []
    labels: List[np.ndarray] = []
    tags: List[Optional[str]] = []
    sizes: List[int] = []
    with open(folder / "raw_cat.bin", "wb") as fc, open(folder / "raw_num.bin", "wb") as fn:
        for chunk in chunks:
            if fields is None:
                fields, numeric = chunk.fields, list(chunk.numeric)
                tables.extend({} for _ in fields)
            elif chunk.fields != fields or list(chunk.numeric) != numeric:
                raise ValueError(f"{chunk.source}: fields {chunk.fields} + {chunk.numeric} differ from "
                                 f"the first file's {fields} + {numeric}")
            if settings.hash_buckets is not None:
                cols = [hash_ids(chunk.cat[f].to_numpy(object), settings.hash_buckets) for f in fields]
            else:
                cols = [raw_codes(chunk.cat[f], t) for f, t in zip(fields, tables)]
            cat = np.stack(cols, axis=1) if cols else np.zeros((len(chunk), 0), np.int64)
            np.ascontiguousarray(cat, dtype=np.int64).tofile(fc)
            np.ascontiguousarray(log1p_numeric(chunk.num), dtype=np.float32).tofile(fn)
            labels.append(np.asarray(chunk.label, dtype=np.float32))
            tags.append(chunk.split)
            sizes.append(len(chunk))
    if fields is None or sum(sizes) == 0:
        raise ValueError("no rows to encode")
    given = None
    if any(t is not None for t in tags):
        if any(t not in SPLITS for t in tags):
            raise ValueError(f"either every file or none is a given split; got tags "
                             f"{sorted(set(map(str, tags)))}")
        given = np.repeat(np.array([SPLITS.index(t) for t in tags], dtype=np.int8), sizes)
    return _Spool(sum(sizes), fields, numeric, np.concatenate(labels), given, tables)


def _blocks(n: int, width: int) -> Iterable[Tuple[int, int]]:
    step = max(1, _BLOCK_VALUES // max(1, width))
    for start in range(0, n, step):
        yield start, min(n, start + step)


def _train_counts(raw: np.ndarray, split: np.ndarray, sizes: List[int]) -> List[np.ndarray]:
    """Pass 2: per field, how often each raw code occurs in the training rows."""
    counts = [np.zeros(s, dtype=np.int64) for s in sizes]
    for a, b in _blocks(len(split), raw.shape[1]):
        train = np.asarray(raw[a:b])[split[a:b] == 0]
        for f, c in enumerate(counts):
            c += np.bincount(train[:, f], minlength=len(c))
    return counts


def _open_out(path: Path, dtype: type, shape: Tuple[int, ...]) -> Optional[np.ndarray]:
    if int(np.prod(shape)) == 0:
        np.save(path, np.zeros(shape, dtype=dtype))
        return None
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _write_splits(folder: Path, raw_cat: np.ndarray, raw_num: np.ndarray, labels: np.ndarray,
                  split: np.ndarray, lookups: Optional[List[np.ndarray]]) -> Dict[str, int]:
    """Pass 3: ``<split>_{cat,num,label}.npy`` for each split, rows in file order."""
    n_fields, n_num = raw_cat.shape[1], raw_num.shape[1]
    sizes = {s: int((split == i).sum()) for i, s in enumerate(SPLITS)}
    outs = {s: (_open_out(folder / f"{s}_cat.npy", np.int64, (sizes[s], n_fields)),
                _open_out(folder / f"{s}_num.npy", np.float32, (sizes[s], n_num)),
                _open_out(folder / f"{s}_label.npy", np.float32, (sizes[s],))) for s in SPLITS}
    at = dict.fromkeys(SPLITS, 0)
    for a, b in _blocks(len(split), n_fields + n_num):
        cat, num, part = np.asarray(raw_cat[a:b]), np.asarray(raw_num[a:b]), split[a:b]
        if lookups is not None:
            cat = np.stack([lk[cat[:, f]] for f, lk in enumerate(lookups)], axis=1) if n_fields else cat
        for i, s in enumerate(SPLITS):
            rows = part == i
            k = int(rows.sum())
            if k == 0:
                continue
            for out, values in zip(outs[s], (cat[rows], num[rows], labels[a:b][rows])):
                if out is not None:
                    out[at[s]:at[s] + k] = values
            at[s] += k
    for arrays in outs.values():
        for out in arrays:
            if out is not None:
                out.flush()
    return sizes


def encode_to_folder(chunks: Iterable[RawChunk], folder: Path,
                     settings: EncodeSettings = EncodeSettings()) -> Tuple[CTRSchema, Dict[str, int]]:
    """Encode ``chunks`` into ``folder`` as ``{train,valid,test}_{cat,num,label}.npy``.

    Returns the schema and the rows per split. ``folder`` must exist; its scratch files are removed
    on success (on failure the caller removes the folder)."""
    settings.validate()
    folder = Path(folder)
    sp = _spool(chunks, folder, settings)
    n, n_fields, n_num = sp.rows, len(sp.fields), len(sp.numeric)
    raw_cat = np.memmap(folder / "raw_cat.bin", dtype=np.int64, mode="r", shape=(n, n_fields)) \
        if n_fields else np.zeros((n, 0), np.int64)
    raw_num = np.memmap(folder / "raw_num.bin", dtype=np.float32, mode="r", shape=(n, n_num)) \
        if n_num else np.zeros((n, 0), np.float32)
    split = sp.given if sp.given is not None else stratified_split(sp.labels, settings.seed, settings.ratios)
    if settings.hash_buckets is not None:
        lookups = None
        vocab_sizes = [int(settings.hash_buckets)] * n_fields
    else:
        counts = _train_counts(raw_cat, split, [len(t) + 1 for t in sp.tables])
        lookups = [vocab_lookup(c, settings.min_count) for c in counts]
        vocab_sizes = [int(lk.max()) + 1 if len(lk) else 1 for lk in lookups]
    sizes = _write_splits(folder, raw_cat, raw_num, sp.labels, split, lookups)
    del raw_cat, raw_num
    for scratch in ("raw_cat.bin", "raw_num.bin"):
        os.unlink(folder / scratch)
    return CTRSchema(fields=list(sp.fields), vocab_sizes=vocab_sizes, numeric=list(sp.numeric)), sizes
