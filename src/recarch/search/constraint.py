"""EASRec's dynamic resource constraint (Eq. 15-16, DESIGN.md §1), on FLOPs counted per candidate.

F_k: counted FLOPs of one layer of candidate k over a whole sequence of the configured length (torch's
flop counter, attention kernel included); normalised F̃_k = F_k / (F_max − F_min). Per-layer soft cost
``C = Σ_k w_k F̃_k``; soft depth cost ``Σ_l v_l · l · C``; times the temporary hard depth
``(argmax β + 1) / L``. The search loss is ``ℒ_CE + λ · R``.
"""
from __future__ import annotations

import statistics
import time
from typing import List

import torch
from torch.utils.flop_counter import FlopCounterMode

from recarch.cost.flops import attention_flop_mapping


def candidate_layer_flops(supernet, seq_len: int) -> List[int]:
    """Counted FLOPs (2 per multiply-add) of one transformer layer of each candidate, one sequence."""
    layer = supernet.backbone.encoder.layers[0]
    gates = supernet.config.gates
    out = []
    was_training = layer.training
    layer.eval()
    try:
        for d, f in supernet.widths:
            x = torch.zeros(1, seq_len, d)
            lengths = torch.tensor([seq_len])
            with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=attention_flop_mapping()) as counter:
                layer(x, lengths, False, x if gates else None, f)
            out.append(int(counter.get_total_flops()))
    finally:
        layer.train(was_training)
    return out


def candidate_layer_latency(supernet, seq_len: int, batch_size: int = 256, threads: int = 1,
                            repeats: int = 5) -> List[float]:
    """Measured CPU milliseconds of one layer of each candidate on a (batch_size, seq_len) batch at
    inference (the median of ``repeats`` after a warm-up), so a user can budget in time, not FLOPs."""
    layer = supernet.backbone.encoder.layers[0]
    gates = supernet.config.gates
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    was_training = layer.training
    layer.eval()
    out = []
    try:
        for d, f in supernet.widths:
            x = torch.randn(batch_size, seq_len, d)
            lengths = torch.full((batch_size,), seq_len)
            times = []
            with torch.no_grad():
                for i in range(repeats + 1):
                    start = time.perf_counter()
                    layer(x, lengths, False, x if gates else None, f)
                    if i:
                        times.append((time.perf_counter() - start) * 1e3)
            out.append(statistics.median(times))
    finally:
        layer.train(was_training)
        torch.set_num_threads(previous)
    return out


class ResourceConstraint:
    """R(w, v) of Eq. 15-16 for K candidates and L layers, on per-layer costs F_k: counted FLOPs
    (the paper) or measured milliseconds (``candidate_layer_latency``)."""

    def __init__(self, layer_flops: List[float], n_layers: int) -> None:
        flops = torch.tensor(layer_flops, dtype=torch.float32)
        spread = flops.max() - flops.min()
        self.layer_flops = layer_flops
        self.normalised = flops / (spread if spread > 0 else flops.max())
        self.depths = torch.arange(1, n_layers + 1, dtype=torch.float32)
        self.n_layers = n_layers

    def __call__(self, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        per_layer = (w * self.normalised.to(w.device)).sum()
        soft_depth = (v * self.depths.to(v.device)).sum() * per_layer
        hard_depth = (int(v.argmax()) + 1) / self.n_layers
        return soft_depth * hard_depth

    def expected_flops(self, w: torch.Tensor, v: torch.Tensor) -> float:
        """Σ_l v_l·l · Σ_k w_k F_k: the controllers' expected encoder cost (FLOPs per sequence or ms)."""
        f = torch.tensor(self.layer_flops, dtype=torch.float32)
        return float((v.detach().cpu() * self.depths).sum() * (w.detach().cpu() * f).sum())
