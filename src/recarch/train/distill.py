"""Knowledge distillation of a sequential model from a trained teacher (Hinton et al., 2015, at
temperature 1): the next-item target becomes q = (1 − α)·onehot(target) + α·softmax(teacher's
scores), over every item under the full cross entropy and over the target and its negatives under
sampled softmax (recarch.train.losses.Teacher). A smaller model, e.g. a derived architecture, learns
from the larger model's whole ranking instead of one observed item per position.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from recarch.config import ConfigError
from recarch.train.losses import Teacher


@dataclass
class DistillConfig:
    # a finished sequential run folder on the same data whose best model teaches ("": no distillation);
    # in ``recarch search``, "baseline" names the search's own hand-sized model
    teacher: str = ""
    alpha: float = 0.5  # the teacher's share of the target

    def validate(self) -> None:
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"distill.alpha: expected a share in [0, 1], got {self.alpha}")


class Distillation:
    """A frozen teacher model and α; ``teacher`` gives what the loss mixes into one batch's targets."""

    def __init__(self, model: torch.nn.Module, alpha: float) -> None:
        self.model, self.alpha = model.eval().requires_grad_(False), alpha

    def to(self, device: torch.device) -> "Distillation":
        self.model.to(device)
        return self

    @torch.no_grad()
    def teacher(self, seq: torch.Tensor, target: torch.Tensor) -> Teacher:
        """The teacher's hidden states for the rows the student scores: every position (target (B, N))
        or the last one (target (B,))."""
        hidden = self.model(seq) if target.dim() == 2 else self.model.hidden_last(seq)
        return Teacher(hidden.float(), self.model.item_embeddings().float(), self.alpha)
