"""The methods of the EASRec paper's tables, each run from one search preset (the same data, model
size, training and evaluation settings for all), with one result row per (dataset, method, seed)
cached on disk so that an interrupted reproduction resumes where it stopped."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import yaml

from recarch import config as cfglib
from recarch import run
from recarch.io import write_json_atomic
from recarch.registry import Registry
from recarch.search.job import load_search_config, search


@dataclass(frozen=True)
class Method:
    label: str  # the paper's row name
    strategy: Optional[str] = None  # a search strategy; None: train the hand-sized model
    model: str = "sasrec"
    attention: Optional[str] = None  # None: the preset's
    sets: Tuple[str, ...] = ()  # extra overrides, e.g. ("space.gates=1",)


METHODS: Registry[Method] = Registry("method")
for _name, _method in {
    "easrec": Method("Ours (EASRec)", "easrec"),
    "darts": Method("DARTS + SASRec", "darts"),
    "proxylessnas": Method("ProxylessNAS + SASRec", "proxylessnas"),
    "recnas": Method("RecNAS + SASRec", "recnas"),
    "sasrec": Method("SASRec (w/o LinRec)", attention="softmax"),
    "fdsa": Method("FDSA (w/o LinRec)", model="fdsa", attention="softmax"),
    "sasrecf": Method("SASRecF (w/o LinRec)", model="sasrecf", attention="softmax"),
    "sasrec-linear": Method("SASRec (w LinRec)", attention="linear"),
    "fdsa-linear": Method("FDSA (w LinRec)", model="fdsa", attention="linear"),
    "sasrecf-linear": Method("SASRecF (w LinRec)", model="sasrecf", attention="linear"),
    "easrec-gates1": Method("1 layer", "easrec", sets=("space.gates=1",)),
    "easrec-gates0": Method("No Gates", "easrec", sets=("space.gates=0",)),
    **{f"easrec-lam{lam}": Method(f"λ = {lam}", "easrec", sets=(f"architect.lam={lam}",))
       for lam in (0.01, 0.05, 0.1, 0.5, 1.0)},
}.items():
    METHODS.register(_name)(_method)


def needs_features(name: str) -> bool:
    """Whether the method's model reads item attributes (FDSA, SASRecF)."""
    from recarch.models import MODELS

    return bool(getattr(MODELS.get(METHODS.get(name).model), "uses_features", False))


def dataset_has_features(dataset: str, preset: Sequence[str], sets: Sequence[str], data_dir: Optional[str]) -> bool:
    cfg = load_search_config(list(preset), [*sets, f"data.dataset={dataset}"])
    return run.load_dataset(cfg.run_config(cfg.model), data_dir).item_features is not None


def _row(run_dir: Path) -> Dict[str, Any]:
    """Validation and test metrics, model shape and cost of a finished training run folder."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cost_path = run_dir / "cost.json"
    cost = json.loads(cost_path.read_text()) if cost_path.exists() else {}
    model = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]
    return {"valid": metrics["valid"], "test": metrics["test"], "train_seconds": metrics["train_seconds"],
            "model": {k: model[k] for k in ("name", "attention", "hidden_size", "inner_size", "n_layers", "gates")},
            "flops_per_sequence": cost.get("flops_per_sequence"), "params": cost.get("params"),
            "inference_seconds": cost.get("inference", {}).get("seconds"),
            "inference_device": cost.get("inference", {}).get("device"),
            "peak_memory_mb": (cost.get("memory") or {}).get("net_mb")}


def seed_folder(runs_dir: Path, dataset: str, name: str, seed: int) -> Path:
    """Where one (dataset, method, seed) is cached: ``row.json`` and the run in ``run/``."""
    return Path(runs_dir) / dataset / name / f"seed{seed}"


def run_folder(runs_dir: Path, dataset: str, name: str, seed: int) -> Path:
    """The training run folder of a cached row: the retrained model for search methods."""
    folder = seed_folder(runs_dir, dataset, name, seed) / "run"
    return folder / "retrain" if METHODS.get(name).strategy else folder


def method_config(name: str, dataset: str, seed: int, preset: Sequence[str], sets: Sequence[str]):
    """The resolved config a method runs with: a ``SearchRunConfig`` for search methods, a ``RunConfig``
    for the hand-sized models."""
    method = METHODS.get(name)
    overrides = [*sets, f"data.dataset={dataset}", f"train.seed={seed}", f"retrain.seed={seed}", *method.sets]
    cfg = load_search_config(list(preset), overrides)
    attention = method.attention or cfg.model.attention
    if method.strategy is None:
        return cfg.run_config(replace(cfg.model, name=method.model, attention=attention, gates=0))
    return replace(cfg, strategy=method.strategy, baseline=False, model=replace(cfg.model, attention=attention))


def resolved(cfg) -> Dict[str, Any]:
    """A config as its run folder's ``config.yaml`` holds it."""
    return yaml.safe_load(yaml.safe_dump(cfglib.to_dict(cfg), sort_keys=False))


