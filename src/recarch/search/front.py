"""Train once, derive many (once-for-all's promise): one supernet, one architecture per budget.

With ``budgets: [0.2, 0.4, 0.6, 1.0]`` (fractions of the full encoder's FLOPs) a search trains its
supernet once, derives the best path within each budget by the config's derive rule (the paths'
validation scores with ``derive_by: validation``, else the controllers), retrains each distinct path
once in ``front/w<width>-f<ffn>-L<depth>/`` (``arch.json``, ``derived.pt``, ``retrain/``) and writes
``front.json`` and ``front.png``: test NDCG@10 against FLOPs and against measured inference time, the
hand-sized model as a point, and what the whole front cost against one training of that model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from recarch import config as cfglib
from recarch.io import save_figure_atomic, write_json_atomic
from recarch.models import SeqModelConfig
from recarch.search.derive import fitting_paths
from recarch.search import STRATEGIES
from recarch.search.job import (FLOWS, SearchRunConfig, baseline_phase, path_scores, pick, train_phase, train_supernet,
                                write_derived)
from recarch.search.summary import format_summary, summary_row

PLAN = "front/archs.json"  # the budgets' derived paths, written before any retrain (resume keeps it)


def path_folder(arch: Dict[str, Any]) -> str:
    m = arch["model"]
    return f"front/w{m['hidden_size']}-f{m['inner_size']}-L{arch['depth']}"


def derive_front(cfg: SearchRunConfig, data, run_dir: Path, log, dist, resume: bool) -> List[Dict[str, Any]]:
    """Phases 1-2: the supernet, then per budget the derived path. Returns the plan (budget → folder),
    kept in ``front/archs.json``."""
    if resume and (run_dir / PLAN).exists():
        log(f"phase 1-2/4: kept the derived architectures in {run_dir / PLAN}")
        return json.loads((run_dir / PLAN).read_text())
    sup = train_supernet(cfg, data, run_dir, log, dist, resume)
    log(f"phase 2/4: derive one architecture per budget ({', '.join(f'{b:.0%}' for b in cfg.budgets)} of the FLOPs)")
    scores = path_scores(cfg, sup, log)
    plan = []
    for budget in sorted(cfg.budgets):
        fits = fitting_paths(sup.layer_flops, cfg.model.n_layers, sup.encoder_flops_limit(budget))
        path = pick(sup, fits, scores)
        derived = sup.net.derived_config(*path)
        folder = path_folder({"model": cfglib.to_dict(derived), "depth": path[1]})
        if not any(p["folder"] == folder for p in plan):
            write_derived(cfg, sup, path, scores, fits, run_dir / folder, dist)
        plan.append({"budget": budget, "folder": folder, "candidate": path[0], "depth": path[1],
                     "inherited_score": None if scores is None else scores[path],
                     "encoder_flops_fraction": sup.layer_flops[path[0]] * path[1] / sup.encoder_flops_limit(1.0)})
        log(f"budget {budget:.0%}: {sup.net.path_name(path)} ({plan[-1]['encoder_flops_fraction']:.0%} of the FLOPs)")
    if dist.is_main:
        write_json_atomic(run_dir / PLAN, plan)
    dist.barrier()
    return plan


def retrain_front(cfg: SearchRunConfig, plan, data_dir, run_dir: Path, log, echo: bool, resume: bool) -> Dict[str, Dict]:
    """Phase 4: each distinct derived path retrained once (folder → run.train's result)."""
    out = {}
    for entry in plan:
        folder = run_dir / entry["folder"]
        if entry["folder"] in out:
            continue
        arch = json.loads((folder / "arch.json").read_text())
        log(f"phase 4/4: retrain {entry['folder']}")
        out[entry["folder"]] = train_phase(cfg.retrain_config(cfglib.from_dict(SeqModelConfig, arch["model"]), run_dir), data_dir,
                                               folder / "retrain", echo, resume,
                                               init_weights=folder / "derived.pt" if cfg.inherit else None)
    return out


def front_rows(plan, retrained: Dict[str, Dict], baseline: Optional[Dict], search_seconds: float,
               strategy_name: str) -> Dict[str, Any]:
    """front.json's content: one row per budget, the baseline's row, and the front's total cost."""
    rows = []
    for entry in plan:
        name = f"{strategy_name} (≤ {entry['budget']:.0%} FLOPs)" if entry["budget"] else f"{strategy_name} (derived)"
        rows.append({**summary_row(name, retrained[entry["folder"]]), **entry})
    base = summary_row("SASRec (hand-sized)", baseline) if baseline else None
    distinct = {entry["folder"]: retrained[entry["folder"]]["train_seconds"] for entry in plan}
    total = search_seconds + sum(distinct.values())
    return {"rows": rows + ([base] if base else []), "search_seconds": search_seconds,
            "retrain_seconds": sum(distinct.values()), "distinct_architectures": len(distinct),
            "front_over_one_training": total / base["train_seconds"] if base else None}


def plot_front(front: Dict[str, Any], path: Path) -> bool:
    """Test NDCG@10 against MFLOPs per sequence and against inference seconds; the baseline as a star."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, label in ((axes[0], "flops_per_sequence", "MFLOPs per sequence"),
                           (axes[1], "inference_seconds", "inference s (test set)")):
        scale = 1e-6 if key == "flops_per_sequence" else 1.0
        for row in front["rows"]:
            if row[key] is None or row["full_ndcg@10"] is None:
                continue
            base = "budget" not in row
            ax.scatter(row[key] * scale, row["full_ndcg@10"], marker="*" if base else "o", s=120 if base else 40,
                       color="black" if base else "tab:blue")
            ax.annotate(f"{row['hidden']}/{row['inner']}/{row['layers']}", (row[key] * scale, row["full_ndcg@10"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel("test NDCG@10 (full ranking)")
    fig.suptitle("derived per budget (dots, width/FFN/layers) and the hand-sized model (star)", fontsize=9)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    return True


@FLOWS.register("front")
def search_front(cfg: SearchRunConfig, data, data_dir, run_dir: Path, log, dist, echo: bool, resume: bool) -> Dict[str, Any]:
    """The search with ``budgets``: one supernet, one derived and retrained architecture per budget."""
    return finish_front(cfg, derive_front(cfg, data, run_dir, log, dist, resume), data_dir, run_dir, log, dist, echo,
                        resume)


def finish_front(cfg: SearchRunConfig, plan, data_dir, run_dir: Path, log, dist, echo: bool, resume: bool) -> Dict[str, Any]:
    """Phases 3-4 of a plan of derived architectures (``front/archs.json``): the baseline, each one
    retrained, front.json (also the summary) and front.png."""
    baseline = baseline_phase(cfg, data_dir, run_dir, log, dist, echo, resume)
    retrained = retrain_front(cfg, plan, data_dir, run_dir, log, echo, resume)
    if not dist.is_main:
        return {"run_dir": str(run_dir)}
    search_seconds = json.loads((run_dir / plan[0]["folder"] / "arch.json").read_text())["search_seconds"]
    front = {"run_dir": str(run_dir), **front_rows(plan, retrained, baseline, search_seconds,
                                                   STRATEGIES.get(cfg.strategy).paper_name)}
    write_json_atomic(run_dir / "front.json", front)
    write_json_atomic(run_dir / "summary.json", front)
    if plot_front(front, run_dir / "front.png"):
        log(f"front plot: {run_dir / 'front.png'}")
    log("\n" + format_summary(front))
    return front
