"""Markdown for the CTR track: ``benchmarks/results/ctr-*.json`` (written by ``bench_ctr.py``) and the
ablations under ``results/ctr-ablations/``; ``ctr_track(results, ablations)`` returns the lines, for
``benchmarks/render.py`` to place in BENCHMARKS.md; the hand baselines, ingest and dropout benchmarks' sections."""
from __future__ import annotations

from pathlib import Path
from typing import List

import yaml

from recarch.reproduce.stats import kendall_tau
from render_common import machine_line

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
SEARCH_PRESET = Path(__file__).resolve().parents[1] / "configs" / "ctr-search-small.yaml"  # bench_ctr.py's


def rerun_hint(r: dict) -> str:
    """A result searched with a normalisation the preset no longer defaults to, by a command that did not
    name it: what to add to rerun it today."""
    norm = r["search"]["space"].get("norm", "layer")
    preset = yaml.safe_load(SEARCH_PRESET.read_text()).get("space", {}).get("norm", "layer")
    if norm == preset or "space.norm" in r["command"]:
        return ""
    return (f" The preset searched with {NORM_NAMES[norm]} when this ran; to rerun it today add "
            f"`--search-set space.norm={norm}`.")


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
           f"Seeds {r['seeds']} (mean ± std). fp32 matmul peak {r['matmul_peak_gflops']:.1f} GFLOP/s (1024², same process)."
           + rerun_hint(r), "",
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
    stop = {"cap": f", **capped** at {sn.get('epoch_cap')} epochs (best epoch {sn['best_epoch']})",
            "patience": f", stopped by patience (best epoch {sn['best_epoch']})"}.get(sn.get("stopped_by"), "")
    out += ["", f"Search wall time: supernet training {sn['seconds']:.0f} s ({sn['epochs']} epochs{stop}, "
            f"{sn['train_samples_per_s']:.0f} samples/s, {sn['train_gflops_per_s']:.1f} GFLOP/s = "
            f"{q['supernet_fraction_of_peak']:.0%} of the matmul peak, counting 3× the forward FLOPs of the random "
            f"paths it trained on, {sn['mean_path_mflops']:.2f} MFLOPs/sample on average"
            + (f"; recounted at `{r['supernet_flops_recounted']['machine']['git_commit'][:10]}` by replaying them, "
               "as earlier results counted the budget-sized candidates instead"
               if "supernet_flops_recounted" in r else "") + "), evolution "
            + ", ".join(f"{k.split('_')[1]} {v:.0f} s" for k, v in t.items() if k.startswith("evolution"))
            + ", retraining (the runs' training time, reused runs included) "
            + ", ".join(f"{mode} {sum(c['train_seconds'] for c in m['top']):.0f} s" for mode, m in r["modes"].items())
            + ". Pareto fronts: `pareto-*.png` in the run folder.", ""]
    return out


def ctr_track(results: List[dict], ablations: List[dict]) -> List[str]:
    """The section heading, the variants table over every search (ablations included), then one full
    section per kept result."""
    lines = ["## CTR track: baselines and NASRec-style search with PIM co-design (`benchmarks/bench_ctr.py`)", "",
             NASREC_README, ""]
    lines += search_variants(sorted(results + ablations, key=lambda r: (
        r["dataset"], r["search"]["space"]["blocks"], r["search"]["space"].get("norm", "layer") == "batch",
        r["search"]["selection"].get("retrain_dropout", 0.0))))
    for r in results:
        lines += ctr_section(r)
    return lines


def ingest_section(r: dict) -> List[str]:
    """``results/ingest-*.json`` (``bench_ctr_ingest.py``): time and peak memory per job and file size."""
    tag = f" — `--tag {r['tag']}`" if r.get("tag") else ""
    out = [f"### Ingesting your own click log (`data.table`): ml-1m clicks{tag}", "",
           f"Command: `{r['command']}` — {machine_line(r['machine'], r['seed'])}", "",
           f"The log: MovieLens-1M (SASRec's version) positives joined with the user and movie tables, plus one "
           f"uniformly drawn negative item each (seed 0); columns {', '.join(r['columns'])}; ×R: the rows "
           f"written R times. Each job runs in its own process. Private MB: its peak anonymous memory (RssAnon, "
           f"polled every 5 ms), and that peak less the same side's interpreter with its imports alone (recarch: torch and pandas; pandas: pandas); file-backed MB: its "
           f"peak page cache of memory-mapped files (RssFile, reclaimable), which recarch's spool and cache "
           f"files add to the resident size. *recarch*: read and check every row, build the training vocabularies, split 8:1:1, "
           f"write the memory-mapped cache. *pandas read_csv*: parsing alone (`dtype=str`). *pandas encode*: "
           f"read_csv, then `pd.factorize` per column, in memory. *recarch parquet* / *pandas read_parquet*: "
           f"the same rows as Parquet (where the result has them).", "",
           "| file (CSV) | job | seconds | rows/s | CSV MB/s | × read_csv time | private MB | private MB over import | "
           "file-backed MB |", "|---|---|---|---|---|---|---|---|---|"]
    runs = r["runs"]
    if runs[0].get("trials", 1) > 1:
        out[-2:-2] = [f"Each job ran {runs[0]['trials']} times: the table keeps its fastest time and its largest memory.", ""]
    for repeat in sorted({x["repeat"] for x in runs}):
        same = {x["job"]: x for x in runs if x["repeat"] == repeat}
        ref = same["pandas read_csv"]["seconds"]
        for job, x in same.items():
            if job.endswith("import only"):
                continue
            floor = same[f"{job.split()[0]} import only"]["peak_private_mb"]
            out.append(f"| ×{repeat}: {x['rows']:,} rows, {x['file_mb']:.0f} MB | {job} | {x['seconds']:.2f} | "
                       f"{x['rows'] / x['seconds']:,.0f} | {x['file_mb'] / x['seconds']:.1f} | "
                       f"{x['seconds'] / ref:.2f} | {x['peak_private_mb']:.0f} | {x['peak_private_mb'] - floor:.0f} | "
                       f"{x['peak_file_mb']:.0f} |")
    return out + [""]