def twin(name: str, dataset: str, seed: int, runs_dir: Path, cfg) -> Optional[str]:
    """Another cached method whose run had exactly ``cfg`` (e.g. ``easrec-lam0.1`` and ``easrec`` at the
    default λ = 0.1): runs are deterministic per seed, so its run is this method's run."""
    want = resolved(cfg)
    for other in METHODS.names():
        folder = seed_folder(runs_dir, dataset, other, seed)
        if other != name and (folder / "row.json").exists() and (folder / "run" / "config.yaml").exists() \
                and yaml.safe_load((folder / "run" / "config.yaml").read_text()) == want:
            return other
    return None


def copy_run(source: Path, target: Path, ignore=None) -> None:
    """Copy a finished run folder to ``target/run`` whole or not at all (through ``run.tmp``)."""
    tmp = Path(target) / "run.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=ignore)
    shutil.rmtree(Path(target) / "run", ignore_errors=True)
    tmp.rename(Path(target) / "run")


def cache_row(name: str, dataset: str, seed: int, runs_dir: Path, **extra: Any) -> Dict[str, Any]:
    """Write ``row.json`` for a finished run under ``runs_dir/<dataset>/<name>/seed<seed>/run``."""
    row = _row(run_folder(runs_dir, dataset, name, seed))
    if METHODS.get(name).strategy:
        summary = json.loads((seed_folder(runs_dir, dataset, name, seed) / "run" / "summary.json").read_text())
        row["search_seconds"] = summary["search_seconds"]
        row["train_seconds"] += summary["search_seconds"]
    row.update(method=name, label=METHODS.get(name).label, dataset=dataset, seed=seed, **extra)
    write_json_atomic(seed_folder(runs_dir, dataset, name, seed) / "row.json", row)
    return row


def remeasure_cost(name: str, dataset: str, seed: int, runs_dir: Path, data_dir: Optional[str]) -> Dict[str, Any]:
    """Measure a cached row's model again with the code at hand (FLOPs, inference time, peak memory):
    its ``cost.json`` and row are rewritten; accuracy is untouched."""
    folder = run_folder(runs_dir, dataset, name, seed)
    cfg, data, model = run.load_run(folder, data_dir)
    write_json_atomic(folder / "cost.json", run.measure_cost(folder, model, run.make_evaluator(cfg, data), cfg, data))
    old = json.loads((seed_folder(runs_dir, dataset, name, seed) / "row.json").read_text())
    extra = {k: old[k] for k in ("imported_from", "same_run_as") if k in old}
    return cache_row(name, dataset, seed, runs_dir, **extra)


def method_job(job: tuple) -> Dict[str, Any]:
    """``run_method`` on one picklable tuple of its arguments (an executor's job)."""
    return run_method(*job)


def run_method(name: str, dataset: str, seed: int, preset: Sequence[str], sets: Sequence[str],
               data_dir: Optional[str], runs_dir: Path, echo: bool = False) -> Dict[str, Any]:
    """Train or search-and-retrain ``name`` on ``dataset`` with ``seed``; the row is cached in
    ``runs_dir/<dataset>/<name>/seed<seed>/row.json``."""
    cached = seed_folder(runs_dir, dataset, name, seed) / "row.json"
    if cached.exists():
        return json.loads(cached.read_text())
    cfg = method_config(name, dataset, seed, preset, sets)
    run_dir = cached.parent / "run"
    same = twin(name, dataset, seed, runs_dir, cfg)
    if same is not None:
        copy_run(seed_folder(runs_dir, dataset, same, seed) / "run", cached.parent)
        return cache_row(name, dataset, seed, runs_dir, same_run_as=same)
    if METHODS.get(name).strategy is None:
        run.train(cfg, data_dir, run_dir, echo=echo)
    else:
        search(cfg, data_dir, run_dir, echo=echo)
    return cache_row(name, dataset, seed, runs_dir)
