"""Random search and grid search on EASRec's space: the baseline NAS practice asks every method to beat.

No supernet: ``random.trials`` architectures are drawn without replacement from the paths within the
budget (all of them when the space holds no more: a grid search), each trains alone from scratch with
the retrain settings for ``random.epochs`` epochs (``trials/w<width>-f<ffn>-L<depth>/``, ordinary run
folders), and the one with the best validation score is retrained with the full schedule. Equal
compute with another method is set by ``trials`` × ``epochs`` (the benchmark sizes them to that
method's search + retrain time).
"""
from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict

from recarch import config as cfglib
from recarch.io import write_json_atomic
from recarch.search.constraint import candidate_layer_flops, candidate_layer_latency
from recarch.search.derive import fitting_paths
from recarch.search.easrec import STRATEGIES
from recarch.search.job import FLOWS, SearchRunConfig, baseline_phase, format_summary, summarise, train_phase
from recarch.search.supernet import EASRecSupernet


@STRATEGIES.register("random")
class RandomSearch:
    """The strategy's entry: its flow trains no supernet, so there are no hooks to build (see the module
    docstring)."""

    paper_name = "Random search"
    space_overrides: dict = {}
    has_controllers = False
    flow = "random"


@FLOWS.register("random")
def search_random(cfg: SearchRunConfig, data, data_dir, run_dir: Path, log, dist, echo: bool, resume: bool) -> Dict[str, Any]:
    space = EASRecSupernet(data.num_items, cfg.model, cfg.space)  # widths, shapes and FLOPs only: never trained
    layer_flops = candidate_layer_flops(space, cfg.model.max_len)
    if cfg.budget_ms is not None:
        fits = fitting_paths(candidate_layer_latency(space, cfg.model.max_len, cfg.cost.batch_size, cfg.cost.threads),
                             cfg.model.n_layers, cfg.budget_ms)
    else:
        limit = cfg.budget_flops * max(layer_flops) * cfg.model.n_layers if cfg.budget_flops else None
        fits = fitting_paths(layer_flops, cfg.model.n_layers, limit)
    trials = fits if cfg.random.trials >= len(fits) else random.Random(cfg.random.seed).sample(fits, cfg.random.trials)
    log(f"phase 1/4: {'grid' if len(trials) == len(fits) else 'random'} search, {len(trials)} of the {len(fits)} "
        f"architectures within the budget, {cfg.random.epochs} epochs each")
    protocol, metric = cfg.retrain.valid_protocol, cfg.retrain.valid_metric
    results = {}
    for path in trials:
        model = space.derived_config(*path)
        folder = run_dir / "trials" / f"w{model.hidden_size}-f{model.inner_size}-L{path[1]}"
        short = replace(cfg.run_config(model), train=replace(cfg.retrain, epochs=cfg.random.epochs))
        results[path] = train_phase(short, data_dir, folder, echo, resume)
        log(f"trial {folder.name}: valid {protocol} {metric} {results[path]['valid'][protocol][metric]:.4f}")
    k, depth = max(trials, key=lambda p: results[p]["valid"][protocol][metric])
    best = space.derived_config(k, depth)
    arch = {"model": cfglib.to_dict(best), "data": cfglib.to_dict(cfg.data), "strategy": cfg.strategy,
            "candidate": k, "depth": depth, "widths": space.widths, "layer_flops": layer_flops,
            "trials": [{"candidate": p[0], "depth": p[1], "valid": results[p]["valid"][protocol][metric],
                        "train_seconds": results[p]["train_seconds"]} for p in trials],
            "search_seconds": sum(r["train_seconds"] for r in results.values()), "weights": None}
    if dist.is_main:
        write_json_atomic(run_dir / "arch.json", arch)
    log(f"phase 2-3/4: retrain the best, width {best.hidden_size}, ffn {best.inner_size}, {depth} layer(s), from scratch")
    retrained = train_phase(cfg.run_config(best), data_dir, run_dir / "retrain", echo, resume)
    baseline = baseline_phase(cfg, data_dir, run_dir, log, dist, echo, resume)
    if not dist.is_main:
        return {"run_dir": str(run_dir)}
    summary = summarise(run_dir, arch, retrained, baseline, arch["search_seconds"], RandomSearch.paper_name)
    write_json_atomic(run_dir / "summary.json", summary)
    log("\n" + format_summary(summary))
    return summary
