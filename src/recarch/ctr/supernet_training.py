"""Training the NASRec supernet (phase 1 of ``recarch ctr search``): each step trains the sub-networks
its rule picks (``supernet.rule``: ``single``, one random path as NASRec, single path over operators and
any path over connections, the largest with a probability decaying over ``largest_warmup_steps``;
``sandwich``, the largest, the smallest and ``random_paths`` random paths, as BigNAS). Early stopping on
the mean validation AUC of a few fixed random paths whose BatchNorm statistics are re-estimated first,
and the training throughput in FLOPs of the paths actually trained on (the sampler replayed from its seed).
"""
from __future__ import annotations

import ast
import itertools
import random
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from recarch.cost.flops import count_flops
from recarch.ctr.run import CTREvaluator, CTRTrainer
from recarch.ctr.search_config import CTRSearchConfig, CTRSupernetConfig
from recarch.ctr.space import Arch, SpaceConfig, sample
from recarch.ctr.supernet import NASRecSupernet
from recarch.ctr.table import CTRData, TrainBatches, batches
from recarch.train import TrainHooks
from recarch.train.distributed import Dist



class FixedPath(nn.Module):
    """One sub-network of the supernet as an ordinary ``forward(cat, num)`` model (shared weights)."""

    def __init__(self, supernet: NASRecSupernet, arch: Arch) -> None:
        super().__init__()
        self.supernet, self.arch = supernet, arch

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        return self.supernet(cat, num, self.arch)


