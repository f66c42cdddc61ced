"""The in-memory form every sequential model trains on: per-user item sequences in CSR layout.

Items are dense ids 1..num_items (0 is padding); users are rows 0..num_users-1. The leave-one-out
split is a view: a user's last item is the test target, the one before it the validation target,
the rest the training sequence (users with fewer than 3 items only train).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class ItemFeatures:
    """Categorical item features in CSR layout: item i has ids ``values[offsets[i]:offsets[i+1]]``.

    Feature ids are 1..num_features (0 is padding); row 0 (the padding item) has none. ``names``
    maps feature id -> readable name (e.g. ``"genre=Comedy"``)."""

    offsets: np.ndarray  # (I+2,) int64
    values: np.ndarray  # (nnz,) int64
    num_features: int
    names: list = field(default_factory=list)

    def padded(self, width: Optional[int] = None) -> np.ndarray:
        """(I+1, F) matrix of feature ids, right-padded with 0; ``width`` caps F."""
        counts = np.diff(self.offsets)
        f = int(counts.max()) if width is None else width
        f = max(f, 1)
        out = np.zeros((len(counts), f), dtype=np.int64)
        pos = np.arange(len(self.values)) - np.repeat(self.offsets[:-1], counts)
        keep = pos < f
        rows = np.repeat(np.arange(len(counts)), counts)
        out[rows[keep], pos[keep]] = self.values[keep]
        return out


@dataclass
class SequenceDataset:
    name: str
    num_items: int
    offsets: np.ndarray  # (U+1,) int64, user u's items are items[offsets[u]:offsets[u+1]]
    items: np.ndarray  # (nnz,) int64 in 1..num_items, chronological within a user
    user_ids: np.ndarray  # (U,) original user ids (str)
    item_ids: np.ndarray  # (I+1,) original item ids (str), item_ids[0] = "" for padding
    item_features: Optional[ItemFeatures] = None

    @property
    def num_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_interactions(self) -> int:
        return len(self.items)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    # ---- leave-one-out split -------------------------------------------------------------
    def eval_users(self) -> np.ndarray:
        """Users with a validation and a test item (at least 3 interactions)."""
        return np.flatnonzero(self.lengths() >= 3)

    def train_ends(self) -> np.ndarray:
        """(U,) exclusive end of each user's training part: the last two items are held out."""
        lens = self.lengths()
        held = np.where(lens >= 3, 2, 0)
        return self.offsets[1:] - held

    def check_splittable(self, source: Optional[str] = None) -> None:
        """That leave-one-out leaves something to train on and to evaluate; a ValueError that counts
        the users who fall short otherwise. ``source``: the file the error names (default: the name)."""
        lens, source = self.lengths(), source or self.name
        if not (lens >= 3).any():
            raise ValueError(f"{source}: none of its {self.num_users:,} users has the 3 interactions leave-one-out "
                             "needs (the last is the test item, the one before it the validation item); "
                             f"{int((lens < 3).sum()):,} users have fewer")
        if not (self.train_ends() - self.offsets[:-1] >= 2).any():
            raise ValueError(f"{source}: no user has a training sequence (2 interactions before the validation "
                             "and test items); add users with at least 4 interactions")

    def target_index(self, split: str) -> np.ndarray:
        """Flat index of each eval user's target item for ``split`` in {"valid", "test"}."""
        users = self.eval_users()
        shift = {"valid": 2, "test": 1}[split]
        return self.offsets[users + 1] - shift

    def train_popularity(self) -> np.ndarray:
        """(I+1,) count of each item in the training parts (index 0 stays 0)."""
        ends = self.train_ends()
        starts = self.offsets[:-1]
        # mark training positions without a Python loop per user
        marks = np.zeros(len(self.items) + 1, dtype=np.int64)
        np.add.at(marks, starts, 1)
        np.add.at(marks, ends, -1)
        mask = np.cumsum(marks)[:-1] > 0
        return np.bincount(self.items[mask], minlength=self.num_items + 1)

    def summary(self) -> dict:
        lens = self.lengths()
        return {
            "name": self.name,
            "users": int(self.num_users),
            "items": int(self.num_items),
            "interactions": int(self.num_interactions),
            "seq_len_min": int(lens.min()) if len(lens) else 0,
            "seq_len_mean": float(lens.mean()) if len(lens) else 0.0,
            "seq_len_max": int(lens.max()) if len(lens) else 0,
            "item_features": self.item_features.num_features if self.item_features else 0,
        }


def windows(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """Left-padded windows: row r holds ``items[max(starts[r], ends[r]-length):ends[r]]``.

    Returns a (R, length) int64 array with 0 where the window runs past ``starts[r]``."""
    idx = ends[:, None] - length + np.arange(length)[None, :]
    valid = idx >= starts[:, None]
    out = np.where(valid, items[np.clip(idx, 0, max(len(items) - 1, 0))], 0)
    return out.astype(np.int64, copy=False)
