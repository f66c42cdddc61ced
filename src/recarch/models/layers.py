"""The transformer stack shared by every sequential model: data-aware gates, the position-wise FFN,
a layer (attention then FFN) and the encoder, all elastic (a narrower input runs the leading slices).

Shapes: B batch, N length, D width. Sequences are right-padded inside the models.
"""
from __future__ import annotations

from typing import Callable, Dict, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from recarch.models.attention import AttentionKind, CausalSelfAttention, last_position
from recarch.models.packing import Packing
from recarch.models.sublayer import LayerType, ResidualSublayer, sliced_layer_norm, sliced_linear

Activation = Literal["gelu", "relu", "swiglu"]
ACTIVATIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"gelu": F.gelu, "relu": F.relu, "swiglu": F.silu}


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


class FeedForward(ResidualSublayer):
    """Position-wise FFN ``W2·act(W1 a)``, or SwiGLU ``W2·(SiLU(W1 a) ⊙ W3 a)`` (``activation:
    swiglu``, LiGR's), on ``a`` = the sublayer input of the layer type. With EASRec's gates (Eq. 8-9,
    as released) ``h = act((a W1 + b1) ⊙ g1(E))`` and the output is multiplied by ``g2(E)``.
    Elastic like the attention: the input's width and ``inner`` pick the leading weight slices."""

    def __init__(self, hidden: int, inner: int, dropout: float, gates: int = 0, layer: LayerType = "post_norm",
                 activation: Activation = "gelu", eps: float = 1e-12) -> None:
        super().__init__(hidden, dropout, layer, eps)
        self.activation = ACTIVATIONS[activation]
        self.fc1 = nn.Linear(hidden, inner)
        self.fc2 = nn.Linear(inner, hidden)
        self.fc3 = nn.Linear(hidden, inner) if activation == "swiglu" else None
        self.gate1 = DataAwareGate(hidden, inner, gates) if gates else None
        self.gate2 = DataAwareGate(hidden, hidden, gates) if gates else None

    def forward(self, x: torch.Tensor, e: torch.Tensor | None = None, inner: int | None = None) -> torch.Tensor:
        d, f = x.shape[-1], inner or self.fc1.out_features
        a = self.sublayer_input(x)
        h = sliced_linear(a, self.fc1, f)
        if self.gate1 is not None:
            h = h * self.gate1(e, f)
        h = self.activation(h)
        if self.fc3 is not None:
            h = h * sliced_linear(a, self.fc3, f)
        out = sliced_linear(h, self.fc2, d)
        if self.gate2 is not None:
            out = out * self.gate2(e, d)
        return self.join(x, a, out)


class TransformerLayer(nn.Module):
    def __init__(self, hidden: int, inner: int, n_heads: int, dropout: float, attn_dropout: float,
                 kind: AttentionKind, gates: int = 0, layer: LayerType = "post_norm",
                 activation: Activation = "gelu", window: int | None = None, attn: int | None = None) -> None:
        super().__init__()
        self.attention = CausalSelfAttention(hidden, n_heads, dropout, attn_dropout, kind, layer, window=window,
                                             attn=attn)
        self.ffn = FeedForward(hidden, inner, dropout, gates, layer, activation)

    def forward(self, x, lengths=None, last_only: bool = False, e=None, inner: int | None = None,
                packing: Packing | None = None, attn: int | None = None, heads: int | None = None):
        """e: the embedding-layer output the gates read (None without gates); with ``packing`` x and
        e hold the real positions only (see recarch.models.packing). inner, attn, heads: the elastic
        FFN width, attention width and heads (None: as built, or narrowed with the stream)."""
        if last_only and e is not None:
            e = packing.last_tokens(e) if packing is not None else last_position(e, lengths)
        return self.ffn(self.attention(x, lengths, last_only, packing, attn, heads), e, inner)


class TransformerEncoder(nn.Module):
    """A stack of layers of one type; ``last_only`` makes the final layer compute the last real
    position only. The pre-norm types end with a LayerNorm (``finish``), post-norm needs none.
    ``window``: N, when padded positions are visible keys (recarch.models.attention). ``inner``,
    ``n_heads`` and ``attn`` are one value for every layer or a list with one per layer."""

    def __init__(self, n_layers: int, hidden: int, inner: int | Sequence[int], n_heads: int | Sequence[int],
                 dropout: float, attn_dropout: float, kind: AttentionKind, gates: int = 0,
                 layer: LayerType = "post_norm", activation: Activation = "gelu", window: int | None = None,
                 attn: int | Sequence[int] | None = None) -> None:
        super().__init__()

        def per_layer(value) -> list:
            return list(value) if isinstance(value, (list, tuple)) else [value] * n_layers

        self.layers = nn.ModuleList(
            TransformerLayer(hidden, f, h, dropout, attn_dropout, kind, gates, layer, activation, window, a)
            for f, h, a in zip(per_layer(inner), per_layer(n_heads), per_layer(attn)))
        self.norm = nn.LayerNorm(hidden, eps=1e-12) if layer != "post_norm" else None

    @classmethod
    def from_config(cls, cfg, gates: int | None = None) -> "TransformerEncoder":
        """From a SeqModelConfig; ``gates`` overrides ``cfg.gates`` (streams that take none)."""
        return cls(cfg.n_layers, cfg.hidden_size, cfg.inner_sizes or cfg.inner_size, cfg.layer_heads or cfg.n_heads,
                   cfg.dropout, cfg.attn_dropout, cfg.attention, cfg.gates if gates is None else gates, cfg.layer,
                   cfg.activation, cfg.max_len if cfg.padding == "visible" else None, cfg.attn_sizes or None)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """The stack's output from the last layer's stream (the final LayerNorm, sliced to x's width)."""
        return x if self.norm is None else sliced_layer_norm(x, self.norm)

    def forward(self, x, lengths, last_only: bool = False, e=None, packing: Packing | None = None):
        """x (B, N, D) right-padded, or with ``packing`` its real positions (T, D) (and e likewise):
        the layers then run on the real positions only (exact; see recarch.models.packing).
        Returns (B, N, D), or (B, 1, D) with ``last_only``."""
        for i, layer in enumerate(self.layers):
            x = layer(x, lengths, last_only and i == len(self.layers) - 1, e, packing=packing)
        x = self.finish(x)
        if packing is None or x.dim() == 3:
            return x
        return packing.last_tokens(x) if last_only else packing.unpack(x, full=True)
