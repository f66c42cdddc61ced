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


def full_ce(hidden: torch.Tensor, target: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    logits = hidden @ items.T  # (M, I+1)
    return F.cross_entropy(logits, target)


def sampled_softmax(hidden: torch.Tensor, target: torch.Tensor, items: torch.Tensor, num_negatives: int,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    # drawn on the CPU generator (seeded, checkpointed) whatever the model's device
    negatives = torch.randint(1, items.shape[0], (num_negatives,), generator=generator).to(items.device)
    pos = (hidden * items[target]).sum(-1, keepdim=True)  # (M, 1)
    neg = hidden @ items[negatives].T  # (M, K)
    neg = neg.masked_fill(negatives[None, :] == target[:, None], float("-inf"))
    logits = torch.cat([pos, neg], dim=1)
    return F.cross_entropy(logits, torch.zeros_like(target))
