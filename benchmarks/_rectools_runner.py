"""Runs INSIDE RecTools 0.19.0's own virtualenv: trains RecTools's SASRecModel on one interactions file.

Reads a job JSON (interactions path, sizes, params, out path), splits every user's sequence leave-one-out
as recarch does, trains with RecTools's own Lightning loop and validation split, records per-epoch wall
time and full-ranking validation scores, restores the best epoch, evaluates it on test and writes the
result JSON. Imports nothing from recarch.
"""
from __future__ import annotations

import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import pytorch_lightning as pl  # noqa: E402
import rectools  # noqa: E402
from pytorch_lightning import Callback, Trainer  # noqa: E402
from rectools import Columns  # noqa: E402
from rectools.dataset import Dataset  # noqa: E402
from rectools.models import SASRecModel  # noqa: E402
from rectools.models.nn.item_net import IdEmbeddingsItemNet  # noqa: E402

KS = (5, 10, 20)


# ---- data and split ---------------------------------------------------------------------------------
def load_sequences(path: str | Path, num_users: int):
    """(offsets (U+1,), items (nnz,)) from the interactions file, chronological within each user."""
    frame = pd.read_csv(path, parse_dates=[Columns.Datetime])
    frame = frame.sort_values([Columns.User, Columns.Datetime], kind="stable")
    counts = np.bincount(frame[Columns.User].to_numpy(), minlength=num_users)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return offsets, frame[Columns.Item].to_numpy().astype(np.int64)


def rectools_interactions(offsets: np.ndarray, items: np.ndarray) -> pd.DataFrame:
    """Every interaction but each eval user's test item (users with >= 3 items); datetime = position.

    The validation item is still in, as each user's last row; ``last_interaction_mask`` takes it out."""
    lens = np.diff(offsets)
    users = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
    positions = np.arange(len(items), dtype=np.int64) - np.repeat(offsets[:-1], lens)
    keep = positions < np.repeat(np.where(lens >= 3, lens - 1, lens), lens)
    return pd.DataFrame({
        Columns.User: users[keep],
        Columns.Item: items[keep],
        Columns.Weight: np.ones(int(keep.sum()), dtype=np.float32),
        Columns.Datetime: pd.to_datetime(positions[keep], unit="s"),
    })


def last_interaction_mask(interactions: pd.DataFrame, skip_users: tuple = ()) -> np.ndarray:
    """RecTools ``get_val_mask_func``: each user's latest interaction, except users in ``skip_users``
    (those with fewer than 3 items, which recarch only trains on)."""
    rank = (interactions.sort_values(Columns.Datetime, ascending=False, kind="stable")
            .groupby(Columns.User, sort=False).cumcount())
    mask = rank.reindex(interactions.index).to_numpy() == 0
    if len(skip_users):
        mask &= ~interactions[Columns.User].isin(list(skip_users)).to_numpy()
    return mask


