"""iHAS benchmark: per data set and backbone, the full-dimension model, the AutoDim-like model (one
searched dimension per field for all instances), the uniform-width model at iHAS's budget and iHAS
(search → cluster → retrain, routed ensemble), with test AUC / log loss, embedding parameters (ensemble
total and per instance) and the clusters.
With ``--seeds N`` every backbone is run for N seeds: the detailed row is the first seed's, the targets
are judged on the means, with Welch's t-test of iHAS against the full-dimension model.

Writes ``benchmarks/results/ihas-<dataset>[-<tag>].json``; ``benchmarks/render_ihas.py`` renders it.
Example: ``python benchmarks/bench_ihas.py --datasets frappe ml-100k-ctr --backbones deepfm dcnv2 dlrm --threads 1``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from recarch import config as cfglib
from recarch.cost import machine_info
from recarch.io import write_json_atomic
from recarch.ihas.job import load_ihas_config, run_ihas
from recarch.reproduce.stats import welch_t_test

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
METHODS = ("full", "autodim", "uniform", "ihas")


def row(summary: dict) -> dict:
    """One backbone's numbers, from a run's summary.json."""
    out = {"backbone": summary["backbone"], "run_dir": summary["run_dir"], "methods": {}}
    full = summary["methods"]["full"]
    for name in METHODS:
        m = summary["methods"][name]
        out["methods"][name] = {
            "valid": {k: m["valid"][k] for k in ("auc", "logloss")}, "test": {k: m["test"][k] for k in ("auc", "logloss")},
            "embedding_params": m["embedding_params"], "embedding_params_vs_full": m["embedding_params"] / full["embedding_params"],
            "params": m["params"], "flops_per_sample": m["flops_per_sample"],
            "inference_us_per_sample": m.get("inference_us_per_sample"),
            "active_dims_per_instance": m["active_dims_per_instance"],
        }
    ihas, target = summary["methods"]["ihas"], out["methods"]["ihas"]
    target.update({k: ihas[k] for k in ("embedding_params_per_instance", "gate_embedding_params", "group_embedding_params",
                                        "gate_params")})
    target["embedding_params_per_instance_vs_full"] = ihas["embedding_params_per_instance"] / full["embedding_params"]
    out["autodim_dims"] = summary["methods"]["autodim"]["dims"]
    out["uniform_width"] = summary["methods"]["uniform"]["width"]
    out["clusters"] = {k: v for k, v in summary["clusters"].items()}
    out["search"] = summary["search"]
    out["timings"] = summary["timings"]
    auc_ok = ihas["test"]["auc"] >= full["test"]["auc"]
    out["targets"] = {"auc_ge_full": auc_ok, "auc_minus_full": ihas["test"]["auc"] - full["test"]["auc"],
                      "per_instance_le_half": target["embedding_params_per_instance_vs_full"] <= 0.5,
                      "total_le_half": target["embedding_params_vs_full"] <= 0.5}
    out["targets"]["met_per_instance"] = auc_ok and out["targets"]["per_instance_le_half"]
    out["targets"]["met_total"] = auc_ok and out["targets"]["total_le_half"]
    return out


def seed_stats(rows: list) -> dict:
    """Over one backbone's seeds: per method, test AUC / log loss and embedding parameters × full as
    [mean, std]; Welch's t-test of iHAS's test AUC against the full model's; targets judged on the means."""
    def ms(values):
        values = list(values)
        return [statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0]

    out = {"seeds": [r["seed"] for r in rows], "methods": {}}
    for name in METHODS:
        runs = [r["methods"][name] for r in rows]
        out["methods"][name] = {"test_auc": ms(m["test"]["auc"] for m in runs),
                                "test_logloss": ms(m["test"]["logloss"] for m in runs),
                                "embedding_params_vs_full": ms(m["embedding_params_vs_full"] for m in runs)}
    out["methods"]["ihas"]["embedding_params_per_instance_vs_full"] = ms(
        r["methods"]["ihas"]["embedding_params_per_instance_vs_full"] for r in rows)
    auc = {name: [r["methods"][name]["test"]["auc"] for r in rows] for name in METHODS}
    out["ihas_vs_full"] = welch_t_test(auc["full"], auc["ihas"])
    out["autodim_vs_full"] = welch_t_test(auc["full"], auc["autodim"])
    out["uniform_vs_full"] = welch_t_test(auc["full"], auc["uniform"])
    m = out["methods"]
    auc_ok = m["ihas"]["test_auc"][0] >= m["full"]["test_auc"][0]
    out["targets"] = {"auc_ge_full": auc_ok, "auc_minus_full": m["ihas"]["test_auc"][0] - m["full"]["test_auc"][0],
                      "met_per_instance": auc_ok and m["ihas"]["embedding_params_per_instance_vs_full"][0] <= 0.5,
                      "met_total": auc_ok and m["ihas"]["embedding_params_vs_full"][0] <= 0.5}
    return out


