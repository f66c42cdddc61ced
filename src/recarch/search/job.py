"""``recarch search``: search → derive → retrain → evaluate → cost, beside the hand-sized SASRec.

The run folder holds ``search/`` (supernet checkpoints, trajectory.json, trajectory.png),
``arch.json`` and ``derived.pt`` (the architecture and its inherited weights), ``retrain/`` and
``baseline/`` (ordinary run folders), and ``summary.json``.
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional

import torch
import yaml

from recarch import config as cfglib
from recarch import run
from recarch.data.batching import TrainBatches
from recarch.executor import ExecutorConfig
from recarch.io import write_json_atomic, write_text_atomic
from recarch.models import SeqModelConfig
from recarch.search.constraint import ResourceConstraint, candidate_layer_flops, candidate_layer_latency
from recarch.registry import Registry, suggest
from recarch.run_status import open_run, recorded
from recarch.search import STRATEGIES
from recarch.search.derive import fitting_paths, most_probable
from recarch.search.easrec import ArchitectConfig, ValidationStream
from recarch.search.elastic import ElasticSpaceConfig
from recarch.search.sandwich import PathList, SandwichTrainer, SupernetTrainingConfig, score_paths
from recarch.search.summary import format_summary, summarise
from recarch.search.supernet import EASRecSupernet, SearchSpaceConfig, SubnetPath
from recarch.train import Trainer, TrainConfig, checkpoint, distributed
from recarch.train.distill import DistillConfig


@dataclass
class RandomSearchConfig:
    trials: int = 8  # architectures drawn within the budget (the whole space, when it holds no more: a grid)
    epochs: int = 10  # each trial's short schedule (patience as the retrain's)
    seed: int = 0
    space: Literal["easrec", "elastic"] = "easrec"  # EASRec's (k, L) paths, or the per-layer ``elastic:`` space

    def validate(self) -> None:
        if self.trials < 1 or self.epochs < 1:
            raise cfglib.ConfigError(f"random.trials and random.epochs must be ≥ 1, got {self.trials}, {self.epochs}")


@dataclass
class SearchRunConfig:
    data: run.DataConfig = field(default_factory=run.DataConfig)
    model: SeqModelConfig = field(default_factory=SeqModelConfig)  # the full size: supernet and baseline
    train: TrainConfig = field(default_factory=TrainConfig)  # supernet training (search phase)
    retrain: TrainConfig = field(default_factory=TrainConfig)  # the derived model (and the baseline)
    eval: run.EvalConfig = field(default_factory=run.EvalConfig)
    cost: run.CostConfig = field(default_factory=run.CostConfig)
    space: SearchSpaceConfig = field(default_factory=SearchSpaceConfig)
    architect: ArchitectConfig = field(default_factory=ArchitectConfig)
    supernet: SupernetTrainingConfig = field(default_factory=SupernetTrainingConfig)  # how its weights train
    random: RandomSearchConfig = field(default_factory=RandomSearchConfig)  # strategy random (no supernet)
    elastic: ElasticSpaceConfig = field(default_factory=ElasticSpaceConfig)  # strategy elastic's space
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # where strategy random's trials train
    # the derived models' retrain learns from a teacher (recarch.train.distill); "baseline": the hand-sized model
    distill: DistillConfig = field(default_factory=DistillConfig)
    candidates: int = 100  # strategy elastic: architectures scored on the supernet's weights per budget
    # which path is derived within the budget: argmax (α, β) (Eq. 18) or the best validation score on
    # the supernet's weights (recarch.search.derive)
    derive_by: Literal["controllers", "validation"] = "controllers"
    strategy: str = "easrec"  # a registered search strategy (recarch.search.easrec.STRATEGIES)
    inherit: bool = True  # retrain from the supernet's weights (the paper) or from scratch (released code)
    budget_flops: Optional[float] = None  # derive within this fraction of the full encoder's FLOPs
    budget_ms: Optional[float] = None  # or within this many CPU ms per batch of cost.batch_size (encoder)
    budgets: List[float] = field(default_factory=list)  # or one architecture per FLOPs fraction (recarch.search.front)
    baseline: bool = True  # also train the hand-sized SASRec for the summary
    # or take it from this finished run folder (trained with the same data, model, retrain and eval
    # settings, e.g. a recipe's seed run); its cost is measured again in this run
    baseline_run: Optional[str] = None
    out_dir: str = "runs"

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise cfglib.ConfigError(f"strategy: unknown search strategy {self.strategy!r}"
                                     f"{suggest(self.strategy, STRATEGIES)}; registered: {', '.join(STRATEGIES.names())}")
        if self.budget_flops is not None and not 0 < self.budget_flops <= 1:
            raise cfglib.ConfigError(f"budget_flops: expected a fraction in (0, 1], got {self.budget_flops}")
        if self.budget_ms is not None and self.budget_ms <= 0:
            raise cfglib.ConfigError(f"budget_ms: expected milliseconds > 0, got {self.budget_ms}")
        if sum(x is not None for x in (self.budget_flops, self.budget_ms)) + bool(self.budgets) > 1:
            raise cfglib.ConfigError("give one of budget_flops, budget_ms and budgets")
        if any(not 0 < b <= 1 for b in self.budgets):
            raise cfglib.ConfigError(f"budgets: expected FLOPs fractions in (0, 1], got {self.budgets}")
        strategy = STRATEGIES.get(self.strategy)
        if strategy.flow == "supernet" and not strategy.has_controllers and self.derive_by == "controllers":
            raise cfglib.ConfigError(f"strategy {self.strategy} trains no controllers: set derive_by: validation")
        if self.budgets and strategy.flow not in ("supernet", "elastic"):
            raise cfglib.ConfigError(f"budgets: one architecture per budget needs a supernet; strategy {self.strategy} has none")
        if self.budget_ms is not None and (strategy.flow == "elastic" or self.random.space == "elastic"):
            raise cfglib.ConfigError("budget_ms: the elastic space budgets in FLOPs (budget_flops or budgets)")
        if self.candidates < 1:
            raise cfglib.ConfigError(f"candidates: expected ≥ 1, got {self.candidates}")
        if self.distill.teacher == "baseline" and not self.baseline:
            raise cfglib.ConfigError("distill.teacher: baseline needs the hand-sized model (baseline: true)")
        if self.train.sparse_embeddings or self.retrain.sparse_embeddings:
            raise cfglib.ConfigError("train.sparse_embeddings / retrain.sparse_embeddings: not in a search (a "
                                     "supernet reads its item table by slices); set it on `recarch train`")

    def run_config(self, model: SeqModelConfig) -> run.RunConfig:
        return run.RunConfig(data=self.data, model=model, train=self.retrain, eval=self.eval, cost=self.cost,
                             out_dir=self.out_dir)

    def retrain_config(self, model: SeqModelConfig, run_dir: Path) -> run.RunConfig:
        """A derived model's retrain: ``run_config`` with the distillation, the baseline's folder as its teacher."""
        teacher = str(run_dir / "baseline") if self.distill.teacher == "baseline" else self.distill.teacher
        return replace(self.run_config(model), distill=replace(self.distill, teacher=teacher))


# "supernet": one derived architecture; "front": one per budget (recarch.search.front); "random": no
# supernet (recarch.search.random_search)
FLOWS: Registry = Registry("search flow")

RECIPE_SECTIONS = ("data", "model", "train", "eval", "cost")


def recipe_defaults(files) -> Dict[str, Any]:
    """A search's defaults from a tuned run config (``recipe:``, e.g. configs/sasrec-plus.yaml; a list is
    read in order): its model is the supernet's full size and the baseline, its train section trains the
    supernet and retrains the derived model and the baseline alike; the search's own keys override it."""
    data = cfglib.gather(files)
    extra = sorted(set(data) - set(RECIPE_SECTIONS))
    if extra:
        raise cfglib.ConfigError(f"recipe {', '.join(map(str, files))}: expected a run config (sections "
                                 f"{', '.join(RECIPE_SECTIONS)}), found {', '.join(extra)}")
    return {**data, "retrain": data["train"]} if "train" in data else data