def calibration_batches(data: CTRData, cfg: CTRSearchConfig) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """The first ``calibration_rows`` of a seeded shuffle of the training rows, as (cat, num) batches."""
    size = cfg.train.batch_size
    return [(cat, num) for cat, num, _ in itertools.islice(batches(data.train, size, shuffle=True, seed=cfg.train.seed),
                                                          -(-cfg.calibration_rows // size))]


def calibrated(net: NASRecSupernet, arch: Arch, calibration) -> FixedPath:
    """The sub-network ``arch`` with its BatchNorm statistics re-estimated on ``calibration``."""
    net.recalibrate(arch, calibration)
    return FixedPath(net, arch)


class PathSampler(TrainHooks):
    """Draws the sub-networks of each training step by the rule of ``supernet`` (:data:`STEP_PATHS`);
    its random state travels in the checkpoint."""

    def __init__(self, space: SpaceConfig, seed: int, warmup_steps: int,
                 supernet: Optional[CTRSupernetConfig] = None) -> None:
        self.space, self.warmup, self.supernet = space, warmup_steps, supernet or CTRSupernetConfig()
        self.rng = random.Random(seed)

    def next(self, step: int) -> Arch:
        """One random path (any path over connections; the largest with a probability decaying 1 → 0
        over the warm-up steps)."""
        p_largest = max(0.0, 1 - step / self.warmup) if self.warmup else 0.0
        return sample(self.space, self.rng, largest=self.rng.random() < p_largest)

    def paths(self, step: int) -> List[Arch]:
        return STEP_PATHS[self.supernet.rule](self, step)

    def state_dict(self) -> Dict:
        return {"rng": repr(self.rng.getstate())}

    def load_state_dict(self, state: Dict) -> None:
        self.rng.setstate(ast.literal_eval(state["rng"]))


def sandwich_paths(sampler: PathSampler, step: int) -> List[Arch]:
    """The largest path, the smallest and ``random_paths`` uniform draws (each with random operators)."""
    space, rng = sampler.space, sampler.rng
    return [sample(space, rng, largest=True), sample(space, rng, smallest=True),
            *(sample(space, rng) for _ in range(sampler.supernet.random_paths))]


STEP_PATHS: Dict[str, Callable[[PathSampler, int], List[Arch]]] = {
    "single": lambda sampler, step: [sampler.next(step)],
    "sandwich": sandwich_paths,
}


class SupernetTrainer(CTRTrainer):
    def recompute_batch_norm(self, epoch: int) -> None:
        """Nothing here: every evaluated path re-estimates its own statistics (``calibrated``)."""

    def step_loss(self, cat, num, label):
        """The mean loss of the step's paths, each run alone on the batch."""
        archs = self.hooks.paths(self.state["step"])
        model = self.model
        total = 0.0
        try:
            for arch in archs:
                self.model = FixedPath(model, arch)
                total = total + self.loss(cat, num, label)
        finally:
            self.model = model
        return total / len(archs)


class PathsEvaluator(CTREvaluator):
    """Mean validation AUC / log loss of a fixed set of random sub-networks (each recalibrated)."""

    def __init__(self, data: CTRData, batch_size: int, archs: List[Arch], calibration) -> None:
        super().__init__(data, batch_size)
        self.archs, self.calibration = archs, calibration

    def evaluate(self, model, split, protocols=None):
        rows = [super(PathsEvaluator, self).evaluate(calibrated(model, a, self.calibration), split)["ctr"]
                for a in self.archs]
        return {"ctr": {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}}


def train_supernet(cfg: CTRSearchConfig, data: CTRData, run_dir: Path, log,
                   resume: bool = False) -> Tuple[NASRecSupernet, Dict]:
    """The supernet at its best epoch; with ``reuse_supernet`` or ``resume``, continued from the run
    folder's last checkpoint (a finished one is used as it is)."""
    torch.manual_seed(cfg.train.seed)
    net = NASRecSupernet(data.schema, cfg.space)
    rng = random.Random(cfg.train.seed + 1)
    evaluator = PathsEvaluator(data, 8192, [sample(cfg.space, rng) for _ in range(cfg.eval_paths)],
                               calibration_batches(data, cfg))
    trainer = SupernetTrainer(net, TrainBatches(data.train, cfg.train.batch_size, cfg.train.seed), evaluator,
                              cfg.train, run_dir / "supernet", log=log,
                              hooks=PathSampler(cfg.space, cfg.train.seed, cfg.largest_warmup_steps, cfg.supernet),
                              dist=Dist())
    log(f"supernet: {sum(p.numel() for p in net.parameters()):,} parameters, {cfg.space.blocks} blocks, "
        f"space {cfg.space.space}, trained by the {cfg.supernet.rule} rule")
    reuse = (cfg.reuse_supernet or resume) and (run_dir / "supernet" / "checkpoints" / "last.pt").exists()
    if reuse:  # continued up to train.epochs unless it already stopped; a finished one is used as it is
        log(f"supernet: reusing the trained weights in {run_dir / 'supernet'}")
    trainer.fit(resume=reuse)
    trainer.load_best()
    fit = {k: trainer.state[k] for k in ("best_score", "best_epoch", "epoch", "history", "train_seconds", "step")}
    return net.eval(), fit


def one_test_row(data: CTRData) -> Tuple[torch.Tensor, torch.Tensor]:
    return (torch.from_numpy(np.array(data.test.cat[:1], dtype=np.int64)),
            torch.from_numpy(np.array(data.test.num[:1], dtype=np.float32)))


def trained_path_mflops(net: NASRecSupernet, cfg: CTRSearchConfig, steps: int, example, max_steps: int = 256) -> float:
    """Mean forward MFLOPs per sample of one training step (the sum over the sub-networks it trained):
    the :class:`PathSampler` replayed from the seed over the ``steps`` training steps (every k-th step
    counted, at most ``max_steps``). A path's FLOPs depend on its architecture alone, not on the weights.
    The random paths are far larger than the candidates the evolution keeps under the FLOPs budget."""
    sampler = PathSampler(cfg.space, cfg.train.seed, cfg.largest_warmup_steps, cfg.supernet)
    drawn = [sampler.paths(step) for step in range(steps)]
    every = max(1, -(-steps // max_steps))
    return float(np.mean([sum(count_flops(FixedPath(net, arch), example)["flops"] for arch in archs)
                          for archs in drawn[::every]])) / 1e6


def supernet_throughput(net: NASRecSupernet, cfg: CTRSearchConfig, fit: Dict, example) -> Dict[str, float]:
    """Samples/s and GFLOP/s of the supernet's training loop (3 × the forward FLOPs of each step's paths,
    the usual forward + backward count), over all its epochs."""
    seconds = sum(h["seconds"] for h in fit["history"])
    samples = sum(h["samples_per_s"] * h["seconds"] for h in fit["history"])
    mflops = trained_path_mflops(net, cfg, fit["step"], example)
    return {"train_samples_per_s": samples / seconds, "mean_path_mflops": mflops,
            "train_gflops_per_s": 3 * mflops * 1e6 * samples / seconds / 1e9}
