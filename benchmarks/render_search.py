"""BENCHMARKS.md sections on how far the search can be trusted: ranking fidelity of a supernet."""
from __future__ import annotations

from render_common import machine_line


def fidelity_section(r: dict) -> list:
    """Inherited-weight scores against standalone training (bench_fidelity.py)."""
    capped = f", {r['capped']} of them stopped by the {r['epochs_cap']}-epoch cap (**capped**)" if r["capped"] else ""
    out = [f"## Ranking fidelity of the elastic supernet on {r['dataset']} (`benchmarks/bench_fidelity.py`)", "",
           f"Command: `{r['command']}` — {machine_line(r['machine'], r['seed'])}", "",
           f"{len(r['rows'])} architectures drawn uniformly from the search's scored candidates, each trained alone "
           f"from scratch with the retrain settings{capped}; the supernet trained by the sandwich rule "
           f"(the largest, the smallest and {r['random_paths']} random architecture(s) per step). Scores: {r['metric']}.", "",
           f"**Kendall τ {r['kendall_tau']:.3f}, Spearman ρ {r['spearman_rho']:.3f}** (goal τ ≥ 0.6).", "",
           "| architecture | FLOPs, of the hand-sized model's | inherited | trained alone | stopped by | test NDCG@10 |",
           "|---|---|---|---|---|---|"]
    for row in sorted(r["rows"], key=lambda row: -row["standalone"]):
        out.append(f"| {row['name']} | {row['flops_fraction']:.0%} | {row['inherited']:.4f} | {row['standalone']:.4f} | "
                   f"{row['stopped_by']} ({row['epochs_run']} epochs) | {row['test_full_ndcg@10']:.4f} |")
    return out + [""]
