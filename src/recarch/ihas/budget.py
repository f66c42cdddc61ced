"""iHAS's optional hard cap on embedding parameters (``IHASConfig.budget``).

The sparsity regulariser's target is soft, and a group's majority vote can keep more blocks than any one
member, so after clustering kept blocks are dropped until the parameters fit the cap: per instance when
every group has its own tables, for the whole ensemble when the groups share them (``tables: shared``).
"""
from __future__ import annotations

from typing import Dict

import torch

from recarch.ctr.models import CTRModelConfig, build_ctr_model
from recarch.ctr.run import embedding_parameters
from recarch.ctr.table import CTRSchema


def mean_cost(blocks: torch.Tensor, share: torch.Tensor, block_cost: torch.Tensor) -> float:
    """Σ_g share_g Σ_{f,k} blocks_gfk · block_cost_f: the blocks' parameters averaged over instances."""
    return float((share[:, None, None] * blocks.float() * block_cost[None, :, None]).sum())


def fit_budget(blocks: torch.Tensor, votes: torch.Tensor, share: torch.Tensor, block_cost: torch.Tensor,
               limit: float) -> torch.Tensor:
    """Drop kept blocks of ``blocks`` (G, F, K) until their parameters averaged over instances (groups
    weighted by ``share`` (G,), a block of field f costing ``block_cost`` (F,)) are at most ``limit``.

    The block dropped next has the fewest votes (``votes`` (G, F, K), the fraction of the group's members
    keeping it) per parameter it costs: the regulariser's target is soft and the majority vote can keep
    more than it, so this turns a memory budget into a hard cap at the least loss of what the gates chose.
    Every block goes before the limit is given up on."""
    blocks = blocks.clone()
    cost = block_cost[None, :, None].expand_as(votes)
    while blocks.any() and mean_cost(blocks, share, block_cost) > limit:
        priority = torch.where(blocks, votes / cost, torch.full_like(votes, float("inf")))
        blocks.view(-1)[int(priority.argmin())] = False
    return blocks


def shared_cost(blocks: torch.Tensor, block_cost: torch.Tensor) -> float:
    """Σ_f block_cost_f · max_g n_gf: the shared tables' parameters, each field's table as wide as the
    group keeping the most of its blocks (n_gf) needs (groups read the first columns, so only counts matter)."""
    return float((blocks.sum(-1).amax(0).float() * block_cost).sum())


def fit_shared_budget(blocks: torch.Tensor, votes: torch.Tensor, block_cost: torch.Tensor, limit: float) -> torch.Tensor:
    """Narrow shared tables until :func:`shared_cost` ≤ ``limit``: each step takes one block of width off
    the field whose widest groups would lose the fewest votes per parameter saved — from every group at
    that field's widest, its least-voted kept block."""
    blocks = blocks.clone()
    while blocks.any() and shared_cost(blocks, block_cost) > limit:
        counts = blocks.sum(-1)  # (G, F)
        best = None
        for f in torch.nonzero(counts.amax(0)).flatten().tolist():
            widest = torch.nonzero(counts[:, f] == counts[:, f].max()).flatten().tolist()
            drop = [(g, int(torch.where(blocks[g, f], votes[g, f], torch.tensor(float("inf"))).argmin())) for g in widest]
            lost = sum(float(votes[g, f, k]) for g, k in drop) / float(block_cost[f])
            if best is None or lost < best[0]:
                best = (lost, f, drop)
        for g, k in best[2]:
            blocks[g, best[1], k] = False
    return blocks


class Budget:
    """The cap in parameters: ``limit`` (``fraction`` × the full model's embedding parameters) =
    ``fixed`` (tables every model keeps, e.g. DeepFM's first order) + ``gate`` (the gate network's
    embedding, iHAS only) + the kept blocks, each of field f costing ``block_cost[f]`` = vocab_f ×
    block columns."""

    def __init__(self, schema: CTRSchema, model: CTRModelConfig, blocks: int, fraction: float, gate: int) -> None:
        full = embedding_parameters(build_ctr_model(schema, model))
        vocab = torch.tensor(schema.vocab_sizes, dtype=torch.float32)
        self.limit = fraction * full
        self.fixed = full - float(vocab.sum()) * model.embed_dim
        self.gate = gate
        self.block_cost = vocab * (model.embed_dim // blocks)

    def per_instance(self, blocks: torch.Tensor, share: torch.Tensor) -> float:
        return self.fixed + self.gate + mean_cost(blocks, share, self.block_cost)

    def shared(self, blocks: torch.Tensor) -> float:
        """The whole ensemble's embedding parameters when the groups share their tables."""
        return self.fixed + self.gate + shared_cost(blocks, self.block_cost)

    def fit(self, blocks: torch.Tensor, votes: torch.Tensor, share: torch.Tensor, shared: bool) -> torch.Tensor:
        """``blocks`` (G, F, K) within the cap: per instance, or for the shared tables when ``shared``."""
        room = self.limit - self.fixed - self.gate
        if shared:
            return fit_shared_budget(blocks, votes, self.block_cost, room)
        return fit_budget(blocks, votes, share, self.block_cost, room)

    def report(self, before: torch.Tensor, after: torch.Tensor, share: torch.Tensor, shared: bool = False
               ) -> Dict[str, float]:
        """The cap, the capped figure before and after, and how many blocks it dropped."""
        figure = self.shared if shared else (lambda b: self.per_instance(b, share))
        return {"limit": self.limit, "of": "ensemble" if shared else "per_instance",
                "before": figure(before), "after": figure(after), "dropped_blocks": int(before.sum() - after.sum())}
