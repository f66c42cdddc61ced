"""Regenerate BENCHMARKS.md from the JSON results in benchmarks/results/ (never edit it by hand)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from recarch.reproduce.stats import kendall_tau, welch_t_test

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROTOCOLS = ["pop100", "pop100-recbole", "uni100", "full"]


REPRODUCE_SECTIONS = {  # results folder → its heading
    "reproduce": "## The EASRec paper's tables on our data (`recarch reproduce … --out-dir benchmarks/results/reproduce`)",
    "reproduce-scratch": "## The same tables with every searched model retrained from scratch (`recarch reproduce … "
                         "--set inherit=false --out-dir benchmarks/results/reproduce-scratch`): the hand-sized rows are "
                         "the same runs; only the search methods' retrains lose the supernet's weights",
}


def fmt(x, digits=4):
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def short_commit(commit) -> str:
    if not commit:
        return "unknown"
    return commit[:10] + ("-dirty" if commit.endswith("-dirty") else "")


def machine_line(m: dict, seed) -> str:
    return (f"Machine: {m.get('cpu')} ({m.get('cores')} cores), torch {m.get('torch')}, python {m.get('python')}, "
            f"{m.get('threads')} thread(s) for training, commit `{short_commit(m.get('git_commit'))}`, seed {seed}.")


def seq_section(r: dict, anchors: dict) -> list:
    ds = r["dataset"]
    out = [f"### {ds}", "", f"Command: `{r['command']}` — {machine_line(r['machine'], r['seed'])}", ""]
    c = r["runs"][0]["config"]
    out += [f"Settings: d {c['hidden_size']}, d_ff {c['inner_size']}, {c['n_layers']} layers, {c['n_heads']} heads, "
            f"N {c['max_len']}, dropout {c['dropout']} (attention {c['attn_dropout']}), batch {c['batch_size']} sequences, "
            f"Adam lr 1e-3, loss `{r['runs'][0].get('loss', c.get('loss', 'full_ce'))}`, early stopping after 10 epochs "
            f"without a better validation NDCG@10, at most {c['epochs']} epochs (\"capped\": the cap stopped a run "
            "that was still improving).", "",
            "Test metrics @10 (Recall / MRR / NDCG) of the best-validation epoch; training regime "
            f"`{r['runs'][0]['regime']}`, validation protocol `{r['runs'][0]['valid_protocol']}`.", ""]
    out += ["| model | " + " | ".join(PROTOCOLS) + " |", "|---|" + "---|" * len(PROTOCOLS)]
    for run in r["runs"]:
        cells = []
        for p in PROTOCOLS:
            m = run["test"].get(p)
            cells.append("—" if m is None else f"{m['recall@10']:.4f} / {m['mrr@10']:.4f} / {m['ndcg@10']:.4f}")
        out.append(f"| SASRec ({run['attention']}) | " + " | ".join(cells) + " |")
    if "recbole" in r:
        t = r["recbole"]["test"]
        out.append(f"| RecBole 1.2.1 SASRec (softmax, its pop100) | — | {t['recall@10']:.4f} / {t['mrr@10']:.4f} / "
                   f"{t['ndcg@10']:.4f} | — | — |")
    out += ["", "| model | best epoch / run | s/epoch | train s | MFLOPs/seq (inference) | params | "
            "inference s (test set) | peak MB | train GFLOP/s | of matmul peak |", "|---|" + "---|" * 9]
    for run in r["runs"]:
        tr = run["training"]
        capped = " (capped)" if run.get("capped") else ""
        out.append(f"| SASRec ({run['attention']}) | {run['best_epoch']} / {run['epochs_run']}{capped} | "
                   f"{run['seconds_per_epoch']:.1f} | {run['train_seconds']:.0f} | {run['flops_per_sequence'] / 1e6:.2f} | "
                   f"{run['params']:,} | {run['inference_seconds']:.2f} (batch {run['inference_batch_size']}, "
                   f"{run['inference_threads']} thr) | {fmt(run['peak_memory_mb'], 0)} | {tr['gflops']:.1f} | "
                   f"{tr['fraction_of_peak']:.0%} of {tr['matmul_peak_gflops']:.0f} |")
    probes = [(run["attention"], run["probe_no_attn_dropout"]) for run in r["runs"] if "probe_no_attn_dropout" in run]
    if probes:
        out += ["", "Training throughput with attention dropout off (on CPU, attention dropout forces SDPA's unfused "
                "path), over a few steps in the same run: " + "; ".join(f"{a}: {p['sequences_per_s']:.0f} seq/s, {p['fraction_of_peak']:.0%} "
                                                     f"of matmul peak" for a, p in probes) + "."]
    if "comparison" in r:
        ref = r["recbole"]
        per_epoch = sum(c["train_seconds"] + c["valid_seconds"] for c in ref["valid_curve"]) / len(ref["valid_curve"])
        cap = (f" — stopped by the {ref['epoch_cap']}-epoch cap of this benchmark, not by early stopping, so its "
               "best is a lower bound on what it reaches, which favours us in both criteria") if ref.get("capped") else ""
        out += ["", f"Against RecBole 1.2.1 in the same run (RecBole: {len(ref['valid_curve'])} epochs{cap}; "
                    f"{per_epoch:.1f} s/epoch, best valid NDCG@10 {ref['best_valid_ndcg@10']:.4f} after "
                    f"{ref['seconds_to_best']:.0f} s, {ref['threads']} thread(s)). Targets: test NDCG@10 ≥ RecBole − 1 % "
                    "relative; time to RecBole's best valid NDCG@10 ≤ 1/3 of RecBole's.", "",
                "| ours | test NDCG@10 ours / RecBole | relative | s to RecBole's best valid (ours / RecBole) | ratio | meets both |",
                "|---|---|---|---|---|---|"]
        for c in r["comparison"]:
            ok = c["relative"] >= -0.01 and c["time_ratio"] is not None and c["time_ratio"] <= 1 / 3
            out.append(f"| SASRec ({c['attention']}) | {c['test_ndcg@10_ours']:.4f} / {c['test_ndcg@10_recbole']:.4f} | "
                       f"{c['relative']:+.1%} | {fmt(c['seconds_to_recbole_best_ours'], 0)} / "
                       f"{c['seconds_to_best_recbole']:.0f} | {fmt(c['time_ratio'], 2)} | {'yes' if ok else 'no'} |")
    if ds in anchors:
        out += ["", "Published anchors on the same data (their settings differ from ours above: read the gap with that in mind):", "",
                "| protocol | published Recall@10 / NDCG@10 | source | ours softmax | ours linear |", "|---|---|---|---|---|"]
        for a in anchors[ds]:
            ours = {run["attention"]: run["test"].get(a["protocol"]) for run in r["runs"]}
            cell = {k: (f"{v['recall@10']:.4f} / {v['ndcg@10']:.4f}" if v else "—") for k, v in ours.items()}
            out.append(f"| {a['protocol']} | {a['recall@10']:.4f} / {a['ndcg@10']:.4f} | {a['source']} | "
                       f"{cell.get('softmax', '—')} | {cell.get('linear', '—')} |")
    return out + [""]


def easrec_section(r: dict) -> list:
    part = "" if "main" in r else (" — gate ablation" if "gates" in r else " — λ sweep")
    variant = f" — {r['variant']} ({', '.join(r['overrides'])})" if r.get("variant") else ""
    out = [f"### {r['dataset']} ({r['attention']} attention){part}{variant}", "",
           f"Command: `{r['command']}` — {machine_line(r['machine'], r['seed'])}", ""]
    if "main" in r:
        out += easrec_main(r["main"])
    if "seeds" in r:
        out += easrec_seeds(r["seeds"])
    for key, title in (("gates", "Gate ablation (Table V)"), ("lambda", "λ sweep (Fig. 4)")):
        if key in r:
            out += [f"{title}:", "", "| setting | chosen d / d_ff / layers | pop100 NDCG@10 | full NDCG@10 | MFLOPs/seq |",
                    "|---|---|---|---|---|"]
            for s in r[key]:
                row = s["rows"][0]
                out.append(f"| {', '.join(s['settings'][1:])} | {row['hidden']} / {row['inner']} / {row['layers']} | "
                           f"{fmt(row['pop100_ndcg@10'])} | {fmt(row['full_ndcg@10'])} | {row['flops_per_sequence'] / 1e6:.2f} |")
            out.append("")
    return out


def easrec_main(m: dict) -> list:
    out = ["| model | d / d_ff / layers / gates | pop100 NDCG@10 | full NDCG@10 | MFLOPs/seq | params | "
           "inference s (test set) | peak MB | train s |", "|---|---|---|---|---|---|---|---|---|"]
    for row in m["rows"]:
        out.append(f"| {row['model']} | {row['hidden']} / {row['inner']} / {row['layers']} / {row['gates']} | "
                   f"{fmt(row['pop100_ndcg@10'])} | {fmt(row['full_ndcg@10'])} | {row['flops_per_sequence'] / 1e6:.2f} | "
                   f"{row['params']:,} | {fmt(row['inference_seconds'], 3)} | {fmt(row['peak_memory_mb'], 0)} | "
                   f"{row['train_seconds']:.0f} |")
    q = m["ratios"]
    out += ["", f"Search took {m['search_seconds']:.0f} s. EASRec vs SASRec: pop100 NDCG@10 {q['pop100_ndcg@10_relative']:+.1%}, "
                f"full NDCG@10 {q['full_ndcg@10_relative']:+.1%}, FLOPs {q['flops_fraction']:.0%} of SASRec's, "
                f"inference {q['inference_speedup']:.1f}× faster, peak memory {fmt(q['memory_fraction'], 2)}× SASRec's, "
                f"search + retrain = {q['search_plus_retrain_over_sasrec']:.2f}× one SASRec training. "
                "Targets: NDCG@10 ≥ SASRec's, FLOPs ≤ 40 %, inference ≥ 3×, lower memory, search + retrain ≤ 2×.", ""]
    return out


def easrec_seeds(s: dict) -> list:
    out = ["Every seed (the table above is the first):", "",
           "| seed | chosen d / d_ff / layers | EASRec pop100 / full NDCG@10 | SASRec pop100 / full NDCG@10 | "
           "pop100 Δ | full Δ | FLOPs | search + retrain |", "|---|---|---|---|---|---|---|---|"]
    for r in s["per_seed"]:
        (d, f), depth = r["arch"]["widths"][r["arch"]["candidate"]], r["arch"]["depth"]
        ours, base = r["ndcg@10"]["EASRec (derived)"], r["ndcg@10"]["SASRec (hand-sized)"]
        q = r["ratios"]
        out.append(f"| {r['seed']} | {d} / {f} / {depth} | {fmt(ours['pop100'])} / {fmt(ours['full'])} | "
                   f"{fmt(base['pop100'])} / {fmt(base['full'])} | {q['pop100_ndcg@10_relative']:+.1%} | "
                   f"{q['full_ndcg@10_relative']:+.1%} | {q['flops_fraction']:.0%} | {q['search_plus_retrain_over_sasrec']:.2f}× |")
    m = s["ratios_mean_std"]

    def p(protocol: str) -> str:  # Welch's t-test of EASRec's NDCG@10 against SASRec's over the seeds
        ours = [r["ndcg@10"]["EASRec (derived)"][protocol] for r in s["per_seed"]]
        base = [r["ndcg@10"]["SASRec (hand-sized)"][protocol] for r in s["per_seed"]]
        test = welch_t_test(ours, base)
        return "" if test is None else " (p < 0.01)" if test["p"] < 0.01 else f" (p {test['p']:.2f})"

    out += ["", f"Mean ± std over {len(s['per_seed'])} seeds: pop100 NDCG@10 {m['pop100_ndcg@10_relative'][0]:+.1%} ± "
                f"{m['pop100_ndcg@10_relative'][1]:.1%}{p('pop100')}, full {m['full_ndcg@10_relative'][0]:+.1%} ± "
                f"{m['full_ndcg@10_relative'][1]:.1%}{p('full')}, "
                f"FLOPs {m['flops_fraction'][0]:.0%}, inference {m['inference_speedup'][0]:.1f}× faster, search + retrain "
                f"{m['search_plus_retrain_over_sasrec'][0]:.2f}× ± {m['search_plus_retrain_over_sasrec'][1]:.2f}. "
                "p: Welch's t-test of the two models' NDCG@10 over the seeds.", ""]
    return out


NASREC_README = ("NASRec's published results (its README; full Kaggle data, not reproducible here): Criteo test log loss "
                 "0.4399 / AUC 0.8118 at 2.20 MFLOPs (NASRec-Small), Avazu 0.3737 / 0.7903, KDD Cup 2012 0.1491 / 0.8154. "
                 "Frappe here is 30 % of the public file (the NFM repository's test + validation parts, re-split 8:1:1).")


def _ms(pair, digits=4) -> str:
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def placement_lines(effect) -> list:
    if not effect:
        return []
    out = ["Where the gain comes from (energy mJ / modelled latency ms per batch, each winner under each placement):", "",
           "| architecture | embeddings in memory, dense on host | co-designed placement |", "|---|---|---|"]
    for mode in ("arch", "codesign"):
        cells = [effect[f"{mode}_arch_{p}"] for p in ("embeddings_in_memory", "codesigned")]
        out.append(f"| {mode} winner | " + " | ".join(f"{c['energy_mj']:.4f} / {c['latency_ms']:.4f}"
                                                     + ("" if c["feasible"] else " (over PIM capacity)") for c in cells) + " |")
    return out + [""] + sensitivity_lines(effect.get("sensitivity"))


def winner_rule(r: dict) -> str:
    """How the search picked its winners (runs before ``retrain_seeds`` existed retrained each candidate once)."""
    sel = r["search"].get("selection")
    if sel is None or sel["retrain_seeds"] == 1:
        return ""
    picked = {"score": "the best inherited-weight scores",
              "front": "the best inherited-weight score, then spread by FLOPs over the validation log loss × FLOPs front"}
    return (f" Searched rows: {sel['top_k']} candidates per mode ({picked[sel['top_k_from']]}) were each retrained from "
            f"scratch with {sel['retrain_seeds']} seeds; the winner has the best mean validation AUC (co-design: less the "
            f"search's hardware term, λ_hw = {sel['hw_weight']}), and its seed runs are the rows.")


def lr_rule(r: dict) -> str:
    """Which learning rates every model was trained at, and each baseline's mean validation AUC at each."""
    lrs = r["search"].get("selection", {}).get("retrain_lrs", [])
    if len(lrs) < 2:
        return ""
    per_model = "; ".join(f"{b['model']} " + " / ".join(f"{v:.4f}" for v in b["lr_valid_auc"].values())
                          for b in r["baselines"])
    return (f" Learning rates: every baseline and every retrained candidate was trained at each of "
            f"{', '.join(f'{lr:g}' for lr in lrs)} with every seed and keeps the one with the best mean validation "
            f"AUC (column lr); the baselines' mean validation AUC at each: {per_model}.")


