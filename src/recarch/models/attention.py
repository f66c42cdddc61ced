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


def sliced_linear(x: torch.Tensor, layer: nn.Linear, out: int) -> torch.Tensor:
    """``layer`` restricted to its first ``x.shape[-1]`` inputs and first ``out`` outputs: how an
    elastic (weight-shared) layer runs a narrower candidate; a no-op slice at full size."""
    return F.linear(x, layer.weight[:out, : x.shape[-1]], layer.bias[:out])


def sliced_layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """LayerNorm over the first ``x.shape[-1]`` features with the matching slice of its affine weights."""
    w = x.shape[-1]
    return F.layer_norm(x, (w,), norm.weight[:w], norm.bias[:w], norm.eps)


def linrec_feature_map(x: torch.Tensor) -> torch.Tensor:
    """LinRec's φ (the paper's Eq. 5 as the authors' code computes it): ELU, then L2 norm over the
    head dimension of each position."""
    return F.normalize(F.elu(x), p=2.0, dim=-1)


LINEAR_CHUNK = 32  # positions per chunk of causal linear attention


def linear_attention(q, k, v, lengths: torch.Tensor | None, causal: bool) -> torch.Tensor:
    """``A = φ(Q)·(φ(K)ᵀ V) / √d`` per head; q, k, v are (B, H, N, d).

    causal=True computes ``A_t = φ(q_t)·Σ_{s≤t} φ(k_s)ᵀ v_s / √d`` chunk by chunk: inside a chunk of
    ``LINEAR_CHUNK`` positions (N if shorter) a masked product, across chunks the d×d sums
    ``Σ φ(k_s)ᵀ v_s`` of the earlier chunks, so memory and work grow with N·(chunk + d) rather than N².
    causal=False sums over every real position, which is exact only for the last one; padding positions (index ≥ length) are zeroed in K and V."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    q, k = linrec_feature_map(q), linrec_feature_map(k)
    if causal:
        b, h, n, _ = q.shape
        size = min(LINEAR_CHUNK, n)
        chunks = -(-n // size)
        pad = chunks * size - n  # zero rows at the end, after every real position
        q, k, v = (F.pad(t, (0, 0, 0, pad)).reshape(b, h, chunks, size, -1) for t in (q, k, v))
        keep = torch.ones(size, size, dtype=torch.bool, device=q.device).tril()
        within = (q @ k.transpose(-1, -2)).masked_fill(~keep, 0.0) @ v
        state = k.transpose(-1, -2) @ v  # one d×d sum per chunk
        before = state.cumsum(2) - state  # the sum over the earlier chunks
        out = (within + q @ before) * scale
        return out.reshape(b, h, chunks * size, -1)[:, :, :n]
    if lengths is not None:
        real = torch.arange(k.shape[-2], device=k.device)[None, :] < lengths[:, None]  # (B, N)
        real = real[:, None, :, None].to(k.dtype)
        k, v = k * real, v * real
    return (q @ (k.transpose(-1, -2) @ v)) * scale


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with output projection, dropout, residual and LayerNorm (post-LN,
    as SASRec in RecBole). Elastic: an input narrower than ``hidden`` runs the first
    ``width / head_dim`` heads on the leading slices of every weight."""

    def __init__(self, hidden: int, n_heads: int, dropout: float, attn_dropout: float,
                 kind: AttentionKind = "softmax", eps: float = 1e-12) -> None:
        super().__init__()
        if hidden % n_heads:
            raise ValueError(f"hidden_size {hidden} is not divisible by n_heads {n_heads}")
        self.head_dim, self.kind, self.attn_dropout = hidden // n_heads, kind, attn_dropout
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden, eps=eps)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, -1, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, last_only: bool = False):
        """x (B, N, D) right-padded. last_only: return (B, 1, D) for the position lengths-1 only."""
        b, n, d = x.shape
        k, v = self._heads(sliced_linear(x, self.key, d)), self._heads(sliced_linear(x, self.value, d))
        if last_only:
            x = last_position(x, lengths)
        q = self._heads(sliced_linear(x, self.query, d))
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
        return sliced_layer_norm(x + self.dropout(sliced_linear(ctx, self.out, d)), self.norm)


