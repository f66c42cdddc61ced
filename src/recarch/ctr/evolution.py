"""Regularised evolution (Real et al. 2019, "aging evolution"), as NASRec searches its supernet.

A population of ``population`` genomes is drawn at random; each generation samples ``sample_size``
members, mutates the best of the sample into ``children`` new genomes, adds them and removes the
oldest. Genomes that break the budget are redrawn (up to ``tries`` times). Every scored genome is kept
in the history, so the Pareto front is taken over everything that was evaluated.
"""
from __future__ import annotations

import collections
import random
from dataclasses import dataclass
from typing import Callable, Dict, Generic, List, Optional, TypeVar

from tqdm import tqdm

from recarch.config import ConfigError

G = TypeVar("G")


@dataclass
class EvolutionConfig:
    population: int = 128
    sample_size: int = 64
    children: int = 8  # per generation
    generations: int = 240
    tries: int = 50  # redraws of a genome that breaks the budget
    seed: int = 2018

    def validate(self) -> None:
        if min(self.population, self.sample_size, self.children, self.tries) < 1 or self.generations < 0:
            raise ConfigError("evolution: population, sample_size, children and tries must be ≥ 1, generations ≥ 0")
        if self.sample_size > self.population:
            raise ConfigError(f"evolution.sample_size {self.sample_size} exceeds evolution.population {self.population}")


@dataclass
class Scored(Generic[G]):
    genome: G
    score: float  # lower is better
    info: Dict


def evolve(cfg: EvolutionConfig, sample: Callable[[random.Random], G], mutate: Callable[[G, random.Random], G],
           score: Callable[[G], Optional[Scored]], progress: bool = True) -> List[Scored]:
    """Run the search; ``score`` returns None for a genome outside the budget. Returns the history."""
    rng = random.Random(cfg.seed)
    history: List[Scored] = []

    def draw(make: Callable[[], G]) -> Optional[Scored]:
        for _ in range(cfg.tries):
            scored = score(make())
            if scored is not None:
                history.append(scored)
                return scored
        return None

    population: collections.deque = collections.deque()
    total = cfg.population + cfg.generations * cfg.children
    with tqdm(total=total, desc="evolution", disable=not progress, leave=False) as bar:
        while len(population) < cfg.population:
            member = draw(lambda: sample(rng))
            if member is None:
                raise RuntimeError(f"no random architecture met the budget in {cfg.tries} draws; raise the budget")
            population.append(member)
            bar.update()
        for _ in range(cfg.generations):
            parent = min(rng.sample(list(population), cfg.sample_size), key=lambda s: s.score)
            for _ in range(cfg.children):
                child = draw(lambda: mutate(parent.genome, rng))
                if child is not None:
                    population.append(child)
                    population.popleft()
                bar.update()
            bar.set_postfix(best=f"{min(s.score for s in history):.4f}")
    return history


def pareto_front(points: List[Dict], keys: List[str]) -> List[int]:
    """Indices of the points no other point dominates (≤ in every key, < in one; all minimised)."""
    front = []
    for i, p in enumerate(points):
        dominated = any(all(q[k] <= p[k] for k in keys) and any(q[k] < p[k] for k in keys)
                        for j, q in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front
