"""``recarch ctr search``: train the NASRec supernet, evolve architectures (and, with a hardware model,
their processing-in-memory placement) on inherited weights, retrain the best from scratch, export.

Phases and run folder:
1. ``supernet/`` — path-sampled supernet training with the shared trainer (checkpoints, resume;
   ``recarch.ctr.supernet_training``).
2. ``evolution-<mode>.json`` — every scored candidate; ``pareto-<mode>.{json,png}``. Modes: ``arch``
   (validation log loss under the FLOPs budget; deployed with the usual placement, embedding tables in
   memory) and, with ``hardware``, ``codesign``: the same plus λ_hw · log(energy · latency) relative to
   the largest architecture, each candidate under its best placement (``hardware.best_placement``, exact
   for the model's per-operator costs up to the capacity knapsack), so the search is over architecture ×
   placement with the placement solved per architecture. A network either mode has scored is not
   evaluated again (``Measured``).
3. ``retrain/<mode>-<k>-seed<s>/`` — ``top_k`` candidates of each mode (chosen by ``top_k_from``, see
   ``recarch.ctr.selection``) retrained from scratch (ordinary CTR runs; both modes' as one batch of
   jobs for the executor), each with ``retrain_seeds``
   seeds at each of ``retrain_lrs`` (``-lr<lr>`` in the folder name unless it is ``retrain.lr``), keeping
   its learning rate with the best mean validation AUC (``recarch.ctr.retrain``); the winner has the best mean validation AUC over
   its seeds (less the search's hardware term in ``codesign`` mode), so that one lucky initialisation
   does not pick it.
4. ``arch-<mode>.json`` (space + architecture + placement + costs) and ``summary.json``.
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from recarch import config as cfglib
from recarch.cost import machine_info
from recarch.ctr import hardware as hwlib
from recarch.ctr.evolution import Scored, evolve, pareto_front
from recarch.ctr.finetune import finetune_head, finetune_rows, held_out_split
from recarch.ctr.run import CTREvaluator, CTRRunConfig, load_data
from recarch.ctr.retrain import retrain_candidates
from recarch.ctr.search_config import CTRSearchConfig, load_search_config  # noqa: F401  (the job's config)
from recarch.ctr.selection import TOP_K_SELECTORS, retrained_merit
from recarch.ctr.space import Arch, mutate, sample, shrink
from recarch.ctr.supernet import NASRecSupernet
from recarch.ctr.supernet_training import (calibrated, calibration_batches, one_test_row,
                                          supernet_throughput, train_supernet)
from recarch.ctr.table import CTRData
from recarch.io import save_figure_atomic, write_json_atomic, write_text_atomic
from recarch.run import RunLog, unique_run_dir
from recarch.run_status import open_run, recorded
from recarch.train.stopping import stopped_by

Genome = Tuple[Arch, frozenset]
MEASURED_KEYS = ("valid_logloss", "valid_auc", "params", "cpu_ms")  # a history row's part in Measured.networks


@dataclass
class Measured:
    """What scoring a network measures whatever the mode: its validation metrics, parameters and CPU
    latency (``networks``, by network key) and the per-operator latency table. The modes' evolutions share
    it, so that no network is evaluated or timed twice."""
    networks: Dict[str, Dict] = field(default_factory=dict)
    latency: Optional[hwlib.LatencyTable] = None

    @classmethod
    def for_search(cls, cfg: CTRSearchConfig) -> "Measured":
        return cls(latency=hwlib.LatencyTable(batch=cfg.cost.batch_size, threads=cfg.cost.threads)
                   if cfg.latency_table else None)


class CandidateScorer:
    """Scores a genome on inherited weights: validation log loss and AUC, counted FLOPs, measured CPU
    latency and, with a hardware model, PIM energy/latency of its placement. ``measured``: what earlier
    scorers measured (it grows with this one's)."""

    def __init__(self, net: NASRecSupernet, data: CTRData, cfg: CTRSearchConfig,
                 hw: Optional[hwlib.HardwareConfig], mode: str, measured: Optional[Measured] = None) -> None:
        self.net, self.cfg, self.hw, self.mode = net, cfg, hw, mode
        self.measured = Measured.for_search(cfg) if measured is None else measured
        self.calibration = calibration_batches(data, cfg)
        if cfg.finetune_from == "valid":
            fit, held_out = held_out_split(data.valid, cfg.finetune_rows, cfg.train.seed)
            data = replace(data, valid=held_out)  # every candidate is scored on rows its head never saw
        else:
            fit = finetune_rows(data.train, cfg.finetune_rows, cfg.train.seed)
        self.finetune = fit if cfg.finetune_steps else None
        self.evaluator = CTREvaluator(data, 8192)
        self.example = one_test_row(data)
        self.cache: Dict[str, Dict] = {}
        self.flops: Dict[str, float] = {}
        self.reference = None
        if hw is not None:  # energy and latency are relative to the largest network, embeddings in memory
            largest = sample(cfg.space, random.Random(0), largest=True)
            ops = self.ops(largest)
            self.reference = hwlib.pim_cost(ops, hwlib.embeddings_in_memory(ops, hw), hw)

    def ops(self, arch: Arch) -> List[hwlib.OpCost]:
        return hwlib.network_ops(self.net.extract(arch), self.example)

    def mflops(self, arch: Arch) -> float:
        key = arch.network_key()
        if key not in self.flops:
            self.flops[key] = 2 * sum(op.macs for op in self.ops(arch)) / 1e6
        return self.flops[key]

    def within_budget(self, arch: Arch, rng: random.Random, steps: int = 200) -> Arch:
        """``arch`` shrunk step by step (recarch.ctr.space.shrink) until it meets the FLOPs budget."""
        budget = self.cfg.budget_mflops
        while budget is not None and steps and self.mflops(arch) > budget:
            arch, steps = shrink(arch, self.cfg.space, rng), steps - 1
        return arch

    def arch_info(self, arch: Arch) -> Optional[Dict]:
        key = arch.network_key()
        if key not in self.cache:
            plain = self.net.extract(arch)
            ops = hwlib.network_ops(plain, self.example)
            info = {"mflops": 2 * sum(op.macs for op in ops) / 1e6, "ops": ops}
            if self.cfg.budget_mflops is None or info["mflops"] <= self.cfg.budget_mflops:
                known = self.measured.networks
                if key not in known:
                    metrics = self.evaluator.evaluate(self.scored_model(arch), "valid")["ctr"]
                    known[key] = {"valid_logloss": metrics["logloss"], "valid_auc": metrics["auc"],
                                  "params": sum(p.numel() for p in plain.parameters())}
                    if self.measured.latency is not None:
                        known[key]["cpu_ms"] = self.measured.latency.network_ms(plain)
                info.update(known[key])
            self.cache[key] = info
        info = self.cache[key]
        return info if "valid_logloss" in info else None

    def scored_model(self, arch: Arch) -> torch.nn.Module:
        """The candidate as scored: its path on the supernet's weights, BatchNorm re-estimated, and with
        ``finetune_steps`` its extracted network with the final layer fitted (recarch.ctr.finetune)."""
        path = calibrated(self.net, arch, self.calibration)  # its BatchNorm statistics, which extract copies
        if self.finetune is None:
            return path
        return finetune_head(self.net.extract(arch), self.finetune, self.cfg.finetune_steps, self.cfg.finetune_lr)

    def placement_for(self, arch: Arch) -> frozenset:
        if self.hw is None:
            return frozenset()
        ops = self.cache[arch.network_key()]["ops"]
        return hwlib.best_placement(ops, self.hw) if self.mode == "codesign" else hwlib.embeddings_in_memory(ops, self.hw)

    def __call__(self, genome: Genome) -> Optional[Scored]:
        arch, placement = genome
        info = self.arch_info(arch)
        if info is None:
            return None
        row = {k: v for k, v in info.items() if k != "ops"}
        score = info["valid_logloss"]
        if self.hw is not None:
            placement = self.placement_for(arch)
            cost = hwlib.pim_cost(info["ops"], placement, self.hw)
            if not cost["feasible"]:
                return None
            row.update(pim_latency_ms=1e3 * cost["latency_s"], energy_mj=1e3 * cost["energy_j"], pim_mb=cost["pim_mb"])
            if self.mode == "codesign":
                score += self.cfg.hw_weight * math.log(cost["energy_j"] * cost["latency_s"] /
                                                       (self.reference["energy_j"] * self.reference["latency_s"]))
        row["score"] = score
        return Scored((arch, placement), score, row)


def run_evolution(mode: str, net: NASRecSupernet, data: CTRData, cfg: CTRSearchConfig,
                  hw: Optional[hwlib.HardwareConfig], measured: Measured) -> List[Scored]:
    scorer = CandidateScorer(net, data, cfg, hw, mode, measured)

    def draw(rng: random.Random) -> Genome:
        return scorer.within_budget(sample(cfg.space, rng), rng), frozenset()  # placement: set by the scorer

    def change(genome: Genome, rng: random.Random) -> Genome:
        return scorer.within_budget(mutate(genome[0], cfg.space, rng), rng), frozenset()

    with torch.no_grad():
        return evolve(cfg.evolution, draw, change, scorer, progress=cfg.train.progress)


def evolution_phase(mode: str, net: NASRecSupernet, data: CTRData, cfg: CTRSearchConfig, hw, run_dir: Path, log,
                    resume: bool, measured: Measured) -> Tuple[List[Scored], int]:
    """Phase 2: (the evolution's history, entries of the measured latency table); written to
    ``evolution-<mode>.json`` (and ``latency-table.json``), and read back from there on resume. Networks
    the earlier modes measured are not evaluated again; this mode's join them."""
    path, table = run_dir / f"evolution-{mode}.json", run_dir / "latency-table.json"
    if resume and path.exists():
        log(f"phase 2/3: kept the evolution ({mode}) in {path}")
        history = [Scored((Arch.from_dict(r["arch"]), frozenset(r["placement"])), r["score"],
                          {k: v for k, v in r.items() if k not in ("arch", "placement")})
                   for r in json.loads(path.read_text())]
        for s in history:
            measured.networks[s.genome[0].network_key()] = {k: s.info[k] for k in MEASURED_KEYS if k in s.info}
        if measured.latency is not None and table.exists():
            measured.latency.table.update(json.loads(table.read_text())["ms"])
        return history, len(measured.latency.table) if measured.latency is not None else 0
    known = len(measured.networks)
    log(f"phase 2/3: evolution ({mode})" + (f", reusing the scores of {known} networks measured before" if known else ""))
    history = run_evolution(mode, net, data, cfg, hw, measured)
    log(f"evolution ({mode}): {len(measured.networks) - known} networks evaluated on inherited weights")
    write_json_atomic(path, [{**s.info, "arch": s.genome[0].to_dict(), "placement": sorted(s.genome[1])} for s in history])
    if measured.latency is None:
        return history, 0
    measured.latency.save(table)
    return history, len(measured.latency.table)


def write_pareto(history: List[Scored], keys: List[str], path: Path) -> List[Dict]:
    rows = [{**s.info, "arch": s.genome[0].to_dict(), "placement": sorted(s.genome[1])} for s in history]
    x_key = keys[1]
    front = pareto_front([{k: r[k] for k in keys} for r in rows], keys)
    write_json_atomic(path.with_suffix(".json"), {"keys": keys, "front": [rows[i] for i in front]})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.scatter([r[x_key] for r in rows], [r["valid_logloss"] for r in rows], s=6, alpha=0.4, label="evaluated")
    ax.scatter([rows[i][x_key] for i in front], [rows[i]["valid_logloss"] for i in front], s=14, color="tab:red",
               label=f"Pareto front over ({', '.join(keys)})")
    flat = sorted((rows[i][x_key], rows[i]["valid_logloss"]) for i in pareto_front(rows, keys[:2]))
    ax.step(*zip(*flat), "k-", where="post", lw=1, label=f"front over ({', '.join(keys[:2])})")
    ax.set_xlabel(x_key)
    ax.set_ylabel("validation log loss (inherited weights)")
    ax.set_xscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure_atomic(fig, path.with_suffix(".png"), dpi=120)
    return [rows[i] for i in front]


def search_ctr(cfg: CTRSearchConfig, data_dir: Optional[str] = None, run_dir: Optional[Path] = None,
               echo: bool = True, resume: bool = False) -> Dict[str, Any]:
    """resume: go on with the run in ``run_dir``: the supernet from its last checkpoint, a finished
    evolution kept, finished retrains reused (an unfinished one trains again)."""
    hw = hwlib.load_hardware(cfg.hardware) if cfg.hardware else None
    data = load_data(CTRRunConfig(data=cfg.data), data_dir)
    run_dir = Path(run_dir or unique_run_dir(cfg.out_dir, f"ctr-search-{cfg.data.name}-{cfg.space.space}"))
    if not resume:  # made only now that the inputs are valid
        open_run(run_dir, cfglib.to_dict(cfg))
    log = RunLog(run_dir / "log.txt", echo)
    log(f"dataset {data.name}: {len(data.train):,} / {len(data.valid):,} / {len(data.test):,} rows")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    with recorded(run_dir):
        return _search_ctr(cfg, data, hw, run_dir, log, data_dir, echo, resume)


def _search_ctr(cfg: CTRSearchConfig, data: CTRData, hw, run_dir: Path, log: RunLog, data_dir, echo: bool,
                resume: bool) -> Dict[str, Any]:
    """search_ctr()'s phases once its run folder exists."""
    timings: Dict[str, float] = {}

    log("phase 1/3: supernet training")
    start = time.perf_counter()
    net, fit = train_supernet(cfg, data, run_dir, log, resume)
    timings["supernet_s"] = time.perf_counter() - start
    throughput = supernet_throughput(net, cfg, fit, one_test_row(data))
    log(f"supernet: {throughput['train_samples_per_s']:.0f} samples/s, {throughput['train_gflops_per_s']:.1f} GFLOP/s "
        f"(paths trained per step: {throughput['mean_path_mflops']:.2f} MFLOPs/sample forward)")

    summary: Dict[str, Any] = {"dataset": data.name, "space": cfglib.to_dict(cfg.space), "budget_mflops": cfg.budget_mflops,
                               "supernet": {"epochs": fit["epoch"], "best_epoch": fit["best_epoch"], "epoch_cap": cfg.train.epochs,
                                            "stopped_by": stopped_by(fit["epoch"], fit["best_epoch"], cfg.train.patience),
                                            "valid_auc_mean_paths": fit["best_score"], "seconds": fit["train_seconds"],
                                            **throughput, "params": sum(p.numel() for p in net.parameters())},
                               "modes": {}, "machine": machine_info(cfg.train.threads or None)}
    modes = ["arch"] + (["codesign"] if hw is not None else [])
    measured = Measured.for_search(cfg)
    searched = {}
    for mode in modes:
        start = time.perf_counter()
        history, latency_entries = evolution_phase(mode, net, data, cfg, hw, run_dir, log, resume, measured)
        timings[f"evolution_{mode}_s"] = time.perf_counter() - start
        keys = ["valid_logloss", "mflops"] + (["energy_mj", "pim_latency_ms"] if hw is not None else [])
        front = write_pareto(history, keys, run_dir / f"pareto-{mode}")
        log(f"{len(history)} candidates scored, {len(front)} on the Pareto front; best score {history and min(s.score for s in history):.4f}")
        chosen = list(enumerate(TOP_K_SELECTORS[cfg.top_k_from](history, cfg.top_k), 1))
        for k, best in chosen:
            arch, placement = best.genome
            write_json_atomic(run_dir / f"arch-{mode}-{k}.json", {
                "space": cfglib.to_dict(cfg.space), "arch": arch.to_dict(), "placement": sorted(placement), "search": best.info})
        searched[mode] = {"candidates": len(history), "pareto_front": len(front), "chosen": chosen,
                          "latency_entries": latency_entries}

    log(f"phase 3/3: retraining {cfg.top_k} candidates of each mode ({', '.join(modes)}; by {cfg.top_k_from}) from "
        "scratch" + ("" if cfg.executor.kind == "local" else f", as {cfg.executor.kind} tasks"))
    start = time.perf_counter()
    candidates = [(mode, k, best) for mode in modes for k, best in searched[mode]["chosen"]]
    retrained = retrain_candidates(cfg, [(run_dir / f"arch-{mode}-{k}.json", run_dir / "retrain" / f"{mode}-{k}")
                                         for mode, k, _ in candidates], data_dir, echo, data)
    timings["retrain_s"] = time.perf_counter() - start
    for mode in modes:
        results = [{"k": k, "arch_file": f"arch-{mode}-{k}.json", "search": best.info, "placement": sorted(best.genome[1]),
                    **row} for (m, k, best), row in zip(candidates, retrained) if m == mode]
        winner = max(results, key=retrained_merit)
        write_text_atomic(run_dir / f"arch-{mode}.json", (run_dir / winner["arch_file"]).read_text())
        summary["modes"][mode] = {**{key: v for key, v in searched[mode].items() if key != "chosen"},
                                  "top": results, "winner": winner}
        log(f"{mode} winner: {winner['arch_file']} (lr {winner['lr']:g}), mean over {cfg.retrain_seeds} seed(s): test AUC {winner['test']['auc']:.4f}, "
            f"log loss {winner['test']['logloss']:.4f}, {winner['flops_per_sample'] / 1e6:.3f} MFLOPs/sample")
    summary["timings"] = timings
    summary["search_seconds"] = sum(v for k, v in timings.items() if not k.startswith("retrain"))
    write_json_atomic(run_dir / "summary.json", summary)
    print_summary(summary, log)
    return {"run_dir": str(run_dir), **summary}


def print_summary(summary: Dict, log) -> None:
    log("mode      test AUC  log loss  MFLOPs/sample  energy mJ/batch  PIM ms/batch  CPU µs/sample")
    for mode, m in summary["modes"].items():
        w = m["winner"]
        s = w["search"]
        log(f"{mode:9} {w['test']['auc']:.4f}    {w['test']['logloss']:.4f}    {w['flops_per_sample'] / 1e6:10.3f}  "
            f"{s.get('energy_mj', float('nan')):15.4f}  {s.get('pim_latency_ms', float('nan')):12.4f}  "
            f"{w['inference_us_per_sample']:13.2f}")
