"""``recarch ctr train`` / ``ctr evaluate`` as Python functions: a CTR model trained with the shared
trainer (early stopping on validation AUC, checkpoints, exact resume, torchrun), then evaluated on
valid and test (AUC, log loss) and costed (FLOPs per sample, parameters, inference time).

The run folder is the sequential track's: config.yaml, log.txt, metrics.json, history.json,
cost.json, checkpoints/.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn import functional as F

from recarch import config as cfglib
from recarch.cost import cost_report
from recarch.ctr.datasets import CTRDataConfig
from recarch.ctr.metrics import log_loss, roc_auc
from recarch.ctr import supernet as _supernet  # noqa: F401  (registers the "nasrec" model)
from recarch.ctr.models import CTR_MODELS, CTRModelConfig, build_ctr_model
from recarch.ctr.table import CTRData, CTRSchema, TrainBatches, batches
from recarch.devices import move
from recarch.io import write_json_atomic
from recarch.modes import eval_mode
from recarch.run import CostConfig, RunLog, unique_run_dir
from recarch.run_status import open_run, recorded
from recarch.train import Trainer, TrainConfig, checkpoint, distributed


VALID_METRICS = ("auc-logloss", "auc", "neg_logloss")  # what early stopping maximises; the first is FuxiCTR's


def ctr_train_defaults() -> TrainConfig:
    return TrainConfig(batch_size=1024, epochs=100, patience=2, valid_protocol="ctr", valid_metric="auc-logloss",
                       precise_bn_batches=50)


@dataclass
class CTRRunConfig:
    data: CTRDataConfig = field(default_factory=CTRDataConfig)
    model: CTRModelConfig = field(default_factory=CTRModelConfig)
    # Adam at 3e-4, as configs/ctr-baselines.yaml: a better validation AUC than FuxiCTR's 1e-3 for DeepFM, DCN-v2, AutoInt
    train: TrainConfig = field(default_factory=lambda: replace(ctr_train_defaults(), lr=3e-4))
    eval_batch_size: int = 8192
    cost: CostConfig = field(default_factory=lambda: CostConfig(batch_size=1024, memory=False))
    out_dir: str = "runs"

    def validate(self) -> None:
        if self.train.valid_protocol != "ctr" or self.train.valid_metric not in VALID_METRICS:
            raise cfglib.ConfigError(f"train.valid_protocol must be 'ctr' and train.valid_metric one of {VALID_METRICS} "
                                     f"for a CTR run, got {self.train.valid_protocol!r} / "
                                     f"{self.train.valid_metric!r}")


def load_ctr_config(files=(), sets=(), options: Optional[Dict[str, Any]] = None) -> CTRRunConfig:
    return cfglib.load(CTRRunConfig, files, sets, options)


class CTREvaluator:
    """AUC and log loss of a model on a split; ``evaluate`` has the sequential Evaluator's shape
    ({"ctr": {metric: value}}) so the shared trainer early-stops on it."""

    def __init__(self, data: CTRData, batch_size: int = 8192) -> None:
        self.data, self.batch_size = data, batch_size

    @torch.no_grad()
    def probabilities(self, model: nn.Module, split: str) -> np.ndarray:
        device = next(model.parameters()).device
        with eval_mode(model):
            out = [torch.sigmoid(model(move(cat, device), move(num, device))).float().cpu()
                   for cat, num, _ in batches(self.data.split(split), self.batch_size)]
        return torch.cat(out).numpy()

    def evaluate(self, model: nn.Module, split: str, protocols: Optional[List[str]] = None) -> Dict[str, Any]:
        label = np.asarray(self.data.split(split).label)
        prob = self.probabilities(model, split)
        loss = log_loss(label, prob)
        auc = roc_auc(label, prob)
        return {"ctr": {"auc": auc, "logloss": loss, "neg_logloss": -loss, "auc-logloss": auc - loss, "rows": len(label)}}


class CTRTrainer(Trainer):
    """The shared loop with binary cross entropy on (cat, num, label) batches."""

    rate_key, rate_unit = "samples_per_s", "samples/s"

    def loss(self, cat: torch.Tensor, num: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """This rank's share of the mean loss over the global batch (see Trainer.loss)."""
        count = len(label)
        cat, num, label = self.dist.shard(cat), self.dist.shard(num), self.dist.shard(label)
        if len(label) == 0:
            return torch.zeros((), device=self.device, requires_grad=True)
        logits = self.forward_batch(cat, num, label)
        per_row = logits.numel() // len(label)  # a subclass may score each row more than once (B,) → (…, B)
        return F.binary_cross_entropy_with_logits(logits, label.expand_as(logits), reduction="sum") / (count * per_row)

    def forward_batch(self, cat: torch.Tensor, num: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.model(cat, num)


def make_ctr_model(cfg: CTRRunConfig, schema: CTRSchema) -> nn.Module:
    torch.manual_seed(cfg.train.seed)
    return build_ctr_model(schema, cfg.model)


def load_data(cfg: CTRRunConfig, data_dir: Optional[str] = None) -> CTRData:
    return cfg.data.load(data_dir)


def embedding_parameters(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))


