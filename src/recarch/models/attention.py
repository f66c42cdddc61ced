"""Causal self-attention over right-padded sequences: softmax (SASRec) or linear (LinRec).

Shapes: B batch, N length, D width, H heads, d = D / H per head. Sequences inside the models are
right-padded, so a causal mask alone keeps every real position away from padding.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

AttentionKind = Literal["softmax", "linear"]


def linrec_feature_map(x: torch.Tensor) -> torch.Tensor:
    """LinRec's φ (the paper's Eq. 5 as the authors' code computes it): ELU, then L2 norm over the
    head dimension of each position."""
    return F.normalize(F.elu(x), p=2.0, dim=-1)


def linear_attention(q, k, v, lengths: torch.Tensor | None, causal: bool) -> torch.Tensor:
    """``A = φ(Q)·(φ(K)ᵀ V) / √d`` per head; q, k, v are (B, H, N, d).

    causal=True computes ``A_t = φ(q_t)·Σ_{s≤t} φ(k_s)ᵀ v_s / √d`` as a masked N×N product (faster than
    prefix sums of d×d matrices at recommendation lengths). causal=False sums over every real position,
    which is exact only for the last one; padding positions (index ≥ length) are zeroed in K and V."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    q, k = linrec_feature_map(q), linrec_feature_map(k)
    if causal:
        n = q.shape[-2]
        scores = q @ k.transpose(-1, -2)
        keep = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
        return (scores.masked_fill(~keep, 0.0) @ v) * scale
    if lengths is not None:
        real = torch.arange(k.shape[-2], device=k.device)[None, :] < lengths[:, None]  # (B, N)
        real = real[:, None, :, None].to(k.dtype)
        k, v = k * real, v * real
    return (q @ (k.transpose(-1, -2) @ v)) * scale


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with output projection, dropout, residual and LayerNorm (post-LN,
    as SASRec in RecBole)."""

    def __init__(self, hidden: int, n_heads: int, dropout: float, attn_dropout: float,
                 kind: AttentionKind = "softmax", eps: float = 1e-12) -> None:
        super().__init__()
        if hidden % n_heads:
            raise ValueError(f"hidden_size {hidden} is not divisible by n_heads {n_heads}")
        self.n_heads, self.kind, self.attn_dropout = n_heads, kind, attn_dropout
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden, eps=eps)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.n_heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, last_only: bool = False):
        """x (B, N, D) right-padded. last_only: return (B, 1, D) for the position lengths-1 only."""
        b, n, d = x.shape
        k, v = self._heads(self.key(x)), self._heads(self.value(x))
        if last_only:
            x = x.gather(1, (lengths - 1).view(b, 1, 1).expand(b, 1, d))
        q = self._heads(self.query(x))
        if self.kind == "softmax":
            if last_only:
                real = torch.arange(n, device=x.device)[None, :] < lengths[:, None]
                ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=real[:, None, None, :])
            else:
                ctx = F.scaled_dot_product_attention(
                    q, k, v, is_causal=True, dropout_p=self.attn_dropout if self.training else 0.0)
        else:
            ctx = linear_attention(q, k, v, lengths, causal=not last_only)
        ctx = ctx.transpose(1, 2).reshape(b, q.shape[2], d)
        return self.norm(x + self.dropout(self.out(ctx)))


class FeedForward(nn.Module):
    """Position-wise FFN ``W2·GELU(W1 x)`` with dropout, residual and LayerNorm."""

    def __init__(self, hidden: int, inner: int, dropout: float, eps: float = 1e-12) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, inner)
        self.fc2 = nn.Linear(inner, hidden)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(self.fc2(F.gelu(self.fc1(x)))))


class TransformerLayer(nn.Module):
    def __init__(self, hidden: int, inner: int, n_heads: int, dropout: float, attn_dropout: float,
                 kind: AttentionKind) -> None:
        super().__init__()
        self.attention = CausalSelfAttention(hidden, n_heads, dropout, attn_dropout, kind)
        self.ffn = FeedForward(hidden, inner, dropout)

    def forward(self, x, lengths=None, last_only: bool = False):
        return self.ffn(self.attention(x, lengths, last_only))


class TransformerEncoder(nn.Module):
    """A stack of layers; ``last_only`` makes the final layer compute the last real position only."""

    def __init__(self, n_layers: int, hidden: int, inner: int, n_heads: int, dropout: float,
                 attn_dropout: float, kind: AttentionKind) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(hidden, inner, n_heads, dropout, attn_dropout, kind) for _ in range(n_layers))

    def forward(self, x, lengths=None, last_only: bool = False):
        for i, layer in enumerate(self.layers):
            x = layer(x, lengths, last_only and i == len(self.layers) - 1)
        return x
