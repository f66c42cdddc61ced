"""Regenerate BENCHMARKS.md from the JSON results in benchmarks/results/ (never edit it by hand)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from recarch.reproduce.stats import welch_t_test
from recarch.search.elastic import Arch
from render_common import fmt, machine_line
from render_ctr import baselines_section, ctr_track, dropout_section, ingest_section
from render_faults import fuzz_section, gpu_check_section, kill_section
from render_ihas import ihas_section, widths_section
from render_scale import scale_section
from render_search import ctr_fidelity_section, fidelity_section
from render_sota import peer_section, precision_section, sota_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROTOCOLS = ["pop100", "pop100-recbole", "uni100", "full"]


REPRODUCE_SECTIONS = {  # results folder → its heading
    "reproduce": "## The EASRec paper's tables on our data (`recarch reproduce … --out-dir benchmarks/results/reproduce`)",
    "reproduce-scratch": "## The same tables with every searched model retrained from scratch (`recarch reproduce … "
                         "--set inherit=false --out-dir benchmarks/results/reproduce-scratch`): the hand-sized rows are "
                         "the same runs; only the search methods' retrains lose the supernet's weights",
}


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
    overrides = f" ({', '.join(r['overrides'])})" if r.get("overrides") else ""
    variant = f" — {r['variant']}{overrides}" if r.get("variant") else ""
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
    out = []
    if m.get("path_scores"):
        out += ["Validation NDCG@10 of every path on the trained supernet's weights (the derive keeps the best "
                "within the budget): " + ", ".join(f"width {p['width']}, FFN {p['ffn']}, {p['depth']} layer(s): "
                                                   f"{p['score']:.4f}" + ("" if p["within_budget"] else " (over the budget)")
                                                   for p in m["path_scores"]) + ".", ""]
    out += ["| model | d / d_ff / layers / gates | pop100 NDCG@10 | full NDCG@10 | MFLOPs/seq | params | "
           "inference s (test set) | peak MB | train s |", "|---|---|---|---|---|---|---|---|---|"]
    for row in m["rows"]:
        capped = " (**capped**)" if row.get("stopped_by") == "cap" else ""
        out.append(f"| {row['model']}{capped} | {row['hidden']} / {row['inner']} / {row['layers']} / {row['gates']} | "
                   f"{fmt(row['pop100_ndcg@10'])} | {fmt(row['full_ndcg@10'])} | {row['flops_per_sequence'] / 1e6:.2f} | "
                   f"{row['params']:,} | {fmt(row['inference_seconds'], 3)} | {fmt(row['peak_memory_mb'], 0)} | "
                   f"{row['train_seconds']:.0f} |")
    searched = [(row["model"], row["arch"]) for row in m["rows"] if row.get("arch")]
    if not searched and m.get("arch", {}).get("arch"):  # random search in the elastic space
        searched = [(m["rows"][0]["model"], m["arch"]["arch"])]
    if searched:
        out += [""] + [f"- {name}: {Arch.from_dict(arch).name()}" for name, arch in searched]
    if m.get("candidates"):
        out += ["", f"{len(m['candidates'])} architectures scored on the supernet's weights "
                    f"(`search/candidates.json`; validation NDCG@10 {min(c['score'] for c in m['candidates']):.4f} to "
                    f"{max(c['score'] for c in m['candidates']):.4f})."]
    q = m["ratios"]
    name = m["rows"][0]["model"].replace(" (derived)", "")
    phase = m.get("search_phase")
    searched_for = (f" ({phase['epochs_run']} epochs, best {phase['best_epoch']}, stopped by "
                    + ("the epoch cap: **capped**" if phase["stopped_by"] == "cap" else "patience") + ")") if phase else ""
    out += ["", f"Search took {m['search_seconds']:.0f} s{searched_for}. {name} vs SASRec: pop100 NDCG@10 {q['pop100_ndcg@10_relative']:+.1%}, "
                f"full NDCG@10 {q['full_ndcg@10_relative']:+.1%}, FLOPs {q['flops_fraction']:.0%} of SASRec's, "
                f"inference {q['inference_speedup']:.1f}× faster, peak memory {fmt(q['memory_fraction'], 2)}× SASRec's, "
                f"search + retrain = {q['search_plus_retrain_over_sasrec']:.2f}× one SASRec training. "
                "Targets: NDCG@10 ≥ SASRec's, FLOPs ≤ 40 %, inference ≥ 3×, lower memory, search + retrain ≤ 2×.", ""]
    return out


def derived(by_model: dict):
    """The derived model's entry of a {model name: …} map (EASRec's, or another strategy's: the first
    that is not the hand-sized model)."""
    return next(v for k, v in by_model.items() if k != "SASRec (hand-sized)")


def stops(r: dict) -> str:
    """How the seed's supernet, derived model and hand-sized model stopped ("—" where not recorded)."""
    def one(stop) -> str:
        return "—" if not stop or stop[0] is None else f"{stop[0]} ({stop[1]} / {stop[2]})"

    phase = r.get("search_phase") or {}
    rows = r.get("stopped", {})
    supernet = [phase.get("stopped_by"), phase.get("best_epoch"), phase.get("epochs_run")]
    derived_stop = next((v for k, v in rows.items() if k != "SASRec (hand-sized)"), None)
    return ", ".join(one(x) for x in (supernet, derived_stop, rows.get("SASRec (hand-sized)")))


def chosen(arch: dict) -> str:
    """A seed's searched architecture: EASRec's width / FFN width / depth, or an elastic one's name."""
    if "candidate" in arch:
        d, f = arch["widths"][arch["candidate"]]
        return f"{d} / {f} / {arch['depth']}"
    return Arch.from_dict(arch).name()


