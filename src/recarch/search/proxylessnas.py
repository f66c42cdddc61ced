"""ProxylessNAS as a strategy on EASRec's search space (a baseline of the paper's Table III)."""
from __future__ import annotations

import torch

from recarch.search.easrec import STRATEGIES, EASRecArchitect


@STRATEGIES.register("proxylessnas")
class ProxylessArchitect(EASRecArchitect):
    """ProxylessNAS (Cai et al., ICLR 2019) on the same space: binarised paths, one (candidate, depth)
    sampled from softmax(α), softmax(β) per forward, so weights train one sub-network at a time; the
    controllers get the BinaryConnect-style gradient through the sampled gate only (straight-through;
    ProxylessNAS samples two paths to estimate the others' terms), plus λ·R on the expected cost."""

    space_overrides = {"relaxation": "softmax"}
    path_sampling = True

    def resource(self) -> torch.Tensor:
        # the expected cost under the controllers' distributions, not the sampled path's
        return self.constraint(torch.softmax(self.net.alpha / self.net.tau, 0),
                               torch.softmax(self.net.beta / self.net.tau, 0))