def ranking_line(r: dict) -> str:
    """How well the supernet's inherited-weight validation AUC ranks the retrained candidates (both modes,
    each network once) by their mean retrained validation AUC."""
    seen = {}
    for m in r["modes"].values():
        for c in m["top"]:
            seen.setdefault((c["search"]["mflops"], c["search"]["valid_logloss"]), c)
    if len(seen) < 3:
        return ""
    cands = list(seen.values())
    tau = kendall_tau([c["search"]["valid_auc"] for c in cands], [c["valid"]["auc"] for c in cands])
    return (f" Supernet ranking: over the {len(cands)} distinct retrained candidates, Kendall's τ between the "
            f"inherited-weight validation AUC and the retrained mean validation AUC is {tau:+.2f}.")


def sensitivity_lines(sensitivity) -> list:
    """Best placement of each winner when one hardware assumption changes (architectures as searched)."""
    if not sensitivity:
        return []
    out = ["Which assumptions decide the placement: each winner's best placement (`hardware.best_placement`, "
           "architectures as searched) with the YAML as is and with one assumption changed; gain = the usual "
           "placement's energy / latency over the best one's (latency below 1: the best placement trades time "
           "for energy).", "",
           "| hardware | overrides | winner | dense operators in memory | energy gain | latency gain |",
           "|---|---|---|---|---|---|"]
    for variant, v in sensitivity.items():
        for mode in ("arch", "codesign"):
            m = v[mode]
            out.append(f"| {variant} | {', '.join(f'`{o}`' for o in v['overrides']) or '—'} | {mode} | "
                       f"{len(m['operators_in_memory'])} of {m['operators']} | {m['energy_usual_over_best']:.2f}× | "
                       f"{m['latency_usual_over_best']:.2f}× |")
    return out + [""]