def ctr_cost(model: nn.Module, data: CTRData, cost: CostConfig) -> Dict[str, Any]:
    """FLOPs per sample (counted on one test row), parameters (embeddings apart) and CPU inference
    time over the test set at ``cost.batch_size`` and ``cost.threads``."""
    device = next(model.parameters()).device
    test = [(move(c, device), move(n, device)) for c, n, _ in batches(data.test, cost.batch_size)]
    one = (test[0][0][:1], test[0][1][:1])
    report = cost_report(model, 0, test, threads=cost.threads, batch_size=cost.batch_size,
                         flops_inputs=one)
    report["flops_per_sample"] = report.pop("flops_per_sequence")
    report["embedding_params"] = embedding_parameters(model)
    report["inference"]["us_per_sample"] = 1e6 * report["inference"]["seconds"] / len(data.test)
    return report


def train_ctr(cfg: CTRRunConfig, data_dir: Optional[str] = None, run_dir: Optional[Path] = None,
              resume: bool = False, echo: bool = True, data: Optional[CTRData] = None) -> Dict[str, Any]:
    """Train (early stopping on validation AUC), evaluate the best epoch on valid and test, measure cost.

    ``data``: the already loaded data of ``cfg.data`` (saves reading it again)."""
    dist = distributed.from_env(cfg.train.device)
    cfg = replace(cfg, train=replace(cfg.train, device=dist.device(cfg.train.device)))
    resume = resume and (Path(run_dir) / "checkpoints" / "last.pt").exists()  # else it starts again
    start, loaded_here = time.perf_counter(), data is None
    if data is None:
        data = load_data(cfg, data_dir)
    loaded = time.perf_counter() - start
    model = make_ctr_model(cfg, data.schema)
    run_dir = Path(dist.broadcast(str(run_dir or unique_run_dir(cfg.out_dir, f"{cfg.model.name}-{cfg.data.name}"))))
    if dist.is_main:  # made only now that the inputs are valid
        open_run(run_dir, cfglib.to_dict(cfg))
    log = RunLog(run_dir / "log.txt" if dist.is_main else None, echo and dist.is_main)
    if loaded_here:
        log(f"dataset {data.name}: {len(data.train):,} / {len(data.valid):,} / {len(data.test):,} rows, "
            f"{data.schema.num_fields} fields, {len(data.schema.numeric)} numeric (loaded in {loaded:.1f}s)")
    with recorded(run_dir, dist.is_main):
        return _fit_ctr(cfg, data, model, run_dir, log, dist, resume)


def _fit_ctr(cfg: CTRRunConfig, data: CTRData, model: nn.Module, run_dir: Path, log: RunLog, dist,
             resume: bool) -> Dict[str, Any]:
    """train_ctr()'s work once its run folder exists."""
    evaluator = CTREvaluator(data, cfg.eval_batch_size)
    trainer = CTRTrainer(model, TrainBatches(data.train, cfg.train.batch_size, cfg.train.seed), evaluator,
                         cfg.train, run_dir, log=log, dist=dist)
    log(f"model {cfg.model.name}, {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{dist.world} process(es), run folder {run_dir}")
    fit = trainer.fit(resume=resume)
    trainer.load_best()
    metrics = {"best_epoch": fit["best_epoch"], "epochs_run": fit["epoch"], "train_seconds": fit["train_seconds"],
               "valid": evaluator.evaluate(model, "valid")["ctr"], "test": evaluator.evaluate(model, "test")["ctr"],
               "processes": dist.world}
    if not dist.is_main:
        return {"run_dir": str(run_dir), **metrics}
    write_json_atomic(run_dir / "history.json", fit["history"])
    write_json_atomic(run_dir / "metrics.json", metrics)
    log(f"test AUC {metrics['test']['auc']:.4f}, log loss {metrics['test']['logloss']:.4f}")
    if cfg.cost.enabled:
        cost = ctr_cost(model, data, cfg.cost)
        write_json_atomic(run_dir / "cost.json", cost)
        log(f"cost: {cost['flops_per_sample'] / 1e6:.3f} MFLOPs/sample, {cost['params']:,} parameters "
            f"({cost['embedding_params']:,} in embeddings), inference {cost['inference']['us_per_sample']:.2f} µs/sample")
    return {"run_dir": str(run_dir), **metrics}


def load_ctr_run(run_dir: Path, data_dir: Optional[str] = None):
    """(config, data, model with the run's best weights) of a finished CTR run."""
    run_dir = Path(run_dir)
    cfg = cfglib.from_dict(CTRRunConfig, yaml.safe_load((run_dir / "config.yaml").read_text()))
    data = load_data(cfg, data_dir)
    model = make_ctr_model(cfg, data.schema)
    model.load_state_dict(checkpoint.load(run_dir / "checkpoints" / "best.pt")["model"])
    return cfg, data, model.eval()


def evaluate_ctr(run_dir: Path, split: str = "test", data_dir: Optional[str] = None) -> Dict[str, Any]:
    cfg, data, model = load_ctr_run(run_dir, data_dir)
    return CTREvaluator(data, cfg.eval_batch_size).evaluate(model, split)["ctr"]
