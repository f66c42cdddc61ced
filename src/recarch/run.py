"""The train / evaluate jobs as Python functions; the CLI is a thin layer over them.

A run folder holds: config.yaml (resolved), status.json, log.txt, metrics.json (valid and test, every
protocol), cost.json, history.json and metrics.csv (per epoch), users.tsv / items.tsv (id maps) and
checkpoints/.
"""
from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import yaml

from recarch import config as cfglib
from recarch.cost import cost_report, cuda_peak_memory, peak_memory_subprocess
from recarch.data import Preprocessing, build_sequences, get_dataset, id_map_texts, read_table, save_id_maps
from recarch.data.batching import TrainBatches
from recarch.data.sequences import SequenceDataset
from recarch.devices import move
from recarch.evaluation import PROTOCOLS, Evaluator
from recarch.io import write_json_atomic
from recarch.run_status import open_run, recorded
from recarch.models import MODELS, SeqModelConfig, SequentialRecommender, build_model
from recarch.registry import suggest
from recarch.train import Trainer, TrainConfig, checkpoint, distributed
from recarch.train.distill import DistillConfig, Distillation


@dataclass
class TableConfig:
    """Your own interaction log: a CSV/TSV/Parquet file with a header naming its columns."""

    path: str = ""
    user: str = "user"
    item: str = "item"
    timestamp: Optional[str] = "timestamp"  # null: the file's row order is the time order
    rating: Optional[str] = None
    timestamp_format: Optional[str] = None  # null: seconds; "iso"; or a strftime format
    sep: Optional[str] = None  # default from the suffix

    def __post_init__(self) -> None:  # a run's config.yaml then works from any folder (evaluate, resume)
        if self.path:
            self.path = str(Path(self.path).expanduser().resolve())


@dataclass
class DataConfig:
    dataset: str = "ml-100k"  # a registered dataset (`recarch datasets`), unless table.path is set
    table: TableConfig = field(default_factory=TableConfig)
    min_rating: Optional[float] = None
    k_core: int = 0
    skip_bad_rows: bool = False
    download: bool = True  # fetch (sha256-checked) a missing dataset that has a public download


@dataclass
class EvalConfig:
    protocols: List[str] = field(default_factory=lambda: ["pop100", "uni100", "full"])
    ks: List[int] = field(default_factory=lambda: [5, 10, 20])
    batch_size: int = 512
    seed: int = 2024
    mask_history: bool = True


