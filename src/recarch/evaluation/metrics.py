"""Top-K ranking metrics for next-item evaluation: the target's rank among candidates, then
Recall@K (= HR@K), MRR@K and NDCG@K averaged over users.

With one relevant item per user and a 0-based rank ``r`` of the target:

    Recall@K = 1[r < K]
    MRR@K    = 1 / (r + 1)        if r < K else 0
    NDCG@K   = 1 / log2(r + 2)    if r < K else 0   (the ideal DCG is 1/log2(2) = 1)

Ties count against the model: ``r`` = (number of candidates scoring >= the target) - 1, the target
itself counted once, so a constant model gets the worst rank (num_candidates - 1) and scores 0
unless it has a single candidate. Candidates scored ``-inf`` are masked out and never count.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Union

import torch

Tensor = torch.Tensor


def rank_of_target(scores: Tensor, target_col: Union[int, Tensor] = 0) -> Tensor:
    """0-based rank of each row's target among its candidates, ties counted against the model.

    ``scores`` is (B, C); the target of row b sits in column ``target_col`` (an int for every row,
    or a (B,) integer tensor). Candidates at ``-inf`` (or NaN) are masked and not counted; a target
    at ``-inf`` gets the worst rank (the number of unmasked candidates), a NaN target raises.
    Returns (B,) int64.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores: expected a (B, C) matrix, got shape {tuple(scores.shape)}")
    b = scores.shape[0]
    if isinstance(target_col, int):
        col = torch.full((b, 1), target_col, dtype=torch.long, device=scores.device)
    else:
        col = torch.as_tensor(target_col, dtype=torch.long, device=scores.device).reshape(b, 1)
    target = scores.gather(1, col)  # (B, 1)
    if torch.isnan(target).any():
        raise ValueError("scores: a target scored NaN; expected a number (or -inf when masked)")
    # a finite target already leaves -inf candidates out of `>=`; the target counts itself once
    # an int32 count is ~2x faster than the default int64 one on CPU
    ranks = (scores >= target).sum(1, dtype=torch.int32).long() - 1
    lost = torch.nonzero(target.squeeze(1) == float("-inf")).squeeze(1)
    if lost.numel():
        # a target at -inf ranks behind every unmasked candidate
        ranks[lost] = (scores[lost] > float("-inf")).sum(1)
    return ranks


def recall_at_k(ranks: Tensor, k: int) -> Tensor:
    """(B,) float: 1 where the target is in the top K (Recall@K = HR@K for one relevant item)."""
    return (torch.as_tensor(ranks) < k).double()


def mrr_at_k(ranks: Tensor, k: int) -> Tensor:
    """(B,) float: 1/(rank+1) where rank < K, else 0."""
    r = torch.as_tensor(ranks).double()
    return torch.where(r < k, 1.0 / (r + 1.0), torch.zeros_like(r))


def ndcg_at_k(ranks: Tensor, k: int) -> Tensor:
    """(B,) float: 1/log2(rank+2) where rank < K, else 0 (one relevant item, so IDCG = 1)."""
    r = torch.as_tensor(ranks).double()
    return torch.where(r < k, 1.0 / torch.log2(r + 2.0), torch.zeros_like(r))


METRICS: Dict[str, Callable[[Tensor, int], Tensor]] = {
    "recall": recall_at_k,
    "mrr": mrr_at_k,
    "ndcg": ndcg_at_k,
}


def metrics_from_ranks(ranks: Tensor, ks: Iterable[int] = (5, 10, 20)) -> Dict[str, float]:
    """Mean of every metric at every K: {"recall@5": ..., "mrr@5": ..., "ndcg@5": ..., ...}."""
    ranks = torch.as_tensor(ranks).reshape(-1)
    if ranks.numel() == 0:
        raise ValueError("ranks: expected at least one user to evaluate, got none")
    out: Dict[str, float] = {}
    for k in ks:
        if int(k) < 1:
            raise ValueError(f"ks: expected positive cut-offs, got {k}")
        for name, fn in METRICS.items():
            out[f"{name}@{int(k)}"] = float(fn(ranks, int(k)).mean())
    return out