def load_search_config(files=(), sets=(), options=None) -> SearchRunConfig:
    data = cfglib.gather(files, sets, options, paths=("recipe",))
    recipe = data.pop("recipe", None)
    if recipe:
        data = cfglib.merge(recipe_defaults(recipe if isinstance(recipe, list) else [recipe]), data)
    cfg = cfglib.from_dict(SearchRunConfig, data)
    cfg.run_config(cfg.model).validate()  # protocols and the validation metric
    return cfg


def plot_trajectory(history, path: Path, widths) -> bool:
    """softmax(α), softmax(β) and the resource term per epoch; ``widths``: (width, FFN width) per candidate."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if "alpha_softmax" not in history[0]:  # no controllers (strategy oneshot)
        return False
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for k in range(len(history[0]["alpha_softmax"])):
        axes[0].plot(epochs, [h["alpha_softmax"][k] for h in history], label=f"width {widths[k][0]}, FFN {widths[k][1]}")
    for l in range(len(history[0]["beta_softmax"])):
        axes[1].plot(epochs, [h["beta_softmax"][l] for h in history], label=f"depth {l + 1}")
    axes[2].plot(epochs, [h["resource"] for h in history], label="R (Eq. 16)")
    for ax, title in zip(axes, ["softmax(α): width", "softmax(β): depth", "resource term"]):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def search(cfg: SearchRunConfig, data_dir: Optional[str] = None, run_dir: Optional[Path] = None,
           echo: bool = True, resume: bool = False) -> Dict[str, Any]:
    """Under ``torchrun`` every rank searches and retrains its shard of each batch; rank 0 writes.

    resume: go on with the run in ``run_dir``: a derived architecture (``arch.json``) is kept, an
    unfinished phase continues from its last checkpoint, a finished retrain or baseline is kept."""
    dist = distributed.from_env(cfg.train.device)
    cfg = replace(cfg, train=replace(cfg.train, device=dist.device(cfg.train.device)),
                  retrain=replace(cfg.retrain, device=dist.device(cfg.retrain.device)))
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    default = Path(cfg.out_dir) / f"{cfg.strategy}-{cfg.model.attention}-{cfg.data.dataset}-{stamp}"
    run_dir = Path(dist.broadcast(str(run_dir or default)))
    if cfg.baseline and cfg.baseline_run:  # before any work: a mismatch found after the search would waste it
        check_adoptable(cfg.run_config(replace(cfg.model, gates=0)), Path(cfg.baseline_run))
    data = run.load_dataset(cfg.run_config(cfg.model), data_dir)
    run.check_runnable(replace(cfg.run_config(cfg.model), train=cfg.train), data)
    if dist.is_main and not resume:  # made only now that the inputs are valid
        open_run(run_dir, cfglib.to_dict(cfg))
    log = run.RunLog(run_dir / "log.txt" if dist.is_main else None, echo and dist.is_main)
    with recorded(run_dir, dist.is_main):
        flow = STRATEGIES.get(cfg.strategy).flow
        flow = "front" if cfg.budgets and flow == "supernet" else flow
        return FLOWS.get(flow)(cfg, data, data_dir, run_dir, log, dist, echo, resume)


@FLOWS.register("supernet")
def search_supernet(cfg: SearchRunConfig, data, data_dir, run_dir: Path, log, dist, echo: bool, resume: bool) -> Dict[str, Any]:
    """search()'s phases once its run folder exists: one derived architecture."""
    if resume and (run_dir / "arch.json").exists():
        arch = json.loads((run_dir / "arch.json").read_text())
        log(f"phase 1-2/4: kept the derived architecture in {run_dir / 'arch.json'}")
    else:
        arch = search_and_derive(cfg, data, run_dir, log, dist, resume)
    derived_config = cfglib.from_dict(SeqModelConfig, arch["model"])
    baseline = baseline_phase(cfg, data_dir, run_dir, log, dist, echo, resume)
    log("phase 4/4: retrain")
    retrained = train_phase(cfg.retrain_config(derived_config, run_dir), data_dir, run_dir / "retrain", echo, resume,
                            init_weights=run_dir / "derived.pt" if cfg.inherit else None)
    if not dist.is_main:
        return {"run_dir": str(run_dir)}
    summary = summarise(run_dir, arch, retrained, baseline, arch["search_seconds"], STRATEGIES.get(cfg.strategy).paper_name)
    write_json_atomic(run_dir / "summary.json", summary)
    log("\n" + format_summary(summary))
    return summary


