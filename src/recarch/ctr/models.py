"""Hand-designed CTR models: DLRM, DeepFM, DCN-v2 and AutoInt, each ``forward(cat, num) -> logit (B,)``.

Inputs (recarch.ctr.table): ``cat`` (B, F) field-local ids, 0 = missing/rare; ``num`` (B, D) numeric
features after log(1+x). Every model embeds categorical fields with one table per field (stored as
one matrix with per-field offsets) and, except DLRM, turns each numeric feature into a token
``x · v_j`` (FuxiCTR's convention), so all fields are tokens of width ``embed_dim``.

- DLRM (Naumov et al. 2019): bottom MLP on the numeric features → one token; pairwise dot products
  of all tokens (upper triangle) concatenated with that token → top MLP.
- DeepFM (Guo et al. 2017): first-order weights + factorisation machine
  ½[(Σ_i e_i)² − Σ_i e_i²] + an MLP on the flattened tokens, summed.
- DCN-v2 (Wang et al. 2021), parallel form: cross layers x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l
  (full-rank W) beside an MLP; both outputs concatenated → linear.
- AutoInt (Song et al. 2019): multi-head self-attention layers over field tokens with a residual
  projection and ReLU, flattened → linear; with a non-empty ``mlp`` an MLP branch is added (AutoInt+).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Sequence

import torch
from torch import nn

from recarch.config import ConfigError
from recarch.dropout import Dropout
from recarch.ctr.table import CTRSchema
from recarch.registry import Registry, suggest


@dataclass
class CTRModelConfig:
    name: str = "deepfm"
    embed_dim: int = 16
    mlp: List[int] = field(default_factory=lambda: [400, 400, 400])  # hidden widths of the MLP (top MLP for DLRM)
    dropout: float = 0.2
    batch_norm: bool = False
    bottom_mlp: List[int] = field(default_factory=lambda: [64])  # DLRM: numeric features → a token
    cross_layers: int = 3  # DCN-v2
    attn_layers: int = 3  # AutoInt
    attn_heads: int = 2
    attn_dim: int = 32  # AutoInt: width of each attention layer's output
    init_std: float = 1e-4  # embedding initialisation (FuxiCTR's default)
    arch_file: str = ""  # nasrec: a searched architecture (arch.json of `recarch ctr search`)

    def validate(self) -> None:
        if self.name not in CTR_MODELS:
            raise ConfigError(f"model.name: unknown CTR model {self.name!r}{suggest(self.name, CTR_MODELS)}; "
                              f"registered: {', '.join(CTR_MODELS.names())}")
        if self.embed_dim < 1 or any(w < 1 for w in [*self.mlp, *self.bottom_mlp]):
            raise ConfigError("model.embed_dim and every MLP width must be ≥ 1")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.attn_dim % self.attn_heads:
            raise ConfigError(f"model.attn_dim {self.attn_dim} must be divisible by model.attn_heads {self.attn_heads}")


CTR_MODELS: Registry[Callable[[CTRSchema, CTRModelConfig], nn.Module]] = Registry("CTR model")


def mlp(widths: Sequence[int], dropout: float = 0.0, batch_norm: bool = False) -> nn.Sequential:
    """Linear → (BatchNorm) → ReLU → Dropout for each consecutive pair of ``widths``."""
    layers: List[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), *([nn.BatchNorm1d(b)] if batch_norm else []), nn.ReLU()]
        if dropout:
            layers.append(Dropout(dropout))
    return nn.Sequential(*layers)


class FieldEmbedding(nn.Module):
    """Tokens (B, F + D, dim): one embedding row per (field, id) and ``x · v_j`` per numeric feature j
    (``numeric=False`` leaves the numeric features out)."""

    def __init__(self, schema: CTRSchema, dim: int, numeric: bool = True, init_std: float = 1e-4) -> None:
        super().__init__()
        sizes = torch.tensor(schema.vocab_sizes, dtype=torch.long)
        self.register_buffer("offsets", torch.cumsum(sizes, 0) - sizes, persistent=False)
        self.table = nn.Embedding(int(sizes.sum()), dim)
        nn.init.normal_(self.table.weight, std=init_std)
        n_num = len(schema.numeric) if numeric else 0
        self.numeric = nn.Parameter(torch.randn(n_num, dim) * init_std) if n_num else None
        self.num_tokens = schema.num_fields + n_num

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        tokens = self.table(cat + self.offsets)
        if self.numeric is not None:
            tokens = torch.cat([tokens, num.unsqueeze(-1) * self.numeric], dim=1)
        return tokens


def pairwise_dots(tokens: torch.Tensor) -> torch.Tensor:
    """(B, T, d) → (B, T(T−1)/2): the dot product of every pair of tokens (DLRM's interaction)."""
    gram = tokens @ tokens.transpose(1, 2)
    i, j = torch.triu_indices(tokens.shape[1], tokens.shape[1], offset=1, device=tokens.device)
    return gram[:, i, j]


def fm_interaction(tokens: torch.Tensor) -> torch.Tensor:
    """Second-order factorisation machine term ½[(Σ e)² − Σ e²] summed over dimensions: (B,)."""
    return 0.5 * (tokens.sum(1).pow(2) - tokens.pow(2).sum(1)).sum(1)


class CTRModel(nn.Module):
    """Base: the schema and config; subclasses implement ``forward(cat, num) -> logit (B,)``."""

    def __init__(self, schema: CTRSchema, cfg: CTRModelConfig) -> None:
        super().__init__()
        self.schema, self.cfg = schema, cfg

    def predict(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        """Click probability (B,)."""
        return torch.sigmoid(self(cat, num))


@CTR_MODELS.register("dlrm")
class DLRM(CTRModel):
    def __init__(self, schema: CTRSchema, cfg: CTRModelConfig) -> None:
        super().__init__(schema, cfg)
        d = cfg.embed_dim
        self.embedding = FieldEmbedding(schema, d, numeric=False, init_std=cfg.init_std)
        n_num = len(schema.numeric)
        self.bottom = mlp([n_num, *cfg.bottom_mlp, d], batch_norm=cfg.batch_norm) if n_num else None
        tokens = schema.num_fields + (1 if n_num else 0)
        width = tokens * (tokens - 1) // 2 + (d if n_num else 0)
        self.top = nn.Sequential(mlp([width, *cfg.mlp], cfg.dropout, cfg.batch_norm),
                                 nn.Linear(cfg.mlp[-1] if cfg.mlp else width, 1))

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        tokens = self.embedding(cat, num)
        parts = []
        if self.bottom is not None:
            dense = self.bottom(num)
            tokens = torch.cat([tokens, dense.unsqueeze(1)], dim=1)
            parts.append(dense)
        parts.append(pairwise_dots(tokens))
        return self.top(torch.cat(parts, dim=1)).squeeze(-1)


@CTR_MODELS.register("deepfm")
class DeepFM(CTRModel):
    def __init__(self, schema: CTRSchema, cfg: CTRModelConfig) -> None:
        super().__init__(schema, cfg)
        self.embedding = FieldEmbedding(schema, cfg.embed_dim, init_std=cfg.init_std)
        self.first_order = FieldEmbedding(schema, 1, init_std=cfg.init_std)
        self.bias = nn.Parameter(torch.zeros(()))
        width = self.embedding.num_tokens * cfg.embed_dim
        self.deep = nn.Sequential(mlp([width, *cfg.mlp], cfg.dropout, cfg.batch_norm),
                                  nn.Linear(cfg.mlp[-1] if cfg.mlp else width, 1))

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        tokens = self.embedding(cat, num)
        linear = self.first_order(cat, num).sum((1, 2)) + self.bias
        return linear + fm_interaction(tokens) + self.deep(tokens.flatten(1)).squeeze(-1)


class CrossNetworkV2(nn.Module):
    """x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l with full-rank W_l (DCN-v2, Eq. 1)."""

    def __init__(self, width: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


@CTR_MODELS.register("dcnv2")
class DCNv2(CTRModel):
    def __init__(self, schema: CTRSchema, cfg: CTRModelConfig) -> None:
        super().__init__(schema, cfg)
        self.embedding = FieldEmbedding(schema, cfg.embed_dim, init_std=cfg.init_std)
        width = self.embedding.num_tokens * cfg.embed_dim
        self.cross = CrossNetworkV2(width, cfg.cross_layers)
        self.deep = mlp([width, *cfg.mlp], cfg.dropout, cfg.batch_norm)
        self.head = nn.Linear(width + (cfg.mlp[-1] if cfg.mlp else 0), 1)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        x0 = self.embedding(cat, num).flatten(1)
        parts = [self.cross(x0)] + ([self.deep(x0)] if len(self.deep) else [])
        return self.head(torch.cat(parts, dim=1)).squeeze(-1)


class InteractingLayer(nn.Module):
    """AutoInt's multi-head self-attention over field tokens: ReLU(MHA(x) + W_res x)."""

    def __init__(self, d_in: int, d_out: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_in, 3 * d_out, bias=False)
        self.residual = nn.Linear(d_in, d_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1) @ v
        return torch.relu(attn.transpose(1, 2).reshape(b, t, -1) + self.residual(x))


@CTR_MODELS.register("autoint")
class AutoInt(CTRModel):
    def __init__(self, schema: CTRSchema, cfg: CTRModelConfig) -> None:
        super().__init__(schema, cfg)
        self.embedding = FieldEmbedding(schema, cfg.embed_dim, init_std=cfg.init_std)
        dims = [cfg.embed_dim] + [cfg.attn_dim] * cfg.attn_layers
        self.attention = nn.Sequential(*(InteractingLayer(a, b, cfg.attn_heads) for a, b in zip(dims[:-1], dims[1:])))
        self.head = nn.Linear(self.embedding.num_tokens * dims[-1], 1)
        width = self.embedding.num_tokens * cfg.embed_dim
        self.deep = (nn.Sequential(mlp([width, *cfg.mlp], cfg.dropout, cfg.batch_norm), nn.Linear(cfg.mlp[-1], 1))
                     if cfg.mlp else None)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        tokens = self.embedding(cat, num)
        logit = self.head(self.attention(tokens).flatten(1)).squeeze(-1)
        if self.deep is not None:
            logit = logit + self.deep(tokens.flatten(1)).squeeze(-1)
        return logit


def build_ctr_model(schema: CTRSchema, cfg: CTRModelConfig) -> nn.Module:
    cfg.validate()
    return CTR_MODELS.get(cfg.name)(schema, cfg)
