"""NASRec's scoring on inherited weights after a short fine-tune of the final layer (Zhang et al., 2022,
§ search: each child is scored by its validation log loss once steps that train only its final layer
have run): the candidate is extracted from the supernet (its BatchNorm statistics re-estimated first),
the features its final layer reads are computed once for ``finetune_rows`` training rows, and that
layer alone (a logistic regression on those features) takes ``finetune_steps`` full-batch Adam steps
on their binary cross entropy. The rest of the network keeps the supernet's weights, so the score
still measures what the shared weights learned, with the head fitted to this candidate's features
rather than to the mixture of paths that shared it.

``finetune_from: valid`` fits the head on held-out rows instead: half the validation split at most, the
candidate then scored on the other half. On a small log the supernet has seen every training row many
times, so a head fitted on training rows grows overconfident (BENCHMARKS.md, CTR fidelity on frappe).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from recarch.ctr.supernet import NASRecNet
from recarch.ctr.table import CTRTable
from recarch.modes import eval_mode


def finetune_rows(table: CTRTable, rows: int, seed: int):
    """(cat, num, label) tensors of ``rows`` training rows drawn without replacement (seeded)."""
    picked = np.sort(np.random.default_rng(seed).choice(len(table), size=min(rows, len(table)), replace=False))
    return as_tensors(table, picked)


def held_out_split(table: CTRTable, rows: int, seed: int) -> Tuple[Tuple[torch.Tensor, ...], CTRTable]:
    """``finetune_from: valid``: (cat, num, label) tensors of ``rows`` validation rows (at most half of them,
    drawn seeded) that the head is fitted on, and the table of the other rows, on which candidates are scored."""
    order = np.random.default_rng(seed).permutation(len(table))
    fit, scored = np.sort(order[:min(rows, len(table) // 2)]), np.sort(order[min(rows, len(table) // 2):])
    return as_tensors(table, fit), CTRTable(np.asarray(table.cat[scored]), np.asarray(table.num[scored]),
                                            np.asarray(table.label[scored]))


def as_tensors(table: CTRTable, picked: np.ndarray) -> Tuple[torch.Tensor, ...]:
    return (torch.from_numpy(np.array(table.cat[picked], dtype=np.int64)),
            torch.from_numpy(np.array(table.num[picked], dtype=np.float32)),
            torch.from_numpy(np.array(table.label[picked], dtype=np.float32)))


def finetune_head(net: NASRecNet, rows, steps: int, lr: float) -> NASRecNet:
    """``net`` with its final layer fitted for ``steps`` full-batch Adam steps on ``rows`` (in place)."""
    cat, num, label = rows
    with torch.no_grad(), eval_mode(net):
        features = net.features(cat, num)
    head = net.head
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(head(features).squeeze(-1), label).backward()
        optimizer.step()
    return net