def baseline_phase(cfg: SearchRunConfig, data_dir, run_dir: Path, log, dist, echo: bool, resume: bool):
    """Phase 3, before the retrains that it may teach: the hand-sized model (trained here, or a finished
    run adopted); None without a baseline."""
    if not cfg.baseline:
        return None
    log("phase 3/4: hand-sized SASRec baseline")
    base_cfg = cfg.run_config(replace(cfg.model, gates=0))
    finished = resume and (run_dir / "baseline" / "cost.json").exists()
    if cfg.baseline_run and not finished and dist.is_main:
        adopt_run(base_cfg, Path(cfg.baseline_run), run_dir / "baseline", data_dir)
        log(f"baseline: the finished run {cfg.baseline_run}, its cost measured again here")
    dist.barrier()
    return train_phase(base_cfg, data_dir, run_dir / "baseline", echo, resume or bool(cfg.baseline_run))


def train_phase(cfg: run.RunConfig, data_dir, folder: Path, echo: bool, resume: bool, init_weights=None) -> Dict[str, Any]:
    """run.train into ``folder``; on resume, a finished run (metrics and cost written) is kept as it stands
    and an unfinished one goes on from its last checkpoint."""
    if resume and (folder / "metrics.json").exists() and ((folder / "cost.json").exists() or not cfg.cost.enabled):
        return {"run_dir": str(folder), **json.loads((folder / "metrics.json").read_text())}
    resume = resume and (folder / "checkpoints" / "last.pt").exists()
    return run.train(cfg, data_dir, folder, echo=echo, resume=resume, init_weights=init_weights)