@dataclass
class CostConfig:
    enabled: bool = True
    batch_size: int = 256
    threads: int = 1
    memory: bool = True  # peak RSS of inference, measured in a subprocess


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: SeqModelConfig = field(default_factory=SeqModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    out_dir: str = "runs"

    def validate(self) -> None:
        for key, name in [("eval.protocols", p) for p in self.eval.protocols] + \
                [("train.valid_protocol", self.train.valid_protocol)]:
            if name not in PROTOCOLS:
                raise cfglib.ConfigError(f"{key}: unknown protocol {name!r}{suggest(name, PROTOCOLS)}; "
                                         f"registered: {', '.join(PROTOCOLS.names())}")
        metric, _, k = self.train.valid_metric.partition("@")
        if metric not in ("recall", "mrr", "ndcg") or not k.isdigit() or int(k) not in self.eval.ks:
            raise cfglib.ConfigError(f"train.valid_metric: expected recall@K, mrr@K or ndcg@K with K in "
                                     f"eval.ks {self.eval.ks}, got {self.train.valid_metric!r}")
        if self.train.sparse_embeddings and not row_wise_ready(self.model, self.train):
            raise cfglib.ConfigError("train.sparse_embeddings: a sequential model updates its item table row-wise "
                                     "only under train.loss: sampled_softmax with model.item_dropout: 0 and a model "
                                     f"that reads it by lookups (sasrec); got loss {self.train.loss}, item_dropout "
                                     f"{self.model.item_dropout:g}, model {self.model.name}")


def row_wise_ready(model: SeqModelConfig, train: TrainConfig) -> bool:
    """Whether ``train.sparse_embeddings`` can update this model's item table row-wise: sampled softmax (full
    cross entropy reads every row), no item dropout (it masks the whole table) and a model that names the table."""
    names_tables = MODELS.get(model.name).row_wise_tables is not SequentialRecommender.row_wise_tables
    return train.loss == "sampled_softmax" and not model.item_dropout and names_tables


def load_run_config(files=(), sets=(), options: Optional[Dict[str, Any]] = None) -> RunConfig:
    return cfglib.load(RunConfig, files, sets, options)


class RunLog:
    """Prints and appends to the run's log.txt."""

    def __init__(self, path: Optional[Path], echo: bool = True) -> None:
        self.path, self.echo = path, echo

    def __call__(self, message: str) -> None:
        line = f"[{_dt.datetime.now().strftime('%H:%M:%S')}] {message}"
        if self.echo:
            print(line, flush=True)
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(line + "\n")


def new_run_dir(cfg: RunConfig) -> Path:
    data = Path(cfg.data.table.path).stem if cfg.data.table.path else cfg.data.dataset
    return unique_run_dir(cfg.out_dir, f"{cfg.model.name}-{cfg.model.attention}-{data}")


def unique_run_dir(out_dir: str, name: str) -> Path:
    """``out_dir/name-<timestamp>``, with a counter appended if that folder exists already."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(out_dir) / f"{name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    return path


def load_dataset(cfg: RunConfig, data_dir: Optional[str] = None) -> SequenceDataset:
    """The configured dataset, checked to leave training sequences and evaluated users."""
    prep = Preprocessing(min_rating=cfg.data.min_rating, k_core=cfg.data.k_core)
    t = cfg.data.table
    if t.path:
        frame = read_table(t.path, user=t.user, item=t.item, timestamp=t.timestamp, rating=t.rating, sep=t.sep,
                           timestamp_format=t.timestamp_format, skip_bad_rows=cfg.data.skip_bad_rows)
        data = build_sequences(frame, Path(t.path).stem, **prep.kwargs())
    else:
        data = get_dataset(cfg.data.dataset, data_dir=data_dir, skip_bad_rows=cfg.data.skip_bad_rows, prep=prep,
                           download=cfg.data.download)
    data.check_splittable(t.path)
    return data


def describe(data: SequenceDataset) -> str:
    """One readable log line: the data's name (a table's file stem), sizes and sequence lengths."""
    s = data.summary()
    features = f", {s['item_features']:,} item features" if s["item_features"] else ""
    short = int((data.lengths() < 3).sum())
    short = f"; {short:,} users with fewer than 3 train only (not validated or tested)" if short else ""
    return (f"{s['name']}: {s['users']:,} users, {s['items']:,} items, {s['interactions']:,} interactions, "
            f"{s['seq_len_min']}-{s['seq_len_max']} per user (mean {s['seq_len_mean']:.1f}){features}{short}")


def make_model(cfg: RunConfig, data: SequenceDataset) -> torch.nn.Module:
    torch.manual_seed(cfg.train.seed)
    feats = data.item_features
    table = torch.from_numpy(feats.padded()) if feats is not None else None
    return build_model(cfg.model, data.num_items, table, feats.num_features if feats else 0)


def make_evaluator(cfg: RunConfig, data: SequenceDataset) -> Evaluator:
    protocols = list(dict.fromkeys([cfg.train.valid_protocol, *cfg.eval.protocols]))
    return Evaluator(data, cfg.model.max_len, protocols=protocols, ks=cfg.eval.ks,
                     batch_size=cfg.eval.batch_size, seed=cfg.eval.seed, mask_history=cfg.eval.mask_history)


def load_teacher(cfg: RunConfig, data: SequenceDataset) -> Optional[Distillation]:
    """``distill.teacher``'s best model (None without one), checked to be a finished run on the same data
    that reads at least the student's history length."""
    if not cfg.distill.teacher:
        return None
    source = Path(cfg.distill.teacher)
    if not (source / "config.yaml").exists() or not (source / "checkpoints" / "best.pt").exists():
        raise cfglib.ConfigError(f"distill.teacher: {source} is not a finished run (config.yaml and "
                                 "checkpoints/best.pt expected)")
    taught = cfglib.from_dict(RunConfig, cfglib.read_yaml(source / "config.yaml"))
    differ = [key for key, value in cfglib.to_dict(cfg.data).items()
              if key != "download" and cfglib.to_dict(taught.data).get(key) != value]
    if differ:
        raise cfglib.ConfigError(f"distill.teacher: {source} was trained on other data (data.{', data.'.join(differ)})")
    if taught.model.max_len < cfg.model.max_len:
        raise cfglib.ConfigError(f"distill.teacher: {source} reads {taught.model.max_len} items of history, fewer "
                                 f"than model.max_len {cfg.model.max_len}")
    model = make_model(taught, data)
    model.load_state_dict(checkpoint.load(source / "checkpoints" / "best.pt")["model"])
    return Distillation(model, cfg.distill.alpha)


