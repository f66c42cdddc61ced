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
from recarch.search.supernet import SubnetPath
from recarch.train import Trainer


@dataclass
class SupernetTrainingConfig:
    rule: Literal["relaxed", "sandwich"] = "relaxed"  # strategy elastic trains by the sandwich rule whatever this says
    random_paths: int = 1  # sandwich: paths drawn uniformly per step besides the largest and the smallest

    def validate(self) -> None:
        if self.random_paths < 0:
            raise ConfigError(f"supernet.random_paths must be ≥ 0, got {self.random_paths}")


class PathList:
    """A space listed path by path, ordered by cost, cheapest first (EASRec's (k, L) paths): what the
    sandwich rule draws from. A space too large to list (recarch.search.elastic) offers the same
    ``ends`` and ``draw``."""

    def __init__(self, paths: Sequence[SubnetPath]) -> None:
        self.paths = list(paths)

    @property
    def ends(self) -> List[SubnetPath]:
        """The largest and the smallest path."""
        return [self.paths[-1], self.paths[0]] if len(self.paths) > 1 else self.paths

    def draw(self, generator: torch.Generator, n: int) -> List[SubnetPath]:
        """``n`` paths drawn uniformly on ``generator``."""
        return [self.paths[i] for i in torch.randint(len(self.paths), (n,), generator=generator).tolist()]


class SandwichTrainer(Trainer):
    """The sandwich rule on a supernet whose paths run alone: ``net.on_path(path)`` (a context),
    ``net.crop(path, batch)`` (the batch as that path reads it) and ``net.path_name(path)``. ``space``
    gives the ends and the draws (:class:`PathList`). The best epoch is the one whose mean validation
    score over the smallest and the largest path is highest (both scores go into the history)."""

    def __init__(self, net, *args, space, random_paths: int, **kwargs) -> None:
        super().__init__(net, *args, **kwargs)
        self.space, self.random_paths = space, random_paths
        self.ends = space.ends

    def step_paths(self) -> list:
        """The largest, the smallest and ``random_paths`` uniform draws (on the trainer's checkpointed
        generator, so that a resumed run draws what the uninterrupted one drew)."""
        return self.ends + self.space.draw(self.sampler, self.random_paths)

    def step_loss(self, *batch: torch.Tensor) -> torch.Tensor:
        paths = self.step_paths()
        total = 0.0
        for path in paths:
            with self.model.on_path(path):
                total = total + self.loss(*self.model.crop(path, batch))
        return total / len(paths)

    def validate(self, stats: Dict) -> Dict[str, float]:
        rows = []
        for path in self.ends:
            with self.model.on_path(path):
                rows.append(super().validate(stats))
            stats[f"valid_{self.cfg.valid_metric} ({self.model.path_name(path)})"] = rows[-1][self.cfg.valid_metric]
        return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]}


def score_paths(net, evaluator, paths: Sequence, protocol: str, metric: str) -> Dict:
    """Each path's validation ``metric`` on the supernet's weights (inherited, not retrained)."""
    scores = {}
    for path in paths:
        with net.on_path(path):
            scores[path] = evaluator.evaluate(net, "valid", protocols=[protocol])[protocol][metric]
    return scores
