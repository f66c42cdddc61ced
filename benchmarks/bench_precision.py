"""Mixed precision (``train.precision: bf16``) against fp32 on the tuned recipe, side by side.

The two runs train at the same time on the same machine (one thread each), same seed, same recipe
(``configs/sasrec-plus.yaml`` with its ml-1m file), for ``--epochs`` epochs: seconds per epoch, the
validation NDCG@10 per epoch, and the test NDCG@10 / Recall@10 of each run's best epoch. A run shorter
than the recipe's patience is **capped** and says so: the comparison is of equal epochs, not of
converged accuracy. Writes ``benchmarks/results/precision-<dataset>.json``. Example:
``python benchmarks/bench_precision.py --dataset ml-1m --epochs 15``.
"""
from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from recarch.cost import machine_info
from recarch.io import write_json_atomic

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_sota import recipe_files, seed_config, seed_row, train_seed  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default="configs/sasrec-plus.yaml")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    files = recipe_files(args.dataset, args.config)
    sets = {p: [f"train.precision={p}", f"train.epochs={args.epochs}"] for p in PRECISIONS}
    folders = {p: HERE / ".work" / "precision" / f"{args.dataset}-{p}" for p in PRECISIONS}
    for folder in folders.values():  # a fresh pair each time: the two must share the machine's load
        shutil.rmtree(folder, ignore_errors=True)
    started = time.time()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = [pool.submit(train_seed, files, args.dataset, args.seed, sets[p], str(folders[p]), args.data_dir)
                for p in PRECISIONS]
        for job in jobs:
            job.result()
    cfg = seed_config(files, args.dataset, args.seed, sets["fp32"])
    rows = {p: seed_row(args.seed, folders[p], cfg.train.patience, cfg.train.valid_metric) for p in PRECISIONS}
    result = {"benchmark": "precision", "dataset": args.dataset, "seed": args.seed, "epochs": args.epochs,
              "recipe": [str(Path(f).relative_to(HERE.parent)) for f in files], "runs": rows,
              "bf16_speedup": rows["fp32"]["seconds_per_epoch"] / rows["bf16"]["seconds_per_epoch"],
              "command": "python benchmarks/bench_precision.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": machine_info(1), "wall_seconds": time.time() - started}
    path = Path(args.out_dir) / f"precision-{args.dataset}.json"
    write_json_atomic(path, result)
    print(f"{args.dataset}: bf16 {result['bf16_speedup']:.2f}× fp32's speed per epoch; test NDCG@10 fp32 "
          f"{rows['fp32']['test_full_ndcg@10']:.4f}, bf16 {rows['bf16']['test_full_ndcg@10']:.4f}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
