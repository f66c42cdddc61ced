"""The interface every sequential recommender implements, and the model registry.

Outside a model, sequences are left-padded (B, N) item ids, most recent item at column -1. Inside,
they are right-padded so causal attention never sees padding; ``forward`` maps back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Literal, Optional

import torch
from torch import nn

from recarch.config import ConfigError
from recarch.registry import Registry, suggest

MODELS: Registry = Registry("model")


@dataclass
class SeqModelConfig:
    name: str = "sasrec"
    max_len: int = 50  # N: positions embedded; longer histories keep their last N items
    hidden_size: int = 64  # d
    inner_size: int = 256  # d_ff
    n_layers: int = 2  # L
    n_heads: int = 2
    dropout: float = 0.2
    attn_dropout: float = 0.2
    attention: Literal["softmax", "linear"] = "softmax"
    gates: Literal[0, 1, 2] = 0  # EASRec's data-aware gates per layer (0: none, plain SASRec)
    layer: Literal["post_norm", "pre_norm", "sasrec", "ligr"] = "post_norm"  # how sublayers join the stream (models/sublayer.py)
    activation: Literal["gelu", "relu", "swiglu"] = "gelu"  # the FFN's
    positions: Literal["forward", "inverse"] = "forward"  # learned positions from the first item, or back from the last (RecTools)
    embedding_norm: bool = True  # LayerNorm on item + position (EASRec Eq. 3, RecBole); SASRec's and RecTools's code have none
    embedding_scale: bool = False  # item embeddings times √d before the positions are added (SASRec's code)
    item_dropout: float = 0.0  # dropout on item embeddings while training, at the inputs and on the scored table (RecTools's item net)
    padding: Literal["masked", "visible"] = "masked"  # visible: padded positions are keys, as in SASRec's and RecTools's code (models/attention.py)
    init: Literal["normal", "xavier"] = "normal"  # N(0, init_std) (RecBole), or Xavier-normal (SASRec, RecTools)
    init_std: float = 0.02
    # e, the width of the item table when it differs from d (ALBERT's factorised embedding, Lan et al.,
    # 2020): items enter through a d×e matrix P and the hidden states are scored as (Pᵀh)·E_j, the
    # same map both ways (0: the table runs at d, tied to the hidden states as in SASRec). sasrec only
    item_width: int = 0
    # one value per layer (empty: every layer as above), the shapes a per-layer search derives
    # (recarch.search.elastic): attention width (queries, keys and values), heads, FFN width
    attn_sizes: List[int] = field(default_factory=list)
    layer_heads: List[int] = field(default_factory=list)
    inner_sizes: List[int] = field(default_factory=list)

    def validate(self) -> None:
        if self.name not in MODELS:
            raise ConfigError(f"model.name: unknown model {self.name!r}{suggest(self.name, MODELS)}; "
                              f"registered: {', '.join(MODELS.names())}")
        for key in ("max_len", "hidden_size", "inner_size", "n_layers", "n_heads"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be ≥ 1, got {getattr(self, key)}")
        if self.item_width < 0 or (self.item_width and self.name != "sasrec"):
            raise ConfigError(f"model.item_width: expected 0 (the hidden width) or a width ≥ 1 on model sasrec, "
                              f"got {self.item_width} on {self.name}")
        for key in ("attn_sizes", "layer_heads", "inner_sizes"):
            values = getattr(self, key)
            if values and (len(values) != self.n_layers or min(values) < 1):
                raise ConfigError(f"model.{key}: expected {self.n_layers} values ≥ 1 (one per layer, "
                                  f"model.n_layers), got {values}")
        attn = self.attn_sizes or [self.hidden_size] * self.n_layers
        heads = self.layer_heads or [self.n_heads] * self.n_layers
        for l, (a, h) in enumerate(zip(attn, heads)):
            if a % h:
                raise ConfigError(f"layer {l + 1}: attention width {a} (model.attn_sizes, else model.hidden_size) "
                                  f"must be divisible by its {h} heads (model.layer_heads, else model.n_heads)")
        if self.padding == "visible" and self.attention != "softmax":
            raise ConfigError("model.padding: visible needs model.attention: softmax "
                              f"(found {self.attention!r}): linear attention has no padding keys")
        for key in ("dropout", "attn_dropout", "item_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"model.{key} must be in [0, 1), got {getattr(self, key)}")


def to_right_padded(seq: torch.Tensor):
    """Left-padded (B, N) -> (right-padded copy, lengths ≥ 1)."""
    n = seq.shape[1]
    lengths = (seq > 0).sum(1).clamp(min=1)
    idx = (torch.arange(n, device=seq.device)[None, :] + (n - lengths)[:, None]) % n
    return seq.gather(1, idx), lengths


def to_left_aligned(h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Right-padded hidden states (B, N, D) -> aligned with the left-padded input."""
    b, n, d = h.shape
    idx = (torch.arange(n, device=h.device)[None, :] + lengths[:, None]) % n
    return h.gather(1, idx[:, :, None].expand(b, n, d))


class SequentialRecommender(nn.Module):
    """Subclasses implement ``encode`` (right-padded in, hidden states out) and ``item_embeddings``."""

    num_items: int
    config: SeqModelConfig

    def encode(self, seq: torch.Tensor, lengths: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def item_embeddings(self) -> torch.Tensor:
        """(I+1, D) table the hidden states are scored against (row 0 = padding)."""
        raise NotImplementedError

    def row_wise_tables(self) -> List[nn.Embedding]:
        """The tables ``train.sparse_embeddings`` may update row-wise: read by lookups alone, the item
        table among them only when it is scored as it is stored (none here; SASRec has its item table)."""
        return []

    def scored_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` of the scored table, ``item_embeddings()[ids]``; a row-wise item table reads them
        by a lookup, so that its gradient holds those rows alone."""
        return self.item_embeddings()[ids]

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden state after every position: (B, N) left-padded -> (B, N, D), aligned with ``seq``."""
        right, lengths = to_right_padded(seq)
        return to_left_aligned(self.encode(right, lengths), lengths)

    def hidden_last(self, seq: torch.Tensor) -> torch.Tensor:
        right, lengths = to_right_padded(seq)
        return self.encode(right, lengths, last_only=True)[:, 0]

    def score_last(self, seq: torch.Tensor) -> torch.Tensor:
        """Scores of every item (B, I+1) as the next item after the last position."""
        return self.hidden_last(seq) @ self.item_embeddings().T

    def init_weights(self, std: float) -> None:
        """Linear and embedding weights N(0, std), or Xavier-normal with ``config.init: xavier``
        (SASRec's and RecTools's choice: every matrix, embeddings included); zero biases; LayerNorm 1, 0."""
        xavier = self.config.init == "xavier"
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                if xavier:
                    nn.init.xavier_normal_(m.weight)
                else:
                    nn.init.normal_(m.weight, 0.0, std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def build_model(cfg: SeqModelConfig, num_items: int,
                item_features: Optional[torch.Tensor] = None, num_features: int = 0) -> SequentialRecommender:
    """Instantiate the registered model ``cfg.name``; feature models need the (I+1, F) feature table."""
    cls = MODELS.get(cfg.name)
    if getattr(cls, "uses_features", False):
        if item_features is None or num_features < 1:
            raise ConfigError(f"model {cfg.name!r} needs item features, and this dataset has none")
        return cls(num_items, cfg, item_features, num_features)
    return cls(num_items, cfg)
