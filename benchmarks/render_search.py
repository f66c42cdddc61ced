"""BENCHMARKS.md sections on how far the search can be trusted: ranking fidelity of a supernet."""
from __future__ import annotations

from recarch.reproduce.stats import kendall_tau
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


def ctr_fidelity_section(r: dict) -> list:
    """The CTR supernet's inherited scores, as they are and after final-layer fine-tunes, against training
    each candidate alone (bench_ctr_fidelity.py)."""
    stops = [s for row in r["rows"] for s in row["stopped_by"]]
    capped = sum(s == "cap" for s in stops)
    sup, labels = r["supernet"], list(r["rank"])
    noise, seeds = r.get("alone_seed_to_seed"), r.get("alone_seeds", 1)
    seeds_words = "one seed" if seeds == 1 else f"{seeds} seeds, their mean validation log loss the reference"
    rule = sup.get("rule", "single")  # results before supernet.rule existed: one random path per step
    rule_words = ("one random sub-network per step (NASRec)" if rule == "single" else
                  f"the sandwich rule: the largest, the smallest and {sup['random_paths']} random sub-network(s) per step")
    by_size = kendall_tau([row["mflops"] for row in r["rows"]], [row["alone_valid_logloss"] for row in r["rows"]])
    out = [f"## Ranking fidelity of the CTR supernet on {r['dataset']}, trained by the {rule} rule"
           + (f", `--tag {r['tag']}`" if r["tag"] else "") + " (`benchmarks/bench_ctr_fidelity.py`)", "",
           f"Command: `{r['command']}` — {machine_line(r['machine'], r['seed'])}", "",
           f"{len(r['rows'])} candidates at evenly spaced FLOPs ranks among {r['draws']} uniform draws of the space, "
           f"each scored on the supernet's weights (BatchNorm re-estimated; supernet trained by {rule_words}, "
           f"{sup['epochs']} epochs, best "
           f"{sup['best_epoch']}, stopped by {'the cap: **capped**' if sup['stopped_by'] == 'cap' else 'patience'}), "
           f"again after full-batch steps on the final layer alone ({r['finetune_rows']:,} training rows, Adam lr "
           f"{r['finetune_lr']:g}: NASRec's scoring"
           + ("; \"on held-out rows\": fitted on that many validation rows, at most half, and scored on the rest"
              if any(label.endswith("held-out rows") for label in labels) else "")
           + "), and trained alone from scratch (learning rate "
           f"{', '.join(f'{lr:g}' for lr in r['retrain_lrs'])}, {seeds_words}; {len(stops) - capped} stopped by patience"
           + (f", {capped} by the cap: **capped**" if capped else "") + ")"
           + (f", those scores taken from `{r['alone_from']}`" if r.get("alone_from") else "") + ". Scores: validation log loss.", "",
           "Kendall τ (Spearman ρ) against training alone, goal τ ≥ 0.5: "
           + "; ".join(f"**{label} {v['kendall_tau']:.3f}** ({v['spearman_rho']:.3f})" for label, v in r["rank"].items())
           + "." + (f" Between two seeds of training alone: τ {noise['kendall_tau']:.3f} (ρ {noise['spearman_rho']:.3f}), "
                    "how well the trained-alone noise lets any score rank." if noise else "")
           + f" FLOPs against the trained-alone log loss: τ {by_size:.3f} (positive: larger candidates do worse trained alone).", "",
           "| MFLOPs / sample | " + " | ".join(labels) + " | trained alone | trained alone: valid / test AUC |",
           "|---|" + "---|" * len(labels) + "---|---|"]
    for row in sorted(r["rows"], key=lambda row: row["mflops"]):
        out.append(f"| {row['mflops']:.3f} | " + " | ".join(f"{row['scores'][label]:.4f}" for label in labels)
                   + f" | {row['alone_valid_logloss']:.4f} | {row['alone_valid_auc']:.4f} / {row['alone_test_auc']:.4f} |")
    return out + ["", f"![CTR ranking fidelity, {r['dataset']}](benchmarks/results/ctr-fidelity-{r['dataset']}"
                      f"{'-' + r['tag'] if r['tag'] else ''}.png)", ""]