def check_runnable(cfg: RunConfig, data: SequenceDataset) -> Tuple[Evaluator, Dict[str, str]]:
    """What a run needs from its data beyond reading it, checked before its folder is made: every
    evaluation protocol's candidates (drawn now) and id maps that a TSV can hold (their texts)."""
    return make_evaluator(cfg, data).prepare(), id_map_texts(data)


def train(cfg: RunConfig, data_dir: Optional[str] = None, run_dir: Optional[Path] = None,
          resume: bool = False, echo: bool = True, init_weights: Optional[Path] = None) -> Dict[str, Any]:
    """Train, early-stop on validation, evaluate the best epoch on valid and test, measure cost.

    init_weights: a checkpoint ({"model": state_dict}) to start from, e.g. a derived architecture's
    inherited supernet weights. Under ``torchrun`` every rank trains its shard; rank 0 writes."""
    dist = distributed.from_env(cfg.train.device)
    cfg = replace(cfg, train=replace(cfg.train, device=dist.device(cfg.train.device)))
    # a run stopped before its first checkpoint starts again from the beginning in its folder
    resume = resume and (Path(run_dir) / "checkpoints" / "last.pt").exists()
    start = time.perf_counter()
    data = load_dataset(cfg, data_dir)
    loaded = time.perf_counter() - start
    model = make_model(cfg, data)
    if init_weights is not None and not resume:
        model.load_state_dict(checkpoint.load(Path(init_weights))["model"])
    evaluator, id_maps = check_runnable(cfg, data)
    distill = load_teacher(cfg, data)
    run_dir = Path(dist.broadcast(str(run_dir or new_run_dir(cfg))))  # made only now that the inputs are valid
    if dist.is_main:
        open_run(run_dir, cfglib.to_dict(cfg))
        save_id_maps(data, run_dir, id_maps)
    log = RunLog(run_dir / "log.txt" if dist.is_main else None, echo and dist.is_main)
    log(f"dataset {describe(data)} (loaded in {loaded:.1f}s)")
    if init_weights is not None and not resume:
        log(f"initial weights from {init_weights}")
    if distill is not None:
        log(f"distilled from {cfg.distill.teacher} (α = {cfg.distill.alpha:g})")
    with recorded(run_dir, dist.is_main):
        return _fit(cfg, data, model, evaluator, run_dir, log, dist, resume, distill)


def _fit(cfg: RunConfig, data: SequenceDataset, model: torch.nn.Module, evaluator: Evaluator, run_dir: Path,
         log: RunLog, dist, resume: bool, distill: Optional[Distillation] = None) -> Dict[str, Any]:
    """train()'s work once its run folder exists: fit, evaluate the best epoch, measure cost."""
    batches = TrainBatches(data, cfg.model.max_len, cfg.train.regime, cfg.train.batch_size, cfg.train.seed)
    trainer = Trainer(model, batches, evaluator, cfg.train, run_dir, log=log, dist=dist, distill=distill)
    log(f"model {cfg.model.name} ({cfg.model.attention} attention), "
        f"{sum(p.numel() for p in model.parameters()):,} parameters; regime {cfg.train.regime}, "
        f"{batches.num_samples:,} training sequences, {dist.world} process(es), run folder {run_dir}")
    fit = trainer.fit(resume=resume)
    trainer.load_best()
    metrics = {"best_epoch": fit["best_epoch"], "epochs_run": fit["epoch"], "train_seconds": fit["train_seconds"],
               "valid": evaluator.evaluate(model, "valid"), "test": evaluator.evaluate(model, "test"),
               "regime": cfg.train.regime, "processes": dist.world, "dataset": data.summary()}
    if not dist.is_main:
        return {"run_dir": str(run_dir), **metrics}
    write_json_atomic(run_dir / "history.json", fit["history"])
    write_json_atomic(run_dir / "metrics.json", metrics)
    log("test " + ", ".join(f"{p} ndcg@10 {m['ndcg@10']:.4f}" for p, m in metrics["test"].items()
                            if isinstance(m, dict)))
    if cfg.cost.enabled:
        cost = measure_cost(run_dir, model, evaluator, cfg, data)
        write_json_atomic(run_dir / "cost.json", cost)
        log(f"cost: {cost['flops_per_sequence'] / 1e6:.2f} MFLOPs/sequence, "
            f"inference {cost['inference']['seconds']:.2f}s over the test set")
    return {"run_dir": str(run_dir), **metrics}


