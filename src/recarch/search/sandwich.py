"""How the supernet's weights train, and scoring its paths on inherited weights.

``rule: relaxed`` (EASRec, the paper): every weight step runs the relaxed supernet (Eq. 10-11), all
candidates mixed by the controllers' weights. Each candidate then learns to be one term of a mixture,
not a model of its own, and the inherited-weight score of a path says little about that path trained
alone: on Amazon Beauty with the tuned recipe the narrowest path scored best and the widest worst.

``rule: sandwich`` (Yu & Huang's slimmable networks, 2019; BigNAS, Yu et al. 2020): every weight step
trains sub-networks alone on the batch, the largest and the smallest path of the space and
``random_paths`` drawn uniformly, their losses averaged, so that every path is a model on its own and
its validation score on the shared weights ranks it (``derive_by: validation`` in the search config).
BigNAS's in-place distillation (the smaller paths fit the largest's predictions) is not done here:
each path fits the next item.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Literal, Sequence

import torch

from recarch.config import ConfigError
from recarch.search.supernet import EASRecSupernet, SubnetPath
from recarch.train import Trainer


@dataclass
class SupernetTrainingConfig:
    rule: Literal["relaxed", "sandwich"] = "relaxed"
    random_paths: int = 1  # sandwich: paths drawn uniformly per step besides the largest and the smallest

    def validate(self) -> None:
        if self.random_paths < 0:
            raise ConfigError(f"supernet.random_paths must be ≥ 0, got {self.random_paths}")


def path_name(net: EASRecSupernet, path: SubnetPath) -> str:
    """A path in the user's terms: 'width 32, FFN 32, 1 layer(s)'."""
    (d, f), depth = net.widths[path[0]], path[1]
    return f"width {d}, FFN {f}, {depth} layer(s)"


class SandwichTrainer(Trainer):
    """The sandwich rule on an EASRecSupernet. ``paths``: the space's paths ordered by cost, cheapest
    first. The best epoch is the one whose mean validation score over the smallest and the largest
    path is highest (both scores go into the history)."""

    def __init__(self, net: EASRecSupernet, *args, paths: Sequence[SubnetPath], random_paths: int, **kwargs) -> None:
        super().__init__(net, *args, **kwargs)
        self.paths, self.random_paths = list(paths), random_paths
        self.ends = [self.paths[-1], self.paths[0]] if len(self.paths) > 1 else self.paths

    def step_paths(self) -> List[SubnetPath]:
        """The largest, the smallest and ``random_paths`` uniform draws (on the trainer's checkpointed
        generator, so that a resumed run draws what the uninterrupted one drew)."""
        drawn = torch.randint(len(self.paths), (self.random_paths,), generator=self.sampler).tolist()
        return self.ends + [self.paths[i] for i in drawn]

    def step_loss(self, *batch: torch.Tensor) -> torch.Tensor:
        paths = self.step_paths()
        total = 0.0
        for k, depth in paths:
            with self.model.on_path(k, depth):
                total = total + self.loss(*batch)
        return total / len(paths)

    def validate(self, stats: Dict) -> Dict[str, float]:
        rows = []
        for path in self.ends:
            with self.model.on_path(*path):
                rows.append(super().validate(stats))
            stats[f"valid_{self.cfg.valid_metric} ({path_name(self.model, path)})"] = rows[-1][self.cfg.valid_metric]
        return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}


def score_paths(net: EASRecSupernet, evaluator, paths: Sequence[SubnetPath], protocol: str, metric: str) -> Dict[SubnetPath, float]:
    """Each path's validation ``metric`` on the supernet's weights (inherited, not retrained)."""
    scores = {}
    for path in paths:
        with net.on_path(*path):
            scores[path] = evaluator.evaluate(net, "valid", protocols=[protocol])[protocol][metric]
    return scores
