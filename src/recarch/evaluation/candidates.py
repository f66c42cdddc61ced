"""Candidate protocols for leave-one-out evaluation: which items each user's target is ranked against.

`full` ranks against every item (history masked by default); `uni100`, `pop100` and `pop100-recbole`
draw 100 negatives per user, vectorised over users, deterministic for a seed.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from recarch.data.sequences import SequenceDataset
from recarch.registry import Registry

NUM_NEGATIVES = 100
SPLITS = ("valid", "test")


@dataclass(frozen=True)
class SplitView:
    """The eval rows of one split. Row r is user ``users[r]``; its history is
    ``dataset.items[hist_starts[r]:targets_at[r]]`` (every item before the target)."""

    split: str
    users: np.ndarray  # (R,) user rows
    targets: np.ndarray  # (R,) target item ids
    hist_starts: np.ndarray  # (R,) flat index of the user's first item
    targets_at: np.ndarray  # (R,) flat index of the target = exclusive end of the history
    hist_offsets: np.ndarray  # (R+1,) CSR offsets of the history over the rows
    hist_items: np.ndarray  # (nnz,) history items, row by row
    hist_rows: np.ndarray  # (nnz,) the eval row of each history entry

    @property
    def num_rows(self) -> int:
        return len(self.users)


def split_view(dataset: SequenceDataset, split: str) -> SplitView:
    """Eval users, their targets and their full histories (CSR) for ``split`` in {"valid", "test"}."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    users = dataset.eval_users()
    targets_at = dataset.target_index(split)
    starts = dataset.offsets[users]
    lens = targets_at - starts
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    # flat positions of every history item: start of the row + position inside the row
    flat = np.arange(offsets[-1], dtype=np.int64) + np.repeat(starts - offsets[:-1], lens)
    return SplitView(
        split=split,
        users=users,
        targets=dataset.items[targets_at],
        hist_starts=starts,
        targets_at=targets_at,
        hist_offsets=offsets,
        hist_items=dataset.items[flat],
        hist_rows=np.repeat(np.arange(len(users), dtype=np.int64), lens),
    )


@dataclass(frozen=True)
class Candidates:
    """One protocol's candidates for one split. ``columns`` is (R, 1+100) item ids with the target in
    column 0, or None for `full` (every item 1..I; history masked when ``mask_history``)."""

    protocol: str
    split: str
    columns: Optional[np.ndarray]
    mask_history: bool = False


ProtocolFn = Callable[[SequenceDataset, SplitView, np.random.Generator, bool], Candidates]
PROTOCOLS: Registry[ProtocolFn] = Registry("protocol")


def make_candidates(
    name: str, dataset: SequenceDataset, view: SplitView, seed: int, mask_history: bool = True
) -> Candidates:
    """Build protocol ``name``'s candidates; the random stream depends on (seed, protocol, split)."""
    fn = PROTOCOLS.get(name)
    stream = np.random.SeedSequence([int(seed), zlib.crc32(name.encode()), SPLITS.index(view.split)])
    return fn(dataset, view, np.random.default_rng(stream), mask_history)


