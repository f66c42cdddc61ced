"""How a transformer sublayer joins the residual stream (the layer type), and the weight slicing that
lets one full-size module run a narrower elastic candidate.

Layer types, for a sublayer f (attention or FFN) on the stream x:
- ``post_norm``: ``LN(x + Drop(f(x)))`` — BERT's and RecBole's SASRec.
- ``pre_norm``: ``x + Drop(f(LN(x)))`` — Xiong et al. 2020 ("On Layer Normalization in the
  Transformer Architecture"), the form of SASRec+ / SASRec+SS; the stack ends with a LayerNorm.
- ``sasrec``: ``LN(x) + Drop(f(LN(x)))``, attention keys and values read from x itself — the block of
  SASRec's own code (Kang & McAuley 2018) that SASRec+ and RecTools's SASRec keep: pre-norm, but the
  residual carries the normalised stream; the stack ends with a LayerNorm.
- ``ligr``: ``x + σ(W_g x + b_g) ⊙ Drop(f(LN(x)))`` — LiGR (Gu et al. 2025, "From Features to
  Transformers", the gated residual of its Eq. 1-2) as eSASRec uses it: pre-norm with a sigmoid gate
  on the sublayer's output, read from the stream itself; the stack ends with a LayerNorm too.
"""
from __future__ import annotations

from typing import Literal, Tuple

import torch
import torch.nn.functional as F
from torch import nn

LayerType = Literal["post_norm", "pre_norm", "sasrec", "ligr"]
LAYER_TYPES: Tuple[str, ...] = ("post_norm", "pre_norm", "sasrec", "ligr")


def sliced_linear(x: torch.Tensor, layer: nn.Linear, out: int) -> torch.Tensor:
    """``layer`` restricted to its first ``x.shape[-1]`` inputs and first ``out`` outputs: how an
    elastic (weight-shared) layer runs a narrower candidate; a no-op slice at full size."""
    bias = layer.bias[:out] if layer.bias is not None else None
    return F.linear(x, layer.weight[:out, : x.shape[-1]], bias)


def sliced_layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """LayerNorm over the first ``x.shape[-1]`` features with the matching slice of its affine weights."""
    w = x.shape[-1]
    return F.layer_norm(x, (w,), norm.weight[:w], norm.bias[:w], norm.eps)


class ResidualSublayer(nn.Module):
    """The norm, dropout and (LiGR) skip gate around a sublayer; subclasses compute
    ``join(x, a, f(a))`` with ``a = sublayer_input(x)``. Every weight here is sliced to the stream's width."""

    def __init__(self, hidden: int, dropout: float, layer: LayerType, eps: float) -> None:
        super().__init__()
        if layer not in LAYER_TYPES:
            raise ValueError(f"layer type: expected one of {', '.join(LAYER_TYPES)}, got {layer!r}")
        self.layer = layer
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.skip_gate = nn.Linear(hidden, hidden) if layer == "ligr" else None

    def sublayer_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.layer == "post_norm" else sliced_layer_norm(x, self.norm)

    def join(self, x: torch.Tensor, a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: the stream (B, N', D) at the positions y was computed for, a: the sublayer's input there,
        y: the sublayer's output."""
        y = self.dropout(y)
        if self.layer == "post_norm":
            return sliced_layer_norm(x + y, self.norm)
        if self.layer == "sasrec":
            return a + y
        if self.layer == "ligr":
            y = torch.sigmoid(sliced_linear(x, self.skip_gate, x.shape[-1])) * y
        return x + y