def windows(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """(R, length) left-padded rows ``values[max(starts[r], ends[r]-length):ends[r]]``, 0 elsewhere."""
    idx = ends[:, None] - length + np.arange(length)[None, :]
    valid = idx >= starts[:, None]
    return np.where(valid, values[np.clip(idx, 0, max(len(values) - 1, 0))], 0).astype(np.int64)


# ---- full-ranking evaluation ------------------------------------------------------------------------
def rank_of_target(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of ``targets`` (B,) among the columns of ``scores`` (B, C); ties count against the
    model, -inf columns are no candidates, a target at -inf ranks behind every candidate."""
    target = scores.gather(1, targets.reshape(-1, 1))
    ranks = (scores >= target).sum(1) - 1
    lost = target.squeeze(1) == float("-inf")
    if lost.any():
        ranks[lost] = (scores[lost] > float("-inf")).sum(1)
    return ranks


def metrics_from_ranks(ranks: torch.Tensor, ks=KS) -> dict:
    r = ranks.double()
    out = {}
    for k in ks:
        hit = r < k
        out[f"recall@{k}"] = float(hit.double().mean())
        out[f"mrr@{k}"] = float(torch.where(hit, 1.0 / (r + 1.0), torch.zeros_like(r)).mean())
        out[f"ndcg@{k}"] = float(torch.where(hit, 1.0 / torch.log2(r + 2.0), torch.zeros_like(r)).mean())
    return out


class FullRanker:
    """Ranks each eval user's valid or test target among all items 1..I from RecTools's torch model.

    Input: the items before the target (valid: the training part; test: also the valid item), in
    RecTools's internal ids, items RecTools does not know dropped (as its ``recommend`` does), last
    ``max_len`` kept. Every item of that history (not only the last ``max_len``) is masked, except the
    target itself; items RecTools does not know are no candidates, and a target it does not know is a miss."""

    def __init__(self, offsets, items, num_items: int, ext2int: np.ndarray, max_len: int,
                 batch_size: int = 512) -> None:
        self.num_items, self.ext2int, self.max_len, self.batch_size = num_items, ext2int, max_len, batch_size
        int2ext = np.zeros(int(ext2int.max()) + 1, dtype=np.int64)
        known = np.flatnonzero(ext2int > 0)
        int2ext[ext2int[known]] = known
        self.int2ext = torch.from_numpy(int2ext)
        lens = np.diff(offsets)
        self.users = np.flatnonzero(lens >= 3)
        self.views = {split: self._view(offsets, items, shift) for split, shift in (("valid", 2), ("test", 1))}

    def _view(self, offsets, items, shift: int) -> dict:
        starts = offsets[self.users]
        ends = offsets[self.users + 1] - shift  # the target's flat index = end of the history
        hlens = ends - starts
        rows = np.repeat(np.arange(len(self.users), dtype=np.int64), hlens)
        flat = np.arange(hlens.sum(), dtype=np.int64) - np.repeat(np.cumsum(hlens) - hlens, hlens) \
            + np.repeat(starts, hlens)
        hist = items[flat]
        internal = self.ext2int[hist]
        keep = internal > 0
        klens = np.bincount(rows[keep], minlength=len(self.users))
        kends = np.cumsum(klens)
        inputs = windows(internal[keep], kends - klens, kends, self.max_len)
        hist_offsets = np.concatenate([[0], np.cumsum(hlens)])
        return {"targets": items[ends], "inputs": inputs, "hist_rows": rows, "hist_items": hist,
                "hist_offsets": hist_offsets, "empty_inputs": int((klens == 0).sum()),
                "unknown_targets": int((self.ext2int[items[ends]] <= 0).sum())}

    @torch.no_grad()
    def ranks(self, torch_model, split: str) -> torch.Tensor:
        v = self.views[split]
        was_training = torch_model.training
        torch_model.eval()
        item_embs = torch_model.item_model.get_all_embeddings()
        out = []
        for a in range(0, len(self.users), self.batch_size):
            b = min(a + self.batch_size, len(self.users))
            x = torch.from_numpy(v["inputs"][a:b])
            session = torch_model.encode_sessions({"x": x}, item_embs)[:, -1, :]
            logits = torch_model.similarity_module(session, item_embs)  # (B, items known + 1 padding)
            scores = torch.full((b - a, self.num_items + 1), float("-inf"), dtype=logits.dtype)
            scores[:, self.int2ext[1:]] = logits[:, 1:]
            targets = torch.from_numpy(v["targets"][a:b])
            kept = scores.gather(1, targets.reshape(-1, 1))
            lo, hi = v["hist_offsets"][a], v["hist_offsets"][b]
            rows = torch.from_numpy(v["hist_rows"][lo:hi] - a)
            hist = torch.from_numpy(v["hist_items"][lo:hi])
            scores.index_put_((rows, hist), torch.tensor(float("-inf"), dtype=scores.dtype))
            scores.scatter_(1, targets.reshape(-1, 1), kept)  # a target seen before stays a candidate
            out.append(rank_of_target(scores, targets))
        torch_model.train(was_training)
        return torch.cat(out)

    def evaluate(self, torch_model, split: str) -> dict:
        return metrics_from_ranks(self.ranks(torch_model, split))


# ---- Lightning callback: curve, early stopping, best weights ----------------------------------------
class ValidationCurve(Callback):
    """At every validation epoch: full-ranking metrics of the valid split, cumulative wall time since
    training start (train + valid), training and RecTools validation loss. Stops after ``patience``
    epochs without a strictly better ``monitor`` (0 = never) and restores the best weights at fit end,
    the same rule as recarch's trainer and Lightning's EarlyStopping(mode="max", min_delta=0)."""

    def __init__(self, ranker: FullRanker, monitor: str = "ndcg@10", patience: int = 0,
                 time_limit_s: float = 0.0) -> None:
        """time_limit_s > 0: stop after the first epoch that ends past this many seconds (``stopped_by``
        "time"), for a peer too slow to reach its patience on this machine."""
        self.ranker, self.monitor, self.patience = ranker, monitor, int(patience)
        self.time_limit_s = float(time_limit_s)
        self.curve: list = []
        self.best_score, self.best_epoch, self.bad_epochs = float("-inf"), 0, 0
        self.best_state = None
        self.stopped_by = "cap"
        self.t0 = self.t_epoch = self.t_valid = 0.0
        self.train_seconds = 0.0
        self.train_loss: list = []
        self.train_batches = 0
        self.val_loss = [0.0, 0]
        self.val_batches = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.t0 = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.t_epoch = time.perf_counter()
        self.train_loss = []
        self.train_batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.train_loss.append(float(loss))
        self.train_batches += 1

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        self.t_valid = time.perf_counter()
        self.train_seconds = self.t_valid - self.t_epoch
        self.val_loss = [0.0, 0]
        self.val_batches = 0

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        n = int(batch["y"].shape[0])
        self.val_loss[0] += float(outputs["loss"]) * n
        self.val_loss[1] += n
        self.val_batches += 1

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        t_rank = time.perf_counter()
        valid = self.ranker.evaluate(pl_module.torch_model, "valid")
        now = time.perf_counter()
        epoch = trainer.current_epoch + 1
        self.curve.append({
            "epoch": epoch,
            "seconds": now - self.t0,
            "ndcg@10": valid["ndcg@10"],
            "recall@10": valid["recall@10"],
            "loss": float(np.mean(self.train_loss)) if self.train_loss else None,
            "val_loss": self.val_loss[0] / self.val_loss[1] if self.val_loss[1] else None,
            "train_seconds": self.train_seconds,
            "train_batches": self.train_batches,
            "valid_seconds": now - self.t_valid,  # RecTools's own val loop (val loss) + full ranking
            "rectools_val_seconds": t_rank - self.t_valid,
            "val_batches": self.val_batches,
            "rank_seconds": now - t_rank,
            "valid": valid,
        })
        score = valid[self.monitor]
        if score > self.best_score:
            self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
            self.best_state = copy.deepcopy(pl_module.torch_model.state_dict())
        else:
            self.bad_epochs += 1
            if self.patience > 0 and self.bad_epochs >= self.patience:
                trainer.should_stop = True
                self.stopped_by = "patience"
        if not trainer.should_stop and 0 < self.time_limit_s <= now - self.t0:
            trainer.should_stop = True
            self.stopped_by = "time"
        print(f"epoch {epoch:3d}  {now - self.t0:8.1f} s  loss {self.curve[-1]['loss']:.4f}  "
              f"valid ndcg@10 {valid['ndcg@10']:.4f} recall@10 {valid['recall@10']:.4f}"
              f"{' *' if self.best_epoch == epoch else ''}", flush=True)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.best_state is not None:
            pl_module.torch_model.load_state_dict(self.best_state)


# ---- the job ----------------------------------------------------------------------------------------
def run(job: dict) -> dict:
    p = job["params"]
    threads = int(job["threads"])
    torch.set_num_threads(threads)
    t_data = time.perf_counter()
    offsets, items = load_sequences(job["interactions"], int(job["num_users"]))
    lens = np.diff(offsets)
    frame = rectools_interactions(offsets, items)
    dataset = Dataset.construct(frame)
    skip_users = [int(u) for u in np.flatnonzero(lens < 3)]
    data_seconds = time.perf_counter() - t_data

    pl.seed_everything(int(p["seed"]), workers=True)
    holder: dict = {}

    def make_trainer() -> Trainer:
        # A fresh trainer whose ValidationCurve is built once the item id map exists (see below).
        limit_train, limit_val = int(p["limit_train_batches"]), int(p["limit_val_batches"])
        return Trainer(
            max_epochs=int(p["epochs"]),
            # > 0 only for smoke and timing runs; the full-ranking validation always sees every user
            limit_train_batches=limit_train if limit_train > 0 else 1.0,
            limit_val_batches=limit_val if limit_val > 0 else 1.0,
            deterministic=True,
            accelerator="cpu",
            devices=1,
            callbacks=[holder["callback"]],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )

    model = SASRecModel(
        n_blocks=int(p["n_blocks"]),
        n_heads=int(p["n_heads"]),
        n_factors=int(p["n_factors"]),
        dropout_rate=float(p["dropout"]),
        session_max_len=int(p["max_len"]),
        loss=p["loss"],
        n_negatives=int(p["negatives"]),
        lr=float(p["lr"]),
        batch_size=int(p["batch_size"]),
        epochs=int(p["epochs"]),
        deterministic=True,
        item_net_block_types=(IdEmbeddingsItemNet,),
        get_val_mask_func=last_interaction_mask,
        get_val_mask_func_kwargs={"skip_users": skip_users},
        recommend_torch_device="cpu",
    )

    # RecTools builds its item id map inside fit(); the ranker needs it, so prepare the data once here
    # (process_dataset_train is deterministic and fit() repeats it identically) to build the callback.
    prep = model.data_preparator
    prep.process_dataset_train(dataset)
    ext = prep.item_id_map.external_ids[prep.n_item_extra_tokens:].astype(np.int64)
    ext2int = np.zeros(int(job["num_items"]) + 1, dtype=np.int64)
    ext2int[ext] = prep.item_id_map.convert_to_internal(ext)
    ranker = FullRanker(offsets, items, int(job["num_items"]), ext2int, int(p["max_len"]),
                        int(p["eval_batch_size"]))
    holder["callback"] = ValidationCurve(ranker, p["monitor"], int(p["patience"]), float(p["time_limit_s"]))
    model._trainer = make_trainer()  # the documented way to swap in a custom trainer after __init__
    num_val_rectools = int(prep.val_interactions[Columns.Weight].gt(0).sum())
    num_train_users_rectools = int(prep.train_dataset.user_id_map.size)

    t0 = time.perf_counter()
    model.fit(dataset)
    total_seconds = time.perf_counter() - t0
    refit = model.data_preparator.item_id_map
    if not np.array_equal(refit.external_ids[prep.n_item_extra_tokens:].astype(np.int64), ext):
        raise RuntimeError("RecTools built a different item id map in fit() than in the dry preparation")
    # fit() deep-copies the trainer, callbacks included: read the copy that ran
    callback = next(c for c in model.fit_trainer.callbacks if isinstance(c, ValidationCurve))
    torch_model = model.lightning_model.torch_model  # best weights restored by the callback

    t_test = time.perf_counter()
    test = ranker.evaluate(torch_model, "test")
    test_seconds = time.perf_counter() - t_test
    valid_best = ranker.evaluate(torch_model, "valid")

    curve = callback.curve
    train_batches = -(-num_train_users_rectools // int(p["batch_size"]))
    val_batches = -(-len(prep.val_interactions[prep.val_interactions[Columns.Weight] > 0]) // int(p["batch_size"]))
    estimate = None
    if curve:
        estimate = float(np.mean([r["train_seconds"] / max(1, r["train_batches"]) * train_batches
                                  + r["rectools_val_seconds"] / max(1, r["val_batches"]) * val_batches
                                  + r["rank_seconds"] for r in curve]))
    best = next((row for row in curve if row["epoch"] == callback.best_epoch), None)
    return {
        "valid_curve": curve,
        "best_epoch": int(callback.best_epoch),
        f"best_valid_{p['monitor']}": float(callback.best_score),
        "best_valid_ndcg@10": best["ndcg@10"] if best else None,
        "valid_restored": valid_best,
        "seconds_to_best": best["seconds"] if best else None,
        "total_seconds": total_seconds,
        "seconds_per_epoch": float(np.mean([row["train_seconds"] for row in curve])) if curve else None,
        "seconds_per_epoch_with_valid": float(np.mean([row["train_seconds"] + row["valid_seconds"]
                                                       for row in curve])) if curve else None,
        "seconds_per_train_batch": float(sum(r["train_seconds"] for r in curve)
                                         / max(1, sum(r["train_batches"] for r in curve))) if curve else None,
        "train_batches_per_epoch": train_batches,
        "seconds_per_val_batch": float(sum(r["rectools_val_seconds"] for r in curve)
                                       / max(1, sum(r["val_batches"] for r in curve))) if curve else None,
        "val_batches_per_epoch": val_batches,
        # what a whole epoch (all training and RecTools validation batches, plus full ranking) takes
        # at the measured rates: equals seconds_per_epoch_with_valid unless limit_*_batches was set
        "seconds_per_full_epoch_estimate": estimate,
        "epochs_run": len(curve),
        "stopped_by": callback.stopped_by,
        "data_seconds": data_seconds,
        "test_seconds": test_seconds,
        "test": test,
        "num_eval_users": int(len(ranker.users)),
        "num_items_rectools": int(prep.item_id_map.size - prep.n_item_extra_tokens),
        "num_train_users_rectools": num_train_users_rectools,
        "num_valid_users_rectools": num_val_rectools,
        "num_train_interactions_rectools": int(len(prep.train_dataset.interactions.df)),
        "unknown_targets": {s: ranker.views[s]["unknown_targets"] for s in ranker.views},
        "empty_inputs": {s: ranker.views[s]["empty_inputs"] for s in ranker.views},
        "params": p,
        "meta": job.get("meta", {}),
        "rectools_version": rectools.__version__,
        "torch_version": torch.__version__,
        "lightning_version": pl.__version__,
        "numpy_version": np.__version__,
        "threads": threads,
        "device": "cpu",
    }


def main(argv: list) -> int:
    if len(argv) != 2:
        print("usage: _rectools_runner.py JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[1]).read_text())
    result = run(job)
    out = Path(job["out_json"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
