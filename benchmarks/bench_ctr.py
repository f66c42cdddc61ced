"""CTR benchmark: the hand-designed baselines (DLRM, DeepFM, DCN-v2, AutoInt), then the NASRec-style
search under a FLOPs budget of ``--budget-fraction`` × the best baseline's (by validation AUC), with and
without processing-in-memory co-design under the same hardware model, and the best baseline shrunk by
hand to the same budget (its MLP narrowed). Every model is trained at each of ``--lrs``.

With ``--baselines-only`` it trains the baselines alone (``--models`` picks some) and writes
``benchmarks/results/ctr-baselines/<dataset>.json`` with a popularity floor; ``--reuse-results`` keeps the runs
stored there (in a fresh clone, whose run folders are gone). ``--parallel N`` trains N baseline runs at a time,
each in its own process, and after the search the winners' and the hand-sized model's seeds (the search's own
retrains run on its executor, ``--search-set executor.kind=ray``). An unfinished search goes on where it stopped.
Otherwise it writes ``benchmarks/results/ctr-<dataset>-<layernorm|batchnorm>[-<tag>].json`` (the searched space's
normalisation, ``--search-set space.norm=…``; ``--tag`` names other variants, e.g. a larger space);
``benchmarks/render.py`` renders it.
Example: ``python benchmarks/bench_ctr.py --datasets frappe ml-100k-ctr --threads 1``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import shlex
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import yaml

from recarch import config as cfglib
from recarch.cost import machine_info
from recarch.cost.report import matmul_peak_gflops
from recarch.cost.flops import count_flops
from recarch.ctr.metrics import roc_auc
from recarch.ctr.models import build_ctr_model
from recarch.ctr.run import CTRRunConfig, load_ctr_config, load_data, train_ctr
from recarch.ctr.retrain import retrain_config
from recarch.ctr.search import CTRSearchConfig, load_search_config, search_ctr
from recarch.ctr.supernet_training import one_test_row
from recarch.ctr.table import CTRData
from recarch.io import write_json_atomic
from recarch.reproduce.stats import mean_std, welch_t_test

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASELINES = ["dlrm", "deepfm", "dcnv2", "autoint"]


def baseline(dataset: str, name: str, seed: int, lr: float, args, mlp: Optional[List[int]] = None) -> dict:
    """One baseline run; ``mlp`` replaces the preset's MLP widths (the hand-sized row)."""
    sets = [f"data.dataset={dataset}", f"model.name={name}", f"train.seed={seed}", f"train.lr={lr}",
            f"train.threads={args.threads}", f"cost.threads={args.threads}", *args.set]
    tag, narrowed = ("", []) if mlp is None else ("-mlp" + "x".join(map(str, mlp)), [f"model.mlp={mlp}"])
    run_dir = Path(args.work_dir) / f"{dataset}-{name}{tag}-lr{lr:g}-seed{seed}"
    if mlp is None and not (run_dir / "metrics.json").exists() and (dataset, name, lr, seed) in args.earlier:
        return args.earlier[dataset, name, lr, seed]
    cfg = load_ctr_config([ROOT / "configs/ctr-baselines.yaml"], sets + narrowed)
    return finished(cached_train(cfg, run_dir, args), name)


def earlier_runs(dataset: str, args) -> Dict[tuple, dict]:
    """``--reuse-results``: the per-seed runs stored in ``ctr-baselines/<dataset>.json`` (``--baselines-only``),
    keyed by (dataset, model, lr, seed), for runs whose folders are gone (a fresh clone). Used only where that
    file was made with the same ``--set`` overrides and threads; each run takes its model's stored cost
    fields (FLOPs, parameters, and the speeds measured on its first seed) and, unless stored, that file's commit."""
    path = Path(args.out_dir) / "ctr-baselines" / f"{dataset}.json"
    if not args.reuse_results or not path.exists():
        return {}
    stored_result = json.loads(path.read_text())
    then = parser().parse_args(shlex.split(stored_result["command"])[2:])
    if (then.set, then.threads) != (args.set, args.threads):
        print(f"{path}: made with --set {then.set} and {then.threads} thread(s), not reused", file=sys.stderr)
        return {}
    cost_fields = ("samples_per_s", "flops_per_sample", "params", "embedding_params", "inference_us_per_sample")
    return {(dataset, row["model"], row["lr"], run["seed"]):
            {"model": row["model"], "run_dir": row["run_dir"], **{k: row[k] for k in cost_fields},
             "commit": stored_result["machine"]["git_commit"], **run}
            for row in stored_result["baselines"] for run in row["per_seed"]}


