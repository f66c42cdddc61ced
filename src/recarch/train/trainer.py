"""The training loop shared by every sequential model: Adam, validation each epoch, early stopping,
a checkpoint per epoch, exact resume, a progress bar, and a stop on a non-finite loss.

It knows nothing about architecture search: a strategy adds its own term to the loss and its own
architecture step through :class:`TrainHooks`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Literal, Optional

import torch
from tqdm import tqdm

from recarch.config import ConfigError
from recarch.data.batching import TrainBatches
from recarch.devices import move
from recarch.failures import TrainingDiverged
from recarch.io import write_csv_atomic
from recarch.train import checkpoint
from recarch.train.allocator import keep_freed_memory
from recarch.train.batchnorm import recompute_batch_norm
from recarch.train.distributed import Dist
from recarch.train.distill import Distillation
from recarch.train.losses import draw_negatives, full_ce, sampled_softmax, select_targets
from recarch.train.optimizers import OPTIMIZERS, build_optimizer
from recarch.train.scalars import scalar_log


@dataclass
class TrainConfig:
    regime: Literal["all_positions", "last_position"] = "all_positions"
    loss: Literal["full_ce", "sampled_softmax"] = "full_ce"
    num_negatives: int = 256  # sampled_softmax only
    negatives: Literal["batch", "sequence", "position"] = "batch"  # one set of num_negatives shared by the batch, one per sequence, or one per position (RecTools's)
    batch_size: int = 128
    optimizer: str = "adam"  # adam | adagrad (NASRec's supernet optimizer) | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    embedding_weight_decay: Optional[float] = None  # L2 on nn.Embedding tables (FuxiCTR's embedding_regularizer); None: weight_decay
    sparse_embeddings: bool = False  # row-wise updates of embedding tables (recarch.train.optimizers): CTR models, SASRec under sampled softmax
    epochs: int = 200
    patience: int = 10  # epochs without a better validation score before stopping
    valid_protocol: str = "pop100"
    valid_metric: str = "ndcg@10"
    seed: int = 42
    threads: int = 0  # 0: torch's default
    device: str = "cpu"  # or "cuda", "cuda:1"
    progress: bool = True
    precise_bn_batches: int = 0  # > 0: BatchNorm statistics recomputed over this many training batches before each validation
    tensorboard: bool = True  # every epoch's scalars in run_dir/tensorboard/ when tensorboard is installed
    # bf16: the sequential encoder's forward under autocast (bfloat16 matmuls on CPU and CUDA), the loss
    # and the weights in fp32 (the CTR trainers compute in fp32 either way)
    precision: Literal["fp32", "bf16"] = "fp32"

    def validate(self) -> None:
        if self.precise_bn_batches < 0:
            raise ConfigError(f"train.precise_bn_batches must be ≥ 0, got {self.precise_bn_batches}")
        for key in ("batch_size", "epochs", "num_negatives"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be ≥ 1, got {getattr(self, key)}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"train.device: expected cpu or cuda[:N], got {self.device!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"train.optimizer: expected one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        for key in ("weight_decay", "embedding_weight_decay"):
            if (getattr(self, key) or 0.0) < 0:
                raise ConfigError(f"train.{key} must be ≥ 0, got {getattr(self, key)}")
        if self.patience < 0:
            raise ConfigError(f"train.patience must be ≥ 0, got {self.patience}")
        table_decay = self.weight_decay if self.embedding_weight_decay is None else self.embedding_weight_decay
        if self.sparse_embeddings and table_decay:
            raise ConfigError(f"train.sparse_embeddings updates only the rows a batch looks up, so it cannot decay whole "
                              f"tables (embedding weight decay {table_decay:g}): set train.embedding_weight_decay=0 "
                              f"(train.weight_decay then applies to the other weights)")


class RowLookup:
    """``table[ids]`` for sampled softmax, read through a model's ``scored_rows`` (a row-wise item table)."""

    def __init__(self, rows: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.rows = rows

    def __getitem__(self, ids: torch.Tensor) -> torch.Tensor:
        return self.rows(ids)


class TrainHooks:
    """Where a search strategy plugs into the loop (DARTS keeps its ``Architect`` apart the same way).
    The base class does nothing; its state travels in the checkpoint for exact resume."""

    def after_step(self, step: int, *batch: torch.Tensor) -> None:
        """After each weight step (``batch``: the tensors the step trained on), e.g. an architecture step."""

    def after_epoch(self, epoch: int, stats: Dict) -> None:
        """After each epoch's validation; may add entries to ``stats`` (the history row)."""

    def stop_reason(self) -> Optional[str]:
        """Why training should stop now, besides the trainer's own early stopping (None: go on)."""
        return None

    def state_dict(self) -> Dict:
        return {}

    def load_state_dict(self, state: Dict) -> None:
        """Restore what ``state_dict`` returned."""


class Trainer:
    rate_key, rate_unit = "sequences_per_s", "seq/s"  # what one training row is, for the stats and the log

    def __init__(self, model: torch.nn.Module, batches: TrainBatches, evaluator, cfg: TrainConfig,
                 run_dir: Optional[Path] = None, hooks: Optional[TrainHooks] = None,
                 log: Callable[[str], None] = print, parameters: Optional[List[torch.nn.Parameter]] = None,
                 dist: Dist = Dist(), distill: Optional[Distillation] = None) -> None:
        """parameters: what the weight optimizer trains (default: all of the model's); dist: this
        process's place in a data-parallel run (see recarch.train.distributed); distill: a teacher
        whose scores enter the targets (recarch.train.distill)."""
        self.device = torch.device(cfg.device)
        self.model, self.batches, self.evaluator, self.cfg = model.to(self.device), batches, evaluator, cfg
        self.run_dir = Path(run_dir) if run_dir else None
        self.hooks = hooks or TrainHooks()
        self.log = log
        self.params = list(parameters if parameters is not None else model.parameters())
        self.optimizer = build_optimizer(model, self.params, cfg)
        self.sparse_params = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse]
        self.dist = dist
        self.distill = distill.to(self.device) if distill is not None else None
        self.sampler = torch.Generator().manual_seed(cfg.seed)
        self.state: Dict = {"epoch": 0, "best_score": -math.inf, "best_epoch": 0, "bad_epochs": 0,
                            "history": [], "step": 0, "train_seconds": 0.0}
        self.scalars = scalar_log(self.run_dir, cfg.tensorboard and dist.is_main)

    # ---- one step -------------------------------------------------------------------------------
    def loss(self, seq: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """This rank's share of the mean loss over the *global* batch (seq, target): its shard's summed
        loss over the global number of targets, so that summing gradients over ranks is exact."""
        count = int((target > 0).sum()) if target.dim() == 2 else len(target)
        negatives = None
        if self.cfg.loss == "sampled_softmax":  # drawn before sharding: every rank stays in step
            shape = {"batch": (), "sequence": (len(seq),), "position": tuple(target.shape)}[self.cfg.negatives]
            negatives = draw_negatives(self.model.num_items, (*shape, self.cfg.num_negatives), self.sampler, self.device)
            if negatives.dim() > 1:
                negatives = self.dist.shard(negatives)
        seq, target = self.dist.shard(seq), self.dist.shard(target)
        if len(seq) == 0:
            return torch.zeros((), device=self.device, requires_grad=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16"):
            hidden = self.model(seq) if target.dim() == 2 else self.model.hidden_last(seq)
        hidden = hidden.float()
        items = RowLookup(self.model.scored_rows) if self.sparse_params else self.model.item_embeddings()
        teacher = self.distill.teacher(seq, target) if self.distill is not None else None
        if self.cfg.loss == "full_ce":
            if teacher is not None:
                teacher = teacher._replace(hidden=select_targets(teacher.hidden, target)[0])
            loss = full_ce(*select_targets(hidden, target), items, reduction="sum", teacher=teacher)
        else:
            loss = sampled_softmax(hidden, target, items, negatives, reduction="sum", teacher=teacher)
        return loss / count

    def step_loss(self, *batch: torch.Tensor) -> torch.Tensor:
        """What the weight step minimises on one batch: ``loss`` (a supernet's trainer may sum the loss
        of several sub-networks)."""
        return self.loss(*batch)

    def validate(self, stats: Dict) -> Dict[str, float]:
        """{metric: score} on the validation protocol, whose ``valid_metric`` picks the best epoch;
        may add entries to ``stats`` (the epoch's history row)."""
        protocol = self.cfg.valid_protocol
        return self.evaluator.evaluate(self.model, "valid", protocols=[protocol])[protocol]

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        self.model.train()
        total, count, start = 0.0, 0, time.perf_counter()
        bar = tqdm(self.batches.epoch(epoch), total=len(self.batches), desc=f"epoch {epoch}",
                   disable=not (self.cfg.progress and self.dist.is_main), leave=False)
        for i, batch in enumerate(bar):
            batch = tuple(move(t, self.device) for t in batch)
            loss = self.step_loss(*batch)
            value = float(self.dist.sum(loss.detach()))
            if not math.isfinite(value):
                raise TrainingDiverged(f"loss is {value} at epoch {epoch}, step {i} "
                                       f"(global step {self.state['step']}); lower train.lr or check the data")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.dist.sum_grads(self.params, sparse=self.sparse_params)
            self.check_gradients(epoch, i)
            self.optimizer.step()
            self.state["step"] += 1
            self.hooks.after_step(self.state["step"], *batch)
            total += value * len(batch[0])
            count += len(batch[0])
            bar.set_postfix(loss=f"{value:.4f}", rate=f"{count / (time.perf_counter() - start):.0f} {self.rate_unit}")
        seconds = time.perf_counter() - start
        return {"loss": total / max(count, 1), "seconds": seconds, self.rate_key: count / seconds}

    def check_gradients(self, epoch: int, i: int) -> None:
        """Stop before a non-finite gradient reaches the weights (the last checkpoint stays good)."""
        grads = [p.grad.coalesce().values() if p.grad.is_sparse else p.grad for p in self.params if p.grad is not None]
        if grads and not math.isfinite(float(torch.nn.utils.get_total_norm(grads))):
            raise TrainingDiverged(f"a gradient is non-finite at epoch {epoch}, step {i} (global step "
                                   f"{self.state['step']}); lower train.lr or check the data")

    def forward_batch(self, *batch: torch.Tensor) -> torch.Tensor:
        """The model on one training batch's inputs (the targets left out)."""
        return self.model(batch[0])

    @torch.no_grad()
    def recompute_batch_norm(self, epoch: int) -> None:
        """Precise BatchNorm (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021): the running
        statistics, an exponential average that lags weights that move fast (an exploding validation
        log loss in eval mode on Frappe's DLRM, whose top MLP normalises dot products of embeddings
        that grow from 1e-4), are replaced by the plain mean of the batch statistics over the first
        ``precise_bn_batches`` batches of this epoch's order, at the current weights. Run in training
        mode, as the statistics are gathered, on a forked RNG so that dropout here leaves the training
        randomness (and so resume) as it was. A model without BatchNorm is left alone."""
        def run_batches() -> None:
            with torch.random.fork_rng(devices=[]):
                for _, batch in zip(range(self.cfg.precise_bn_batches), self.batches.epoch(epoch)):
                    self.forward_batch(*(move(t, self.device) for t in batch))

        recompute_batch_norm(self.model, run_batches)

    # ---- the loop -------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> Dict:
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        keep_freed_memory()
        if resume:
            self.restore()
        protocol, metric = self.cfg.valid_protocol, self.cfg.valid_metric
        while self.state["epoch"] < self.cfg.epochs and not self.stopped():
            epoch = self.state["epoch"] + 1
            stats = self.train_epoch(epoch)
            start = time.perf_counter()
            if self.cfg.precise_bn_batches:
                self.recompute_batch_norm(epoch)
            score = self.validate(stats)[metric]
            stats["valid_seconds"] = time.perf_counter() - start
            self.state["train_seconds"] += stats["seconds"] + stats["valid_seconds"]
            stats.update({f"valid_{metric}": score, "elapsed_s": self.state["train_seconds"]})
            self.hooks.after_epoch(epoch, stats)
            self.state["history"].append({"epoch": epoch, **stats})
            improved = score > self.state["best_score"]
            if improved:
                self.state.update(best_score=score, best_epoch=epoch, bad_epochs=0)
                self.save("best.pt", model_only=True)
            else:
                self.state["bad_epochs"] += 1
            self.state["epoch"] = epoch
            self.save("last.pt")
            if self.run_dir is not None and self.dist.is_main:  # every epoch's scalars, for a spreadsheet or a plot
                write_csv_atomic(self.run_dir / "metrics.csv", self.state["history"])
                if self.scalars is not None:
                    self.scalars.write(epoch, self.state["history"][-1])
            self.log(f"epoch {epoch}: loss {stats['loss']:.4f}, {stats[self.rate_key]:.0f} {self.rate_unit}, "
                     f"valid {protocol} {metric} {score:.4f}{' *' if improved else ''}")
            if self.stopped():
                self.log("early stop: " + (self.hooks.stop_reason() or f"no better {metric} for {self.cfg.patience} epochs"))
        if self.scalars is not None:
            self.scalars.close()
        return {k: self.state[k] for k in ("best_score", "best_epoch", "epoch", "history", "train_seconds")}

    def stopped(self) -> bool:
        return (self.cfg.patience > 0 and self.state["bad_epochs"] >= self.cfg.patience) \
            or self.hooks.stop_reason() is not None

    # ---- checkpoints ----------------------------------------------------------------------------
    def save(self, name: str, model_only: bool = False) -> None:
        """Rank 0 writes; every rank waits for the file before going on."""
        if self.run_dir is not None and not self.dist.is_main:
            self.dist.barrier()
            return
        if self.run_dir is None:
            if model_only:  # keep the best weights in memory when there is no run folder
                self._best = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return
        path = self.run_dir / "checkpoints" / name
        if model_only:
            checkpoint.save_atomic({"model": self.model.state_dict()}, path)
        else:
            checkpoint.save_atomic({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                                    "sampler": self.sampler.get_state(), "state": self.state,
                                    "hooks": self.hooks.state_dict(),
                                    "rng": checkpoint.rng_state()}, path)
        self.dist.barrier()

    def can_resume(self) -> bool:
        """Whether the run folder holds a checkpoint to resume from."""
        return self.run_dir is not None and (self.run_dir / "checkpoints" / "last.pt").exists()

    def restore(self) -> None:
        path = self.run_dir / "checkpoints" / "last.pt" if self.run_dir else None
        if path is None or not path.exists():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {path}")
        ckpt = checkpoint.load(path, self.device)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.sampler.set_state(ckpt["sampler"])
        self.state = ckpt["state"]
        self.hooks.load_state_dict(ckpt["hooks"])
        checkpoint.set_rng_state(ckpt["rng"])
        self.log(f"resumed after epoch {self.state['epoch']} from {path}")

    def load_best(self) -> None:
        if self.run_dir is None:
            self.model.load_state_dict(self._best)
        else:
            self.model.load_state_dict(checkpoint.load(self.run_dir / "checkpoints" / "best.pt", self.device)["model"])
