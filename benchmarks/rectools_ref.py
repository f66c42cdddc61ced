"""Reference runner: trains RecTools 0.19.0's SASRecModel on exactly recarch's data and leave-one-out split.

Builds RecTools's own virtualenv, writes a SequenceDataset as a RecTools interactions file, runs
``_rectools_runner.py`` there, and returns its validation curve, time to best and test metrics as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
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
RUNNER = HERE / "_rectools_runner.py"

# torch==2.13.0 is the CPU wheel on this machine's disk (anything else pulls GBs of CUDA wheels), so it
# is installed first and named again with the rest. RecTools 0.19.0 requires, on Python 3.11,
# numpy>=1.22,<2, pandas>=1.5,<3 and (extra "torch") pytorch-lightning>=1.6,<=2.5.2 and torch<3; the
# pins are the versions pip resolved within those bounds.
VENV_PINS = [
    "torch==2.13.0",
    "rectools[torch]==0.19.0",
    "numpy==1.26.4",
    "pandas==2.3.3",
    "pytorch-lightning==2.5.2",
]

# Keys are this runner's names; they map onto SASRecModel's arguments in ``_rectools_runner.py``
# (n_factors, n_blocks, n_heads, dropout -> dropout_rate, max_len -> session_max_len, negatives ->
# n_negatives, lr, batch_size, loss, epochs); ``threads`` is consumed by the launcher.
DEFAULT_PARAMS = {
    "epochs": 200,
    "patience": 50,
    "monitor": "ndcg@10",
    "n_factors": 64,
    "n_blocks": 1,
    "n_heads": 1,
    "dropout": 0.2,
    "max_len": 50,
    "loss": "sampled_softmax",
    "negatives": 256,
    "lr": 1e-3,
    "batch_size": 128,
    "eval_batch_size": 512,
    "seed": 2024,
    "threads": 1,
    # > 0: only this many training / RecTools validation-loss batches per epoch (smoke and timing runs;
    # the full-ranking validation curve always covers every user); 0: all of them
    "limit_train_batches": 0,
    "limit_val_batches": 0,
    # > 0: stop after the first epoch that ends past this many seconds of training (stopped_by "time")
    "time_limit_s": 0.0,
}
MONITORS = ("ndcg@10", "recall@10")
LOSSES = ("softmax", "BCE", "gBCE", "sampled_softmax")
POSITIVE_INTS = ("epochs", "n_factors", "n_blocks", "n_heads", "max_len", "negatives", "batch_size",
                 "eval_batch_size", "threads")
INTER_COLUMNS = ["user_id", "item_id", "weight", "datetime"]  # rectools.Columns.Interactions


def ensure_rectools_venv(path: str | Path = WORK / "rectools-venv") -> Path:
    """Create RecTools's virtualenv at ``path`` unless it is complete; return its python executable.

    The first install takes about 1.5 min here (torch from the local wheel, the rest from PyPI)."""
    venv = Path(path)
    python = venv / "bin" / "python"
    marker = venv / ".rectools-ready"
    if marker.exists() and python.exists():
        return python
    t0 = time.perf_counter()
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # torch alone first: with it in place no resolver step can reach for a CUDA build
    subprocess.run([str(python), "-m", "pip", "install", "-q", VENV_PINS[0]], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *VENV_PINS], check=True)
    subprocess.run([str(python), "-c", "import rectools, torch, pytorch_lightning; "
                    "assert torch.__version__.startswith('2.13.0'), torch.__version__"], check=True)
    marker.write_text(f"installed in {time.perf_counter() - t0:.1f} s\n" + "\n".join(VENV_PINS) + "\n")
    return python


def write_interactions(dataset, path: str | Path) -> Path:
    """Write ``dataset`` (a SequenceDataset) as a RecTools interactions CSV at ``path``; return it.

    Users are 0..U-1, items our dense ids 1..I, weight 1, and the datetime is the position in the
    user's sequence (seconds after the epoch), so RecTools's time order is exactly our order."""
    lens = dataset.lengths()
    users = np.repeat(np.arange(dataset.num_users, dtype=np.int64), lens)
    positions = np.arange(dataset.num_interactions, dtype=np.int64) - np.repeat(dataset.offsets[:-1], lens)
    counts = np.bincount(dataset.items, minlength=dataset.num_items + 1)[1:]
    if (counts == 0).any():
        # Items that never occur get no RecTools embedding, so they are never ranked.
        warnings.warn(f"{dataset.name}: {int((counts == 0).sum())} of {dataset.num_items} items never "
                      "occur; RecTools will not rank them", stacklevel=2)
    frame = pd.DataFrame({
        INTER_COLUMNS[0]: users,
        INTER_COLUMNS[1]: dataset.items,
        INTER_COLUMNS[2]: np.ones(dataset.num_interactions, dtype=np.int64),
        INTER_COLUMNS[3]: pd.to_datetime(positions, unit="s"),
    })
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # concurrent writers never share a temp file
    frame.to_csv(tmp, index=False, date_format="%Y-%m-%d %H:%M:%S")
    os.replace(tmp, path)
    return path


# Split agreement. The runner hands RecTools every item but each eval user's test item, and a
# get_val_mask_func marking each eval user's last one (our valid item), so RecTools trains on our
# training parts and validates on our valid targets. RecTools then drops users with fewer than 2
# training items (train_min_user_interactions=2) from training and from its own validation loader (we
# keep them as eval users; they have no training pair either way), keeps only the last max_len + 1
# training items of each user (our all-positions batches see the same window), and knows only the
# items in what is left: the others have no embedding, are never ranked, and as a target are a miss.
def rectools_known_items(dataset, max_len: int) -> np.ndarray:
    """(I+1,) bool: the items RecTools's SASRec gets an embedding for (index 0 stays False)."""
    starts, ends = dataset.offsets[:-1], dataset.train_ends()
    keep = ends - starts >= 2
    starts = np.maximum(starts[keep], ends[keep] - (max_len + 1))
    ends = ends[keep]
    lens = ends - starts
    flat = np.arange(lens.sum(), dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
    known = np.zeros(dataset.num_items + 1, dtype=bool)
    known[dataset.items[flat]] = True
    return known


def split_differences(dataset, max_len: int = DEFAULT_PARAMS["max_len"]) -> dict:
    """Counts of users and items where RecTools's view of the split differs from ours (see above)."""
    lens = dataset.lengths()
    known = rectools_known_items(dataset, max_len)
    unknown_valid = ~known[dataset.items[dataset.target_index("valid")]]
    unknown_test = ~known[dataset.items[dataset.target_index("test")]]
    three = lens[dataset.eval_users()] == 3
    return {
        "users_below_3_items": int((lens < 3).sum()),
        "users_with_3_items": int((lens == 3).sum()),
        "items_unknown_to_rectools": int(dataset.num_items - known[1:].sum()),
        "valid_targets_unknown_to_rectools": int(unknown_valid.sum()),
        "test_targets_unknown_to_rectools": int(unknown_test.sum()),
        # recarch's eval users that RecTools's own validation loader leaves out
        "valid_users_outside_rectools_val": int((unknown_valid | three).sum()),
        "note": "users with 3 items: trained on by neither, absent from RecTools's own val loader but "
                "evaluated by the runner; items outside every (max_len+1)-window of a training part "
                "are unknown to RecTools",
    }


def resolve_params(params: Optional[dict] = None) -> dict:
    """DEFAULT_PARAMS overridden by ``params``; unknown keys are an error naming the nearest key."""
    from recarch.registry import suggest

    merged = dict(DEFAULT_PARAMS)
    for key, value in (params or {}).items():
        if key not in DEFAULT_PARAMS:
            raise KeyError(f"rectools_ref params: unknown key {key!r}{suggest(key, DEFAULT_PARAMS)}; "
                           f"expected one of {', '.join(DEFAULT_PARAMS)}")
        merged[key] = value
    if merged["monitor"] not in MONITORS:
        raise ValueError(f"rectools_ref params: monitor: expected one of {', '.join(MONITORS)}, "
                         f"found {merged['monitor']!r}")
    if merged["loss"] not in LOSSES:
        raise ValueError(f"rectools_ref params: loss: expected one of {', '.join(LOSSES)}, found {merged['loss']!r}")
    for key in POSITIVE_INTS:
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"rectools_ref params: {key}: expected an integer >= 1, found {value!r}")
    for key in ("patience", "limit_train_batches", "limit_val_batches"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"rectools_ref params: {key}: expected an integer >= 0, found {value!r}")
    if merged["n_factors"] % merged["n_heads"]:
        raise ValueError(f"rectools_ref params: n_factors ({merged['n_factors']}) must be divisible by "
                         f"n_heads ({merged['n_heads']})")
    if isinstance(merged["time_limit_s"], bool) or not isinstance(merged["time_limit_s"], (int, float)) \
            or merged["time_limit_s"] < 0:
        raise ValueError(f"rectools_ref params: time_limit_s: expected a number >= 0, found {merged['time_limit_s']!r}")
    if not 0.0 <= float(merged["dropout"]) < 1.0 or float(merged["lr"]) <= 0.0:
        raise ValueError(f"rectools_ref params: expected 0 <= dropout < 1 and lr > 0, found "
                         f"{merged['dropout']!r} and {merged['lr']!r}")
    return merged


