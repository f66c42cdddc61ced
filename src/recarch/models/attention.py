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

from recarch.models.packing import Packing
from recarch.models.sublayer import LayerType, ResidualSublayer, sliced_linear

AttentionKind = Literal["softmax", "linear"]


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


def last_position(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, N, D) right-padded -> (B, 1, D) at position lengths-1."""
    b, _, d = x.shape
    return x.gather(1, (lengths - 1).view(b, 1, 1).expand(b, 1, d))


class CausalSelfAttention(ResidualSublayer):
    """Multi-head self-attention with its output projection, joined to the residual stream as
    ``layer`` says (see :class:`ResidualSublayer`). Queries, keys and values are ``attn`` wide (the
    attention width, ``hidden`` unless given), split into ``n_heads`` heads.

    Elastic: a stream narrower than ``hidden`` runs on the leading slices of every weight, with the
    attention width narrowed in proportion and the first ``width / head_dim`` heads (a single head
    narrows instead); ``forward``'s ``attn`` and ``heads`` set both explicitly (a per-layer search space)."""

    def __init__(self, hidden: int, n_heads: int, dropout: float, attn_dropout: float,
                 kind: AttentionKind = "softmax", layer: LayerType = "post_norm", eps: float = 1e-12,
                 window: int | None = None, attn: int | None = None) -> None:
        """window: N, to let each position attend to its window's N − n padded positions (see the
        module's docstring); None masks padding."""
        super().__init__(hidden, dropout, layer, eps)
        attn = attn or hidden
        if attn % n_heads:
            raise ValueError(f"attention width {attn} is not divisible by n_heads {n_heads}")
        if window is not None and kind != "softmax":
            raise ValueError("visible padding keys need softmax attention")
        self.head_dim, self.kind, self.attn_dropout, self.window = attn // n_heads, kind, attn_dropout, window
        self.hidden, self.attn = hidden, attn
        self.query = nn.Linear(hidden, attn)
        self.key = nn.Linear(hidden, attn)
        self.value = nn.Linear(hidden, attn)
        self.out = nn.Linear(attn, hidden)

    def _heads(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        b, n, a = x.shape
        return x.view(b, n, heads, a // heads).transpose(1, 2)

    def _padding_key_value(self, d: int, a: int) -> tuple:
        """(k₀, v₀), each (1, 1, a): what a padded position, whose d-wide state is zero, offers as key
        and value."""
        zero = self.key.weight.new_zeros(1, 1, d)
        source = zero if self.layer == "sasrec" else self.sublayer_input(zero)
        return sliced_linear(source, self.key, a), sliced_linear(source, self.value, a)

    def _with_padding_key(self, k, v, d: int, lengths: torch.Tensor, last_only: bool) -> tuple:
        """k, v (B, L, A) -> the same with the padding key k₀, v₀ prepended, and the additive mask
        (B, 1, L' queries, 1 + L): log(N − n) on the padding key, causal (or the real keys, for
        ``last_only``) over the rest."""
        (b, _, a), keys = k.shape, torch.arange(k.shape[1], device=k.device)
        k0, v0 = self._padding_key_value(d, a)
        k, v = torch.cat([k0.expand(b, 1, a), k], 1), torch.cat([v0.expand(b, 1, a), v], 1)
        visible = (keys[None, None, :] < lengths[:, None, None]) if last_only else (keys[None, :] <= keys[:, None])[None]
        real = torch.zeros(visible.shape, dtype=k.dtype, device=k.device).masked_fill(~visible, float("-inf"))
        count = (self.window - lengths).clamp(min=0).to(k.dtype)  # N − n; log 0 = -inf: no padding key
        sink = count.log()[:, None, None].expand(b, real.shape[1], 1)
        return k, v, torch.cat([sink, real.expand(b, -1, -1)], 2)[:, None]

    def widths(self, d: int, attn: int | None = None, heads: int | None = None) -> tuple:
        """(attention width, heads) on a ``d``-wide stream: as given, else narrowed with the stream."""
        attn = attn or self.attn * d // self.hidden
        return attn, heads or max(attn // self.head_dim, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, last_only: bool = False,
                packing: Packing | None = None, attn: int | None = None, heads: int | None = None):
        """x (B, N, D) right-padded, or its real positions (T, D) with ``packing``. last_only: return
        (B, 1, D) for the position lengths-1 only. attn, heads: the elastic attention width and heads."""
        d = x.shape[-1]
        width, heads = self.widths(d, attn, heads)
        a = self.sublayer_input(x)
        source = x if self.layer == "sasrec" else a  # what keys and values read
        k, v = sliced_linear(source, self.key, width), sliced_linear(source, self.value, width)
        if packing is not None:
            k, v = packing.unpack(k), packing.unpack(v)
        if last_only:
            last = packing.last_tokens if packing is not None else (lambda t: last_position(t, lengths))
            x, a = last(x), last(a)
        q = sliced_linear(a, self.query, width)
        if packing is not None and not last_only:
            q = packing.unpack(q)
        (b, n, _), nq = k.shape, q.shape[1]
        mask = None
        if self.window is not None:
            k, v, mask = self._with_padding_key(k, v, d, lengths, last_only)
        q, k, v = self._heads(q, heads), self._heads(k, heads), self._heads(v, heads)
        if mask is not None:
            ctx = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training and not last_only else 0.0)
        elif self.kind == "softmax":
            if last_only:
                real = torch.arange(n, device=x.device)[None, :] < lengths[:, None]
                ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=real[:, None, None, :])
            else:
                ctx = F.scaled_dot_product_attention(
                    q, k, v, is_causal=True, dropout_p=self.attn_dropout if self.training else 0.0)
        else:
            ctx = linear_attention(q, k, v, lengths, causal=not last_only)
        ctx = ctx.transpose(1, 2).reshape(b, nq, width)
        if packing is not None and not last_only:
            ctx = packing.pack(ctx)
        return self.join(x, a, sliced_linear(ctx, self.out, d))
