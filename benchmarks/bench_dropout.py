"""``recarch.dropout.Dropout`` against ``torch.nn.Dropout`` in one process: the dropout alone (forward and
backward on a batch × MLP-width activation) and whole training steps of the hand-designed CTR baselines on
real batches (``configs/ctr-baselines.yaml``: MLP 400-400-400, dropout 0.2, batch 1024).

The two variants are the same model (same seed, same initial weights) with its dropout modules swapped, timed
in alternating rounds on the same batches, so that the machine's load falls on both alike; the figure is the
ratio of their median times. Writes ``benchmarks/results/dropout-<dataset>.json``. Example:
``python benchmarks/bench_dropout.py --dataset ml-1m-ctr --threads 1``.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from recarch.cost import machine_info
from recarch.ctr.models import build_ctr_model
from recarch.ctr.run import load_ctr_config, load_data
from recarch.ctr.table import batches
from recarch.dropout import Dropout
from recarch.io import write_json_atomic
from recarch.train.optimizers import make_optimizer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VARIANTS = {"torch.nn.Dropout": lambda p: nn.Dropout(p), "recarch Dropout": Dropout}


def with_dropout(model: nn.Module, make: Callable[[float], nn.Module]) -> nn.Module:
    """A copy of ``model`` whose dropout modules (either kind) are ``make(p)`` with the same p."""
    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, (nn.Dropout, Dropout)):
                setattr(module, name, make(child.p))
    return model


def alternating(steps: Dict[str, Callable[[], None]], rounds: int, per_round: int) -> Dict[str, List[float]]:
    """Seconds per call of each step, timed ``per_round`` calls at a time, the variants taking turns."""
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for step in steps.values():  # warm-up
        step()
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(per_round):
                step()
            times[name].append((time.perf_counter() - start) / per_round)
    return times


def summary(times: Dict[str, List[float]]) -> dict:
    torch_s, ours_s = (statistics.median(times[name]) for name in VARIANTS)
    return {"median_ms": {name: 1e3 * statistics.median(t) for name, t in times.items()},
            "rounds_ms": {name: [1e3 * x for x in t] for name, t in times.items()},
            "speedup": torch_s / ours_s}


def dropout_alone(batch_size: int, width: int, p: float, rounds: int) -> dict:
    x = torch.randn(batch_size, width, requires_grad=True)

    def step(module: nn.Module) -> Callable[[], None]:
        return lambda: module(x).sum().backward()

    return {"shape": [batch_size, width], "p": p,
            **summary(alternating({name: step(make(p).train()) for name, make in VARIANTS.items()}, rounds, 20))}


def training_steps(model_name: str, data, cfg, rounds: int, per_round: int, seed: int) -> dict:
    """Optimizer steps of ``model_name`` (the preset's optimizer, built as training builds it) on the first
    ``per_round`` training batches, each variant from the same weights (its own optimizer state)."""
    torch.manual_seed(seed)
    base = build_ctr_model(data.schema, replace(cfg.model, name=model_name))
    feed = list(batches(data.train, cfg.train.batch_size, shuffle=True, seed=seed))[:per_round]

    def step(model: nn.Module) -> Callable[[], None]:
        opt = make_optimizer(cfg.train.optimizer, [{"params": list(model.parameters())}], cfg.train.lr)  # as training's
        rows = itertools.cycle(feed)

        def one() -> None:
            cat, num, label = next(rows)
            loss = F.binary_cross_entropy_with_logits(model(cat, num), label)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return one

    steps = {name: step(with_dropout(base, make).train()) for name, make in VARIANTS.items()}
    return {"model": model_name, "batch_size": cfg.train.batch_size, **summary(alternating(steps, rounds, per_round))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-1m-ctr")
    ap.add_argument("--models", nargs="+", default=["dlrm", "deepfm", "dcnv2"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10, help="training steps per round")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_ctr_config([ROOT / "configs/ctr-baselines.yaml"], [f"data.dataset={args.dataset}"])
    data = load_data(cfg, args.data_dir)
    started = time.time()
    width = cfg.model.mlp[0]
    result = {"benchmark": "dropout", "dataset": args.dataset, "seed": args.seed, "threads": args.threads,
              "command": "python benchmarks/bench_dropout.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": machine_info(args.threads), "load_average_at_start": os.getloadavg()[0],
              "dropout_alone": dropout_alone(cfg.train.batch_size, width, cfg.model.dropout, args.rounds),
              "training_steps": [training_steps(m, data, cfg, args.rounds, args.steps, args.seed) for m in args.models]}
    result["wall_seconds"] = time.time() - started
    path = Path(args.out_dir) / f"dropout-{args.dataset}.json"
    write_json_atomic(path, result)
    for row in [result["dropout_alone"], *result["training_steps"]]:
        print(f"{row.get('model', 'dropout alone')}: recarch Dropout {row['speedup']:.2f}× torch.nn.Dropout's speed")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
