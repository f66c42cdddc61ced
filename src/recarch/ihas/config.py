"""The iHAS job's config (``recarch ihas``), apart from the job so that its stages can name it
without importing the job."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, Literal, Optional

from recarch import config as cfglib
from recarch.ctr.datasets import CTRDataConfig
from recarch.ctr.models import CTRModelConfig
from recarch.ctr.run import VALID_METRICS, ctr_train_defaults
from recarch.executor import ExecutorConfig
from recarch.ihas.ensemble import TableSharing
from recarch.ihas.gates import GateConfig
from recarch.run import CostConfig
from recarch.train import TrainConfig

BACKBONES = ("dlrm", "deepfm", "dcnv2", "autoint")


def _baseline_model() -> CTRModelConfig:
    # configs/ctr-baselines.yaml (FuxiCTR's Frappe settings)
    return CTRModelConfig(name="deepfm", embed_dim=10, mlp=[400, 400, 400], dropout=0.2, batch_norm=True)


@dataclass
class IHASConfig:
    data: CTRDataConfig = field(default_factory=CTRDataConfig)
    model: CTRModelConfig = field(default_factory=_baseline_model)  # the backbone; embed_dim is the full width
    gate: GateConfig = field(default_factory=GateConfig)
    blocks: int = 5  # dimension blocks per field (embed_dim must be divisible)
    target: float = 0.42  # target active fraction (of embedding parameters or of dimensions, see target_weighting)
    target_weighting: Literal["params", "dims"] = "params"
    one_sided: bool = False  # sparsity: penalise only an active fraction above the target
    sparsity_weight: float = 2.0  # λ_s
    bipolar_weight: float = 0.05  # λ_b
    reg_warmup_epochs: float = 2.0  # regularisers off for this many epochs (embeddings grow before gates are judged)
    reg_ramp_epochs: float = 1.0  # then ramped in linearly over this many
    gate_lr: float = 0.003
    search: TrainConfig = field(default_factory=lambda: replace(ctr_train_defaults(), epochs=6, patience=0, progress=False))
    clusters: int = 4  # k
    cluster_mode: Literal["embeddings", "patterns", "unique"] = "embeddings"
    kmeans_iters: int = 100
    kmeans_sample: int = 20000  # > 0: fit k-means on this many training rows, assign the rest (0: on every row)
    max_codes: int = 4096  # patterns the router keeps
    budget: Optional[float] = 0.5  # hard cap: embedding parameters per instance, as a fraction of the full model's (null: none)
    min_group_fraction: float = 0.02  # smaller clusters join the nearest larger one
    retrain: TrainConfig = field(default_factory=lambda: replace(ctr_train_defaults(), lr=3e-4, patience=2, progress=False))
    retrain_init: Literal["search", "scratch"] = "scratch"
    retrain_data: Literal["group", "all"] = "all"
    tables: TableSharing = "per_group"  # 'shared': the groups share nested embedding tables (and the budget caps them)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # where the group models train (per_group tables)
    baselines: bool = True  # also train the full-dimension, the AutoDim-like and the uniform models
    distill: float = 0.0  # α: retrain against (1 − α)·label + α·the full-dimension model's probability
    eval_batch_size: int = 8192
    export_onnx: bool = False  # export/ also holds model.onnx (needs recarch[onnx])
    cost: CostConfig = field(default_factory=lambda: CostConfig(batch_size=1024, memory=False))
    out_dir: str = "runs"

    def validate(self) -> None:
        err = cfglib.ConfigError
        if self.model.name not in BACKBONES:
            raise err(f"model.name: iHAS needs a backbone with a field embedding, one of {', '.join(BACKBONES)}; "
                      f"got {self.model.name!r}")
        if self.blocks < 1 or self.model.embed_dim % self.blocks:
            raise err(f"blocks must be ≥ 1 and divide model.embed_dim ({self.model.embed_dim}), got {self.blocks}")
        if not 0 < self.target <= 1:
            raise err(f"target must be in (0, 1], got {self.target}")
        if self.search.sparse_embeddings:
            raise err("search.sparse_embeddings: the iHAS search trains its block gates with dense updates; "
                      "set it on retrain only")
        if self.budget is not None and not 0 < self.budget <= 1:
            raise err(f"budget must be in (0, 1] (a fraction of the full model's embedding parameters), got {self.budget}")
        if self.clusters < 1 or self.max_codes < 1 or self.kmeans_iters < 1:
            raise err("clusters, max_codes and kmeans_iters must be ≥ 1")
        if self.tables == "shared" and self.retrain_init != "scratch":
            raise err("tables: 'shared' needs retrain_init 'scratch' (groups read the first d_f columns of a "
                      f"shared table; a warm start keeps the search model's columns), got {self.retrain_init!r}")
        if not 0 <= self.distill <= 1:
            raise err(f"distill must be in [0, 1] (the full model's share of the retraining target), got {self.distill}")
        if not 0 <= self.min_group_fraction < 1:
            raise err(f"min_group_fraction must be in [0, 1), got {self.min_group_fraction}")
        if min(self.sparsity_weight, self.bipolar_weight, self.gate_lr, self.reg_warmup_epochs, self.reg_ramp_epochs) < 0:
            raise err("sparsity_weight, bipolar_weight, gate_lr, reg_warmup_epochs and reg_ramp_epochs must be ≥ 0")
        for name in ("search", "retrain"):
            t = getattr(self, name)
            if t.valid_protocol != "ctr" or t.valid_metric not in VALID_METRICS:
                raise err(f"{name}.valid_protocol must be 'ctr' and {name}.valid_metric one of {VALID_METRICS}")


def load_ihas_config(files=(), sets=(), options: Optional[Dict[str, Any]] = None) -> IHASConfig:
    return cfglib.load(IHASConfig, files, sets, options)