def side_by_side(calls: List[tuple], args) -> None:
    """With ``--parallel`` N > 1, runs the trainings ``calls`` ((function, *arguments) of ``baseline`` or
    ``retrain``) N at a time in their own processes (``--threads`` each), so that the same calls made
    afterwards find their runs finished; with N = 1 it leaves them to those calls."""
    if args.parallel > 1:
        with ProcessPoolExecutor(args.parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
            for done in [pool.submit(*call) for call in calls]:
                done.result()


def train_side_by_side(dataset: str, names: List[str], seeds, args) -> None:
    """The baseline runs of ``names`` × ``--lrs`` × ``seeds``, side by side."""
    side_by_side([(baseline, dataset, name, seed, lr, args) for name in names for lr in args.lrs for seed in seeds], args)


def tuned_baseline(dataset: str, name: str, seeds, args, mlp: Optional[List[int]] = None) -> dict:
    """The baseline trained with every seed at each of ``--lrs``; the learning rate with the best mean
    validation AUC is kept (as the search keeps one per candidate), and its runs are the row."""
    by_lr = {lr: aggregate([baseline(dataset, name, s, lr, args, mlp) for s in seeds]) for lr in args.lrs}
    lr = max(by_lr, key=lambda k: by_lr[k]["valid_auc"][0])
    return {**by_lr[lr], "lr": lr, "lr_valid_auc": {f"{k:g}": v["valid_auc"][0] for k, v in by_lr.items()}}


def popularity_auc(data: CTRData, field: str) -> float:
    """Test AUC of scoring each row by its ``field`` value's count of clicks in the training split alone."""
    column = data.schema.fields.index(field)
    train, test = np.asarray(data.train.cat[:, column]), np.asarray(data.test.cat[:, column])
    clicks = np.bincount(train, weights=np.asarray(data.train.label), minlength=data.schema.vocab_sizes[column])
    return roc_auc(np.asarray(data.test.label), clicks[test])


def popularity_floor(dataset: str, args, field: str = "item_id") -> Optional[dict]:
    """The floor every model must clear: ``popularity_auc`` on ``field`` (None where the dataset has none)."""
    data = load_data(load_ctr_config([ROOT / "configs/ctr-baselines.yaml"], [f"data.dataset={dataset}"]), args.data_dir)
    if field not in data.schema.fields:
        return None
    return {"field": field, "scorer": "clicks in the training split", "test_auc": popularity_auc(data, field)}


def write_baselines(dataset: str, seeds, machine: dict, peak: float, started: float, args) -> None:
    """``--baselines-only``: the hand baselines of ``--models`` over the seeds, beside the popularity floor."""
    train_side_by_side(dataset, args.models, seeds, args)
    rows = [tuned_baseline(dataset, name, seeds, args) for name in args.models]
    best = max(rows, key=lambda r: r["valid_auc"][0])
    write_json_atomic(Path(args.out_dir) / "ctr-baselines" / f"{dataset}.json", {
        "dataset": dataset, "seed": args.seed, "seeds": list(seeds), "lrs": list(args.lrs),
        "command": "python benchmarks/bench_ctr.py " + " ".join(sys.argv[1:]), "machine": machine,
        "matmul_peak_gflops": peak, "baselines": rows, "best_baseline": best["model"],
        "popularity_floor": popularity_floor(dataset, args), "wall_seconds": time.perf_counter() - started})


def hand_sized_mlp(dataset: str, name: str, budget_mflops: float, args) -> Optional[List[int]]:
    """The widest MLP (the preset's depth, one width for every layer, a multiple of 8) with which the
    baseline ``name`` fits the search's FLOPs budget: what shrinking the best hand design by hand gives."""
    cfg = load_ctr_config([ROOT / "configs/ctr-baselines.yaml"], [f"data.dataset={dataset}", f"model.name={name}", *args.set])
    data = load_data(cfg, args.data_dir)
    one = one_test_row(data)
    depth = len(cfg.model.mlp)
    for width in range(max(cfg.model.mlp) // 8 * 8, 0, -8):
        model = build_ctr_model(data.schema, replace(cfg.model, mlp=[width] * depth)).eval()
        if count_flops(model, one)["flops"] <= budget_mflops * 1e6:
            return [width] * depth
    return None


def retrain(dataset: str, search_dir: Path, winner: dict, mode: str, seed: int, args) -> dict:
    """The exported winner of ``mode`` trained from scratch with ``seed`` at its learning rate (the search's
    retrain settings): the search's own run of that seed when it retrained the winner with it."""
    same = [r for r in winner.get("per_seed", []) if r["seed"] == seed]
    if same:
        return finished(stored(Path(same[0]["run_dir"])), f"searched ({mode})")
    run_cfg = retrain_config(load_search_config([search_dir / "config.yaml"]), search_dir / f"arch-{mode}.json", seed,
                             winner.get("lr"))
    return finished(cached_train(run_cfg, search_dir / "seeds" / f"{mode}-seed{seed}", args), f"searched ({mode})")


def cached_train(cfg: CTRRunConfig, run_dir: Path, args) -> dict:
    """train_ctr, or the finished run already in ``run_dir``; an unfinished one goes on from its last
    checkpoint (so an interrupted benchmark resumes, to the same result)."""
    if (run_dir / "metrics.json").exists() and (run_dir / "cost.json").exists():
        return stored(run_dir)
    return train_ctr(cfg, args.data_dir, run_dir, resume=True, echo=not args.quiet)


def stored(run_dir: Path) -> dict:
    """A finished run's result, as ``train_ctr`` returned it."""
    return {"run_dir": str(run_dir), **json.loads((run_dir / "metrics.json").read_text())}


def finished(result: dict, name: str) -> dict:
    run_dir = Path(result["run_dir"])
    cost = json.loads((run_dir / "cost.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    seed = int(yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["seed"])
    # the commit that trained the run; runs from before status.json recorded it: the one that measured its cost
    commit = json.loads((run_dir / "status.json").read_text()).get("commit") or cost["machine"]["git_commit"]
    return {"model": name, "seed": seed, "run_dir": str(run_dir), "valid": result["valid"], "test": result["test"], "best_epoch": result["best_epoch"],
            "epochs_run": result["epochs_run"], "train_seconds": result["train_seconds"],
            "samples_per_s": float(np.mean([h["samples_per_s"] for h in history])),
            "flops_per_sample": cost["flops_per_sample"], "params": cost["params"],
            "embedding_params": cost["embedding_params"], "inference_us_per_sample": cost["inference"]["us_per_sample"],
            "commit": commit}


def variant_name(norm: str, tag: str) -> str:
    """``layernorm`` or ``batchnorm`` (the searched space's normalisation), then ``--tag``: the variant's part
    of the search folder and result names."""
    return f"{norm}norm" + (f"-{tag}" if tag else "")


def search_config(dataset: str, budget_mflops: float, args) -> CTRSearchConfig:
    return load_search_config([ROOT / "configs/ctr-search-small.yaml"],
                              [f"data.dataset={dataset}", f"train.seed={args.seed}", f"retrain.seed={args.seed}",
                               f"train.threads={args.threads}", f"cost.threads={args.threads}",
                               f"hardware={ROOT / 'configs/pim.yaml'}", f"budget_mflops={budget_mflops}",
                               f"retrain_lrs={list(args.lrs)}", *args.search_set])


def search(dataset: str, budget_mflops: float, args) -> dict:
    """The search, reused when ``--reuse-search`` finds it finished; an unfinished one of the same
    settings goes on where it stopped (supernet checkpoint, finished evolutions and retrains)."""
    cfg = search_config(dataset, budget_mflops, args)
    run_dir = Path(args.work_dir) / f"{dataset}-search-{variant_name(cfg.space.norm, args.tag)}"
    if args.reuse_search and (run_dir / "summary.json").exists():
        return {"run_dir": str(run_dir), **json.loads((run_dir / "summary.json").read_text())}
    unfinished = (run_dir / "config.yaml").exists() and not (run_dir / "summary.json").exists()
    if unfinished and yaml.safe_load((run_dir / "config.yaml").read_text()) != cfglib.to_dict(cfg):
        raise SystemExit(f"{run_dir}: an unfinished search with other settings; remove the folder to start again")
    shutil.rmtree(run_dir / "seeds", ignore_errors=True)  # the cached seed runs were of the old winners
    return search_ctr(cfg, args.data_dir, run_dir, echo=not args.quiet, resume=unfinished)


# hardware assumptions varied one at a time (overrides on the run's hardware YAML) to show which of them
# decide where the co-design search puts the operators
HARDWARE_VARIANTS = {
    "as configured": [],
    "PIM compute as fast as the host": ["pim.gflops=200"],
    "host-PIM link as cheap as PIM memory": ["link_pj_per_byte=3", "link_gbs=200"],
    "both": ["pim.gflops=200", "link_pj_per_byte=3", "link_gbs=200"],
}


def placement_effect(run_dir: Path, args) -> dict:
    """Energy and modelled latency of each mode's winner under both placements — the usual one
    (embeddings in memory) and the co-designed one — to separate the architecture's share of the
    co-design gain from the placement's; then, under each of HARDWARE_VARIANTS, the best placement of
    each winner (the architectures stay as searched) and its gain over the usual one."""
    from recarch.ctr import hardware as hw
    from recarch.ctr.supernet import NASRecNet, load_arch

    cfg = load_search_config([run_dir / "config.yaml"])
    hardware = hw.load_hardware(cfg.hardware)
    data = load_data(CTRRunConfig(data=cfg.data), args.data_dir)
    example = one_test_row(data)
    codesigned = frozenset(json.loads((run_dir / "arch-codesign.json").read_text())["placement"])
    out, sensitivity = {}, {}
    for mode in ("arch", "codesign"):
        space, arch = load_arch(str(run_dir / f"arch-{mode}.json"))
        ops = hw.network_ops(NASRecNet(data.schema, space, arch), example)
        for name, placement in (("embeddings_in_memory", hw.embeddings_in_memory(ops, hardware)),
                                ("codesigned", codesigned)):
            cost = hw.pim_cost(ops, placement, hardware)
            out[f"{mode}_arch_{name}"] = {"energy_mj": 1e3 * cost["energy_j"], "latency_ms": 1e3 * cost["latency_s"],
                                          "feasible": cost["feasible"]}
        for variant, sets in HARDWARE_VARIANTS.items():
            varied = cfglib.load(hw.HardwareConfig, [cfg.hardware], sets)
            usual = hw.pim_cost(ops, hw.embeddings_in_memory(ops, varied), varied)
            placement = hw.best_placement(ops, varied)
            best = hw.pim_cost(ops, placement, varied)
            sensitivity.setdefault(variant, {"overrides": sets})[mode] = {
                "operators_in_memory": sorted(n for n in placement if not n.startswith("emb.")),
                "operators": sum(1 for op in ops if not op.lookups),
                "energy_usual_over_best": usual["energy_j"] / best["energy_j"],
                "latency_usual_over_best": usual["latency_s"] / best["latency_s"]}
    return {**out, "sensitivity": sensitivity}


def inference_same_run(run_dirs: dict, args) -> dict:
    """CPU µs per test sample of every model, timed back to back in this process (batch 1024, the
    benchmark's threads), so that the ratios between them are not skewed by other load on the machine."""
    from recarch.cost.timing import inference_time
    from recarch.ctr.run import load_ctr_run
    from recarch.ctr.table import batches

    out = {}
    for name, run_dir in run_dirs.items():
        _, data, model = load_ctr_run(run_dir, args.data_dir)
        test = [(c, n) for c, n, _ in batches(data.test, 1024)]
        timing = inference_time(lambda b: model(*b), test, args.threads, warmup=3)
        out[name] = 1e6 * timing["seconds"] / len(data.test)
    return out


def aggregate(rows: list) -> dict:
    """Per-seed rows of one model → the first row's shape and cost, test/valid AUC and log loss as mean ± std."""
    out = dict(rows[0])
    for split in ("valid", "test"):
        for metric in ("auc", "logloss"):
            out[f"{split}_{metric}"] = mean_std([r[split][metric] for r in rows])
    out["seeds"] = [r["seed"] for r in rows]
    out["per_seed"] = [{k: r[k] for k in ("seed", "valid", "test", "best_epoch", "epochs_run", "train_seconds", "commit")}
                       for r in rows]
    return out


def same_network(run_dir: Path) -> bool:
    """Whether both modes exported the same network (then every co-design ratio is 1)."""
    from recarch.ctr.supernet import load_arch

    return load_arch(str(run_dir / "arch-arch.json"))[1].network_key() == load_arch(str(run_dir / "arch-codesign.json"))[1].network_key()


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["frappe"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42, help="first seed; seeds are seed, seed+1, …")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per model (mean ± std, Welch's t-test)")
    ap.add_argument("--reuse-search", action="store_true", help="reuse a finished search of an earlier run")
    ap.add_argument("--budget-fraction", type=float, default=0.5)
    ap.add_argument("--lrs", nargs="+", type=float, default=[1e-3, 3e-4],
                    help="learning rates tried for every baseline and every retrained candidate (best mean valid AUC kept)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="baseline overrides")
    ap.add_argument("--search-set", action="append", default=[], metavar="KEY=VALUE", help="search overrides")
    ap.add_argument("--tag", default="", help="names a search variant (folder and result file), e.g. 7blocks")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument("--work-dir", default=str(HERE / ".work" / "ctr"), help="run folders (kept: a rerun reuses them)")
    ap.add_argument("--parallel", type=int, default=1,
                    help="baseline runs, and after the search the winners' and hand-sized model's seeds, trained at "
                         "once, each in its own process")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--baselines-only", action="store_true",
                    help="train the hand baselines only (with a popularity floor) and write ctr-baselines/<dataset>.json")
    ap.add_argument("--models", nargs="+", choices=BASELINES, default=BASELINES,
                    help="with --baselines-only: these baselines (processes given different lists share the cache)")
    ap.add_argument("--reuse-results", action="store_true",
                    help="keep the baseline runs stored in ctr-baselines/<dataset>.json whose run folders are gone")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = machine_info(args.threads)  # the commit the runs start from
    for dataset in args.datasets:
        started = time.perf_counter()
        peak = matmul_peak_gflops(args.threads)
        seeds = range(args.seed, args.seed + args.seeds)
        args.earlier = earlier_runs(dataset, args)
        if args.baselines_only:
            write_baselines(dataset, seeds, machine, peak, started, args)
            continue
        train_side_by_side(dataset, BASELINES, seeds, args)
        rows = [tuned_baseline(dataset, name, seeds, args) for name in BASELINES]
        best = max(rows, key=lambda r: r["valid_auc"][0])
        budget = args.budget_fraction * best["flops_per_sample"] / 1e6
        summary = search(dataset, budget, args)
        budget = summary["budget_mflops"]  # a reused search keeps its own budget
        run_dir = Path(summary["run_dir"])
        cfg = load_search_config([run_dir / "config.yaml"])
        modes = summary["modes"]
        mlp = hand_sized_mlp(dataset, best["model"], budget, args)
        side_by_side([(baseline, dataset, best["model"], seed, lr, args, mlp) for lr in args.lrs for seed in seeds
                      if mlp is not None]
                     + [(retrain, dataset, run_dir, m["winner"], mode, seed, args) for mode, m in modes.items() for seed in seeds],
                     args)
        hand = None if mlp is None else {**tuned_baseline(dataset, best["model"], seeds, args, mlp), "mlp": mlp}
        if hand is not None:
            hand["vs_best_baseline"] = welch_t_test([r["test"]["auc"] for r in hand["per_seed"]],
                                                    [r["test"]["auc"] for r in best["per_seed"]])
        for mode, m in modes.items():
            exported = json.loads((run_dir / f"arch-{mode}.json").read_text())
            m["winner"]["placement"] = exported["placement"]
            m["seeds"] = aggregate([retrain(dataset, run_dir, m["winner"], mode, s, args) for s in seeds])
            m["vs_best_baseline"] = welch_t_test([r["test"]["auc"] for r in m["seeds"]["per_seed"]],
                                                 [r["test"]["auc"] for r in best["per_seed"]])
        arch, co = modes["arch"]["winner"], modes["codesign"]["winner"]
        arch_auc, co_auc = modes["arch"]["seeds"]["test_auc"][0], modes["codesign"]["seeds"]["test_auc"][0]
        result = {
            "dataset": dataset, "seed": args.seed, "seeds": list(seeds), "command": "python benchmarks/bench_ctr.py " + " ".join(sys.argv[1:]),
            "machine": machine, "matmul_peak_gflops": peak, "baselines": rows, "hand_sized": hand,
            "best_baseline": best["model"], "budget_fraction": args.budget_fraction, "budget_mflops": budget,
            "search": {**{k: summary[k] for k in ("supernet", "timings", "search_seconds", "space")},
                       "selection": {"top_k": cfg.top_k, "top_k_from": cfg.top_k_from, "retrain_seeds": cfg.retrain_seeds,
                                     "retrain_lrs": cfg.learning_rates(), "retrain_dropout": cfg.retrain_dropout,
                                     "hw_weight": cfg.hw_weight}},
            "modes": modes, "placement_effect": placement_effect(run_dir, args),
            "inference_us_same_run": inference_same_run(
                {**{b["model"]: Path(b["run_dir"]) for b in rows},
                 **({"hand-sized": Path(hand["run_dir"])} if hand else {}),
                 **{f"searched ({mode})": Path(m["seeds"]["run_dir"]) for mode, m in modes.items()}}, args),
            "ratios": {
                "searched_auc_minus_best": arch_auc - best["test_auc"][0],
                "searched_flops_fraction": arch["flops_per_sample"] / best["flops_per_sample"],
                "codesign_auc_minus_best": co_auc - best["test_auc"][0],
                "codesign_flops_fraction": co["flops_per_sample"] / best["flops_per_sample"],
                "energy_arch_over_codesign": arch["search"]["energy_mj"] / co["search"]["energy_mj"],
                "pim_latency_arch_over_codesign": arch["search"]["pim_latency_ms"] / co["search"]["pim_latency_ms"],
                "flops_arch_over_codesign": arch["flops_per_sample"] / co["flops_per_sample"],
                "same_network": same_network(run_dir),
                "supernet_fraction_of_peak": summary["supernet"]["train_gflops_per_s"] / peak,
            },
            "wall_seconds": time.perf_counter() - started,
        }
        out = Path(args.out_dir) / f"ctr-{dataset}-{variant_name(summary['space'].get('norm', 'layer'), args.tag)}.json"
        write_json_atomic(out, result)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
