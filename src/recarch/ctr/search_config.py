"""The CTR search job's config (``recarch ctr search``), apart from the job so that the modules the job
uses (retraining, supernet training) can name it without importing the job."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Literal, Optional

from recarch import config as cfglib
from recarch.ctr.datasets import CTRDataConfig
from recarch.ctr.evolution import EvolutionConfig
from recarch.ctr.run import ctr_train_defaults
from recarch.ctr.space import SpaceConfig
from recarch.executor import ExecutorConfig
from recarch.run import CostConfig
from recarch.train import TrainConfig


@dataclass
class CTRSupernetConfig:
    """How each weight step of the supernet picks the sub-networks it trains
    (``recarch.ctr.supernet_training.STEP_PATHS``)."""
    rule: Literal["single", "sandwich"] = "single"  # single: one random path (NASRec); sandwich: the largest,
    # the smallest and ``random_paths`` random paths, their losses averaged (BigNAS)
    random_paths: int = 1

    def validate(self) -> None:
        if self.random_paths < 0:
            raise cfglib.ConfigError(f"supernet.random_paths must be ≥ 0, got {self.random_paths}")


@dataclass
class CTRSearchConfig:
    data: CTRDataConfig = field(default_factory=CTRDataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    train: TrainConfig = field(default_factory=lambda: replace(ctr_train_defaults(), batch_size=512, epochs=20))
    supernet: CTRSupernetConfig = field(default_factory=CTRSupernetConfig)
    largest_warmup_steps: int = 0  # rule single: the largest path is trained with probability decaying 1 → 0 over these steps
    eval_paths: int = 4  # random architectures whose mean validation AUC early-stops the supernet
    calibration_rows: int = 4096  # training rows that re-estimate a sub-network's BatchNorm statistics
    # before it is evaluated on inherited weights (space.norm: batch)
    # NASRec's scoring (recarch.ctr.finetune): before its validation log loss is taken, a candidate's final
    # layer alone takes this many full-batch Adam steps (lr finetune_lr) on finetune_rows training rows (0: none)
    finetune_steps: int = 0
    finetune_rows: int = 16384
    finetune_lr: float = 0.01
    finetune_from: Literal["train", "valid"] = "train"  # valid: fit on held-out rows (at most half the validation
    # split) and score every candidate on the rest (recarch.ctr.finetune)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    budget_mflops: Optional[float] = None  # FLOPs per sample (in millions, FlopCounterMode's unit)
    hardware: Optional[str] = None  # a HardwareConfig YAML; enables the co-design mode
    hw_weight: float = 0.05  # λ_hw
    latency_table: bool = True  # measure CPU latency per operator for every candidate
    reuse_supernet: bool = False  # go on from the run folder's trained supernet (supernet/checkpoints) if present
    top_k: int = 3
    top_k_from: Literal["score", "front"] = "score"  # which candidates are retrained (selection.TOP_K_SELECTORS)
    retrain_seeds: int = 1  # seeds retrain.seed, retrain.seed + 1, … per top-k candidate
    retrain_lrs: List[float] = field(default_factory=list)  # learning rates tried per candidate ([]: retrain.lr);
    # each candidate keeps the one with the best mean validation AUC over its seeds
    retrain_dropout: float = 0.0  # on every block's dense output while retraining (NASRec: none)
    retrain: TrainConfig = field(default_factory=ctr_train_defaults)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # where the retrains (candidate × lr × seed) run
    cost: CostConfig = field(default_factory=lambda: CostConfig(batch_size=1024, memory=False))
    out_dir: str = "runs"

    def validate(self) -> None:
        if self.budget_mflops is not None and self.budget_mflops <= 0:
            raise cfglib.ConfigError(f"budget_mflops must be > 0, got {self.budget_mflops}")
        if self.finetune_steps < 0 or self.finetune_rows < 1 or self.finetune_lr <= 0:
            raise cfglib.ConfigError(f"finetune_steps ≥ 0, finetune_rows ≥ 1 and finetune_lr > 0 expected, got "
                                     f"{self.finetune_steps}, {self.finetune_rows}, {self.finetune_lr}")
        if self.top_k < 1 or self.eval_paths < 1 or self.retrain_seeds < 1 or self.calibration_rows < 1:
            raise cfglib.ConfigError("top_k, retrain_seeds, eval_paths and calibration_rows must be ≥ 1")
        if not 0 <= self.retrain_dropout < 1:
            raise cfglib.ConfigError(f"retrain_dropout: expected a probability in [0, 1), got {self.retrain_dropout}")
        if any(lr <= 0 for lr in self.retrain_lrs):
            raise cfglib.ConfigError(f"retrain_lrs: every learning rate must be > 0, got {self.retrain_lrs}")

    def learning_rates(self) -> List[float]:
        """The retrain learning rates tried per candidate."""
        return list(self.retrain_lrs) or [self.retrain.lr]


def load_search_config(files=(), sets=(), options: Optional[Dict[str, Any]] = None) -> CTRSearchConfig:
    return cfglib.load(CTRSearchConfig, files, sets, options)
