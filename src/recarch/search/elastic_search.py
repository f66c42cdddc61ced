"""Strategy ``elastic``: the per-layer space of recarch.search.elastic, searched once-for-all style.

Phase 1 trains the shared-weight supernet by the sandwich rule (the largest and the smallest
architecture and ``supernet.random_paths`` uniform draws per step). Phase 2, for each budget
(``budgets``, or the one ``budget_flops``, or none): ``candidates`` distinct architectures within it
(the smallest and, if it fits, the largest, then uniform draws) are scored by their validation metric
on the supernet's weights, and the best (the cheapest among equal scores) is derived. Budgets here are
fractions of the hand-sized model's counted FLOPs per sequence (``model``, what the baseline trains:
embeddings, encoder and scoring every item), not of the encoder alone as in EASRec's space. Phases 3-4
are the front's (recarch.search.front): each distinct architecture retrained, the baseline beside them.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List

from recarch import config as cfglib
from recarch import run
from recarch.data.batching import TrainBatches
from recarch.io import write_json_atomic
from recarch.search.easrec import STRATEGIES
from recarch.search.elastic import Arch, ElasticSupernet, candidate_archs, model_flops
from recarch.search.front import PLAN, finish_front
from recarch.search.job import FLOWS, SearchRunConfig
from recarch.search.sandwich import SandwichTrainer, score_paths
from recarch.train import checkpoint


@STRATEGIES.register("elastic")
class ElasticSearch:
    """The strategy's entry: its flow trains the elastic supernet by the sandwich rule, without
    controllers (see the module docstring)."""

    paper_name = "Elastic one-shot"
    space_overrides: dict = {}
    has_controllers = False
    flow = "elastic"


def train_elastic(cfg: SearchRunConfig, data, run_dir: Path, log, dist, resume: bool):
    """Phase 1: the supernet trained by the sandwich rule, at its best epoch; (net, evaluator, fit)."""
    net = ElasticSupernet(data.num_items, cfg.model, cfg.elastic)
    s = net.space
    log(f"phase 1/4: search (elastic): widths {s.widths}, attention widths {s.attn_widths}, heads {s.heads}, "
        f"FFN widths {s.ffn_widths}, depths {s.depths}, history lengths {s.max_lens}, layer types {s.layer_types}")
    if len(s.max_lens) > 1 and cfg.model.positions == "forward":
        log("note: with model.positions forward, the history lengths share each position's embedding between "
            "items at different distances from the most recent one; model.positions: inverse shares them consistently")
    evaluator = run.make_evaluator(replace(cfg.run_config(net.config), train=cfg.train), data)
    batches = TrainBatches(data, net.config.max_len, cfg.train.regime, cfg.train.batch_size, cfg.train.seed)
    trainer = SandwichTrainer(net, batches, evaluator, cfg.train, run_dir / "search", log=log,
                              parameters=net.weight_parameters(), dist=dist, space=net.sampler,
                              random_paths=cfg.supernet.random_paths)
    fit = trainer.fit(resume=resume and trainer.can_resume())
    trainer.load_best()
    if dist.is_main:
        write_json_atomic(run_dir / "search" / "trajectory.json", fit["history"])
    return net, evaluator, fit


def derive_elastic(cfg: SearchRunConfig, data, run_dir: Path, log, dist, resume: bool) -> List[Dict[str, Any]]:
    """Phases 1-2: the supernet, then per budget the best-scoring candidate, derived into
    ``front/<arch>/`` (arch.json, derived.pt); the plan is kept in ``front/archs.json``, every scored
    candidate in ``search/candidates.json``."""
    if resume and (run_dir / PLAN).exists():
        log(f"phase 1-2/4: kept the derived architectures in {run_dir / PLAN}")
        return json.loads((run_dir / PLAN).read_text())
    net, evaluator, fit = train_elastic(cfg, data, run_dir, log, dist, resume)
    base = model_flops(data.num_items, cfg.model)
    protocol, metric = cfg.train.valid_protocol, cfg.train.valid_metric
    log(f"phase 2/4: score up to {cfg.candidates} architectures per budget on the supernet's weights "
        f"(valid {protocol} {metric}); the hand-sized model counts {base / 1e6:.2f} MFLOPs per sequence")
    scores: Dict[Arch, float] = {}
    plan = []
    for budget in sorted(cfg.budgets) or [cfg.budget_flops]:
        limit = budget * base if budget else None
        archs = candidate_archs(net.space, cfg.candidates, cfg.train.seed, lambda a: limit is None or net.flops(a) <= limit)
        if not archs:
            raise ValueError(f"no architecture of the space fits {budget:.0%} of the hand-sized model's FLOPs "
                             f"({limit / 1e6:.2f} MFLOPs): add smaller widths, depths or history lengths")
        for arch, score in score_paths(net, evaluator, [a for a in archs if a not in scores], protocol, metric).items():
            scores[arch] = score
            log(f"{arch.name()}: {net.flops(arch) / base:.0%} of the FLOPs, valid {protocol} {metric} {score:.4f}")
        best = max(archs, key=lambda a: (scores[a], -net.flops(a)))
        folder = f"front/{best.folder()}"
        if not any(p["folder"] == folder for p in plan):
            write_derived(cfg, net, best, fit, run_dir / folder, dist)
        plan.append({"budget": budget, "folder": folder, "arch": best.to_dict(), "inherited_score": scores[best],
                     "flops_fraction": net.flops(best) / base, "candidates": len(archs)})
        log(f"budget {'none' if budget is None else f'{budget:.0%}'}: {best.name()} "
            f"({plan[-1]['flops_fraction']:.0%} of the FLOPs, best of {len(archs)})")
    if dist.is_main:
        write_json_atomic(run_dir / "search" / "candidates.json",
                          [{"arch": a.to_dict(), "flops": net.flops(a), "flops_fraction": net.flops(a) / base,
                            "score": s} for a, s in scores.items()])
        write_json_atomic(run_dir / PLAN, plan)
    dist.barrier()
    return plan


def write_derived(cfg: SearchRunConfig, net: ElasticSupernet, arch: Arch, fit, folder: Path, dist) -> None:
    """``folder``/derived.pt (the inherited weights) and ``folder``/arch.json (what ``recarch retrain`` reads)."""
    if dist.is_main:
        checkpoint.save_atomic({"model": net.derive(arch).state_dict()}, folder / "derived.pt")
        write_json_atomic(folder / "arch.json", {
            "model": cfglib.to_dict(net.derived_config(arch)), "data": cfglib.to_dict(cfg.data),
            "strategy": cfg.strategy, "arch": arch.to_dict(), "flops_per_sequence": net.flops(arch),
            "weights": "derived.pt", "search_seconds": fit["train_seconds"], "search_epochs": fit["epoch"]})
    dist.barrier()


@FLOWS.register("elastic")
def search_elastic(cfg: SearchRunConfig, data, data_dir, run_dir: Path, log, dist, echo: bool, resume: bool) -> Dict[str, Any]:
    return finish_front(cfg, derive_elastic(cfg, data, run_dir, log, dist, resume), data_dir, run_dir, log, dist,
                        echo, resume)
