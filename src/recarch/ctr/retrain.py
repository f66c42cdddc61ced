"""Phase 3 of ``recarch ctr search``: each chosen candidate retrained from scratch as an ordinary CTR
run, ``retrain_seeds`` times at each learning rate of ``retrain_lrs``, each training a job of the search's
executor (in this process, or a Ray task); the candidate keeps the learning rate with the best mean
validation AUC. Finished runs of the same architecture and settings are reused, interrupted ones go on.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from recarch import config as cfglib
from recarch.ctr.models import CTRModelConfig
from recarch.ctr.run import CTRRunConfig, train_ctr
from recarch.ctr.table import CTRData
from recarch.ctr.search_config import CTRSearchConfig
from recarch.executor import make_executor
from recarch.io import write_json_atomic



def retrain_config(cfg: CTRSearchConfig, arch_path: Path, seed: Optional[int] = None,
                   lr: Optional[float] = None) -> CTRRunConfig:
    """The run that trains the architecture in ``arch_path`` from scratch with the search's retrain
    settings (``seed`` and ``lr`` replace the retrain seed and learning rate)."""
    model = CTRModelConfig(name="nasrec", arch_file=str(Path(arch_path).resolve()), dropout=cfg.retrain_dropout)
    train = replace(cfg.retrain, seed=cfg.retrain.seed if seed is None else seed, lr=cfg.retrain.lr if lr is None else lr)
    return CTRRunConfig(data=cfg.data, model=model, train=train, cost=cfg.cost)


def retrained(job: Tuple, data: Optional[CTRData] = None) -> Dict[str, Any]:
    """One from-scratch training, ``job`` = (search config, arch path, seed, lr, data dir, run folder, echo):
    its metrics and costs. The folder's ``trained.json`` names the architecture and settings it trains: a
    finished run of the same is reused and an interrupted one goes on from its last checkpoint, so a
    stopped or widened search (a larger ``top_k``) retrains only what is new; a folder of anything else is
    emptied first. ``data``: the loaded data when the job runs in the caller's process (else read here)."""
    cfg, arch_path, seed, lr, data_dir, run_dir, echo = job
    run_cfg = retrain_config(cfg, arch_path, seed, lr)
    what = {"arch": json.loads(Path(arch_path).read_text())["arch"], "config": cfglib.to_dict(run_cfg)}
    marker = run_dir / "trained.json"
    if not (marker.exists() and json.loads(marker.read_text()) == what):
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        write_json_atomic(marker, what)
    if (run_dir / "metrics.json").exists():
        result = {"run_dir": str(run_dir), **json.loads((run_dir / "metrics.json").read_text())}
    else:
        result = train_ctr(run_cfg, data_dir, run_dir, resume=True, echo=echo, data=data)
    cost = json.loads((Path(result["run_dir"]) / "cost.json").read_text())
    return {"seed": seed, "lr": lr, "run_dir": result["run_dir"], "valid": result["valid"], "test": result["test"],
            "train_seconds": result["train_seconds"], "flops_per_sample": cost["flops_per_sample"],
            "params": cost["params"], "inference_us_per_sample": cost["inference"]["us_per_sample"]}


def retrain_candidates(cfg: CTRSearchConfig, candidates: List[Tuple[Path, Path]], data_dir: Optional[str], echo: bool,
                       data: CTRData) -> List[Dict[str, Any]]:
    """Each candidate (arch path, folder) retrained ``retrain_seeds`` times at each learning rate of
    ``cfg.learning_rates()``, every training an independent job of ``cfg.executor`` (here, or Ray tasks);
    a candidate keeps the learning rate with the best mean validation AUC, and its runs are the
    candidate's. Runs go to ``<folder>-seed<s>`` (``retrain.lr``) or ``<folder>-lr<lr>-seed<s>``."""
    seeds = [cfg.retrain.seed + i for i in range(cfg.retrain_seeds)]
    lrs = cfg.learning_rates()
    executor = make_executor(cfg.executor)
    jobs = [(cfg, arch_path, s, lr, data_dir,
             folder.with_name(f"{folder.name}{'' if lr == cfg.retrain.lr else f'-lr{lr:g}'}-seed{s}"),
             echo and executor.in_process)
            for arch_path, folder in candidates for lr in lrs for s in seeds]
    runs = iter(executor.map(partial(retrained, data=data) if executor.in_process else retrained, jobs))
    return [candidate_result({lr: [next(runs) for _ in seeds] for lr in lrs}) for _ in candidates]


def candidate_result(by_lr: Dict[float, List[Dict[str, Any]]]) -> Dict[str, Any]:
    """One candidate's row from its runs at each learning rate."""
    lr_valid_auc = {lr: float(np.mean([r["valid"]["auc"] for r in runs])) for lr, runs in by_lr.items()}
    lr = max(lr_valid_auc, key=lr_valid_auc.get)
    runs = by_lr[lr]
    return {"lr": lr, "lr_valid_auc": {f"{k:g}": v for k, v in lr_valid_auc.items()},
            **{split: mean_metrics([r[split] for r in runs]) for split in ("valid", "test")},
            **{key: runs[0][key] for key in ("flops_per_sample", "params", "inference_us_per_sample")},
            "train_seconds": sum(r["train_seconds"] for rs in by_lr.values() for r in rs), "per_seed": runs}


def mean_metrics(splits: List[Dict[str, float]]) -> Dict[str, float]:
    """Metric dicts of several seeds → their means (``rows`` kept as is)."""
    return {key: splits[0][key] if key == "rows" else float(np.mean([s[key] for s in splits])) for key in splits[0]}