NORM_NAMES = {"layer": "LayerNorm", "batch": "BatchNorm"}


def space_line(space: dict) -> str:
    return (f"Search space: {space['space']}, {space['blocks']} blocks, dense widths {space['dense_dims']}, sparse "
            f"tokens {space['sparse_dims']}, embedding {space['embed_dim']}, dense operators normalised with "
            f"{NORM_NAMES[space.get('norm', 'layer')]}.")


def space_size(space: dict) -> str:
    return f"{space['blocks']} blocks ≤ {max(space['dense_dims'])} wide"


def search_variants(results: list) -> list:
    """Per dataset, the winners of searches that differ in the space's size, the dense operators' normalisation and
    the retraining dropout (the full tables follow for the variants the report keeps, the rest are
    ablations under ``results/ctr-ablations/``)."""
    by_dataset: dict = {}
    for r in results:
        by_dataset.setdefault(r["dataset"], []).append(r)
    out = ["Each dataset is searched over spaces that differ in size (the preset's 5 blocks up to 256 wide, NASRec's 7 "
           "up to 1024) and in the dense operators' normalisation (`space.norm`: "
           "LayerNorm as NASRec, BatchNorm as the hand-designed MLPs) and retrained with or without dropout "
           "(`retrain_dropout`; the baselines use 0.2). Winners' test AUC is the mean ± std over the seeds, with its "
           "difference to the best baseline and its FLOPs as a share of that baseline's. The supernet column is the "
           "mean validation AUC − log loss of 4 random paths on inherited weights, the supernet's early-stopping score.", "",
           "| dataset | space | normalisation | retrain dropout | supernet | arch-only winner: valid AUC | test AUC | vs best "
           "| FLOPs | co-design winner: valid AUC | test AUC | vs best | FLOPs |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for dataset, rs in by_dataset.items():
        for r in rs:
            cells = []
            for mode, m in r["modes"].items():
                key = "searched" if mode == "arch" else "codesign"
                cells += [f"{m['winner']['valid']['auc']:.4f}", _ms(m["seeds"]["test_auc"]),
                          f"{r['ratios'][f'{key}_auc_minus_best']:+.4f}", f"{r['ratios'][f'{key}_flops_fraction']:.1%}"]
            out.append(f"| {dataset} | {space_size(r['search']['space'])} | {NORM_NAMES[r['search']['space'].get('norm', 'layer')]} | "
                       f"{r['search']['selection'].get('retrain_dropout', 0.0):g} | "
                       f"{r['search']['supernet']['valid_auc_mean_paths']:.4f} | " + " | ".join(cells) + " |")
    return out + [""]


def ctr_section(r: dict) -> list:
    norm = NORM_NAMES[r["search"]["space"].get("norm", "layer")]
    dropout = r["search"]["selection"].get("retrain_dropout", 0.0)
    out = [f"### {r['dataset']} — searched over {space_size(r['search']['space'])} with {norm}, retrained with dropout {dropout:g}", "",
           space_line(r["search"]["space"]), "",
           f"Command: `{r['command']}` — {machine_line(r['machine'], r['seed'])} "
           f"Seeds {r['seeds']} (mean ± std). fp32 matmul peak {r['matmul_peak_gflops']:.1f} GFLOP/s (1024², same process).", "",
           "| model | lr | test AUC | test log loss | MFLOPs/sample | params | embedding params | CPU µs/sample | "
           "train samples/s | p (AUC vs best baseline) |", "|---|---|---|---|---|---|---|---|---|---|"]
    rows = [(b["model"] + (" (best by valid AUC)" if b["model"] == r["best_baseline"] else ""), b, b.get("lr"), None)
            for b in r["baselines"]]
    hand = r.get("hand_sized")
    if hand:
        rows.append((f"{hand['model']}, MLP {'-'.join(map(str, hand['mlp']))} (hand-sized to the budget)", hand, hand["lr"],
                     hand["vs_best_baseline"]))
    rows += [(f"searched ({mode})", m["seeds"], m["winner"].get("lr"), m["vs_best_baseline"]) for mode, m in r["modes"].items()]
    for name, b, lr, test in rows:
        p = "—" if test is None else f"{test['p']:.3f}"
        out.append(f"| {name} | {'—' if lr is None else f'{lr:g}'} | {_ms(b['test_auc'])} | {_ms(b['test_logloss'])} | {b['flops_per_sample'] / 1e6:.3f} | "
                   f"{b['params']:,} | {b['embedding_params']:,} | {b['inference_us_per_sample']:.2f} | "
                   f"{b['samples_per_s']:.0f} | {p} |")
    q, sn = r["ratios"], r["search"]["supernet"]
    if r.get("inference_us_same_run"):
        t = r["inference_us_same_run"]
        out += ["", "CPU inference, all models timed back to back in one process (µs per test sample, batch 1024, "
                "seed-42 runs): " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()) + "."]
    out += ["", f"Budget: {r['budget_fraction']:.0%} of the best baseline's FLOPs = {r['budget_mflops']:.3f} MFLOPs/sample. "
            f"Architecture-only search: mean test AUC {q['searched_auc_minus_best']:+.4f} vs the best baseline at "
            f"{q['searched_flops_fraction']:.0%} of its FLOPs; co-design: {q['codesign_auc_minus_best']:+.4f} at "
            f"{q['codesign_flops_fraction']:.0%}. Target: AUC ≥ the best baseline's with ≤ 50 % of its FLOPs. "
            "p: Welch's two-sided t-test over the seeds." + winner_rule(r) + lr_rule(r) + ranking_line(r)
            + (" Hand-sized: the best baseline with every MLP layer narrowed to the widest multiple of 8 that fits "
               "the same budget, trained like the baselines — what a search has to beat to be worth its cost."
               if hand else ""), "",
            "Co-design vs architecture-only, same PIM model (`configs/pim.yaml`; architecture-only gets the usual "
            "placement: embedding tables in memory, dense operators on the host): "
            f"energy {q['energy_arch_over_codesign']:.2f}×, modelled latency {q['pim_latency_arch_over_codesign']:.2f}×, "
            f"FLOPs {q['flops_arch_over_codesign']:.2f}× lower with co-design (paper: 1.8× energy, 1.5× performance, "
            "2× FLOPs efficiency)." + (" Both modes' winners are the same network, so these ratios are 1×: the "
                                       "architecture-only search's spread over the front reached the small networks "
                                       "co-design prefers." if q.get("same_network") else ""), "",
            *placement_lines(r.get("placement_effect")),
            "| mode | candidates scored | on the Pareto front | energy mJ/batch | PIM latency ms/batch | placed in memory |",
            "|---|---|---|---|---|---|"]
    for mode, m in r["modes"].items():
        s = m["winner"]["search"]
        out.append(f"| {mode} | {m['candidates']} | {m['pareto_front']} | {s['energy_mj']:.4f} | {s['pim_latency_ms']:.4f} | "
                   f"{', '.join(m['winner'].get('placement', [])) or '—'} |")
    t = r["search"]["timings"]
    out += ["", f"Search wall time: supernet training {sn['seconds']:.0f} s ({sn['epochs']} epochs, "
            f"{sn['train_samples_per_s']:.0f} samples/s, ≈{q['supernet_fraction_of_peak']:.1%} of the matmul peak "
            f"counting 3× the mean forward FLOPs of the sampled paths), evolution "
            + ", ".join(f"{k.split('_')[1]} {v:.0f} s" for k, v in t.items() if k.startswith("evolution"))
            + ", retraining (the runs' training time, reused runs included) "
            + ", ".join(f"{mode} {sum(c['train_seconds'] for c in m['top']):.0f} s" for mode, m in r["modes"].items())
            + ". Pareto fronts: `pareto-*.png` in the run folder.", ""]
    return out


