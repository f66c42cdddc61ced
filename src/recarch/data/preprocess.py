"""Interactions table -> SequenceDataset: rating threshold, k-core, chronological order, dense ids.

Also builds ItemFeatures from (item, feature) pairs and saves / loads the dense -> original id maps
that a run folder keeps beside its checkpoints.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from ..io import write_text_atomic
from .sequences import ItemFeatures, SequenceDataset

FeatureSource = Union[Mapping[str, Sequence[str]], pd.DataFrame]


def k_core_mask(users: np.ndarray, items: np.ndarray, k: int,
                keep: Optional[np.ndarray] = None) -> np.ndarray:
    """Rows kept by the iterative k-core: every kept user and item has >= k kept interactions.

    ``users``/``items`` are integer codes (0..U-1, 0..I-1); repeated (user, item) rows count
    each time, as RecBole counts them. Each pass is two bincounts; passes repeat until stable."""
    keep = np.ones(len(users), dtype=bool) if keep is None else keep.copy()
    if k <= 1:
        return keep
    nu, ni = int(users.max(initial=-1)) + 1, int(items.max(initial=-1)) + 1
    while True:
        cu = np.bincount(users[keep], minlength=nu)
        ci = np.bincount(items[keep], minlength=ni)
        new = keep & (cu[users] >= k) & (ci[items] >= k)
        if new.sum() == keep.sum():
            return new
        keep = new


def _sorted_ids(ids: np.ndarray) -> np.ndarray:
    """Original ids in numeric order when all are digit strings, else in string order."""
    ids = [str(x) for x in ids]
    if all(x.isdigit() for x in ids):
        # (length, text) is numeric order for digit strings and never overflows
        return np.asarray(sorted(ids, key=lambda x: (len(x.lstrip("0")), x.lstrip("0"), x)), dtype=str)
    return np.asarray(sorted(ids), dtype=str)


def _codes(ids: pd.Series) -> Tuple[np.ndarray, np.ndarray]:
    """(integer code per row, original id per code): a categorical's own (no string per row), else factorized."""
    if isinstance(ids.dtype, pd.CategoricalDtype):
        return ids.cat.codes.to_numpy(np.int64), ids.cat.categories.astype(str).to_numpy()
    return pd.factorize(ids.astype(str))