def run_rectools(python: str | Path, interactions: str | Path, dataset_summary: dict,
                 params: Optional[dict] = None, out_json: str | Path = WORK / "rectools.json",
                 run_dir: Optional[str | Path] = None, meta: Optional[dict] = None) -> dict:
    """Train and test RecTools's SASRecModel on the ``interactions`` file; return the result.

    The result (also written to ``out_json``) has ``valid_curve`` [{epoch, seconds, ndcg@10, recall@10,
    loss, ...}], ``best_epoch``, ``best_valid_ndcg@10``, ``seconds_to_best``, ``total_seconds``,
    ``seconds_per_epoch`` and ``test`` {recall@K, mrr@K, ndcg@K}."""
    p = resolve_params(params)
    # One folder per call: runs launched side by side must not share job.json or logs.
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir = Path(run_dir) if run_dir else WORK / "rectools_runs" / f"{dataset_summary['name']}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    out_json = Path(out_json).resolve()
    job = {
        "interactions": str(Path(interactions).resolve()),
        "num_users": int(dataset_summary["users"]),
        "num_items": int(dataset_summary["items"]),
        "threads": int(p["threads"]),
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
    with open(log_path, "w") as log:
        proc = subprocess.run([str(python), str(RUNNER), str(job_path.resolve())], cwd=run_dir,
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"RecTools runner failed (exit {proc.returncode}), log {log_path}:\n{tail}")
    return json.loads(out_json.read_text())


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--venv", default=str(WORK / "rectools-venv"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help=f"override a param ({', '.join(DEFAULT_PARAMS)}); value parsed as JSON")
    for flag, key in [("--epochs", "epochs"), ("--patience", "patience"), ("--n-factors", "n_factors"),
                      ("--n-blocks", "n_blocks"), ("--n-heads", "n_heads"), ("--max-len", "max_len"),
                      ("--negatives", "negatives"), ("--batch-size", "batch_size"),
                      ("--eval-batch-size", "eval_batch_size"), ("--threads", "threads"), ("--seed", "seed"),
                      ("--limit-train-batches", "limit_train_batches"),
                      ("--limit-val-batches", "limit_val_batches")]:
        ap.add_argument(flag, dest=key, type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--dropout", type=float, default=None)
    ap.add_argument("--loss", default=None, help=" | ".join(LOSSES))
    ap.add_argument("--monitor", default=None, help=" | ".join(MONITORS))
    args = ap.parse_args(argv)

    params = {k: getattr(args, k) for k in DEFAULT_PARAMS if getattr(args, k, None) is not None}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--set {item!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    try:
        params = resolve_params(params)  # fail on a typo before the slow steps
    except (KeyError, ValueError) as err:
        ap.error(str(err).strip('"'))
    from recarch.data import get_dataset

    dataset = get_dataset(args.dataset, data_dir=args.data_dir)
    python = ensure_rectools_venv(args.venv)
    interactions = write_interactions(dataset, WORK / "rectools_data" / f"recarch-{args.dataset}.csv")
    out = Path(args.out) if args.out else WORK / f"rectools_{args.dataset}.json"
    meta = {"dataset": dataset.summary(), "split_differences": split_differences(dataset, params["max_len"])}
    result = run_rectools(python, interactions, dataset.summary(), params, out, meta=meta)

    curve = result["valid_curve"]
    print(f"RecTools {result['rectools_version']} SASRecModel on {args.dataset}, {result['threads']} "
          f"thread(s), {result['epochs_run']} epochs (stopped by {result['stopped_by']})")
    for row in curve:
        print(f"  epoch {row['epoch']:3d}  {row['seconds']:8.1f} s  loss {row['loss']:.4f}  "
              f"valid NDCG@10 {row['ndcg@10']:.4f}  Recall@10 {row['recall@10']:.4f}")
    print(f"best valid {params['monitor']} {result['best_valid_' + params['monitor']]:.4f} at epoch "
          f"{result['best_epoch']}, {result['seconds_to_best']:.1f} s; total {result['total_seconds']:.1f} s, "
          f"{result['seconds_per_epoch']:.1f} s/epoch (train only); "
          f"{result['seconds_per_train_batch']:.2f} s/training batch, a whole epoch with validation "
          f"~{result['seconds_per_full_epoch_estimate']:.0f} s")
    test = result["test"]
    print("test " + "  ".join(f"{k} {test[k]:.4f}" for k in ("recall@10", "mrr@10", "ndcg@10")))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
