"""Reference runner: trains RecBole 1.2.1's SASRec on exactly recarch's data and leave-one-out split.

Builds RecBole's own virtualenv, writes a SequenceDataset as a RecBole atomic file, runs
``_recbole_runner.py`` there, and returns its validation curve, time to best and test metrics as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
RUNNER = HERE / "_recbole_runner.py"

# torch==2.13.0 is the CPU wheel on this machine's disk (anything else pulls GBs of CUDA wheels);
# RecBole 1.2.1 predates numpy 2 and pandas 3, so those are held to the last releases it ran with.
VENV_PINS = [
    "torch==2.13.0",
    "recbole==1.2.1",
    "numpy==1.26.4",
    "pandas==2.2.3",
    "scipy==1.11.4",
]

# Keys are RecBole's own names, except ``threads`` and ``device``, which the launcher consumes.
DEFAULT_PARAMS = {
    "epochs": 100,
    "stopping_step": 10,
    "train_batch_size": 2048,
    "eval_batch_size": 4096,
    "learning_rate": 1e-3,
    "hidden_size": 64,
    "inner_size": 256,
    "n_layers": 2,
    "n_heads": 2,
    "hidden_dropout_prob": 0.2,
    "attn_dropout_prob": 0.2,
    "MAX_ITEM_LIST_LENGTH": 50,
    "seed": 2020,
    "reproducibility": True,
    # RecBole's default rounds metrics (and so the early-stopping score) to 4 places.
    "metric_decimal_place": 6,
    "threads": 2,
    "device": "cpu",
}
EVAL_MODE = re.compile(r"^(full|(pop|uni)[1-9][0-9]*)$")
INTER_HEADER = ["user_id:token", "item_id:token", "timestamp:float"]


def ensure_recbole_venv(path: str | Path = WORK / "recbole-venv") -> Path:
    """Create RecBole's virtualenv at ``path`` unless it is complete; return its python executable.

    The first install takes about 1.5 min here (wheels from the local index and PyPI)."""
    venv = Path(path)
    python = venv / "bin" / "python"
    marker = venv / ".recbole-ready"
    if marker.exists() and python.exists():
        return python
    t0 = time.perf_counter()
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *VENV_PINS], check=True)
    subprocess.run([str(python), "-c", "import recbole, torch"], check=True)
    marker.write_text(f"installed in {time.perf_counter() - t0:.1f} s\n" + "\n".join(VENV_PINS) + "\n")
    return python


def write_atomic(dataset, folder: str | Path, name: str) -> Path:
    """Write ``dataset`` (a SequenceDataset) as ``<folder>/<name>/<name>.inter``; return that path.

    Users are tokens 0..U-1, items our dense ids 1..I, and the timestamp is the position in the
    user's sequence, so RecBole's time order (``order: TO``) is exactly our chronological order."""
    lens = dataset.lengths()
    users = np.repeat(np.arange(dataset.num_users, dtype=np.int64), lens)
    positions = np.arange(dataset.num_interactions, dtype=np.int64) - np.repeat(dataset.offsets[:-1], lens)
    counts = np.bincount(dataset.items, minlength=dataset.num_items + 1)[1:]
    if (counts == 0).any():
        # RecBole only knows items that occur, so its full-ranking candidate set would be smaller.
        warnings.warn(f"{dataset.name}: {int((counts == 0).sum())} of {dataset.num_items} items never "
                      "occur; RecBole will not rank them", stacklevel=2)
    frame = pd.DataFrame({INTER_HEADER[0]: users, INTER_HEADER[1]: dataset.items,
                          INTER_HEADER[2]: positions})
    out_dir = Path(folder) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.inter"
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # concurrent writers never share a temp file
    frame.to_csv(tmp, sep="\t", index=False)
    os.replace(tmp, path)
    return path


# Split agreement. RecBole builds one sample per prefix, then leaves the last two *samples* of each
# user out: users with >= 4 items get the same train/valid/test targets as SequenceDataset, users with
# 2 items only train in both. A user with exactly 3 items has no RecBole validation sample, its test
# target is ours, and our validation pair (item 1 -> item 2) becomes a RecBole training sample.
# RecBole's popN counts popularity over all target positions (every item but each user's first,
# valid and test included) and may draw items of the user's own history as negatives; only the
# target is excluded (recarch's ``pop100-recbole``).
def split_differences(dataset) -> dict:
    """Counts of users whose RecBole leave-one-out differs from ours (see the comment above)."""
    lens = dataset.lengths()
    return {
        "users_with_3_items": int((lens == 3).sum()),
        "users_below_3_items": int((lens < 3).sum()),
        "note": "users with exactly 3 items: no RecBole validation sample, their valid pair is "
                "trained on; test targets identical for all users",
    }


def resolve_params(params: Optional[dict] = None) -> dict:
    """DEFAULT_PARAMS overridden by ``params``; unknown keys are an error naming the nearest key.

    ``params["extra"]`` (a dict) passes raw RecBole keys through unchecked."""
    from recarch.registry import suggest

    merged = dict(DEFAULT_PARAMS)
    for key, value in (params or {}).items():
        if key != "extra" and key not in DEFAULT_PARAMS:
            raise KeyError(f"recbole_ref params: unknown key {key!r}{suggest(key, DEFAULT_PARAMS)}; "
                           f"expected one of {', '.join(DEFAULT_PARAMS)} or 'extra'")
        merged[key] = value
    if merged["device"] not in ("cpu", "cuda"):
        raise ValueError(f"recbole_ref params: device: expected 'cpu' or 'cuda', found {merged['device']!r}")
    return merged


def recbole_config(data_folder: str | Path, params: dict, eval_mode: str, checkpoint_dir: str | Path) -> dict:
    """The ``config_dict`` handed to RecBole's ``Config(model="SASRec", ...)``."""
    if not EVAL_MODE.match(eval_mode):
        raise ValueError(f"eval_mode: expected 'full', 'popN' or 'uniN', found {eval_mode!r}")
    p = resolve_params(params)
    cuda = p["device"] == "cuda"
    config = {
        "data_path": str(data_folder),
        "checkpoint_dir": str(checkpoint_dir),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        # No filtering or rescaling of any kind: the file already is the data set.
        "rm_dup_inter": None,
        "val_interval": None,
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "normalize_all": False,
        "normalize_field": None,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user",
                      "mode": {"valid": eval_mode, "test": eval_mode}},
        "repeatable": True,  # RecBole's sequential default: negatives exclude only the target
        "metrics": ["Recall", "MRR", "NDCG"],
        "topk": [5, 10, 20],
        "valid_metric": "NDCG@10",
        "valid_metric_bigger": True,
        "eval_step": 1,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "learner": "adam",
        "use_gpu": cuda,
        "gpu_id": "0" if cuda else "",
        "show_progress": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
        "worker": 0,
        "state": "INFO",
    }
    for key in DEFAULT_PARAMS:
        if key not in ("threads", "device"):
            config[key] = p[key]
    config.update(p.get("extra") or {})
    return config