IGNORED_TRAIN_KEYS = ("threads", "progress", "device", "tensorboard")  # how a run was computed or logged, not what it computed


def check_adoptable(cfg: run.RunConfig, source: Path) -> None:
    """That ``source`` is a finished run of ``cfg``'s settings but for the cost section and the
    training's threads, progress bar and device."""
    if not (source / "metrics.json").exists() or not (source / "checkpoints" / "best.pt").exists():
        raise cfglib.ConfigError(f"baseline_run: {source} is not a finished run (metrics.json and "
                                 "checkpoints/best.pt expected)")
    # read through the config class so that a key added since that run was trained counts at its default
    saved = cfglib.to_dict(cfglib.from_dict(run.RunConfig, cfglib.read_yaml(source / "config.yaml")))
    wanted = cfglib.to_dict(cfg)
    for section in (wanted, saved):
        section["train"] = {k: v for k, v in section.get("train", {}).items() if k not in IGNORED_TRAIN_KEYS}
    differ = [f"{section}.{key}" for section in ("data", "model", "train", "eval")
              for key in sorted(set(wanted[section]) | set(saved.get(section, {})))
              if wanted[section].get(key) != saved.get(section, {}).get(key)]
    if differ:
        raise cfglib.ConfigError(f"baseline_run: {source} was trained with other settings ({', '.join(differ)})")


