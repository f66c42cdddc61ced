"""Floors every sequential result is read against: the most popular items, and a first-order
item-to-item Markov chain. Both are counted on the training parts only (each user's valid and test
items left out) and score like a model (``score_last``), so the Evaluator ranks them the same way.
On sparse logs a weak transformer can land at the Markov chain's level; one that does not clearly
beat it has a wrong recipe.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from recarch.data.sequences import SequenceDataset


def training_mask(data: SequenceDataset) -> np.ndarray:
    """(nnz,) True where an interaction lies in its user's training part."""
    position = np.arange(data.num_interactions) - np.repeat(data.offsets[:-1], data.lengths())
    return position < np.repeat(data.train_ends() - data.offsets[:-1], data.lengths())


class Popularity(nn.Module):
    """Scores every item by its count in the training parts."""

    def __init__(self, data: SequenceDataset) -> None:
        super().__init__()
        self.register_buffer("popularity", torch.from_numpy(data.train_popularity()).double())

    def score_last(self, seq: torch.Tensor) -> torch.Tensor:
        return self.popularity.expand(len(seq), -1).clone()


class MarkovChain(nn.Module):
    """Scores item j after last item i by the count of i → j transitions in the training parts; the
    popularity, scaled below one transition, orders the items never seen after i."""

    def __init__(self, data: SequenceDataset) -> None:
        super().__init__()
        train = training_mask(data)
        user = np.repeat(np.arange(data.num_users), data.lengths())
        pair = train[:-1] & train[1:] & (user[:-1] == user[1:])  # consecutive, inside one training part
        src, dst = data.items[:-1][pair], data.items[1:][pair]
        keys, counts = np.unique(src * (data.num_items + 1) + dst, return_counts=True)  # sorted by (src, dst)
        self.sources, self.targets = keys // (data.num_items + 1), keys % (data.num_items + 1)
        self.counts = counts.astype(np.float64)
        self.indptr = np.searchsorted(self.sources, np.arange(data.num_items + 2))
        pop = data.train_popularity().astype(np.float64)
        self.register_buffer("fill", torch.from_numpy(pop / (pop.max() + 1.0)))

    def score_last(self, seq: torch.Tensor) -> torch.Tensor:
        last = seq[:, -1].cpu().numpy()
        start, stop = self.indptr[last], self.indptr[last + 1]
        size = stop - start
        rows = np.repeat(np.arange(len(last)), size)
        at = np.repeat(start - np.cumsum(size) + size, size) + np.arange(size.sum())
        scores = self.fill.expand(len(seq), -1).clone()
        scores[torch.from_numpy(rows), torch.from_numpy(self.targets[at])] += torch.from_numpy(self.counts[at])
        return scores