def run_one(dataset: str, backbone: str, seed: int, presets: list, args) -> dict:
    """One (dataset, backbone, seed) run's summary; with ``--reuse`` a finished run folder is read back
    and an interrupted one resumed."""
    run_dir = HERE / ".work" / "ihas" / f"{dataset}-{backbone}-seed{seed}{suffix(args.tag)}"
    if args.reuse and (run_dir / "summary.json").exists():
        return json.loads((run_dir / "summary.json").read_text())
    cfg = load_ihas_config(presets, [f"data.dataset={dataset}", f"model.name={backbone}",
                                     f"search.seed={seed}", f"retrain.seed={seed}",
                                     f"search.threads={args.threads}", f"retrain.threads={args.threads}",
                                     f"cost.threads={args.threads}", "baselines=true", *args.set])
    return run_ihas(cfg, args.data_dir, run_dir, echo=not args.quiet, resume=args.reuse)


def suffix(tag: str) -> str:
    return f"-{tag}" if tag else ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["frappe"])
    ap.add_argument("--backbones", nargs="+", default=["deepfm", "dcnv2", "dlrm"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--seeds", type=int, default=1, help="run every backbone for this many seeds from --seed")
    ap.add_argument("--reuse", action="store_true", help="reuse runs already finished in benchmarks/.work/ihas, resume interrupted ones")
    ap.add_argument("--config", action="append", default=None, metavar="PRESET.yaml",
                    help="iHAS preset(s) (default configs/ihas-quick.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="overrides for every run")
    ap.add_argument("--tag", default="", help="names the runs and the result (ihas-<dataset>-<tag>.json), "
                    "e.g. for a --set variant")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    presets = args.config or [str(ROOT / "configs" / "ihas-quick.yaml")]
    torch.set_num_threads(args.threads)
    machine = machine_info(args.threads)  # the commit the runs start from
    for dataset in args.datasets:
        started = time.perf_counter()
        rows = []
        for backbone in args.backbones:
            seeds = [{**row(run_one(dataset, backbone, seed, presets, args)), "seed": seed}
                     for seed in range(args.seed, args.seed + args.seeds)]
            rows.append({**seeds[0], "per_seed": seeds, "seed_stats": seed_stats(seeds)} if len(seeds) > 1 else seeds[0])
            print(f"{dataset} {backbone}: iHAS AUC " + ", ".join(f"{r['methods']['ihas']['test']['auc']:.4f}" for r in seeds)
                  + " vs full " + ", ".join(f"{r['methods']['full']['test']['auc']:.4f}" for r in seeds), flush=True)
        config = cfglib.to_dict(load_ihas_config(presets, [f"data.dataset={dataset}", *args.set]))
        result = {"dataset": dataset, "seed": args.seed, "seeds": args.seeds,
                  "command": "python benchmarks/bench_ihas.py " + " ".join(sys.argv[1:] if argv is None else argv),
                  "machine": machine, "presets": [str(Path(p)) for p in presets],
                  "overrides": args.set, "tag": args.tag, "config": config, "rows": rows,
                  "wall_seconds": time.perf_counter() - started}
        out = Path(args.out_dir) / f"ihas-{dataset}{suffix(args.tag)}.json"
        write_json_atomic(out, result)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