def measure_cost(run_dir: Path, model: torch.nn.Module, evaluator: Evaluator, cfg: RunConfig,
                 data: SequenceDataset) -> Dict[str, Any]:
    """FLOPs, parameters, inference time over the test set and (in a fresh process) its peak memory."""
    inputs = evaluator.inputs("test")
    device = next(model.parameters()).device
    batches = [move(b, device) for b in torch.from_numpy(inputs).split(cfg.cost.batch_size)]
    memory = None
    if cfg.cost.memory and device.type == "cuda":
        def score_all():
            with torch.no_grad():
                for b in batches:
                    model.score_last(b)
        memory = cuda_peak_memory(score_all, device=device)
    elif cfg.cost.memory:
        # the child sees only the model and the test inputs, so the dataset's own memory is not counted
        scratch = run_dir / "inference_inputs.npz"
        feats = data.item_features
        np.savez(scratch, inputs=inputs, num_items=data.num_items,
                 features=feats.padded() if feats is not None else np.zeros((0, 0), np.int64),
                 num_features=feats.num_features if feats is not None else 0)
        try:
            memory = peak_memory_subprocess("recarch.run:inference_memory_child",
                                            {"run_dir": str(run_dir), "batch_size": cfg.cost.batch_size},
                                            threads=cfg.cost.threads)
        finally:
            scratch.unlink()
    return cost_report(model, cfg.model.max_len, batches, threads=cfg.cost.threads,
                       batch_size=cfg.cost.batch_size, memory=memory, method="score_last")


def inference_memory_child(run_dir: str, batch_size: int) -> None:
    """Runs in a fresh process: build the run's model, load its best weights, score the test set."""
    run_dir = Path(run_dir)
    cfg = cfglib.from_dict(RunConfig, yaml.safe_load((run_dir / "config.yaml").read_text()))
    saved = np.load(run_dir / "inference_inputs.npz")
    table = torch.from_numpy(saved["features"]) if int(saved["num_features"]) else None
    model = build_model(cfg.model, int(saved["num_items"]), table, int(saved["num_features"]))
    model.load_state_dict(checkpoint.load(run_dir / "checkpoints" / "best.pt")["model"])
    model.eval()
    with torch.no_grad():
        for batch in torch.from_numpy(saved["inputs"]).split(batch_size):
            model.score_last(batch)


def load_run(run_dir: Path, data_dir: Optional[str] = None, which: str = "best.pt"):
    """(config, dataset, model with the run's weights) of a finished run."""
    run_dir = Path(run_dir)
    cfg = cfglib.from_dict(RunConfig, yaml.safe_load((run_dir / "config.yaml").read_text()))
    data = load_dataset(cfg, data_dir)
    model = make_model(cfg, data)
    model.load_state_dict(checkpoint.load(run_dir / "checkpoints" / which)["model"])
    return cfg, data, model.eval()


def evaluate(run_dir: Path, protocols: Optional[List[str]] = None, split: str = "test",
             data_dir: Optional[str] = None) -> Dict[str, Any]:
    cfg, data, model = load_run(run_dir, data_dir)
    if protocols:
        cfg.eval.protocols = list(protocols)
    return make_evaluator(cfg, data).evaluate(model, split, protocols=protocols or cfg.eval.protocols)
