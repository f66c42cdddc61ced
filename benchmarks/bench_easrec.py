"""EASRec benchmark: the searched model vs the hand-sized SASRec (same attention, same protocol),
plus the gate ablation (the paper's Table V) and a λ sweep (its Fig. 4).

Writes ``benchmarks/results/easrec-<dataset>.json``; ``benchmarks/render.py`` renders it.
Example: ``python benchmarks/bench_easrec.py --datasets ml-100k [--part main|gates|lambda] [--seeds 3]``.
Each dataset runs with its preset in ``configs/`` (capped epochs sized for a 2-core CPU); ``--set``
overrides it. With ``--seeds N`` the main comparison is repeated for seeds seed … seed+N−1. A run with other
settings is named with ``--variant NAME`` (its own work folders and ``easrec-<dataset>-<attention>-NAME.json``),
e.g. ``--variant converged --set retrain.epochs=400 --set retrain.patience=20``. ``--preset FILE`` replaces
the dataset's preset, e.g. the tuned recipe's search (issue 24):
``--datasets beauty --preset configs/easrec-sota.yaml --variant sota --seed 0 --seeds 3 --parallel 2 --threads 1``.
``--baseline-runs`` takes the tuned model from bench_sota.py's seed runs of the same recipe (checked
setting by setting) rather than training it again; its cost is measured again in the search's run.
With ``--reuse`` a finished seed is kept and an unfinished one resumes from its checkpoints, so a long
benchmark can be added to one session at a time.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from recarch import config as cfglib
from recarch.cost import machine_info
from recarch.io import write_json_atomic
from recarch.run_status import open_run
from recarch.search.job import load_search_config, search

HERE = Path(__file__).resolve().parent
PRESETS = {"ml-100k": "configs/easrec-quick.yaml", "ml-1m": "configs/easrec-ml-1m-cpu.yaml",
           "gowalla-checkins": "configs/easrec-gowalla-checkins-cpu.yaml",
           "amazon-games": "configs/easrec-amazon-games-cpu.yaml"}
LAMBDAS = [0.01, 0.05, 0.1, 0.5, 1.0]


def one(dataset: str, args, tag: str, sets: list, seed: int | None = None) -> dict:
    torch.set_num_threads(args.threads)  # also in a pool's child process
    preset = [args.preset] if args.preset else [HERE.parent / PRESETS[dataset]] if dataset in PRESETS else []
    seed = args.seed if seed is None else seed
    cfg = load_search_config(preset, [f"data.dataset={dataset}", f"train.seed={seed}", f"retrain.seed={seed}",
                                      f"train.threads={args.threads}", f"retrain.threads={args.threads}",
                                      "train.progress=false", "retrain.progress=false", *args.set, *sets])
    if args.baseline_runs and "baseline=false" not in sets:
        source = Path(args.baseline_runs.format(dataset=dataset, seed=seed))
        if not (source / "metrics.json").exists():
            raise SystemExit(f"--baseline-runs: no finished run at {source}")
        cfg = replace(cfg, baseline_run=str(source.resolve()))
    run_dir = HERE / ".work" / "easrec" / f"{dataset}-{tag}"
    if args.search_from and not (run_dir / "config.yaml").exists():
        adopt_search(cfg, HERE / ".work" / "easrec" / f"{dataset}-{tag.replace(args.variant, args.search_from, 1)}", run_dir)
    resume = (args.reuse or bool(args.search_from)) and (run_dir / "config.yaml").exists()
    # keys added to the config since the run started read as their defaults
    if resume and cfglib.to_dict(load_search_config([run_dir / "config.yaml"])) != cfglib.to_dict(cfg):
        raise SystemExit(f"{run_dir} holds a run with other settings; remove it or drop --reuse")
    if resume and (run_dir / "summary.json").exists():  # a finished run of an earlier invocation
        summary = json.loads((run_dir / "summary.json").read_text())
        summary.update(wall_seconds=None, reused=True)
    else:
        started = time.perf_counter()
        summary = search(cfg, data_dir=args.data_dir, run_dir=run_dir, echo=not args.quiet, resume=resume)
        summary.update(wall_seconds=time.perf_counter() - started, resumed=resume)  # this invocation's part
    summary["settings"] = sets
    arch = json.loads((run_dir / "arch.json").read_text()) if (run_dir / "arch.json").exists() else {}
    if arch.get("path_scores"):  # derive_by validation: every path's score on the supernet's weights
        summary["path_scores"] = arch["path_scores"]
    history = run_dir / "search" / "trajectory.json"
    if history.exists():  # how the search phase ended: a patience stop, or the epoch cap
        rows = json.loads(history.read_text())
        metric = f"valid_{cfg.train.valid_metric}"
        best = max(rows, key=lambda h: h.get(metric, float("-inf")))["epoch"] if metric in rows[0] else None
        capped = len(rows) >= cfg.train.epochs and (best is None or len(rows) - best < cfg.train.patience)
        summary["search_phase"] = {"epochs_run": len(rows), "best_epoch": best, "stopped_by": "cap" if capped else "patience"}
    if (run_dir / "search" / "candidates.json").exists():  # strategy elastic: every candidate's inherited score
        summary["candidates"] = json.loads((run_dir / "search" / "candidates.json").read_text())
    return summary


RETRAIN_ONLY = ("distill",)  # settings that leave phases 1-3 (search, derive, baseline) as they were


def adopt_search(cfg, source: Path, run_dir: Path) -> None:
    """Start ``run_dir`` from ``source``'s finished search, derive and baseline (``--search-from``), so that
    only the derived model's retrain runs under the settings that differ (``RETRAIN_ONLY``)."""
    if not (source / "arch.json").exists() or not (source / "baseline" / "metrics.json").exists():
        raise SystemExit(f"--search-from: {source} has no finished search and baseline (arch.json, baseline/metrics.json)")
    theirs, ours = (cfglib.to_dict(c) for c in (load_search_config([source / "config.yaml"]), cfg))
    differ = sorted(k for k in set(theirs) | set(ours) if k not in RETRAIN_ONLY and theirs.get(k) != ours.get(k))
    if differ:
        raise SystemExit(f"--search-from: {source} searched with other settings ({', '.join(differ)})")
    scratch = run_dir.with_name(run_dir.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(source, scratch, ignore=lambda folder, names: ["retrain", "summary.json", "status.json"]
                    if Path(folder) == source else [])
    open_run(scratch, cfglib.to_dict(cfg))
    scratch.rename(run_dir)


def ratios(summary: dict) -> dict:
    """The first derived model against the baseline (the last row); with budgets, also every budget's."""
    out = row_ratios(summary["rows"][0], summary["rows"][-1], summary["search_seconds"])
    if len(summary["rows"]) > 2:
        out["per_budget"] = [{"budget": r["budget"], **row_ratios(r, summary["rows"][-1], summary["search_seconds"])}
                             for r in summary["rows"][:-1]]
    return out


def row_ratios(ours: dict, base: dict, search_seconds: float) -> dict:
    return {
        "pop100_ndcg@10_relative": ours["pop100_ndcg@10"] / base["pop100_ndcg@10"] - 1,
        "full_ndcg@10_relative": ours["full_ndcg@10"] / base["full_ndcg@10"] - 1,
        "flops_fraction": ours["flops_per_sequence"] / base["flops_per_sequence"],
        "inference_speedup": base["inference_seconds"] / ours["inference_seconds"],
        "memory_fraction": ours["peak_memory_mb"] / base["peak_memory_mb"] if base["peak_memory_mb"] else None,
        "search_plus_retrain_over_sasrec": (search_seconds + ours["train_seconds"]) / base["train_seconds"],
    }


def chosen_arch(summary: dict) -> dict:
    """The searched architecture: EASRec's {widths, candidate, depth, …}, or an elastic space's
    architecture (random search in it, or the first budget's of an elastic search)."""
    arch = summary.get("arch") or summary["rows"][0]["arch"]
    return arch.get("arch", arch)


def seed_summary(runs: list) -> dict:
    """Per seed: the chosen architecture, both models' NDCG@10 and the ratios; mean ± std of each ratio."""
    per_seed = [{"seed": r["seed"], "arch": chosen_arch(r),
                 "ndcg@10": {row["model"]: {"pop100": row["pop100_ndcg@10"], "full": row["full_ndcg@10"]}
                             for row in r["rows"]},
                 "stopped": {row["model"]: [row.get("stopped_by"), row.get("best_epoch"), row.get("epochs_run")]
                             for row in r["rows"]},
                 "search_phase": r.get("search_phase"), "ratios": r["ratios"]} for r in runs]
    keys = [k for k, v in runs[0]["ratios"].items() if isinstance(v, float)]
    stats = {k: [statistics.mean(r["ratios"][k] for r in runs), statistics.stdev(r["ratios"][k] for r in runs)]
             for k in keys}
    return {"per_seed": per_seed, "ratios_mean_std": stats}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["ml-100k"])
    ap.add_argument("--attention", default="softmax", choices=["softmax", "linear"])
    ap.add_argument("--part", choices=["main", "gates", "lambda"], default="main",
                    help=f"main: EASRec vs SASRec; gates: 2 / 1 / 0 (Table V); lambda: λ in {LAMBDAS} (Fig. 4)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--seeds", type=int, default=1, help="repeat the main comparison for this many seeds")
    ap.add_argument("--reuse", action="store_true",
                    help="keep runs finished in benchmarks/.work/easrec and resume unfinished ones")
    ap.add_argument("--preset", help="search preset for every dataset (default: each dataset's in configs/)")
    ap.add_argument("--baseline-runs", metavar="PATTERN",
                    help="take the hand-sized model from these finished runs of the same settings instead of "
                         "training it, e.g. 'benchmarks/.work/sota/sota-{dataset}/seed{seed}' (bench_sota.py's)")
    ap.add_argument("--parallel", type=int, default=1, help="runs (dataset × seed) trained at once, each in its own process")
    ap.add_argument("--variant", default="", help="name of a main comparison with other settings (--set)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--search-from", metavar="VARIANT",
                    help="take each run's search, derive and baseline from the finished runs of this variant and "
                         "retrain only (its settings may differ in distill alone), e.g. --variant oneshot-sota-distill "
                         "--search-from oneshot-sota --set distill.teacher=baseline")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.search_from and not args.variant:
        ap.error("--search-from needs --variant (the retrained runs' own name)")
    torch.set_num_threads(args.threads)
    attention = [f"model.attention={args.attention}"]
    seeds = range(args.seed, args.seed + args.seeds)
    tags = [f"{args.attention}-main" + (f"-{args.variant}" if args.variant else "") +
            ("" if seed == args.seed else f"-seed{seed}") for seed in seeds]
    with ProcessPoolExecutor(args.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        # every (dataset, seed) of the main comparison queued at once, so no process waits for a dataset
        main_runs = {dataset: [pool.submit(one, dataset, args, tag, attention, seed) for tag, seed in zip(tags, seeds)]
                     for dataset in args.datasets} if args.part == "main" else {}
        for dataset in args.datasets:
            result = {"benchmark": "easrec", "dataset": dataset, "seed": args.seed, "attention": args.attention,
                      "command": "python benchmarks/bench_easrec.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                      "machine": machine_info(args.threads), "variant": args.variant, "overrides": args.set}
            if args.part == "main":
                runs = [{**job.result(), "seed": seed, "ratios": ratios(job.result())}
                        for job, seed in zip(main_runs[dataset], seeds)]
                result["main"] = runs[0]
                if len(runs) > 1:
                    result["seeds"] = seed_summary(runs)
            elif args.part == "gates":
                result["gates"] = [one(dataset, args, f"{args.attention}-gates{g}", attention + [f"space.gates={g}", "baseline=false"])
                                   for g in (2, 1, 0)]
            else:
                result["lambda"] = [one(dataset, args, f"{args.attention}-lam{lam}", attention + [f"architect.lam={lam}", "baseline=false"])
                                    for lam in LAMBDAS]
            suffix = ("" if args.part == "main" else f"-{args.part}") + (f"-{args.variant}" if args.variant else "")
            write_json_atomic(Path(args.out_dir) / f"easrec-{dataset}-{args.attention}{suffix}.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
