"""Next-item losses (EASRec Eq. 12-14): softmax over items with cross entropy against the next item.

``full_ce`` scores every item; ``sampled_softmax`` scores the target against K uniformly drawn
negatives shared by the batch (for large catalogues; a negative equal to a row's target is masked).
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


def draw_negatives(num_items: int, k: int, generator: Optional[torch.Generator], device) -> torch.Tensor:
    """K item ids uniform in 1..num_items, drawn on the CPU generator (seeded, checkpointed)."""
    return torch.randint(1, num_items + 1, (k,), generator=generator).to(device)


def sampled_softmax(hidden: torch.Tensor, target: torch.Tensor, items: torch.Tensor, negatives: torch.Tensor,
                    reduction: str = "mean") -> torch.Tensor:
    pos = (hidden * items[target]).sum(-1, keepdim=True)  # (M, 1)
    neg = hidden @ items[negatives].T  # (M, K)
    neg = neg.masked_fill(negatives[None, :] == target[:, None], float("-inf"))
    logits = torch.cat([pos, neg], dim=1)
    return F.cross_entropy(logits, torch.zeros_like(target), reduction=reduction)
