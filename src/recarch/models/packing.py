"""Packing: a batch's real positions only, for the position-wise work of a transformer layer.

On sparse logs most of a (B, N) window is padding (Amazon Beauty at N = 50: 13 % real positions), and
projections, FFN, LayerNorms and gates cost the same per position whether it is real or not. Packed,
they run on the T real positions (T, D); attention alone unpacks to (B, L, D), L the batch's longest
sequence. Exact: in right-padded causal sequences no real position ever reads a padded one.
Its shapes depend on the data, so a traced program (``torch.export``, ``torch.compile``) runs padded.
"""
from __future__ import annotations

import torch


class Packing:
    """Right-padded (B, N, D) <-> (T, D), the real positions in row-major order."""

    def __init__(self, lengths: torch.Tensor, n: int) -> None:
        """lengths (B,) of right-padded sequences N = ``n`` long."""
        self.batch, self.width, self.n = len(lengths), int(lengths.max()), n  # B, L, N
        real = torch.arange(self.width, device=lengths.device)[None, :] < lengths[:, None]  # (B, L)
        self.index = real.flatten().nonzero().squeeze(1)  # (T,) rows of the flattened (B·L)
        self.positions = self.index % self.width  # (T,) each token's position in its sequence
        self.inverse_positions = lengths[self.index // self.width] - 1 - self.positions  # (T,) counted from its end
        self.last = lengths.cumsum(0) - 1  # (B,) each sequence's last real token

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N ≥ L, ...) -> (T, ...)."""
        return x[:, : self.width].flatten(0, 1).index_select(0, self.index)

    def unpack(self, t: torch.Tensor, full: bool = False) -> torch.Tensor:
        """(T, D) -> (B, L, D), or (B, N, D) with ``full``; zeros at the padded positions."""
        flat = t.new_zeros(self.batch * self.width, t.shape[-1]).index_copy(0, self.index, t)
        out = flat.view(self.batch, self.width, -1)
        return torch.nn.functional.pad(out, (0, 0, 0, self.n - self.width)) if full and self.n > self.width else out

    def last_tokens(self, t: torch.Tensor) -> torch.Tensor:
        """(T, D) -> (B, 1, D): each sequence's last real position."""
        return t.index_select(0, self.last)[:, None]


def packing_for(lengths: torch.Tensor, n: int) -> Packing | None:
    """The batch's packing, or None (run padded) while torch traces the model into a program."""
    return None if torch.compiler.is_compiling() else Packing(lengths, n)
