"""Markdown for one ``benchmarks/results/ihas-<dataset>.json`` (written by ``bench_ihas.py``);
``ihas_section(result)`` returns the lines, for ``benchmarks/render.py`` to place in BENCHMARKS.md."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List

from render_common import machine_line

LABELS = {"full": "full dimensions", "autodim": "AutoDim-like (one dimension per field)",
          "uniform": "uniform width {width} (the widest within iHAS's {within})", "ihas": "iHAS ensemble"}


def _us(x) -> str:
    return "—" if x is None else f"{x:.2f}"


def _pm(ms, digits: int = 4) -> str:
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def _p(test) -> str:
    return "—" if test is None else f"p {test['p']:.2f}{' *' if test['p'] < 0.05 else ''}"


def distill_text(alpha: float) -> str:
    if not alpha:
        return ""
    return (f"; the iHAS groups and the AutoDim-like and uniform baselines alike retrained against (1 − α)·label + "
            f"α·the full model's probability, α = {alpha} (the full model, trained first on the labels, is their teacher)")


def ihas_section(result: dict) -> List[str]:
    ds, rows = result["dataset"], result["rows"]
    c = result.get("config") or {}
    shared = c.get("tables") == "shared"
    alpha = c.get("distill", 0.0)
    title = (f"### iHAS — {ds}" + (", the groups sharing their embedding tables" if shared else "")
             + (f", distilled from the full model (α = {alpha})" if alpha else "")
             + (f" — `--tag {result['tag']}`" if result.get("tag") else ""))
    out = [title, "", f"Command: `{result['command']}` — {machine_line(result['machine'], result['seed'])}", ""]
    if c:
        g = c["gate"]
        out += [f"Settings: full width {c['model']['embed_dim']} in {c['blocks']} blocks per field; "
                f"{g['estimator']} gates (own embedding {g['embed_dim']} × ≤{g['hash_buckets'] or 'all'} rows per field, "
                f"hidden {g['hidden']}); target {c['target']} of the {c['target_weighting']}{budget_text(c)}, λ_sparsity "
                f"{c['sparsity_weight']}, λ_bipolar {c['bipolar_weight']}, regularisers off for {c['reg_warmup_epochs']} "
                f"epochs then ramped over {c['reg_ramp_epochs']}; search {c['search']['epochs']} epochs; "
                f"k = {c['clusters']} ({c['cluster_mode']}); retraining: {c['retrain_init']} init on {c['retrain_data']} "
                f"data{', the group models trained together on shared nested tables' if shared else ''}, lr {c['retrain']['lr']}, "
                f"early stopping (patience {c['retrain']['patience']}){distill_text(alpha)}"
                f"{overrides_text(result.get('overrides'))}.", ""]
    total = ("the shared tables, each field's as wide as its widest group, DeepFM's first-order table once, "
             "and the gate network's own embedding" if shared else "all groups' tables plus the gate network's own embedding")
    out += ["Embedding parameters count every `nn.Embedding` weight (DeepFM's first-order table included, for every "
            f"method). iHAS *total*: {total}; *per instance*: the gate embedding plus the table columns the group model "
            "serving the instance reads, averaged over the test set.", "",
            "| backbone | method | test AUC | test log loss | embedding params | × full | MFLOPs/sample | CPU µs/sample |",
            "|---|---|---|---|---|---|---|---|"]
    within = "ensemble total" if shared else "per-instance budget"
    for r in rows:
        for name in LABELS:
            m = r["methods"][name]
            out.append(f"| {r['backbone']} | {LABELS[name].format(width=r['uniform_width'], within=within)} | {m['test']['auc']:.4f} | {m['test']['logloss']:.4f} | "
                       f"{m['embedding_params']:,} | {m['embedding_params_vs_full']:.3f} | "
                       f"{m['flops_per_sample'] / 1e6:.3f} | {_us(m.get('inference_us_per_sample'))} |")
        m = r["methods"]["ihas"]
        out.append(f"| {r['backbone']} | iHAS, per instance | {m['test']['auc']:.4f} | {m['test']['logloss']:.4f} | "
                   f"{m['embedding_params_per_instance']:,.0f} | {m['embedding_params_per_instance_vs_full']:.3f} | — | — |")
    out += ["", "Transferability (target: test AUC ≥ the full-dimension model's with ≤ 50 % of its embedding parameters):", "",
            "| backbone | full AUC | iHAS AUC | Δ AUC | AutoDim-like AUC | iHAS per instance × full | iHAS total × full | "
            "target met (per instance / total) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, t = r["methods"], r["targets"]
        out.append(f"| {r['backbone']} | {m['full']['test']['auc']:.4f} | {m['ihas']['test']['auc']:.4f} | "
                   f"{t['auc_minus_full']:+.4f} | {m['autodim']['test']['auc']:.4f} | "
                   f"{m['ihas']['embedding_params_per_instance_vs_full']:.3f} | {m['ihas']['embedding_params_vs_full']:.3f} | "
                   f"{'yes' if t['met_per_instance'] else 'no'} / {'yes' if t['met_total'] else 'no'} |")
    with_seeds = [r for r in rows if "seed_stats" in r]
    if with_seeds:
        out += ["", f"Over seeds {', '.join(map(str, with_seeds[0]['seed_stats']['seeds']))} (mean ± std; the tables above "
                "are the first seed's; p: Welch's two-sided t-test against the full-dimension model's test AUC):", "",
                "| backbone | full AUC | AutoDim-like AUC (p) | uniform AUC (p) | iHAS AUC (p) | Δ AUC | "
                "iHAS per instance × full | iHAS total × full | target met (per instance / total) |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in with_seeds:
            st = r["seed_stats"]
            m, t = st["methods"], st["targets"]
            out.append(f"| {r['backbone']} | {_pm(m['full']['test_auc'])} | {_pm(m['autodim']['test_auc'])} "
                       f"({_p(st['autodim_vs_full'])}) | {_pm(m['uniform']['test_auc'])} ({_p(st['uniform_vs_full'])}) | "
                       f"{_pm(m['ihas']['test_auc'])} ({_p(st['ihas_vs_full'])}) | "
                       f"{t['auc_minus_full']:+.4f} | {_pm(m['ihas']['embedding_params_per_instance_vs_full'], 3)} | "
                       f"{_pm(m['ihas']['embedding_params_vs_full'], 3)} | "
                       f"{'yes' if t['met_per_instance'] else 'no'} / {'yes' if t['met_total'] else 'no'} |")
    fields = list(rows[0]["autodim_dims"]) if rows else []
    out += ["", "Clusters: rows per group (router assignment) and the dimension each group kept per field "
            f"(of {c.get('model', {}).get('embed_dim', '?')}); AutoDim-like for comparison.", "",
            "| backbone | group | train rows | test rows | " + " | ".join(fields) + " |",
            "|---|---|---|---|" + "---|" * len(fields)]
    for r in rows:
        for g in r["clusters"]["groups"]:
            out.append(f"| {r['backbone']} | {g['group']} | {g['train_rows']:,} | {g['test_rows']:,} | "
                       + " | ".join(str(g["dims"][f]) for f in fields) + " |")
        out.append(f"| {r['backbone']} | AutoDim-like | all | all | " + " | ".join(str(r["autodim_dims"][f]) for f in fields) + " |")
    out += ["", "| backbone | distinct patterns (train) | groups | router agrees with k-means | search: params kept "
            "(validation, deterministic gates) | hard cap: blocks dropped, "
            f"{'ensemble' if shared else 'per instance'} × full before → after (training rows) "
            "| search s | retrain s | baselines s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cl, s, t = r["clusters"], r["search"], r["timings"]
        out.append(f"| {r['backbone']} | {cl['distinct_patterns']} | {cl['num_groups']} | {cl['router_agreement']:.1%} | "
                   f"{s['active_params_fraction']:.1%} | {cap_cell(cl.get('budget'), r['methods']['full']['embedding_params'])} | "
                   f"{t['search']:.0f} | {t['retrain']:.0f} | {t.get('baselines', 0):.0f} |")
    out.append("")
    return out


def widths_section(result: dict) -> List[str]:
    """``bench_emb_widths.py``: test AUC against embedding parameters for fixed widths."""
    conc = ", ".join(f"{f} {c['ids_for_80pct_rows']:,} of {c['vocab']:,}" for f, c in result["concentration"].items()
                     if c["vocab"] > 100)
    full = max(max(r["dims"].values()) for r in result["rows"])  # no row is wider than the full width
    out = [f"### Embedding-width frontier — {result['dataset']}, {result['backbone']}, full width {full}", "",
           f"Command: `{result['command']}` — {machine_line(result['machine'], result['seed'])}", "",
           f"Every model: {result['retrain']}{overrides_text(result.get('overrides'))}; test AUC mean ± std over {result['seeds']} seed(s). A narrower "
           "field is zero-padded to the full width, so every model keeps the full-width backbone, as iHAS's group "
           "models do. Ids covering 80 % of "
           f"the training rows: {conc}.", "",
           *pair_text(result.get("pair")),
           "| widths | embedding params | × full | test AUC |" + (" seen pairs scored < 0.5 | AUC, unseen pairs |" if result.get("pair") else ""),
           "|---|---|---|---|" + ("---|---|" if result.get("pair") else "")]
    for r in result["rows"]:
        ratio = "—" if r["embedding_params_vs_full"] is None else f"{r['embedding_params_vs_full']:.3f}"
        miss = r["pair"]["seen_scored_below_half"] if "pair" in r else None
        pair = "" if miss is None else (f" {miss[0]:.1%} ± {miss[1]:.1%} | "
                                          f"{_pm(r['pair']['unseen_auc'])} |")
        out.append(f"| {r['setting']} | {r['embedding_params']:,} | {ratio} | {_pm(r['test_auc'])} |" + pair)
    return out + [""]


def overrides_text(overrides) -> str:
    return f" with {', '.join(f'`{o}`' for o in overrides)}" if overrides else ""


def pair_text(pair) -> List[str]:
    """What ``--pair`` measured: how much of the test set a pair memory alone decides."""
    if not pair:
        return []
    a, b = pair["fields"]
    return [f"Memorisation: {pair['test_rows_seen']:.1%} of the test rows have a ({a}, {b}) pair that occurs in the "
            f"training rows; their positive rate is {pair['positive_rate_seen']:.3f}, against "
            f"{pair['positive_rate_unseen']:.3f} for the others. A model that scored every seen pair above every unseen "
            f"one would rank those rows perfectly, so the last two columns split each width's test AUC into "
            f"memorisation (seen pairs it scores below 0.5) and generalisation (AUC on the unseen pairs).", ""]


def cap_cell(budget, full: int) -> str:
    return "—" if budget is None else f"{budget['dropped_blocks']}, {budget['before'] / full:.3f} → {budget['after'] / full:.3f}"


def budget_text(config: dict) -> str:
    """The hard cap, when the run had one (runs before it existed have no ``budget`` key)."""
    budget = config.get("budget")
    of = "for the whole ensemble" if config.get("tables") == "shared" else "per instance"
    return "" if budget is None else (f", hard cap {budget:.0%} of the full model's embedding parameters {of} "
                                      "(least-voted blocks per parameter dropped after clustering)")


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print("\n".join(ihas_section(json.loads(Path(path).read_text()))))

