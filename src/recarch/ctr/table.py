"""Encoded CTR data as the models consume it, and training batches over it.

A :class:`CTRTable` holds one split: per-field categorical ids (field-local, 0 = missing or
out-of-vocabulary), log(1+x)-transformed numeric features and 0/1 labels. Arrays may be
``np.memmap`` views of a cache on disk, so data larger than memory is read batch by batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Tuple

import numpy as np
import torch


@dataclass
class CTRSchema:
    fields: List[str]  # categorical field names, in column order of ``cat``
    vocab_sizes: List[int]  # rows of each field's embedding table, id 0 (missing/rare) included
    numeric: List[str]  # numeric feature names, in column order of ``num``

    @property
    def num_fields(self) -> int:
        return len(self.fields)


@dataclass
class CTRTable:
    cat: np.ndarray  # int64 (n, F)
    num: np.ndarray  # float32 (n, D); D may be 0
    label: np.ndarray  # float32 (n,), 0 or 1

    def __len__(self) -> int:
        return len(self.label)


@dataclass
class CTRData:
    name: str
    schema: CTRSchema
    train: CTRTable
    valid: CTRTable
    test: CTRTable

    def split(self, name: str) -> CTRTable:
        if name not in ("train", "valid", "test"):
            raise ValueError(f"unknown split {name!r}; expected train, valid or test")
        return getattr(self, name)


Batch = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def batches(table: CTRTable, batch_size: int, shuffle: bool = False, seed: int = 0, epoch: int = 0) -> Iterator[Batch]:
    """(cat, num, label) tensors; a shuffled order depends only on (seed, epoch), so resuming is exact.
    Rows are gathered in sorted order inside a batch, which keeps memory-mapped reads sequential."""
    n = len(table)
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else None
    for start in range(0, n, batch_size):
        if order is None:
            rows = slice(start, min(start + batch_size, n))
        else:
            rows = np.sort(order[start:start + batch_size])
        yield (torch.from_numpy(np.array(table.cat[rows], dtype=np.int64)),  # copies: memory maps are read-only
               torch.from_numpy(np.array(table.num[rows], dtype=np.float32)),
               torch.from_numpy(np.array(table.label[rows], dtype=np.float32)))


class TrainBatches:
    """Shuffled training batches with the ``epoch(e)`` / ``len`` interface of the sequential trainer."""

    def __init__(self, table: CTRTable, batch_size: int, seed: int) -> None:
        self.table, self.batch_size, self.seed = table, batch_size, seed

    def __len__(self) -> int:
        return -(-len(self.table) // self.batch_size)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        return batches(self.table, self.batch_size, shuffle=True, seed=self.seed, epoch=epoch)
