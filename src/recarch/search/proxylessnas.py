"""ProxylessNAS as a strategy on EASRec's search space (a baseline of the paper's Table III)."""
from __future__ import annotations

import torch

from recarch.search.easrec import STRATEGIES, EASRecArchitect


@STRATEGIES.register("proxylessnas")
class ProxylessArchitect(EASRecArchitect):
    """ProxylessNAS (Cai et al., ICLR 2019) on the same space: binarised paths, one (candidate, depth)
    sampled from softmax(α), softmax(β) per forward, so weights train one sub-network at a time. The
    controllers' steps draw two paths from p and run the one drawn from their rescaled pair probabilities;
    the gradient reaches the pair's logits through both binary gates (ProxylessNAS §3.2.1, its
    memory-saving estimator), plus λ·R on the expected cost under the full softmax (its expected latency).

    Deviation: ProxylessNAS then shifts the pair's two logits so that the unsampled paths' probabilities
    stay as they were; we leave the Adam step as it is (the pair's gradient sums to zero already)."""

    paper_name = "ProxylessNAS"

    space_overrides = {"relaxation": "softmax"}
    path_sampling = True

    def after_step(self, step: int, seq: torch.Tensor, target: torch.Tensor) -> None:
        self.net.rival_paths = True  # the controllers' step only: the weights train one path
        try:
            super().after_step(step, seq, target)
        finally:
            self.net.rival_paths = False

    def resource(self) -> torch.Tensor:
        # the expected cost under the controllers' distributions, not the sampled path's
        return self.constraint(torch.softmax(self.net.alpha / self.net.tau, 0),
                               torch.softmax(self.net.beta / self.net.tau, 0))
