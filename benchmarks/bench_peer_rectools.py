"""recarch's SASRec against RecTools's SASRecModel, side by side in the same run, same settings.

Both train on the same leave-one-out split (``rectools_ref`` writes our data for RecTools's own
virtualenv) with the SASRec+SS settings of ``configs/sasrec-ss.yaml``: width 64, 1 block, 1 head,
dropout 0.2, N 50, sampled softmax over 256 negatives, Adam 1e-3, batch 128, one thread each, at the
same time on the same machine (so each sees the other's load). Reports seconds per epoch, the wall
time each needs to reach RecTools's best validation NDCG@10, and both test NDCG@10.

RecTools may be stopped by ``--rectools-minutes`` before its patience runs out (its per-position
negatives cost ~2 s a batch on one CPU thread); the result then says ``capped`` and RecTools's best is
the best it reached in that time. Writes ``benchmarks/results/peer-rectools-<dataset>.json``.
Example: ``python benchmarks/bench_peer_rectools.py --dataset beauty --rectools-minutes 60``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from recarch import run
from recarch.cost import machine_info
from recarch.io import write_json_atomic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import rectools_ref  # noqa: E402
from bench_sota import recipe_files, seed_config, seed_row, train_seed  # noqa: E402


def rectools_params(cfg: run.RunConfig, epochs: int) -> dict:
    """RecTools's SASRecModel settings equal to our recipe ``cfg``."""
    m, t = cfg.model, cfg.train
    return {"n_factors": m.hidden_size, "n_blocks": m.n_layers, "n_heads": m.n_heads, "dropout": m.dropout,
            "max_len": m.max_len, "negatives": t.num_negatives, "lr": t.lr, "batch_size": t.batch_size,
            "epochs": epochs, "patience": t.patience, "seed": t.seed, "threads": 1, "monitor": t.valid_metric,
            # RecTools's own validation-loss pass (a training-sized forward every epoch) left at one
            # batch: we time training plus the full-ranking validation both sides compute
            "limit_val_batches": 1}


def run_peer(dataset: str, cfg: run.RunConfig, epochs: int, deadline_s: float, data_dir, out: Path) -> dict:
    data = run.load_dataset(cfg, data_dir)
    python = rectools_ref.ensure_rectools_venv()
    path = rectools_ref.write_interactions(data, rectools_ref.WORK / "rectools_data" / f"{dataset}.csv")
    params = {**rectools_params(cfg, epochs), "time_limit_s": deadline_s}
    return rectools_ref.run_rectools(python, path, data.summary(), params, out,
                                     meta={"split_differences": rectools_ref.split_differences(data, cfg.model.max_len)})


def seconds_to_reach(curve, score: float):
    """Seconds at the first epoch whose validation score reaches ``score`` (None: never)."""
    return next((seconds for _, seconds, value in curve if value >= score), None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="beauty")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default="configs/sasrec-ss.yaml")
    ap.add_argument("--rectools-epochs", type=int, default=200)
    ap.add_argument("--rectools-minutes", type=float, default=60.0, help="wall-time cap on RecTools's training")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    files = recipe_files(args.dataset, args.config)
    cfg = seed_config(files, args.dataset, args.seed, [])
    folder = HERE / ".work" / "peer" / f"{args.dataset}-seed{args.seed}"
    if folder.exists():  # a fresh run each time: the two sides must share the machine's load
        raise SystemExit(f"{folder} exists; remove it to rerun the side-by-side measurement")
    started = time.time()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        ours_job = pool.submit(train_seed, files, args.dataset, args.seed, [], str(folder), args.data_dir)
        peer_job = pool.submit(run_peer, args.dataset, cfg, args.rectools_epochs, args.rectools_minutes * 60,
                               args.data_dir, rectools_ref.WORK / f"rectools-{args.dataset}.json")
        ours_job.result()
        peer = peer_job.result()
    ours = seed_row(args.seed, folder, cfg.train.patience, cfg.train.valid_metric)
    peer_best = peer["best_valid_ndcg@10"]
    reach = seconds_to_reach(ours["valid_curve"], peer_best)
    result = {
        "benchmark": "peer-rectools", "dataset": args.dataset, "seed": args.seed,
        "settings": rectools_params(cfg, args.rectools_epochs),
        "ours": ours,
        "rectools": {**peer, "capped": peer["stopped_by"] != "patience"},
        "comparison": {
            "seconds_per_epoch": {"ours": ours["seconds_per_epoch"] + ours["valid_seconds_per_epoch"],
                                  "rectools": peer["total_seconds"] / max(peer["epochs_run"], 1)},
            "rectools_best_valid_ndcg@10": peer_best,
            "seconds_to_rectools_best": {"ours": reach, "rectools": peer["seconds_to_best"]},
            "time_ratio": reach / peer["seconds_to_best"] if reach is not None else None,
            "test_ndcg@10": {"ours": ours["test_full_ndcg@10"], "rectools": peer["test"]["ndcg@10"]},
            "test_recall@10": {"ours": ours["test_full_recall@10"], "rectools": peer["test"]["recall@10"]},
        },
        "config": json.loads(json.dumps(run.cfglib.to_dict(cfg))),
        "command": "python benchmarks/bench_peer_rectools.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(1), "wall_seconds": time.time() - started,
    }
    path = Path(args.out_dir) / f"peer-rectools-{args.dataset}.json"
    write_json_atomic(path, result)
    c = result["comparison"]
    print(f"{args.dataset}: s/epoch ours {c['seconds_per_epoch']['ours']:.1f} vs RecTools "
          f"{c['seconds_per_epoch']['rectools']:.1f}; test NDCG@10 {c['test_ndcg@10']['ours']:.4f} vs "
          f"{c['test_ndcg@10']['rectools']:.4f}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