def _in_sorted(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Boolean mask: which ``keys`` occur in the ascending array ``sorted_keys``."""
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


def sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Ascending distinct keys (np.unique's hash path is several times slower on 1M int64 keys)."""
    keys = np.sort(keys)
    if len(keys) > 1:
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    return keys


def _item_drawer(weights: np.ndarray) -> Callable[[np.random.Generator, int], np.ndarray]:
    """A function drawing n i.i.d. items with probability ∝ ``weights``."""
    stride = len(weights)
    if stride > 1 and weights[1] > 0 and np.all(weights[1:] == weights[1]):
        return lambda rng, n: rng.integers(1, stride, n)
    total = weights.sum()
    if np.all(weights == np.round(weights)) and total <= 2**26:
        # integer counts (popularity): one slot per count makes each draw a single lookup
        table = np.repeat(np.arange(stride, dtype=np.int32), weights.astype(np.int64))
        return lambda rng, n: table[rng.integers(0, len(table), n)].astype(np.int64)
    cdf = np.cumsum(weights)
    # side="right" skips zero-weight items: their CDF step is empty
    return lambda rng, n: np.minimum(
        np.searchsorted(cdf, rng.random(n) * total, side="right"), stride - 1
    )


def sample_negatives(
    rng: np.random.Generator,
    weights: np.ndarray,
    blocked: np.ndarray,
    num_rows: int,
    num: int = NUM_NEGATIVES,
    max_rounds: int = 1000,
) -> np.ndarray:
    """(num_rows, num) items drawn per row without replacement with probability ∝ ``weights``.

    ``weights`` is (I+1,), index 0 (padding) and zero-weight items are never drawn. ``blocked`` holds
    the sorted unique keys ``row * (I+1) + item`` that a row may not draw. All rows draw at once in
    rounds; a draw is rejected if blocked, already taken, or repeated earlier in the same round, which
    is successive sampling from the weights renormalised over what is left.
    """
    stride = len(weights)
    weights = np.asarray(weights, dtype=np.float64).copy()
    weights[0] = 0.0
    draw = _item_drawer(weights)
    total = weights.sum()
    positive = weights > 0
    b_rows, b_items = np.divmod(blocked, stride)
    available = positive.sum() - np.bincount(b_rows, weights=positive[b_items], minlength=num_rows)
    if num_rows and available.min() < num:
        r = int(np.argmin(available))
        raise ValueError(
            f"negative sampling: eval row {r} has only {int(available[r])} drawable items "
            f"(non-zero weight, not excluded), expected at least {num}"
        )
    # mass a row cannot draw, to size each row's draws from its acceptance rate
    lost = np.bincount(b_rows, weights=weights[b_items], minlength=num_rows)
    out = np.zeros((num_rows, num), dtype=np.int64)
    filled = np.zeros(num_rows, dtype=np.int64)
    taken = np.empty(0, dtype=np.int64)
    for _ in range(max_rounds):
        rows = np.flatnonzero(filled < num)
        if len(rows) == 0:
            return out
        need = num - filled[rows]
        accept = np.maximum(1.0 - lost[rows] / total, 1e-6)
        counts = np.minimum(np.ceil(need / accept * 1.25) + 8, 64 * num).astype(np.int64)
        row_of = np.repeat(rows, counts)
        items = draw(rng, len(row_of))
        keys = row_of * stride + items
        # checks run on sorted keys: numpy's searchsorted is much faster for ascending queries, and a
        # stable sort puts each key's earliest draw first, which is the one a repeat must yield to
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        ok = np.ones(len(keys), dtype=bool)
        ok[1:] = ordered[1:] != ordered[:-1]
        ok &= ~_in_sorted(ordered, blocked) & ~_in_sorted(ordered, taken)
        keep = np.zeros(len(keys), dtype=bool)
        keep[order[ok]] = True
        # 1-based index of each kept draw within its row; take only the first `need`
        csum = np.cumsum(keep)
        block_end = np.cumsum(counts)
        base = np.concatenate([[0], csum[block_end[:-1] - 1]])
        nth = csum - np.repeat(base, counts)
        take = np.flatnonzero(keep & (nth <= np.repeat(need, counts)))
        r_take, i_take = row_of[take], items[take]
        out[r_take, filled[r_take] + nth[take] - 1] = i_take
        filled += np.bincount(r_take, minlength=num_rows)
        lost += np.bincount(r_take, weights=weights[i_take], minlength=num_rows)
        # both parts are ascending, so the stable (merging) sort is cheap
        taken = np.sort(np.concatenate([taken, np.sort(keys[take])]), kind="stable")
    raise RuntimeError(f"negative sampling: not finished after {max_rounds} rounds")


def _sampled(
    dataset: SequenceDataset,
    view: SplitView,
    rng: np.random.Generator,
    weights: np.ndarray,
    exclude_history: bool,
    name: str,
) -> Candidates:
    stride = dataset.num_items + 1
    r = view.num_rows
    keys = np.arange(r, dtype=np.int64) * stride + view.targets
    if exclude_history:
        keys = np.concatenate([keys, view.hist_rows * stride + view.hist_items])
    try:
        negatives = sample_negatives(rng, weights, sorted_unique(keys), r)
    except ValueError as e:
        raise ValueError(f"{dataset.name} ({view.split}, {name}): {e}; a sampled protocol needs every user to "
                         f"have at least {NUM_NEGATIVES} items left to draw ({dataset.num_items:,} items in all): "
                         f"leave {name} out of eval.protocols or use 'full'") from None
    return Candidates(name, view.split, np.concatenate([view.targets[:, None], negatives], axis=1))


@PROTOCOLS.register("full")
def full(
    dataset: SequenceDataset, view: SplitView, rng: np.random.Generator, mask_history: bool
) -> Candidates:
    """Every item 1..I; the user's history is masked unless ``mask_history`` is False."""
    return Candidates("full", view.split, None, mask_history)


@PROTOCOLS.register("uni100")
def uni100(
    dataset: SequenceDataset, view: SplitView, rng: np.random.Generator, mask_history: bool
) -> Candidates:
    """100 negatives drawn uniformly from the items outside the user's history and target."""
    weights = np.ones(dataset.num_items + 1)
    return _sampled(dataset, view, rng, weights, True, "uni100")


@PROTOCOLS.register("pop100")
def pop100(
    dataset: SequenceDataset, view: SplitView, rng: np.random.Generator, mask_history: bool
) -> Candidates:
    """100 negatives ∝ training popularity, outside the user's history and target (unseen items never)."""
    return _sampled(dataset, view, rng, dataset.train_popularity(), True, "pop100")


@PROTOCOLS.register("pop100-recbole")
def pop100_recbole(
    dataset: SequenceDataset, view: SplitView, rng: np.random.Generator, mask_history: bool
) -> Candidates:
    """RecBole's pop100: popularity over ALL interactions (valid and test included), only the target
    excluded, so the user's own history may be drawn. RecBole draws with replacement; here, as for
    every protocol, the 100 negatives of a user are distinct."""
    weights = np.bincount(dataset.items, minlength=dataset.num_items + 1)
    return _sampled(dataset, view, rng, weights, False, "pop100-recbole")
