"""CTR benchmark: the hand-designed baselines (DLRM, DeepFM, DCN-v2, AutoInt), then the NASRec-style
search under a FLOPs budget of ``--budget-fraction`` × the best baseline's (by validation AUC), with and
without processing-in-memory co-design under the same hardware model.

Writes ``benchmarks/results/ctr-<dataset>.json``; ``benchmarks/render.py`` renders it.
Example: ``python benchmarks/bench_ctr.py --datasets frappe ml-100k-ctr --threads 1``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from recarch.cost import machine_info
from recarch.cost.report import matmul_peak_gflops
from recarch.ctr.run import load_ctr_config, train_ctr
from recarch.ctr.search import load_search_config, search_ctr
from recarch.io import write_json_atomic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASELINES = ["dlrm", "deepfm", "dcnv2", "autoint"]


def baseline(dataset: str, name: str, args) -> dict:
    cfg = load_ctr_config([ROOT / "configs/ctr-baselines.yaml"],
                          [f"data.dataset={dataset}", f"model.name={name}", f"train.seed={args.seed}",
                           f"train.threads={args.threads}", f"cost.threads={args.threads}", *args.set])
    result = train_ctr(cfg, args.data_dir, HERE / ".work" / "ctr" / f"{dataset}-{name}", echo=not args.quiet)
    run_dir = Path(result["run_dir"])
    cost = json.loads((run_dir / "cost.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    return {"model": name, "valid": result["valid"], "test": result["test"], "best_epoch": result["best_epoch"],
            "epochs_run": result["epochs_run"], "train_seconds": result["train_seconds"],
            "samples_per_s": float(np.mean([h["samples_per_s"] for h in history])),
            "flops_per_sample": cost["flops_per_sample"], "params": cost["params"],
            "embedding_params": cost["embedding_params"], "inference_us_per_sample": cost["inference"]["us_per_sample"]}


def search(dataset: str, budget_mflops: float, args) -> dict:
    cfg = load_search_config([ROOT / "configs/ctr-search-small.yaml"],
                             [f"data.dataset={dataset}", f"train.seed={args.seed}", f"retrain.seed={args.seed}",
                              f"train.threads={args.threads}", f"cost.threads={args.threads}",
                              f"hardware={ROOT / 'configs/pim.yaml'}", f"budget_mflops={budget_mflops}", *args.search_set])
    return search_ctr(cfg, args.data_dir, HERE / ".work" / "ctr" / f"{dataset}-search", echo=not args.quiet)


def supernet_peak_fraction(summary: dict, run_dir: Path, peak: float) -> float:
    """Training GFLOP/s of the supernet (3 × the mean forward FLOPs of the randomly drawn paths per
    sample, times samples/s) over the matmul peak."""
    history = json.loads((run_dir / "evolution-arch.json").read_text())
    population = summary["config_population"]
    mean_flops = np.mean([h["mflops"] for h in history[:population]]) * 1e6
    return 3 * mean_flops * summary["supernet"]["train_samples_per_s"] / 1e9 / peak


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["frappe"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--budget-fraction", type=float, default=0.5)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="baseline overrides")
    ap.add_argument("--search-set", action="append", default=[], metavar="KEY=VALUE", help="search overrides")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for dataset in args.datasets:
        started = time.perf_counter()
        peak = matmul_peak_gflops(args.threads)
        rows = [baseline(dataset, name, args) for name in BASELINES]
        best = max(rows, key=lambda r: r["valid"]["auc"])
        budget = args.budget_fraction * best["flops_per_sample"] / 1e6
        summary = search(dataset, budget, args)
        run_dir = Path(summary["run_dir"])
        cfg = load_search_config([run_dir / "config.yaml"])
        summary["config_population"] = cfg.evolution.population
        modes = summary["modes"]
        arch, co = modes["arch"]["winner"], modes["codesign"]["winner"]
        result = {
            "dataset": dataset, "seed": args.seed, "command": "python benchmarks/bench_ctr.py " + " ".join(sys.argv[1:]),
            "machine": machine_info(args.threads), "matmul_peak_gflops": peak, "baselines": rows,
            "best_baseline": best["model"], "budget_fraction": args.budget_fraction, "budget_mflops": budget,
            "search": {k: summary[k] for k in ("supernet", "timings", "search_seconds", "space")},
            "modes": modes,
            "ratios": {
                "searched_auc_minus_best": arch["test"]["auc"] - best["test"]["auc"],
                "searched_flops_fraction": arch["flops_per_sample"] / best["flops_per_sample"],
                "codesign_auc_minus_best": co["test"]["auc"] - best["test"]["auc"],
                "codesign_flops_fraction": co["flops_per_sample"] / best["flops_per_sample"],
                "energy_arch_over_codesign": arch["search"]["energy_mj"] / co["search"]["energy_mj"],
                "pim_latency_arch_over_codesign": arch["search"]["pim_latency_ms"] / co["search"]["pim_latency_ms"],
                "flops_arch_over_codesign": arch["flops_per_sample"] / co["flops_per_sample"],
                "supernet_fraction_of_peak": supernet_peak_fraction(summary, run_dir, peak),
            },
            "wall_seconds": time.perf_counter() - started,
        }
        out = Path(args.out_dir) / f"ctr-{dataset}.json"
        write_json_atomic(out, result)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
