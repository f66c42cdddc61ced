"""Next-item losses (EASRec Eq. 12-14): softmax over items with cross entropy against the next item.

``full_ce`` scores every item; ``sampled_softmax`` scores the target against K uniformly drawn
negatives, shared by the batch or drawn for every sequence (a negative equal to the target is masked).

Per sequence: B·K distinct draws a step instead of K, so nearly every row of the tied item table gets
a negative gradient every step, as under the full cross entropy and RecTools's per-position sets. On
Amazon Beauty (width 64, 12k items) shared sets plateaued at the Markov chain's test accuracy, while
per-sequence sets learned faster over the first epochs (validation NDCG@10 0.0526 against 0.047 at
epoch 17); the full cross entropy learned faster and further than both (0.061 at epoch 21).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F


def select_targets(hidden: torch.Tensor, target: torch.Tensor):
    """Keep positions with a real target: (B, N, D), (B, N) -> (M, D), (M,); (B, D), (B,) pass."""
    if target.dim() == 2:
        real = target > 0
        return hidden[real], target[real]
    return hidden, target


CHUNK_ELEMENTS = 1 << 18  # logits held at once by full_ce: 1 MB, so a chunk stays in cache


class Teacher(NamedTuple):
    """What knowledge distillation mixes into the next-item target: q = (1 − α)·onehot(target) +
    α·softmax(teacher's scores) (Hinton et al., 2015, at temperature 1). ``hidden`` rows match the
    student's (same sequences and positions); ``items`` is the teacher's own item table."""
    hidden: torch.Tensor
    items: torch.Tensor
    alpha: float


def _chunked_lse(hidden: torch.Tensor, items: torch.Tensor, chunk: int) -> torch.Tensor:
    lse = hidden.new_full((hidden.shape[0],), float("-inf"))
    for start in range(0, items.shape[0], chunk):
        lse = torch.logaddexp(lse, torch.logsumexp(hidden @ items[start:start + chunk].T, 1))
    return lse


class _ChunkedSoftmaxCE(torch.autograd.Function):
    """Σ_m [logsumexp_j(s_mj) − Σ_j q_mj s_mj], s_mj = h_m·e_j over all I+1 rows e_j of the table,
    without the (M, I+1) logits in memory: columns in chunks of C; the forward keeps each row's
    logsumexp, the backward recomputes a chunk's logits and turns them into softmax − q gradients.
    q is the one-hot target, or with a teacher (u_mj = teacher h_m·e_j) (1 − α)·onehot + α·softmax(u).
    Exact; on Beauty (M ≈ 860 targets a batch, I = 12k) one pass over memory instead of the logits' five."""

    @staticmethod
    def forward(ctx, hidden, items, target, chunk, t_hidden, t_items, alpha):
        lse = _chunked_lse(hidden, items, chunk)
        hard = 1.0 - alpha if t_hidden is not None else 1.0
        loss = lse - hard * (hidden * items[target]).sum(1)
        if t_hidden is not None:
            t_lse = _chunked_lse(t_hidden, t_items, chunk)
            for start in range(0, items.shape[0], chunk):
                p_t = torch.exp(t_hidden @ t_items[start:start + chunk].T - t_lse[:, None])
                loss -= alpha * (p_t * (hidden @ items[start:start + chunk].T)).sum(1)
        else:
            t_lse = None
        ctx.save_for_backward(hidden, items, target, lse, t_hidden, t_items, t_lse)
        ctx.chunk, ctx.alpha, ctx.hard = chunk, alpha, hard
        return loss.sum()

    @staticmethod
    def backward(ctx, grad):
        hidden, items, target, lse, t_hidden, t_items, t_lse = ctx.saved_tensors
        d_hidden = -ctx.hard * items[target]
        d_items = torch.empty_like(items)
        for start in range(0, items.shape[0], ctx.chunk):
            e = items[start:start + ctx.chunk]
            p = torch.exp(hidden @ e.T - lse[:, None])  # (M, C) softmax columns
            if t_hidden is not None:
                p -= ctx.alpha * torch.exp(t_hidden @ t_items[start:start + ctx.chunk].T - t_lse[:, None])
            d_hidden.addmm_(p, e)
            torch.mm(p.T, hidden, out=d_items[start:start + ctx.chunk])
        d_items.index_add_(0, target, -ctx.hard * hidden)
        return d_hidden * grad, d_items * grad, None, None, None, None, None


def full_ce(hidden: torch.Tensor, target: torch.Tensor, items: torch.Tensor, reduction: str = "mean",
            teacher: Optional[Teacher] = None) -> torch.Tensor:
    """Softmax cross entropy over every row of ``items`` (padding row 0 included, as a plain
    ``F.cross_entropy`` over ``hidden @ items.T`` would), computed in chunks of columns; with a
    ``teacher``, against the distilled target (:class:`Teacher`)."""
    if reduction not in ("sum", "mean"):
        raise ValueError(f"full_ce: reduction must be 'sum' or 'mean', got {reduction!r}")
    chunk = max(64, CHUNK_ELEMENTS // max(len(hidden), 1))
    t_hidden, t_items, alpha = teacher if teacher is not None else (None, None, 0.0)
    loss = _ChunkedSoftmaxCE.apply(hidden, items, target, chunk, t_hidden, t_items, alpha)
    return loss / max(len(hidden), 1) if reduction == "mean" else loss


def draw_negatives(num_items: int, shape, generator: Optional[torch.Generator], device) -> torch.Tensor:
    """Item ids of ``shape`` uniform in 1..num_items, drawn on the CPU generator (seeded, checkpointed)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return torch.randint(1, num_items + 1, shape, generator=generator).to(device)


def sampled_softmax(hidden: torch.Tensor, target: torch.Tensor, items: torch.Tensor, negatives: torch.Tensor,
                    reduction: str = "mean", teacher: Optional[Teacher] = None) -> torch.Tensor:
    """Cross entropy of the target against K sampled negatives; with a ``teacher``, against the
    distilled target (:class:`Teacher`) over the same candidates (the target and its negatives).

    hidden (B, N, D) with target (B, N) (0 = no target), or hidden (M, D) with target (M,); negatives
    (K,) shared by every row, (B, K) one set per sequence, shared by its positions, or (B, N, K) one
    set per position (RecTools's). Per-sequence sets score by one batched product over the padded
    positions, so B·K distinct draws cost little more than K shared ones; per-position sets gather
    M·K embeddings."""
    logits = candidate_logits(hidden, target, items, negatives)
    if teacher is None:
        return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device),
                               reduction=reduction)
    with torch.no_grad():
        q = teacher.alpha * torch.softmax(candidate_logits(teacher.hidden, target, teacher.items, negatives), 1)
        q[:, 0] += 1.0 - teacher.alpha
    loss = -torch.where(q > 0, q * torch.log_softmax(logits, 1), 0.0).sum(1)  # a masked negative: q = 0
    return loss.sum() if reduction == "sum" else loss.mean()


def candidate_logits(hidden: torch.Tensor, target: torch.Tensor, items: torch.Tensor,
                     negatives: torch.Tensor) -> torch.Tensor:
    """(M, 1 + K) scores of every real target (column 0) and its negatives, a negative equal to the
    target at −inf; shapes as in :func:`sampled_softmax`."""
    if negatives.dim() == 3:
        negatives = negatives[target > 0]  # (M, K)
        hidden, target = select_targets(hidden, target)
        neg = torch.bmm(items[negatives], hidden[:, :, None])[:, :, 0]  # (M, K)
    elif negatives.dim() == 2:
        emb = items[negatives]  # (B, K, D)
        if hidden.dim() == 3:
            n = max(int((target > 0).sum(1).max()), 1)  # targets are left-padded: the last n columns hold them all
            hidden, target = hidden[:, -n:], target[:, -n:]
            neg = hidden @ emb.transpose(1, 2)  # (B, n, K)
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
    return torch.cat([pos, neg], dim=1)
