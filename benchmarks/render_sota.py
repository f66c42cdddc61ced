"""BENCHMARKS.md sections for the tuned recipe against published numbers (bench_sota.py) and for the
RecTools peer run side by side (bench_peer_rectools.py)."""
from __future__ import annotations

from bench_sota import PROTOCOL_NOTES
from render_common import fmt, short_commit


def _spread(ours: dict, metric: str) -> str:
    """Mean ± std over seeds, or the single seed's value marked as such."""
    if len(ours["per_seed"]) == 1:
        return f"{ours[f'test_full_{metric}']:.4f} (**1 seed**)"
    return f"{ours[f'test_full_{metric}']:.4f} ± {ours['std'][metric]:.4f}"


def sota_table(results: list) -> list:
    """One row per sota-*.json: published beside ours (mean ± std over seeds), floors and speed."""
    out = ["## State of the art on identical files (`benchmarks/bench_sota.py`)", "",
           "Full ranking, leave-one-out, the user's history masked; test NDCG@10 / Recall@10 of the best "
           "validation epoch, mean ± standard deviation over seeds. Every seed is stopped by patience on "
           "validation NDCG@10 unless the row says \"capped\". Relative: ours / published − 1. Floors: the "
           "most popular items and a first-order Markov chain, both counted on the training parts.", "",
           "| dataset | recipe | published | ours NDCG@10 | ours Recall@10 | relative NDCG / Recall | stopped by "
           "(epochs) | s / epoch | % matmul peak | popularity / Markov NDCG@10 |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        o, p, m = r["ours"], r["published"], r["config"]["model"]
        recipe = (f"{m['name']}, {m['layer']} layers, d {m['hidden_size']}, "
                  + (f"item table {m['item_width']}, " if m.get("item_width") else "")
                  + f"N {m['max_len']}, {m['n_layers']} block(s), "
                  + ("padding keys, " if m.get("padding") == "visible" else "")
                  + (f"item dropout {m['item_dropout']}, " if m.get("item_dropout") else "") +
                  f"`{r['config']['train']['loss']}`" + (f" ({r['tag']})" if r.get("tag") else ""))
        stops = ", ".join(f"{s} ({e})" for s, e in zip(o["stopped_by"], o["epochs_run"]))
        capped = " **capped**" if "cap" in o["stopped_by"] else ""
        out.append(
            f"| {r['dataset']} | {recipe} | {p['model']} {p['ndcg@10']:.4f} / {p['recall@10']:.4f} | "
            f"{_spread(o, 'ndcg@10')} | {_spread(o, 'recall@10')} | "
            f"{o['relative_to_published']['ndcg@10']:+.1%} / {o['relative_to_published']['recall@10']:+.1%} | "
            f"{stops}{capped} | {o['seconds_per_epoch']:.1f} | {r['training_speed']['fraction_of_peak']:.1%} | "
            f"{r['floors']['popularity']['test_full_ndcg@10']:.4f} / "
            f"{r['floors']['markov_chain']['test_full_ndcg@10']:.4f} |")
    out.append("")
    for i, r in enumerate(results):
        mach = r["machine"]
        out += [f"- **{r['dataset']}**: `{r['command']}` (configs {', '.join(r['config_files'])}); seeds "
                f"{r['seeds']}, {r['parallel']} at a time, one thread each; {mach.get('cpu')}, torch {mach.get('torch')}, "
                f"commit `{short_commit(mach.get('git_commit'))}`. Published: {r['published']['source']}. "
                f"Seconds per epoch: training only (validation adds "
                f"{sum(s['valid_seconds_per_epoch'] for s in r['ours']['per_seed']) / len(r['seeds']):.1f} s); "
                f"training {r['training_speed']['gflops']:.1f} GFLOP/s against a {r['training_speed']['matmul_peak_gflops']:.0f} "
                f"GFLOP/s 1024² matmul on one thread."
                + (f" Inference: {r['ours']['inference_flops_per_sequence'] / 1e6:.2f} MFLOPs per sequence (every item "
                   "scored after the last N)." if r["ours"].get("inference_flops_per_sequence") else "")]
        if i + 1 == len(results) or results[i + 1]["dataset"] != r["dataset"]:  # once, after the dataset's last row
            out += [f"  - Protocol ({r['dataset']}): {note}" for note in PROTOCOL_NOTES.get(r["dataset"], [])]
    return out + [""]


def peer_section(r: dict) -> list:
    c, peer = r["comparison"], r["rectools"]
    cap = (f"RecTools was stopped by its wall-time cap after {peer['epochs_run']} epochs (**capped**): its best is "
           "the best it reached in that time, not its converged accuracy." if r["rectools"]["capped"] else
           f"RecTools stopped by patience after {peer['epochs_run']} epochs.")
    return ["## recarch against RecTools's SASRec, side by side (`benchmarks/bench_peer_rectools.py`)", "",
            f"`{r['command']}`: both train at the same time on the same machine, one thread each, with the same "
            f"settings ({', '.join(f'{k} {v}' for k, v in r['settings'].items() if k not in ('threads', 'limit_val_batches'))}), "
            f"RecTools {peer.get('rectools_version', '')} (torch {peer.get('torch_version', '?')}) in its own virtualenv. {cap} "
            f"Commit `{short_commit(r['machine'].get('git_commit'))}`.", "",
            "| | recarch | RecTools |", "|---|---|---|",
            f"| seconds per epoch (training + full-ranking validation) | {c['seconds_per_epoch']['ours']:.1f} | "
            f"{c['seconds_per_epoch']['rectools']:.1f} |",
            f"| seconds to RecTools's best validation NDCG@10 ({c['rectools_best_valid_ndcg@10']:.4f}) | "
            f"{fmt(c['seconds_to_rectools_best']['ours'], 1)} | {fmt(c['seconds_to_rectools_best']['rectools'], 1)} |",
            f"| test NDCG@10 / Recall@10 | {c['test_ndcg@10']['ours']:.4f} / {c['test_recall@10']['ours']:.4f} | "
            f"{c['test_ndcg@10']['rectools']:.4f} / {c['test_recall@10']['rectools']:.4f} |", "",
            f"Time to RecTools's best: {fmt(c['time_ratio'], 3)} of RecTools's.", ""]


def precision_section(r: dict) -> list:
    runs = r["runs"]
    capped = all(row["stopped_by"] == "cap" for row in runs.values())
    out = [f"## Mixed precision on {r['dataset']} (`benchmarks/bench_precision.py`)", "",
           f"`{r['command']}`: fp32 and `train.precision: bf16` (the encoder's forward under bfloat16 autocast, "
           f"loss and weights in fp32) trained side by side, one thread each, seed {r['seed']}, recipe "
           f"{', '.join(r['recipe'])}, {r['epochs']} epochs"
           + (" (**capped**: an equal-epoch comparison, not converged accuracy)" if capped else "")
           + f". Commit `{short_commit(r['machine'].get('git_commit'))}`.", "",
           "| precision | seconds per epoch | best epoch | test NDCG@10 / Recall@10 | stopped by |", "|---|---|---|---|---|"]
    for name, row in runs.items():
        out.append(f"| {name} | {row['seconds_per_epoch']:.1f} | {row['best_epoch']} | {row['test_full_ndcg@10']:.4f} / "
                   f"{row['test_full_recall@10']:.4f} | {row['stopped_by']} |")
    return out + ["", f"bf16 runs at {r['bf16_speedup']:.2f}× fp32's speed per epoch.", ""]