def baselines_section(r: dict) -> List[str]:
    """``results/ctr-baselines/<dataset>.json`` (``bench_ctr.py --baselines-only``): the hand baselines beside
    the popularity floor, before any search runs on the dataset."""
    floor, one_seed = r.get("popularity_floor"), len(r["seeds"]) == 1
    stat = (lambda pair: f"{pair[0]:.4f}") if one_seed else _ms  # one seed has no spread to show
    out = [f"### {r['dataset']} — hand baselines (`--baselines-only`)", "",
           f"Command: `{r['command']}` — {machine_line(r['machine'], r['seed'])} Seeds {r['seeds']}"
           f"{' (one seed: no spread yet)' if one_seed else ' (mean ± std)'}; "
           f"each model keeps the learning rate of {', '.join(f'{lr:g}' for lr in r['lrs'])} with the best mean "
           f"validation AUC. Every run stopped by patience on validation unless its epochs equal the cap (100).", "",
           "| model | lr | test AUC | test log loss | best epoch / run (per seed) | MFLOPs/sample | params | train samples/s |",
           "|---|---|---|---|---|---|---|---|"]
    for b in r["baselines"]:
        name = b["model"]
        epochs = ", ".join(f"{s['best_epoch']} / {s['epochs_run']}" for s in b["per_seed"])
        out.append(f"| {name}{' (best by valid AUC)' if name == r['best_baseline'] else ''} | {b['lr']:g} | "
                   f"{stat(b['test_auc'])} | {stat(b['test_logloss'])} | {epochs} | "
                   f"{b['flops_per_sample'] / 1e6:.3f} | {b['params']:,} | {b['samples_per_s']:.0f} |")
    commits = {}
    for b in r["baselines"]:
        for run in b["per_seed"]:
            commits.setdefault(f"`{(run.get('commit') or '?')[:10]}`", set()).add(run["seed"])
    if len(commits) > 1:  # e.g. seeds kept by --reuse-results from an earlier result
        out += ["", "Seeds trained at different commits: " + "; ".join(
            f"seed(s) {', '.join(map(str, sorted(seeds)))} at {commit}" for commit, seeds in commits.items()) + "."]
    if floor:
        out += ["", f"Popularity floor: scoring each test row by its {floor['field']}'s {floor['scorer']} gives test AUC "
                    f"{floor['test_auc']:.4f}."]
    return out + [""]


def dropout_section(r: dict) -> List[str]:
    """``bench_dropout.py``: recarch's Dropout against torch's, same process, alternating rounds."""
    alone = r["dropout_alone"]
    out = [f"### Dropout from one uniform draw on {r['dataset']} (`benchmarks/bench_dropout.py`)", "",
           f"Command: `{r['command']}` — {machine_line(r['machine'], r['seed'])} Load average at the start: "
           f"{r['load_average_at_start']:.1f}. The two dropouts take turns "
           "on the same inputs and weights (median of the rounds); ratios > 1 mean recarch's `Dropout` is faster.", "",
           "| what | torch.nn.Dropout ms | recarch Dropout ms | speed-up |", "|---|---|---|---|"]
    rows = [(f"dropout alone, forward + backward, {alone['shape'][0]}×{alone['shape'][1]}, p {alone['p']}", alone)]
    rows += [(f"{s['model']} training step (batch {s['batch_size']})", s) for s in r["training_steps"]]
    for what, s in rows:
        torch_ms, ours_ms = s["median_ms"].values()
        out.append(f"| {what} | {torch_ms:.2f} | {ours_ms:.2f} | {s['speedup']:.2f}× |")
    return out + [""]
