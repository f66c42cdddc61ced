"""Next-item losses (EASRec Eq. 12-14): softmax over items with cross entropy against the next item.

``full_ce`` scores every item; ``sampled_softmax`` scores the target against K uniformly drawn
negatives, shared by the batch or drawn for every sequence (a negative equal to the target is masked).

Why per sequence: with one set of K shared by the batch, an item row of the tied table gets a negative
gradient in only K / I of the steps, and Adam, whose second moment then stays tiny for it, moves that
row by about 30 learning rates after each rare gradient: on Amazon Beauty (I = 12k, K = 256) SASRec
stalled at the Markov chain's accuracy. B·K draws per step reach nearly every row every step, as
full cross entropy and RecTools's per-position sets do.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def select_targets(hidden: torch.Tensor, target: torch.Tensor):
    """Keep positions with a real target: (B, N, D), (B, N) -> (M, D), (M,); (B, D), (B,) pass."""
    if target.dim() == 2:
        real = target > 0
        return hidden[real], target[real]
    return hidden, target


def full_ce(hidden: torch.Tensor, target: torch.Tensor, items: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    logits = hidden @ items.T  # (M, I+1)
    return F.cross_entropy(logits, target, reduction=reduction)


def draw_negatives(num_items: int, shape, generator: Optional[torch.Generator], device) -> torch.Tensor:
    """Item ids of ``shape`` uniform in 1..num_items, drawn on the CPU generator (seeded, checkpointed)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return torch.randint(1, num_items + 1, shape, generator=generator).to(device)


def sampled_softmax(hidden: torch.Tensor, target: torch.Tensor, items: torch.Tensor, negatives: torch.Tensor,
                    reduction: str = "mean") -> torch.Tensor:
    """Cross entropy of the target against K sampled negatives.

    hidden (B, N, D) with target (B, N) (0 = no target), or hidden (M, D) with target (M,); negatives
    (K,) shared by every row, or (B, K) one set per sequence, shared by its positions. Per-sequence
    sets score by one batched product over the padded positions, so B·K distinct draws cost little
    more than K shared ones."""
    if negatives.dim() == 2:
        emb = items[negatives]  # (B, K, D)
        if hidden.dim() == 3:
            neg = hidden @ emb.transpose(1, 2)  # (B, N, K)
            negatives = negatives[:, None, :].expand(-1, target.shape[1], -1)
        else:
            neg = torch.bmm(emb, hidden[:, :, None])[:, :, 0]  # (B, K)
        real = target > 0
        neg, negatives, (hidden, target) = neg[real], negatives[real], select_targets(hidden, target)
    else:
        hidden, target = select_targets(hidden, target)
        neg = hidden @ items[negatives].T  # (M, K)
        negatives = negatives[None, :]
    pos = (hidden * items[target]).sum(-1, keepdim=True)  # (M, 1)
    neg = neg.masked_fill(negatives == target[:, None], float("-inf"))
    logits = torch.cat([pos, neg], dim=1)
    return F.cross_entropy(logits, torch.zeros_like(target), reduction=reduction)
