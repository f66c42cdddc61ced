"""ReCNAS as a strategy on EASRec's search space (a baseline of the paper's Table III)."""
from __future__ import annotations

from typing import Dict

import torch

from recarch.search.easrec import STRATEGIES, EASRecArchitect


@STRATEGIES.register("recnas")
class RecNASArchitect(EASRecArchitect):
    """ReCNAS (Peng et al., TNNLS 2022) on the same space, simplified: annealed relaxation (τ shrinks
    by ``anneal`` (0.7) every epoch, pushing the controllers toward one-hot) with progressive pruning
    (after each epoch, a candidate or depth whose probability fell below half of uniform is removed for
    good), under the resource term; the channel (width) choice under a budget is ``budget_flops`` /
    ``budget_ms`` at derive. ReCNAS's dynamic-programming channel allocation across layers has no
    counterpart here: width is one choice shared by all layers in this space."""

    paper_name = "RecNAS"

    space_overrides = {"relaxation": "softmax"}
    anneal = 0.7

    def after_step(self, step: int, seq: torch.Tensor, target: torch.Tensor) -> None:
        tau = self.net.tau
        super().after_step(step, seq, target)
        self.net.tau = tau  # τ follows the per-epoch schedule below, not EASRec's per-step one

    def after_epoch(self, epoch: int, stats: Dict) -> None:
        if self.warming_up():  # neither prune nor anneal before the controllers have stepped
            return super().after_epoch(epoch, stats)
        with torch.no_grad():
            for logits in self.net.arch_parameters():
                p = torch.softmax(logits / self.net.tau, 0)
                weak = (p < 0.5 / len(p)) & (torch.arange(len(p)) != p.argmax())
                logits[weak] = -1e9
        self.net.tau = max(self.cfg.tau_min, self.net.tau * self.anneal)
        super().after_epoch(epoch, stats)
