"""iHAS's optional hard cap on embedding parameters per instance (``IHASConfig.budget``).

The sparsity regulariser's target is soft, and a group's majority vote can keep more blocks than any one
member, so after clustering kept blocks are dropped until the parameters per instance fit the cap.
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

    def report(self, before: torch.Tensor, after: torch.Tensor, share: torch.Tensor) -> Dict[str, float]:
        return {"limit": self.limit, "before": self.per_instance(before, share), "after": self.per_instance(after, share),
                "dropped_blocks": int(before.sum() - after.sum())}
