"""A search's summary: one row per trained model (its shape, how it stopped, test NDCG@10 and cost),
as ``summary.json`` keeps them and the log prints them."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import yaml

from recarch.train.stopping import stopped_by


def summary_row(name: str, result: Dict[str, Any]) -> Dict[str, Any]:
    """A trained model's row in the summary: its shape, when it stopped, test NDCG@10 and cost."""
    cost = json.loads((Path(result["run_dir"]) / "cost.json").read_text()) if (Path(result["run_dir"]) / "cost.json").exists() else {}
    config = yaml.safe_load((Path(result["run_dir"]) / "config.yaml").read_text())
    model, patience = config["model"], config["train"]["patience"]
    return {"model": name, "hidden": model["hidden_size"], "inner": model["inner_size"], "layers": model["n_layers"],
            "best_epoch": result["best_epoch"], "epochs_run": result["epochs_run"],
            "stopped_by": stopped_by(result["epochs_run"], result["best_epoch"], patience),
            "gates": model.get("gates", 0), "pop100_ndcg@10": result["test"].get("pop100", {}).get("ndcg@10"),
            "full_ndcg@10": result["test"].get("full", {}).get("ndcg@10"),
            "flops_per_sequence": cost.get("flops_per_sequence"), "params": cost.get("params"),
            "inference_seconds": cost.get("inference", {}).get("seconds"),
            "peak_memory_mb": (cost.get("memory") or {}).get("net_mb"), "train_seconds": result["train_seconds"]}


def summarise(run_dir, arch, retrained, baseline, search_seconds, strategy_name: str) -> Dict[str, Any]:
    rows = [summary_row(f"{strategy_name} (derived)", retrained)] + ([summary_row("SASRec (hand-sized)", baseline)] if baseline else [])
    return {"run_dir": str(run_dir), "arch": {k: arch[k] for k in ("candidate", "depth", "widths", "arch") if k in arch},
            "search_seconds": search_seconds, "rows": rows}


def format_summary(summary: Dict[str, Any]) -> str:
    def f(x, spec):
        return "—" if x is None else format(x, spec)

    w = max([26] + [len(r["model"]) for r in summary["rows"]])
    lines = [f"{'model':<{w}} {'d/dff/L/g':<13} {'pop100 NDCG@10':>14} {'full NDCG@10':>12} {'MFLOPs/seq':>10} "
             f"{'infer s':>8} {'peak MB':>8}"]
    for r in summary["rows"]:
        shape = f"{r['hidden']}/{r['inner']}/{r['layers']}/{r['gates']}"
        flops = r["flops_per_sequence"] / 1e6 if r["flops_per_sequence"] else None
        lines.append(f"{r['model']:<{w}} {shape:<13} {f(r['pop100_ndcg@10'], '14.4f')} {f(r['full_ndcg@10'], '12.4f')} "
                     f"{f(flops, '10.2f')} {f(r['inference_seconds'], '8.2f')} {f(r['peak_memory_mb'], '8.0f')}")
    return "\n".join(lines)