def adopt_run(cfg: run.RunConfig, source: Path, folder: Path, data_dir) -> None:
    """Copy the finished run ``source`` of ``cfg`` into ``folder``, its cost measured again here."""
    check_adoptable(cfg, source)
    scratch = folder.with_name(folder.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(source, scratch, ignore=shutil.ignore_patterns("last.pt", "cost.json"))
    write_text_atomic(scratch / "config.yaml", yaml.safe_dump(cfglib.to_dict(cfg), sort_keys=False))
    data = run.load_dataset(cfg, data_dir)
    model = run.make_model(cfg, data)
    model.load_state_dict(checkpoint.load(scratch / "checkpoints" / "best.pt")["model"])
    model.eval()
    write_json_atomic(scratch / "cost.json", run.measure_cost(scratch, model, run.make_evaluator(cfg, data), cfg, data))
    shutil.rmtree(folder, ignore_errors=True)  # a baseline begun here before is replaced by the finished one
    scratch.rename(folder)


@dataclass
class TrainedSupernet:
    """Phase 1's outcome: the supernet at its best epoch and what the derive needs to know about it."""
    net: EASRecSupernet
    evaluator: Any
    layer_flops: List[int]
    layer_ms: Optional[List[float]]
    fit: Dict[str, Any]

    def encoder_flops_limit(self, fraction: Optional[float]) -> Optional[float]:
        """``fraction`` of the full encoder's FLOPs (None: no limit)."""
        return fraction * max(self.layer_flops) * self.net.config.n_layers if fraction else None


def train_supernet(cfg: SearchRunConfig, data, run_dir: Path, log, dist, resume: bool) -> TrainedSupernet:
    """Phase 1: train the supernet (and the strategy's controllers); the best epoch's weights are kept."""
    base = cfg.run_config(cfg.model)
    evaluator = run.make_evaluator(replace(base, train=cfg.train), data)
    log(f"phase 1/4: search ({cfg.strategy})")
    torch.manual_seed(cfg.train.seed)
    strategy = STRATEGIES.get(cfg.strategy)
    net = EASRecSupernet(data.num_items, cfg.model, replace(cfg.space, **strategy.space_overrides))
    layer_flops = candidate_layer_flops(net, cfg.model.max_len)
    log(f"candidates (width, ffn width): {net.widths}; counted FLOPs per layer: {layer_flops}")
    layer_ms = None
    if cfg.architect.cost == "latency" or cfg.budget_ms is not None:
        layer_ms = candidate_layer_latency(net, cfg.model.max_len, cfg.cost.batch_size, cfg.cost.threads)
        log(f"measured ms per layer (batch {cfg.cost.batch_size}, {cfg.cost.threads} thread(s)): "
            + ", ".join(f"{t:.2f}" for t in layer_ms))
    constraint = ResourceConstraint(layer_ms if cfg.architect.cost == "latency" else layer_flops, cfg.model.n_layers)
    batches = TrainBatches(data, cfg.model.max_len, cfg.train.regime, cfg.train.batch_size, cfg.train.seed)
    if cfg.supernet.rule == "sandwich":
        by_cost = sorted(fitting_paths(layer_flops, cfg.model.n_layers, None), key=lambda p: layer_flops[p[0]] * p[1])
        trainer = SandwichTrainer(net, batches, evaluator, cfg.train, run_dir / "search", log=log,
                                  parameters=net.weight_parameters(), dist=dist, space=PathList(by_cost),
                                  random_paths=cfg.supernet.random_paths)
    else:
        trainer = Trainer(net, batches, evaluator, cfg.train, run_dir / "search", log=log,
                          parameters=net.weight_parameters(), dist=dist)
    valid = (ValidationStream(data, cfg.model.max_len, cfg.architect.batch_size, cfg.train.seed)
             if cfg.architect.arch_data == "valid" else None)
    trainer.hooks = strategy(net, constraint, cfg.architect, trainer.loss, valid, dist)
    fit = trainer.fit(resume=resume and trainer.can_resume())
    trainer.load_best()
    if dist.is_main:
        write_json_atomic(run_dir / "search" / "trajectory.json", fit["history"])
        if plot_trajectory(fit["history"], run_dir / "search" / "trajectory.png", net.widths):
            log(f"trajectory plot: {run_dir / 'search' / 'trajectory.png'}")
    net.path_sampling = False
    return TrainedSupernet(net, evaluator, layer_flops, layer_ms, fit)


def path_scores(cfg: SearchRunConfig, sup: TrainedSupernet, log, fits=None) -> Optional[Dict[SubnetPath, float]]:
    """derive_by validation: every path's validation score on the supernet's weights (None otherwise);
    the log marks the paths outside ``fits``."""
    if cfg.derive_by != "validation":
        return None
    protocol, metric = cfg.train.valid_protocol, cfg.train.valid_metric
    scores = score_paths(sup.net, sup.evaluator, fitting_paths(sup.layer_flops, cfg.model.n_layers, None), protocol, metric)
    for path, score in scores.items():
        log(f"{sup.net.path_name(path)}: valid {protocol} {metric} {score:.4f} on the supernet's weights"
            + ("" if fits is None or path in fits else " (over the budget)"))
    return scores


def pick(sup: TrainedSupernet, fits, scores: Optional[Dict[SubnetPath, float]]) -> SubnetPath:
    """The path derived among ``fits``: the best score (derive_by validation) or the most probable."""
    return max(fits, key=scores.get) if scores is not None else most_probable(sup.net.alpha, sup.net.beta, fits)


def write_derived(cfg: SearchRunConfig, sup: TrainedSupernet, path: SubnetPath, scores, fits, folder: Path,
                  dist) -> Dict[str, Any]:
    """``folder``/derived.pt (the path's inherited weights) and ``folder``/arch.json (what ``recarch retrain`` reads)."""
    net, (k, depth) = sup.net, path
    derived = net.derive(k, depth)
    if dist.is_main:
        checkpoint.save_atomic({"model": derived.state_dict()}, folder / "derived.pt")
    arch = {"model": cfglib.to_dict(derived.config), "data": cfglib.to_dict(cfg.data), "strategy": cfg.strategy,
            "candidate": k, "depth": depth,
            "widths": net.widths, "layer_flops": sup.layer_flops, "layer_ms": sup.layer_ms,
            "alpha_softmax": torch.softmax(net.alpha.detach(), 0).tolist(),
            "beta_softmax": torch.softmax(net.beta.detach(), 0).tolist(), "derive_by": cfg.derive_by,
            "path_scores": None if scores is None else [
                {"candidate": k_, "depth": d_, "width": net.widths[k_][0], "ffn": net.widths[k_][1], "score": s_,
                 "within_budget": (k_, d_) in fits} for (k_, d_), s_ in scores.items()],
            "weights": "derived.pt", "search_seconds": sup.fit["train_seconds"], "search_epochs": sup.fit["epoch"]}
    if dist.is_main:
        write_json_atomic(folder / "arch.json", arch)
    dist.barrier()
    return arch


def search_and_derive(cfg: SearchRunConfig, data, run_dir: Path, log, dist, resume: bool) -> Dict[str, Any]:
    """Phases 1 and 2: train the supernet and its controllers, derive; writes derived.pt and arch.json."""
    sup = train_supernet(cfg, data, run_dir, log, dist, resume)
    log("phase 2/4: derive")
    if cfg.budget_ms is not None:
        fits = fitting_paths(sup.layer_ms, cfg.model.n_layers, cfg.budget_ms)
    else:
        fits = fitting_paths(sup.layer_flops, cfg.model.n_layers, sup.encoder_flops_limit(cfg.budget_flops))
    scores = path_scores(cfg, sup, log, fits)
    arch = write_derived(cfg, sup, pick(sup, fits, scores), scores, fits, run_dir, dist)
    m = arch["model"]
    log(f"derived: width {m['hidden_size']}, ffn {m['inner_size']}, {arch['depth']} layer(s), {m['n_heads']} head(s), "
        f"gates {m['gates']}")
    return arch
