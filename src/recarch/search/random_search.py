"""Random search and grid search on EASRec's space: the baseline NAS practice asks every method to beat.

No supernet: ``random.trials`` architectures are drawn without replacement from the paths within the
budget (all of them when the space holds no more: a grid search), each trains alone from scratch with
the retrain settings for ``random.epochs`` epochs (``trials/<shape>/``, ordinary run folders), and the
one with the best validation score is retrained with the full schedule. ``random.space: elastic`` draws
from strategy elastic's per-layer space (``elastic:``) instead, uniformly, within ``budget_flops`` of the
hand-sized model's FLOPs. Equal
compute with another method is set by ``trials`` × ``epochs`` (the benchmark sizes them to that
method's search + retrain time).
"""
from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Tuple

from recarch import config as cfglib
from recarch.executor import make_executor
from recarch.io import write_json_atomic
from recarch.models import SeqModelConfig
from recarch.search.constraint import candidate_layer_flops, candidate_layer_latency
from recarch.search.derive import fitting_paths
from recarch.search.easrec import STRATEGIES
from recarch.search.elastic import ElasticSupernet, candidate_archs, model_flops
from recarch.search.job import FLOWS, SearchRunConfig, baseline_phase, train_phase
from recarch.search.summary import format_summary, summarise
from recarch.search.supernet import EASRecSupernet


@STRATEGIES.register("random")
class RandomSearch:
    """The strategy's entry: its flow trains no supernet, so there are no hooks to build (see the module
    docstring)."""

    paper_name = "Random search"
    space_overrides: dict = {}
    has_controllers = False
    flow = "random"


def easrec_trials(cfg: SearchRunConfig, data) -> Tuple[List[Tuple[str, SeqModelConfig]], Dict[str, Any]]:
    """EASRec's space: (folder name, model) per drawn path within the budget, and what arch.json keeps."""
    space = EASRecSupernet(data.num_items, cfg.model, cfg.space)  # widths, shapes and FLOPs only: never trained
    layer_flops = candidate_layer_flops(space, cfg.model.max_len)
    if cfg.budget_ms is not None:
        fits = fitting_paths(candidate_layer_latency(space, cfg.model.max_len, cfg.cost.batch_size, cfg.cost.threads),
                             cfg.model.n_layers, cfg.budget_ms)
    else:
        limit = cfg.budget_flops * max(layer_flops) * cfg.model.n_layers if cfg.budget_flops else None
        fits = fitting_paths(layer_flops, cfg.model.n_layers, limit)
    paths = fits if cfg.random.trials >= len(fits) else random.Random(cfg.random.seed).sample(fits, cfg.random.trials)
    trials = []
    for k, depth in paths:
        model = space.derived_config(k, depth)
        trials.append((f"w{model.hidden_size}-f{model.inner_size}-L{depth}", model))
    return trials, {"widths": space.widths, "layer_flops": layer_flops, "within_budget": len(fits),
                    "paths": {name: {"candidate": k, "depth": d} for (name, _), (k, d) in zip(trials, paths)}}


def elastic_trials(cfg: SearchRunConfig, data) -> Tuple[List[Tuple[str, SeqModelConfig]], Dict[str, Any]]:
    """The elastic space (``random.space: elastic``): uniform draws within the budget, a fraction of the
    hand-sized model's FLOPs as strategy elastic counts it."""
    net = ElasticSupernet(data.num_items, cfg.model, cfg.elastic)  # shapes and FLOPs only: never trained
    limit = cfg.budget_flops * model_flops(data.num_items, cfg.model) if cfg.budget_flops else None
    archs = candidate_archs(net.space, cfg.random.trials, cfg.random.seed,
                            lambda a: limit is None or net.flops(a) <= limit, ends=False)
    return ([(a.folder(), net.derived_config(a)) for a in archs],
            {"within_budget": None, "paths": {a.folder(): {"arch": a.to_dict()} for a in archs}})


SPACES = {"easrec": easrec_trials, "elastic": elastic_trials}


def train_trial(job: tuple) -> Dict[str, Any]:
    """One trial, (run config, data dir, folder, echo, resume): train_phase's arguments, picklable."""
    return train_phase(*job)


@FLOWS.register("random")
def search_random(cfg: SearchRunConfig, data, data_dir, run_dir: Path, log, dist, echo: bool, resume: bool) -> Dict[str, Any]:
    trials, described = SPACES[cfg.random.space](cfg, data)
    if not trials:
        raise ValueError(f"random search: no architecture of the {cfg.random.space} space fits the budget")
    grid = described["within_budget"] == len(trials)
    log(f"phase 1/4: {'grid' if grid else 'random'} search in the {cfg.random.space} space, {len(trials)} "
        f"architectures within the budget, {cfg.random.epochs} epochs each")
    protocol, metric = cfg.retrain.valid_protocol, cfg.retrain.valid_metric
    local = cfg.executor.kind == "local"
    jobs = [(replace(cfg.run_config(model), train=replace(cfg.retrain, epochs=cfg.random.epochs)), data_dir,
             run_dir / "trials" / name, echo and local, resume) for name, model in trials]
    if not local:
        log(f"trials run as {cfg.executor.kind} tasks, {cfg.executor.cpus_per_job} CPU(s) each")
    results = dict(zip([name for name, _ in trials], make_executor(cfg.executor).map(train_trial, jobs)))
    for name, _ in trials:
        log(f"trial {name}: valid {protocol} {metric} {results[name]['valid'][protocol][metric]:.4f}")
    name, best = max(trials, key=lambda t: results[t[0]]["valid"][protocol][metric])
    arch = {"model": cfglib.to_dict(best), "data": cfglib.to_dict(cfg.data), "strategy": cfg.strategy,
            "space": cfg.random.space, **described["paths"][name],
            **{k: v for k, v in described.items() if k not in ("paths", "within_budget")},
            "trials": [{"name": n, **described["paths"][n], "valid": results[n]["valid"][protocol][metric],
                        "train_seconds": results[n]["train_seconds"]} for n, _ in trials],
            "search_seconds": sum(r["train_seconds"] for r in results.values()), "weights": None}
    if dist.is_main:
        write_json_atomic(run_dir / "arch.json", arch)
    baseline = baseline_phase(cfg, data_dir, run_dir, log, dist, echo, resume)
    log(f"phase 4/4: retrain the best, {name}, from scratch")
    retrained = train_phase(cfg.retrain_config(best, run_dir), data_dir, run_dir / "retrain", echo, resume)
    if not dist.is_main:
        return {"run_dir": str(run_dir)}
    summary = summarise(run_dir, arch, retrained, baseline, arch["search_seconds"], RandomSearch.paper_name)
    write_json_atomic(run_dir / "summary.json", summary)
    log("\n" + format_summary(summary))
    return summary
