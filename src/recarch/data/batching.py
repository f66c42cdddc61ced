"""Training batches for sequential models, built by vectorised gathers from the CSR sequences.

Regimes (DESIGN.md §2): ``all_positions`` — one sample per user, a target at every position
(SASRec's); ``last_position`` — one sample per training prefix, a target at the last position only
(RecBole's). The order of an epoch depends only on (seed, epoch), which makes resuming exact.
"""
from __future__ import annotations

from typing import Iterator, Literal, Tuple

import numpy as np
import torch

from recarch.data.sequences import SequenceDataset, windows

Regime = Literal["all_positions", "last_position"]


class TrainBatches:
    """Iterable of (seq (B, N), target) pairs; target is (B, N) for all_positions, (B,) otherwise.

    Both are left-padded with 0, so ``target[:, j]`` is the item that follows ``seq[:, j]``."""

    def __init__(self, dataset: SequenceDataset, max_len: int, regime: Regime, batch_size: int,
                 seed: int) -> None:
        self.items = dataset.items
        self.max_len, self.regime, self.batch_size, self.seed = max_len, regime, batch_size, seed
        starts, ends = dataset.offsets[:-1], dataset.train_ends()
        keep = ends - starts >= 2  # a user needs an input and a target
        starts, ends = starts[keep], ends[keep]
        if regime == "all_positions":
            self.starts, self.ends = starts, ends
        elif regime == "last_position":
            # one sample per target position t in [start+1, end): input items[start:t]
            counts = ends - starts - 1
            self.starts = np.repeat(starts, counts)
            self.ends = self.starts + 1 + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
        else:
            raise ValueError(f"unknown training regime {regime!r}; expected all_positions or last_position")

    @property
    def num_samples(self) -> int:
        return len(self.starts)

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def batch(self, rows: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        starts, ends = self.starts[rows], self.ends[rows]
        if self.regime == "all_positions":
            seq = windows(self.items, starts, ends - 1, self.max_len)
            target = windows(self.items, starts + 1, ends, self.max_len)
        else:
            seq = windows(self.items, starts, ends, self.max_len)
            target = self.items[ends]
        return torch.from_numpy(seq), torch.from_numpy(np.ascontiguousarray(target))

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        order = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
        for b in range(start_batch, len(self)):
            yield self.batch(order[b * self.batch_size:(b + 1) * self.batch_size])