class DataAwareGate(nn.Module):
    """EASRec's data-aware gate (Eq. 6-7, after PEPNet), fed by the embedding-layer output E:
    ``g(E) = 2·σ(W₂·ReLU(W₁E + b₁) + b₂)`` with hidden width = output width (``layers=2``), or
    ``2·σ(W E + b)`` (``layers=1``); the factor 2 (the paper's scaling γ) lets it amplify as well as damp.
    Initialised like every linear layer here, N(0, 0.02) with zero bias, so a gate starts near 1 (the
    identity); the released GateNN uses Xavier/He initialisation instead."""

    def __init__(self, d_in: int, d_out: int, layers: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_out)
        self.fc2 = nn.Linear(d_out, d_out) if layers == 2 else None

    def forward(self, e: torch.Tensor, out: int) -> torch.Tensor:
        h = sliced_linear(e, self.fc1, out)
        if self.fc2 is not None:
            h = sliced_linear(F.relu(h), self.fc2, out)
        return 2.0 * torch.sigmoid(h)


class FeedForward(nn.Module):
    """Position-wise FFN with dropout, residual and LayerNorm: ``W2·GELU(W1 x)``, or with gates
    (EASRec Eq. 8-9, as released) ``h = GELU((x W1 + b1) ⊙ g1(E))``, ``F = (h W2 + b2) ⊙ g2(E)``.
    Elastic like the attention: the input's width and ``inner`` pick the leading weight slices."""

    def __init__(self, hidden: int, inner: int, dropout: float, gates: int = 0, eps: float = 1e-12) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, inner)
        self.fc2 = nn.Linear(inner, hidden)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.gate1 = DataAwareGate(hidden, inner, gates) if gates else None
        self.gate2 = DataAwareGate(hidden, hidden, gates) if gates else None

    def forward(self, x: torch.Tensor, e: torch.Tensor | None = None, inner: int | None = None) -> torch.Tensor:
        d, f = x.shape[-1], inner or self.fc1.out_features
        h = sliced_linear(x, self.fc1, f)
        if self.gate1 is not None:
            h = h * self.gate1(e, f)
        out = sliced_linear(F.gelu(h), self.fc2, d)
        if self.gate2 is not None:
            out = out * self.gate2(e, d)
        return sliced_layer_norm(x + self.dropout(out), self.norm)


def last_position(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, N, D) right-padded -> (B, 1, D) at position lengths-1."""
    b, _, d = x.shape
    return x.gather(1, (lengths - 1).view(b, 1, 1).expand(b, 1, d))


class TransformerLayer(nn.Module):
    def __init__(self, hidden: int, inner: int, n_heads: int, dropout: float, attn_dropout: float,
                 kind: AttentionKind, gates: int = 0) -> None:
        super().__init__()
        self.attention = CausalSelfAttention(hidden, n_heads, dropout, attn_dropout, kind)
        self.ffn = FeedForward(hidden, inner, dropout, gates)

    def forward(self, x, lengths=None, last_only: bool = False, e=None, inner: int | None = None):
        """e: the embedding-layer output the gates read (None without gates)."""
        if last_only and e is not None:
            e = last_position(e, lengths)
        return self.ffn(self.attention(x, lengths, last_only), e, inner)


class TransformerEncoder(nn.Module):
    """A stack of layers; ``last_only`` makes the final layer compute the last real position only."""

    def __init__(self, n_layers: int, hidden: int, inner: int, n_heads: int, dropout: float,
                 attn_dropout: float, kind: AttentionKind, gates: int = 0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(hidden, inner, n_heads, dropout, attn_dropout, kind, gates) for _ in range(n_layers))

    def forward(self, x, lengths=None, last_only: bool = False, e=None):
        for i, layer in enumerate(self.layers):
            x = layer(x, lengths, last_only and i == len(self.layers) - 1, e)
        return x