def _dense(codes: np.ndarray, uniques: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(dense 0-based id per row, original id per dense id), dense ids in original-id order."""
    present = np.bincount(codes, minlength=len(uniques)) > 0
    ordered = _sorted_ids(np.asarray(uniques)[present])
    rank = np.full(len(uniques), -1, dtype=np.int64)
    rank[present] = pd.Index(ordered).get_indexer(np.asarray(uniques, dtype=str)[present])
    return rank[codes], ordered


@dataclass(frozen=True)
class Preprocessing:
    """Optional filters a user asks for on top of a dataset's own preprocessing."""

    min_rating: Optional[float] = None  # keep interactions rated at least this (datasets with ratings)
    k_core: int = 0  # iteratively keep users and items with at least k interactions (0: off)

    def kwargs(self, k_core: int = 0) -> dict:
        """build_sequences arguments; ``k_core`` is the dataset's own filter, the larger one wins."""
        return {"min_rating": self.min_rating, "k_core": max(self.k_core, k_core)}


def build_sequences(df: pd.DataFrame, name: str, min_rating: Optional[float] = None,
                    k_core: int = 0, item_features: Optional[FeatureSource] = None,
                    ) -> SequenceDataset:
    """Per-user chronological sequences from a reader's table (user, item[, timestamp, rating, order]).

    Steps: keep rating >= ``min_rating``; iterative ``k_core`` on users and items; sort each user's
    rows by (timestamp, order) or, without timestamps, by file order; renumber densely. Dense ids
    follow the original ids' order (numeric when every id is an integer, else string order): users
    0..U-1, items 1..I (0 = padding), so files whose ids already run 1..I keep them."""
    for col in ("user", "item"):
        if col not in df.columns:
            raise ValueError(f"{name}: the interactions need a {col!r} column; got {list(df.columns)}")
    keep = np.ones(len(df), dtype=bool)
    if min_rating is not None:
        if "rating" not in df.columns:
            raise ValueError(f"{name}: min_rating={min_rating} needs a 'rating' column; "
                             f"this data has {list(df.columns)}")
        keep &= df["rating"].to_numpy(np.float64) >= min_rating
    ucodes, uuniq = _codes(df["user"])
    icodes, iuniq = _codes(df["item"])
    keep = k_core_mask(ucodes, icodes, k_core, keep)
    if not keep.any():
        raise ValueError(f"{name}: no interactions left after filtering "
                         f"(min_rating={min_rating}, k_core={k_core})")
    user, user_ids = _dense(ucodes[keep], uuniq)
    item, item_orig = _dense(icodes[keep], iuniq)
    order = df["order"].to_numpy(np.int64)[keep] if "order" in df.columns else np.flatnonzero(keep)
    if "timestamp" in df.columns:
        ts = df["timestamp"].to_numpy(np.float64)[keep]
        if np.isnan(ts).any():
            raise ValueError(f"{name}: {int(np.isnan(ts).sum())} interactions have no timestamp")
        perm = np.lexsort((order, ts, user))
    else:
        perm = np.lexsort((order, user))
    counts = np.bincount(user, minlength=len(user_ids))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    item_ids = np.concatenate([np.asarray([""], dtype=str), item_orig])
    ds = SequenceDataset(
        name=name,
        num_items=len(item_orig),
        offsets=offsets,
        items=(item[perm] + 1).astype(np.int64),
        user_ids=user_ids,
        item_ids=item_ids,
    )
    if item_features is not None:
        ds.item_features = make_item_features(item_features, item_ids)
    return ds


def _feature_key(name: str):
    field, _, value = name.partition("=")
    return (field, 0, len(value), value) if value.isdigit() else (field, 1, 0, value)


def make_item_features(features: FeatureSource, item_ids: np.ndarray) -> ItemFeatures:
    """ItemFeatures for dense items 1..I from original item id -> feature names.

    ``features`` is a mapping (e.g. {"1": ["genre=Comedy", "year=1995"]}) or a long DataFrame with
    columns item, feature. Unknown items are ignored; duplicates dropped (first kept, source order
    kept within an item). Feature ids 1..F follow the names' order (numbers numerically)."""
    if isinstance(features, pd.DataFrame):
        long = features[["item", "feature"]]
    else:
        keys = list(features)
        lens = np.fromiter((len(features[k]) for k in keys), np.int64, len(keys))
        long = pd.DataFrame({"item": np.repeat(np.asarray(keys, dtype=object), lens),
                             "feature": [str(f) for k in keys for f in features[k]]})
    num_items = len(item_ids) - 1
    dense = pd.Index(np.asarray(item_ids[1:], dtype=str)).get_indexer(
        long["item"].astype(str).to_numpy()) + 1
    long = pd.DataFrame({"item": dense, "feature": long["feature"].astype(str).to_numpy()})
    long = long[long["item"] > 0].drop_duplicates()
    names = sorted(long["feature"].unique().tolist(), key=_feature_key)
    fid = pd.Index(names).get_indexer(long["feature"].to_numpy()) + 1
    rows = long["item"].to_numpy(np.int64)
    perm = np.argsort(rows, kind="stable")
    counts = np.bincount(rows, minlength=num_items + 1)
    return ItemFeatures(
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        values=fid[perm].astype(np.int64),
        num_features=len(names),
        names=[""] + names,
    )


# ---- id maps -----------------------------------------------------------------------------------
def id_map_texts(dataset: SequenceDataset) -> Dict[str, str]:
    """The text of ``users.tsv`` (row -> original user id) and ``items.tsv`` (item 1..I -> original id);
    raises ValueError naming the first id that a TSV cannot hold (one with a tab or newline)."""
    out = {}
    for fname, head, ids, start in (("users.tsv", "user", dataset.user_ids, 0),
                                    ("items.tsv", "item", dataset.item_ids[1:], 1)):
        ids = pd.Series(np.asarray(ids, dtype=str))
        bad = np.flatnonzero(ids.str.contains("[\t\n\r]", regex=True).to_numpy())
        if len(bad):
            raise ValueError(f"{dataset.name}: the original {head} id {ids[bad[0]]!r} contains a tab or newline; "
                             f"{fname} cannot hold it: clean the ids in the input")
        table = pd.DataFrame({head: np.arange(start, start + len(ids)), "original_id": ids})
        out[fname] = table.to_csv(sep="\t", index=False, lineterminator="\n", quoting=csv.QUOTE_NONE)
    return out


def save_id_maps(dataset: SequenceDataset, folder: Union[str, Path],
                 texts: Optional[Dict[str, str]] = None) -> Tuple[Path, Path]:
    """Write ``users.tsv`` and ``items.tsv`` (:func:`id_map_texts`, or ``texts`` made by it earlier).

    Each file is written to a temporary file in ``folder`` and moved into place with os.replace,
    so a crash never leaves half a map. Returns the two paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    texts = texts if texts is not None else id_map_texts(dataset)
    for fname, text in texts.items():
        write_text_atomic(folder / fname, text)
    return folder / "users.tsv", folder / "items.tsv"


def load_id_maps(folder: Union[str, Path]) -> Tuple[np.ndarray, np.ndarray]:
    """(user_ids (U,), item_ids (I+1,) with item_ids[0] = "") as written by :func:`save_id_maps`."""
    folder = Path(folder)
    kw = dict(sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    users = pd.read_csv(folder / "users.tsv", **kw)
    items = pd.read_csv(folder / "items.tsv", **kw)
    user_ids = users["original_id"].to_numpy(dtype=str)
    item_ids = np.concatenate([np.asarray([""], dtype=str), items["original_id"].to_numpy(dtype=str)])
    return user_ids, item_ids
