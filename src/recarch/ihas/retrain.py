"""iHAS's retrained models: building one with per-field dimensions (:func:`mixed_model`), its training
targets (:func:`distilled`), training it (a group model or a baseline) with early stopping, or the whole
shared-table ensemble at once (:class:`GroupsTrainer`)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from recarch.ctr.metrics import log_loss
from recarch.ctr.models import CTRModelConfig, build_ctr_model
from recarch.ctr.run import CTREvaluator, CTRTrainer
from recarch.ctr.table import CTRData, CTRTable, TrainBatches
from recarch.ihas.embedding import MixedDimEmbedding
from recarch.ihas.ensemble import with_mixed_embedding
from recarch.io import write_json_atomic
from recarch.train import TrainConfig


def mixed_model(data: CTRData, model_cfg: CTRModelConfig, columns: Sequence[Sequence[int]], seed: int,
                search_model: Optional[nn.Module] = None) -> nn.Module:
    """A backbone with per-field ``columns``, drawn from ``seed``; warm-started from ``search_model`` (its
    dense weights and the kept columns of its tables) when one is given."""
    torch.manual_seed(seed)
    model = build_ctr_model(data.schema, model_cfg)
    if search_model is None:
        return with_mixed_embedding(model, data.schema, model_cfg, columns)
    state = {k: v for k, v in search_model.state_dict().items() if not k.startswith("embedding.")}
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys or any(not k.startswith("embedding.") for k in result.missing_keys):
        raise RuntimeError(f"warm start: weights do not fit ({result})")
    model.embedding = MixedDimEmbedding.from_full(search_model.embedding.base, data.schema, columns)
    return model


def distilled(data: CTRData, teacher: nn.Module, alpha: float, batch_size: int) -> CTRData:
    """``data`` with the training targets (1 − α)·y + α·σ(z_teacher): knowledge distillation from the
    full-dimension model, as once-for-all trains its sub-networks against the largest network's soft
    labels. The binary cross entropy against this target is (1 − α)·BCE(y) + α·BCE(σ(z_teacher)), since it is
    linear in the target. Validation and test keep their labels; α = 0 returns ``data`` itself."""
    if alpha == 0:
        return data
    soft = CTREvaluator(data, batch_size).probabilities(teacher, "train")
    label = ((1 - alpha) * np.asarray(data.train.label) + alpha * soft).astype(np.float32)
    return replace(data, train=CTRTable(data.train.cat, data.train.num, label))


class SubsetEvaluator(CTREvaluator):
    """AUC and log loss on a split that may hold one class only (a small group): AUC is then ½, so
    early stopping on AUC − log loss follows the log loss."""

    def evaluate(self, model, split, protocols=None):
        label = np.asarray(self.data.split(split).label)
        if 0 < label.sum() < len(label):
            return super().evaluate(model, split, protocols)
        loss = log_loss(label, self.probabilities(model, split))
        return {"ctr": {"auc": 0.5, "logloss": loss, "neg_logloss": -loss, "auc-logloss": 0.5 - loss, "rows": len(label)}}


def subset(table: CTRTable, rows: np.ndarray) -> CTRTable:
    return CTRTable(np.asarray(table.cat)[rows], np.asarray(table.num)[rows], np.asarray(table.label)[rows])


class GroupsTrainer(CTRTrainer):
    """An ensemble with shared tables trained on all the data: every group model scores every training row
    and the loss is the mean of the groups' (validation, through CTRTrainer's evaluator, runs the routed
    ensemble)."""

    def forward_batch(self, cat: torch.Tensor, num: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return torch.stack([model(cat, num) for model in self.model.models])


def fit_model(model: nn.Module, data: CTRData, train_cfg: TrainConfig, run_dir: Path, log, eval_batch_size: int,
              trainer_cls=CTRTrainer, resume: bool = False) -> Dict[str, Any]:
    """Train with the CTR trainer (early stopping on validation), keep the best epoch, evaluate it.
    ``resume``: go on from the folder's last checkpoint where there is one (a finished training is reloaded)."""
    evaluator = SubsetEvaluator(data, eval_batch_size)
    trainer = trainer_cls(model, TrainBatches(data.train, train_cfg.batch_size, train_cfg.seed), evaluator, train_cfg,
                         run_dir, log=log)
    fit = trainer.fit(resume=resume and trainer.can_resume())
    trainer.load_best()
    model.eval()
    write_json_atomic(Path(run_dir) / "history.json", fit["history"])
    return {"best_epoch": fit["best_epoch"], "epochs_run": fit["epoch"], "train_seconds": fit["train_seconds"]}


def group_job(job: tuple) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """One group model, built and trained from a picklable tuple (an executor's job): (model config, per-field
    columns, seed, search model to warm-start from or None, data, retrain config, run folder, log, evaluation
    batch size, resume) → the fit and the best weights. Built right before it trains, so that the global
    random stream its dropout draws from is the same in any process."""
    model_cfg, columns, seed, warm, data, train_cfg, run_dir, log, eval_batch_size, resume = job
    model = mixed_model(data, model_cfg, columns, seed, warm)
    return fit_model(model, data, train_cfg, run_dir, log, eval_batch_size, resume=resume), model.state_dict()


def evaluate_both(model: nn.Module, data: CTRData, batch_size: int) -> Dict[str, Dict]:
    ev = CTREvaluator(data, batch_size)
    return {s: ev.evaluate(model, s)["ctr"] for s in ("valid", "test")}