def run_recbole(python: str | Path, data_folder: str | Path, name: str, params: Optional[dict] = None,
                eval_mode: str = "pop100", out_json: str | Path = WORK / "recbole.json",
                run_dir: Optional[str | Path] = None, meta: Optional[dict] = None) -> dict:
    """Train and test RecBole's SASRec on ``<data_folder>/<name>/<name>.inter``; return the result.

    The result (also written to ``out_json``) has ``valid_curve`` [{epoch, seconds, ndcg@10, ...}],
    ``best_valid_ndcg@10``, ``seconds_to_best``, ``total_seconds`` and ``test`` {recall@K, mrr@K, ndcg@K}."""
    p = resolve_params(params)
    # One folder per call: runs launched side by side must not share job.json, logs or checkpoints.
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir = Path(run_dir) if run_dir else WORK / "recbole_runs" / f"{name}-{eval_mode}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    out_json = Path(out_json).resolve()
    job = {
        "dataset": name,
        "config_dict": recbole_config(Path(data_folder).resolve(), p, eval_mode, run_dir.resolve() / "saved"),
        "threads": int(p["threads"]),
        "eval_mode": eval_mode,
        "params": p,
        "out_json": str(out_json),
        "meta": meta or {},
    }
    job_path = run_dir / "job.json"
    job_path.write_text(json.dumps(job, indent=2))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(job["threads"])
    log_path = run_dir / "runner.log"
    # RecBole writes ./log and ./log_tensorboard, hence the run folder as working directory.
    with open(log_path, "w") as log:
        proc = subprocess.run([str(python), str(RUNNER), str(job_path.resolve())], cwd=run_dir,
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"RecBole runner failed (exit {proc.returncode}), log {log_path}:\n{tail}")
    return json.loads(out_json.read_text())


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--mode", default="pop100", help="full | popN | uniN (RecBole's eval mode)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--venv", default=str(WORK / "recbole-venv"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help=f"override a param ({', '.join(DEFAULT_PARAMS)}); value parsed as JSON")
    for flag, key in [("--epochs", "epochs"), ("--patience", "stopping_step"), ("--hidden", "hidden_size"),
                      ("--inner", "inner_size"), ("--layers", "n_layers"), ("--heads", "n_heads"),
                      ("--max-len", "MAX_ITEM_LIST_LENGTH"), ("--batch", "train_batch_size"),
                      ("--threads", "threads"), ("--seed", "seed")]:
        ap.add_argument(flag, dest=key, type=int, default=None)
    ap.add_argument("--lr", dest="learning_rate", type=float, default=None)
    ap.add_argument("--dropout", type=float, default=None, help="hidden and attention dropout")
    args = ap.parse_args(argv)

    params = {k: getattr(args, k) for k in DEFAULT_PARAMS if getattr(args, k, None) is not None}
    if args.dropout is not None:
        params["hidden_dropout_prob"] = params["attn_dropout_prob"] = args.dropout
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    try:
        resolve_params(params)  # fail on a typo before the slow steps
        recbole_config(WORK, params, args.mode, WORK)
    except (KeyError, ValueError) as err:
        ap.error(str(err).strip('"'))
    from recarch.data import get_dataset

    dataset = get_dataset(args.dataset, data_dir=args.data_dir)
    python = ensure_recbole_venv(args.venv)
    name = f"recarch-{args.dataset}"  # never a name RecBole ships presets for (ml-100k has some)
    data_folder = WORK / "recbole_data"
    write_atomic(dataset, data_folder, name)
    out = Path(args.out) if args.out else WORK / f"recbole_{args.dataset}_{args.mode}.json"
    meta = {"dataset": dataset.summary(), "split_differences": split_differences(dataset)}
    result = run_recbole(python, data_folder, name, params, args.mode, out, meta=meta)

    curve = result["valid_curve"]
    per_epoch = [row["train_seconds"] + row["valid_seconds"] for row in curve]
    print(f"RecBole {result['recbole_version']} SASRec on {args.dataset}, mode {args.mode}, "
          f"{result['threads']} thread(s), {len(curve)} epochs")
    for row in curve:
        print(f"  epoch {row['epoch']:3d}  {row['seconds']:8.1f} s  loss {row['loss']:.4f}  "
              f"valid NDCG@10 {row['ndcg@10']:.4f}")
    print(f"best valid NDCG@10 {result['best_valid_ndcg@10']:.4f} at epoch {result['best_epoch']}, "
          f"{result['seconds_to_best']:.1f} s; total {result['total_seconds']:.1f} s, "
          f"{np.mean(per_epoch):.1f} s/epoch (train+valid)")
    test = result["test"]
    print("test " + "  ".join(f"{k} {test[k]:.4f}" for k in ("recall@10", "mrr@10", "ndcg@10")))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
