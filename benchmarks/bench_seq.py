"""Sequential-core benchmark: SASRec (softmax and linear attention) on real datasets, against
RecBole 1.2.1's SASRec trained in the same run, and against published numbers.

Writes ``benchmarks/results/seq-<dataset>.json``; ``benchmarks/render.py`` turns them into BENCHMARKS.md.
Example: ``python benchmarks/bench_seq.py --datasets ml-100k --recbole ml-100k``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from statistics import mean

import torch
from torch.utils.flop_counter import FlopCounterMode

from recarch import run
from recarch.cost import machine_info, matmul_peak_gflops
from recarch.io import write_json_atomic
from recarch.cost.flops import attention_flop_mapping
from recarch.data import get_dataset
from recarch.data.batching import TrainBatches
from recarch.train import Trainer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import recbole_ref  # noqa: E402

# Per-dataset settings shared by ours and RecBole (RecBole's SASRec defaults, N from the dataset preset).
# ``epochs`` caps a run so the whole benchmark fits a session on 2 cores; a capped run says so in the
# table. RecBole trains one sample per prefix (~50x our work per epoch here), hence its own cap.
SETTINGS = {
    "ml-100k": {"max_len": 50, "epochs": 200, "batch_size": 128, "loss": "full_ce", "recbole_epochs": 6},
    "ml-1m": {"max_len": 200, "epochs": 12, "batch_size": 128, "loss": "full_ce", "recbole_epochs": 5},
    "amazon-games": {"max_len": 50, "epochs": 10, "batch_size": 128, "loss": "sampled_softmax", "recbole_epochs": 5},
    "gowalla-checkins": {"max_len": 100, "epochs": 100, "batch_size": 64, "loss": "full_ce", "recbole_epochs": 6},
}
MODEL = {"hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2, "dropout": 0.2, "attn_dropout": 0.2}


def bench_config(dataset: str, attention: str, threads: int, seed: int, valid_protocol: str) -> run.RunConfig:
    s = SETTINGS[dataset]
    return run.load_run_config(options={
        "data": {"dataset": dataset},
        "model": {"name": "sasrec", "attention": attention, "max_len": s["max_len"], **MODEL},
        "train": {"regime": "all_positions", "batch_size": s["batch_size"], "lr": 1e-3, "epochs": s["epochs"],
                  "loss": s["loss"], "num_negatives": 256,
                  "patience": 10, "valid_protocol": valid_protocol, "seed": seed, "threads": threads,
                  "progress": False},
        "eval": {"protocols": ["pop100", "pop100-recbole", "uni100", "full"]},
        "cost": {"threads": 1, "batch_size": 256},
        "out_dir": str(HERE / ".work" / "runs"),
    })


def training_flops_per_sequence(cfg: run.RunConfig, data_dir=None) -> float:
    """Counted FLOPs of one training step (forward + backward), per training sequence."""
    data = run.load_dataset(cfg, data_dir)
    model = run.make_model(cfg, data)
    batches = TrainBatches(data, cfg.model.max_len, cfg.train.regime, cfg.train.batch_size, cfg.train.seed)
    seq, target = next(batches.epoch(1))
    trainer = Trainer(model, batches, None, cfg.train, None, log=lambda m: None)
    with FlopCounterMode(display=False, custom_mapping=attention_flop_mapping()) as counter:
        trainer.loss(seq, target).backward()
    return counter.get_total_flops() / len(seq)


def throughput_probe(cfg: run.RunConfig, threads: int, steps: int = 6, data_dir=None) -> dict:
    """Training sequences/s over a few steps (after one warm-up step) and the fraction of the matmul
    peak they reach, measured back to back with the peak."""
    torch.set_num_threads(threads)
    data = run.load_dataset(cfg, data_dir)
    model = run.make_model(cfg, data)
    batches = TrainBatches(data, cfg.model.max_len, cfg.train.regime, cfg.train.batch_size, cfg.train.seed)
    trainer = Trainer(model, batches, None, cfg.train, None, log=lambda m: None)
    count, start = 0, None
    for i, (seq, target) in enumerate(batches.epoch(1)):
        if i == 1:
            count, start = 0, time.perf_counter()
        loss = trainer.loss(seq, target)
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()
        count += len(seq)
        if i == steps:
            break
    seq_per_s = count / (time.perf_counter() - start)
    flops = training_flops_per_sequence(cfg, data_dir)
    peak = matmul_peak_gflops(threads, size=1024)
    return {"attn_dropout": cfg.model.attn_dropout, "sequences_per_s": seq_per_s,
            "gflops": flops * seq_per_s / 1e9, "matmul_peak_gflops": peak,
            "fraction_of_peak": flops * seq_per_s / 1e9 / peak, "threads": threads}


def ours(dataset: str, attention: str, args, valid_protocol: str) -> dict:
    cfg = bench_config(dataset, attention, args.threads, args.seed, valid_protocol)
    result = run.train(cfg, data_dir=args.data_dir, echo=not args.quiet)
    history = json.loads((Path(result["run_dir"]) / "history.json").read_text())
    cost = json.loads((Path(result["run_dir"]) / "cost.json").read_text())
    train_flops = training_flops_per_sequence(cfg, args.data_dir)
    seq_per_s = mean(h["sequences_per_s"] for h in history)
    peak = matmul_peak_gflops(args.threads, size=1024)
    return {
        "model": "sasrec", "attention": attention, "regime": cfg.train.regime,
        "config": {**MODEL, **SETTINGS[dataset]}, "valid_protocol": valid_protocol, "loss": cfg.train.loss,
        "run_dir": result["run_dir"], "test": result["test"], "valid": result["valid"],
        "best_epoch": result["best_epoch"], "epochs_run": result["epochs_run"],
        "capped": result["epochs_run"] == cfg.train.epochs and result["epochs_run"] - result["best_epoch"] < 10,
        "seconds_per_epoch": mean(h["seconds"] for h in history),
        "train_seconds": result["train_seconds"],
        "valid_curve": [{"epoch": h["epoch"], "seconds": h["elapsed_s"], "ndcg@10": h[f"valid_{cfg.train.valid_metric}"]}
                        for h in history],
        "flops_per_sequence": cost["flops_per_sequence"], "params": cost["params"],
        "inference_seconds": cost["inference"]["seconds"], "inference_threads": cost["inference"]["threads"],
        "inference_batch_size": cost["inference"]["batch_size"],
        "peak_memory_mb": (cost.get("memory") or {}).get("net_mb"),
        # the same step without attention dropout, which forces SDPA's unfused path on CPU
        "probe_no_attn_dropout": throughput_probe(
            replace(cfg, model=replace(cfg.model, attn_dropout=0.0)), args.threads, data_dir=args.data_dir),
        "training": {"flops_per_sequence": train_flops, "sequences_per_s": seq_per_s,
                     "gflops": train_flops * seq_per_s / 1e9, "matmul_peak_gflops": peak,
                     "fraction_of_peak": train_flops * seq_per_s / 1e9 / peak, "threads": args.threads},
    }


def recbole(dataset: str, args) -> dict:
    data = get_dataset(dataset, data_dir=args.data_dir)
    python = recbole_ref.ensure_recbole_venv()
    name = f"recarch-{dataset}"
    folder = recbole_ref.WORK / "recbole_data"
    recbole_ref.write_atomic(data, folder, name)
    s = SETTINGS[dataset]
    params = {"epochs": s["recbole_epochs"], "stopping_step": 10, "train_batch_size": 2048, "learning_rate": 1e-3,
              "hidden_size": MODEL["hidden_size"], "inner_size": MODEL["inner_size"], "n_layers": MODEL["n_layers"],
              "n_heads": MODEL["n_heads"], "hidden_dropout_prob": MODEL["dropout"],
              "attn_dropout_prob": MODEL["attn_dropout"], "MAX_ITEM_LIST_LENGTH": s["max_len"],
              "threads": args.threads, "seed": args.seed}
    out = recbole_ref.WORK / f"recbole_{dataset}.json"
    result = recbole_ref.run_recbole(python, folder, name, params, "pop100", out,
                                     meta={"split_differences": recbole_ref.split_differences(data)})
    return result


def seconds_to_reach(curve, threshold: float):
    for row in curve:
        if row["ndcg@10"] >= threshold:
            return row["seconds"]
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-1m", "amazon-games"], choices=sorted(SETTINGS))
    ap.add_argument("--attention", nargs="+", default=["softmax", "linear"])
    ap.add_argument("--recbole", nargs="*", default=["ml-100k"], help="datasets to also train RecBole on")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for dataset in args.datasets:
        started = time.time()
        with_recbole = dataset in (args.recbole or [])
        # against RecBole, validate under RecBole's own pop100 form so the two curves are comparable
        valid_protocol = "pop100-recbole" if with_recbole else "pop100"
        result = {"benchmark": "seq", "dataset": dataset, "seed": args.seed,
                  "command": "python benchmarks/bench_seq.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  "machine": machine_info(args.threads), "runs": []}
        path = Path(args.out_dir) / f"seq-{dataset}.json"
        for attention in args.attention:
            result["runs"].append(ours(dataset, attention, args, valid_protocol))
            write_json_atomic(path.with_suffix(".partial.json"), result)  # survives a later failure
        if with_recbole:
            ref = recbole(dataset, args)
            result["recbole"] = {**ref, "epoch_cap": SETTINGS[dataset]["recbole_epochs"],
                                 "capped": len(ref["valid_curve"]) >= SETTINGS[dataset]["recbole_epochs"]}
            comparison = []
            for r in result["runs"]:
                reach = seconds_to_reach(r["valid_curve"], ref["best_valid_ndcg@10"])
                ours_test = r["test"]["pop100-recbole"]["ndcg@10"]
                comparison.append({
                    "attention": r["attention"], "test_ndcg@10_ours": ours_test,
                    "test_ndcg@10_recbole": ref["test"]["ndcg@10"],
                    "relative": ours_test / ref["test"]["ndcg@10"] - 1,
                    "seconds_to_recbole_best_ours": reach, "seconds_to_best_recbole": ref["seconds_to_best"],
                    "time_ratio": reach / ref["seconds_to_best"] if reach is not None else None,
                })
            result["comparison"] = comparison
        result["wall_seconds"] = time.time() - started
        write_json_atomic(path, result)
        path.with_suffix(".partial.json").unlink(missing_ok=True)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
