"""Bernoulli gates over embedding-dimension blocks (iHAS search stage, DESIGN.md §5).

A small :class:`GateNetwork` reads the instance's own features — through its *own* narrow embedding
(``GateConfig.embed_dim`` columns per field), so that routing at inference never needs the wide
search-stage tables — and outputs one logit per (field, block). :class:`Gates` turns the logits into
gates:

* training: a sample from a relaxed Bernoulli — ``straight_through`` (exact 0/1 forward, the
  gradient of the probability backward) or ``hard_concrete`` (Louizos et al. 2018: a stretched,
  clipped binary-concrete sample, exactly 0 or 1 with positive probability);
* evaluation: the deterministic gate 1[σ(logit) > 0.5], for both estimators (the clustering stage's
  "deterministic selection"; for hard concrete this is where its eval-time gate
  clip(σ(logit)(ζ−γ)+γ, 0, 1) crosses ½).

Regularisers (the paper's summary names a sparsity and a bi-polarisation term; their exact forms are
not public, so these are ours): ``sparsity_loss`` = (weighted active fraction − target)², or only its
part above the target when one-sided; ``bipolar_loss`` = mean p(1 − p), which pushes each probability
toward 0 or 1 so the deterministic gates agree with what was trained.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional, Tuple

import torch
from torch import nn

from recarch.config import ConfigError
from recarch.ctr.models import FieldEmbedding
from recarch.ctr.table import CTRSchema

ESTIMATORS = ("straight_through", "hard_concrete")


@dataclass
class GateConfig:
    estimator: Literal["straight_through", "hard_concrete"] = "straight_through"
    embed_dim: int = 1  # columns of the gate network's own embedding per field (its input)
    hidden: int = 64  # hidden width of the gate MLP; 0: a linear map
    init_logit: float = 2.0  # output bias at the start: σ(2) ≈ 0.88, so the search starts near full width
    init_std: float = 0.01  # the gate embedding's initialisation
    hash_buckets: int = 256  # > 0: the gate embedding has at most this many rows per field (larger ids hashed)
    beta: float = 2 / 3  # hard concrete: temperature
    gamma: float = -0.1  # hard concrete: stretch interval (γ, ζ)
    zeta: float = 1.1

    def validate(self) -> None:
        if self.embed_dim < 1 or self.hidden < 0:
            raise ConfigError(f"gate.embed_dim must be ≥ 1 and gate.hidden ≥ 0, got {self.embed_dim} / {self.hidden}")
        if self.hash_buckets == 1 or self.hash_buckets < 0:
            raise ConfigError(f"gate.hash_buckets must be 0 (off) or ≥ 2, got {self.hash_buckets}")
        if self.beta <= 0 or not self.gamma < 0 < 1 < self.zeta:
            raise ConfigError(f"gate: need beta > 0 and gamma < 0 < 1 < zeta, got {self.beta}, {self.gamma}, {self.zeta}")


class GateNetwork(nn.Module):
    """(cat, num) → logits (B, F, K): own embedding → flatten → [Linear → ReLU] → Linear.

    With ``hash_buckets`` = H, a field with more than H ids gets H rows: ids below H keep theirs, larger
    ones go to 1 + (id mod (H − 1)) (0 stays the missing/rare id)."""

    def __init__(self, schema: CTRSchema, blocks: int, cfg: GateConfig) -> None:
        super().__init__()
        self.fields, self.blocks = schema.num_fields, blocks
        self.buckets = cfg.hash_buckets
        if self.buckets:
            schema = CTRSchema(schema.fields, [min(v, self.buckets) for v in schema.vocab_sizes], schema.numeric)
        self.embedding = FieldEmbedding(schema, cfg.embed_dim, numeric=True, init_std=cfg.init_std)
        width = self.embedding.num_tokens * cfg.embed_dim
        out = nn.Linear(cfg.hidden or width, self.fields * blocks)
        nn.init.normal_(out.weight, std=0.01)
        nn.init.constant_(out.bias, cfg.init_logit)
        self.mlp = nn.Sequential(*([nn.Linear(width, cfg.hidden), nn.ReLU()] if cfg.hidden else []), out)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        if self.buckets:
            cat = torch.where(cat < self.buckets, cat, 1 + cat % (self.buckets - 1))
        return self.mlp(self.embedding(cat, num).flatten(1)).view(-1, self.fields, self.blocks)


def straight_through(logits: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A Bernoulli(σ(logits)) sample, exactly 0/1 forward, with ∂z/∂p = 1 backward."""
    prob = torch.sigmoid(logits)
    hard = torch.bernoulli(prob.detach(), generator=generator)
    return hard + (prob - prob.detach())  # the bracket is exactly 0 forward, so z is exactly 0 or 1


def hard_concrete(logits: torch.Tensor, beta: float, gamma: float, zeta: float,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Louizos et al.'s hard concrete sample: clip(σ((log u − log(1−u) + logit)/β)(ζ−γ) + γ, 0, 1)."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + logits) / beta)
    return (s * (zeta - gamma) + gamma).clamp(0.0, 1.0)


def deterministic(logits: torch.Tensor) -> torch.Tensor:
    """The clustering stage's gate: 1[σ(logit) > 0.5] as floats."""
    return (logits > 0).to(logits.dtype)


class Gates(nn.Module):
    """The gate network plus the estimator: ``forward`` returns (gates, probability of being on),
    both (B, F, K); gates are sampled in training mode and deterministic in eval mode."""

    def __init__(self, schema: CTRSchema, blocks: int, cfg: GateConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.network = GateNetwork(schema, blocks, cfg)
        # hard concrete: P(z > 0) = σ(logit − β log(−γ/ζ)) (Louizos et al., Eq. 12)
        self.l0_shift = cfg.beta * math.log(-cfg.gamma / cfg.zeta) if cfg.estimator == "hard_concrete" else 0.0

    def logits(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        return self.network(cat, num)

    def probability(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits - self.l0_shift)

    def sample(self, logits: torch.Tensor) -> torch.Tensor:
        if self.cfg.estimator == "straight_through":
            return straight_through(logits)
        return hard_concrete(logits, self.cfg.beta, self.cfg.gamma, self.cfg.zeta)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        logits = self.logits(cat, num)
        gates = self.sample(logits) if self.training else deterministic(logits)
        return gates, self.probability(logits)

    @torch.no_grad()
    def pattern(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        """Deterministic on/off pattern (B, F, K) as booleans."""
        return self.logits(cat, num) > 0


def active_fraction(prob: torch.Tensor, field_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean over the batch of each instance's active fraction: blocks averaged per field, fields
    averaged with ``field_weights`` (F,) summing to 1 (None: equal weights)."""
    per_field = prob.mean(-1)  # (B, F)
    if field_weights is None:
        return per_field.mean()
    return (per_field * field_weights).sum(-1).mean()


def sparsity_loss(prob: torch.Tensor, target: float, field_weights: Optional[torch.Tensor] = None,
                  one_sided: bool = False) -> torch.Tensor:
    """(active fraction − target)², the active fraction taken over the batch (so instances may
    differ as long as the average meets the target); one-sided: only the excess is penalised."""
    gap = active_fraction(prob, field_weights) - target
    return (gap.clamp(min=0) if one_sided else gap).pow(2)


def bipolar_loss(prob: torch.Tensor) -> torch.Tensor:
    """Mean p(1 − p): zero when every probability is 0 or 1."""
    return (prob * (1 - prob)).mean()
