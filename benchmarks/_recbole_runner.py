"""Runs INSIDE RecBole 1.2.1's own virtualenv: trains SASRec with RecBole's Trainer on one atomic file.

Reads a job JSON (config_dict, threads, out path), records per-epoch wall time and validation scores,
evaluates the best checkpoint on test and writes the result JSON. Imports nothing from recarch.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

# RecBole 1.2.1 still says np.float / np.bool in its metrics; Config sets these aliases too, but only
# when it is constructed, and only through np.float_ & co., which numpy 2 removed. Set them first.
for _alias, _target in {"float": float, "int": int, "bool": bool, "long": int, "object": object,
                        "str": str, "complex": complex, "unicode": str}.items():
    if _alias not in np.__dict__:
        setattr(np, _alias, _target)
for _alias, _target in {"float_": np.float64, "int_": np.int64, "bool_": np.bool_,
                        "complex_": np.complex128, "object_": np.object_, "str_": np.str_,
                        "unicode_": np.str_}.items():
    if not hasattr(np, _alias):
        setattr(np, _alias, _target)

import torch  # noqa: E402
import recbole  # noqa: E402
from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import get_model, get_trainer, init_logger, init_seed  # noqa: E402


def _floats(result) -> dict:
    return {str(k): float(v) for k, v in dict(result or {}).items()}


def run(job: dict) -> dict:
    torch.set_num_threads(int(job["threads"]))
    config = Config(model="SASRec", dataset=job["dataset"], config_dict=job["config_dict"])
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)

    t_data = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    data_seconds = time.perf_counter() - t_data

    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    # Wrap the trainer's own epoch methods so every epoch's training and validation time, loss and
    # full validation result are kept; fit()'s callback then stamps the cumulative wall time.
    epoch_log: dict = {}
    train_epoch, valid_epoch = trainer._train_epoch, trainer._valid_epoch

    def timed_train(train_data, epoch_idx, *args, **kwargs):
        t = time.perf_counter()
        loss = train_epoch(train_data, epoch_idx, *args, **kwargs)
        epoch_log["train_seconds"] = time.perf_counter() - t
        epoch_log["loss"] = float(sum(loss) if isinstance(loss, tuple) else loss)
        return loss

    def timed_valid(*args, **kwargs):
        t = time.perf_counter()
        score, result = valid_epoch(*args, **kwargs)
        epoch_log["valid_seconds"] = time.perf_counter() - t
        epoch_log["valid"] = _floats(result)
        return score, result

    trainer._train_epoch, trainer._valid_epoch = timed_train, timed_valid
    curve: list = []
    t0 = time.perf_counter()

    def on_epoch(epoch_idx: int, valid_score: float) -> None:
        curve.append({
            "epoch": int(epoch_idx),
            "seconds": time.perf_counter() - t0,
            "ndcg@10": float(valid_score),
            "loss": epoch_log.get("loss"),
            "train_seconds": epoch_log.get("train_seconds"),
            "valid_seconds": epoch_log.get("valid_seconds"),
            "valid": epoch_log.get("valid", {}),
        })

    best_score, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=False,
                                callback_fn=on_epoch)
    total_seconds = time.perf_counter() - t0

    # The checkpoint holds RecBole's pickled Config, which torch >= 2.6 refuses under its default
    # weights_only=True; it is our own file, so load it in full and evaluate without a reload.
    checkpoint = torch.load(trainer.saved_model_file, map_location=config["device"], weights_only=False)
    trainer.model.load_state_dict(checkpoint["state_dict"])
    trainer.model.load_other_parameter(checkpoint.get("other_parameter"))
    t_test = time.perf_counter()
    test = _floats(trainer.evaluate(test_data, load_best_model=False, show_progress=False))
    test_seconds = time.perf_counter() - t_test

    # RecBole's early stopping takes ties as improvements (value >= best), so its best epoch is the
    # one its last checkpoint holds, the last maximum of the curve.
    best = next((row for row in curve if row["epoch"] == checkpoint["epoch"]), None)
    return {
        "valid_curve": curve,
        "best_valid_ndcg@10": float(best_score),
        "best_epoch": int(checkpoint["epoch"]),
        "seconds_to_best": best["seconds"] if best else None,
        "total_seconds": total_seconds,
        "data_seconds": data_seconds,
        "test_seconds": test_seconds,
        "test": test,
        "num_users_recbole": int(dataset.user_num - 1),
        "num_items_recbole": int(dataset.item_num - 1),
        "num_valid_users": int(len(valid_data._dataset.inter_feat)),
        "num_test_users": int(len(test_data._dataset.inter_feat)),
        "num_train_samples": int(len(train_data._dataset.inter_feat)),
        "params": job["params"],
        "meta": job.get("meta", {}),
        "eval_mode": job["eval_mode"],
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "threads": int(job["threads"]),
        "device": str(config["device"]),
    }


def main(argv: list) -> int:
    if len(argv) != 2:
        print("usage: _recbole_runner.py JOB.json", file=sys.stderr)
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