def main() -> int:
    anchors = json.loads((HERE / "anchors.json").read_text())
    lines = ["# Benchmarks", "", "Generated by `python benchmarks/render.py` from `benchmarks/results/*.json`; "
             "do not edit by hand. FLOPs count 2 per multiply-add (torch's FlopCounterMode, with the CPU "
             "attention kernel counted). Times are wall-clock on a shared 2-core machine: compare ratios "
             "measured in the same run.", "", "## Sequential core (`make bench-seq`)", ""]
    for path in sorted((HERE / "results").glob("seq-*.json")):
        if path.name.endswith(".partial.json"):
            continue
        lines += seq_section(json.loads(path.read_text()), anchors)
    parts = {"": 0, "-gates": 1, "-lambda": 2}
    easrec = sorted((HERE / "results").glob("easrec-*.json"),
                    key=lambda p: next((p.stem.removesuffix(k), v) for k, v in reversed(parts.items())
                                       if p.stem.endswith(k)))
    if easrec:
        lines += ["## EASRec search (`benchmarks/bench_easrec.py`)", ""]
        for path in easrec:
            lines += easrec_section(json.loads(path.read_text()))
    for folder, heading in REPRODUCE_SECTIONS.items():
        tables = sorted((HERE / "results" / folder).glob("*.md"))
        if tables:
            lines += [heading, ""]
            for path in tables:
                lines += ["#" + path.read_text().strip(), ""]  # one heading level down
    ctr = sorted((HERE / "results").glob("ctr-*.json"))
    if ctr:
        lines += ["## CTR track: baselines and NASRec-style search with PIM co-design (`benchmarks/bench_ctr.py`)", "",
                  NASREC_README, ""]
        results = [json.loads(path.read_text()) for path in ctr]
        ablations = [json.loads(path.read_text()) for path in sorted((HERE / "results" / "ctr-ablations").glob("ctr-*.json"))]
        lines += search_variants(sorted(results + ablations, key=lambda r: (
            r["dataset"], r["search"]["space"]["blocks"], r["search"]["space"].get("norm", "layer") == "batch",
            r["search"]["selection"].get("retrain_dropout", 0.0))))
        for r in results:
            lines += ctr_section(r)
    ihas = sorted((HERE / "results").glob("ihas-*.json"))
    if ihas:
        from render_ihas import ihas_section

        lines += ["## Embedding track: iHAS instance-wise dimensions (`benchmarks/bench_ihas.py`)", ""]
        for path in ihas:
            lines += ihas_section(json.loads(path.read_text()))
    widths = sorted((HERE / "results").glob("emb-widths-*.json"), key=lambda p: p.stem)  # full-width variants after the default
    if widths:
        from render_ihas import widths_section

        lines += ["## Embedding track: the fixed-width frontier (`benchmarks/bench_emb_widths.py`)", ""]
        for path in widths:
            lines += widths_section(json.loads(path.read_text()))
    text = "\n".join(lines)
    tmp = ROOT / "BENCHMARKS.md.tmp"
    tmp.write_text(text)
    tmp.replace(ROOT / "BENCHMARKS.md")
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