def easrec_seeds(s: dict) -> list:
    stopped = any("stopped" in r for r in s["per_seed"])  # results written before bench_easrec kept it have none
    out = ["Every seed (the table above is the first):", "",
           "| seed | chosen d / d_ff / layers (elastic: the architecture) | derived pop100 / full NDCG@10 | SASRec pop100 / full NDCG@10 | "
           "pop100 Δ | full Δ | FLOPs | search + retrain |"
           + (" stopped by (best / run epochs): supernet, derived, SASRec |" if stopped else ""),
           "|---|---|---|---|---|---|---|---|" + ("---|" if stopped else "")]
    for r in s["per_seed"]:
        ours, base = derived(r["ndcg@10"]), r["ndcg@10"]["SASRec (hand-sized)"]
        q = r["ratios"]
        out.append(f"| {r['seed']} | {chosen(r['arch'])} | {fmt(ours['pop100'])} / {fmt(ours['full'])} | "
                   f"{fmt(base['pop100'])} / {fmt(base['full'])} | {q['pop100_ndcg@10_relative']:+.1%} | "
                   f"{q['full_ndcg@10_relative']:+.1%} | {q['flops_fraction']:.0%} | {q['search_plus_retrain_over_sasrec']:.2f}× |"
                   + (f" {stops(r)} |" if stopped else ""))
    m = s["ratios_mean_std"]

    def p(protocol: str) -> str:  # Welch's t-test of EASRec's NDCG@10 against SASRec's over the seeds
        ours = [derived(r["ndcg@10"])[protocol] for r in s["per_seed"]]
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


def main() -> int:
    anchors = json.loads((HERE / "anchors.json").read_text())
    lines = ["# Benchmarks", "", "Generated by `python benchmarks/render.py` from `benchmarks/results/*.json`; "
             "do not edit by hand. FLOPs count 2 per multiply-add (torch's FlopCounterMode, with the CPU "
             "attention kernel counted). Times are wall-clock on a shared 2-core machine: compare ratios "
             "measured in the same run.", ""]
    sota = [json.loads(path.read_text()) for path in sorted((HERE / "results").glob("sota-*.json"))]
    if sota:
        lines += sota_table(sota)
    peer = sorted((HERE / "results").glob("peer-rectools-*.json"))
    for path in peer:
        lines += peer_section(json.loads(path.read_text()))
    for path in sorted((HERE / "results").glob("precision-*.json")):
        lines += precision_section(json.loads(path.read_text()))
    lines += ["## Sequential core (`make bench-seq`)", ""]
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
    for path in sorted((HERE / "results").glob("fidelity-*.json")):
        lines += fidelity_section(json.loads(path.read_text()))
    for path in sorted((HERE / "results").glob("ctr-fidelity-*.json")):
        lines += ctr_fidelity_section(json.loads(path.read_text()))
    for folder, heading in REPRODUCE_SECTIONS.items():
        tables = sorted((HERE / "results" / folder).glob("*.md"))
        if tables:
            lines += [heading, ""]
            for path in tables:
                lines += ["#" + path.read_text().strip(), ""]  # one heading level down
    ctr = sorted(p for p in (HERE / "results").glob("ctr-*.json") if not p.name.startswith("ctr-fidelity-"))
    if ctr:
        ablations = sorted((HERE / "results" / "ctr-ablations").glob("ctr-*.json"))
        lines += ctr_track([json.loads(path.read_text()) for path in ctr],
                           [json.loads(path.read_text()) for path in ablations])
    for path in sorted((HERE / "results" / "ctr-baselines").glob("*.json")):
        lines += baselines_section(json.loads(path.read_text()))
    for path in sorted((HERE / "results").glob("ingest-*.json"), key=lambda p: p.stem):  # a --tag variant after its default
        lines += ingest_section(json.loads(path.read_text()))
    for path in sorted((HERE / "results").glob("dropout-*.json")):
        lines += dropout_section(json.loads(path.read_text()))
    ihas = sorted((HERE / "results").glob("ihas-*.json"), key=lambda p: p.stem)  # a --tag variant after its default
    if ihas:
        lines += ["## Embedding track: iHAS instance-wise dimensions (`benchmarks/bench_ihas.py`)", ""]
        for path in ihas:
            lines += ihas_section(json.loads(path.read_text()))
    widths = sorted((HERE / "results").glob("emb-widths-*.json"), key=lambda p: p.stem)  # full-width variants after the default
    if widths:
        lines += ["## Embedding track: the fixed-width frontier (`benchmarks/bench_emb_widths.py`)", ""]
        for path in widths:
            lines += widths_section(json.loads(path.read_text()))
    if (HERE / "results" / "scale.json").exists():
        before = HERE / "results" / "scale-before-chunked-load.json"
        lines += scale_section(json.loads((HERE / "results" / "scale.json").read_text()),
                               json.loads(before.read_text()) if before.exists() else None)
    if (HERE / "results" / "fuzz.json").exists():
        lines += fuzz_section(json.loads((HERE / "results" / "fuzz.json").read_text()))
    if (HERE / "results" / "kill.json").exists():
        lines += kill_section(json.loads((HERE / "results" / "kill.json").read_text()))
    for path in sorted((HERE / "results").glob("gpu-check-*.json")):
        lines += gpu_check_section(json.loads(path.read_text()))
    text = "\n".join(lines)
    tmp = ROOT / "BENCHMARKS.md.tmp"
    tmp.write_text(text)
    tmp.replace(ROOT / "BENCHMARKS.md")
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
