"""BENCHMARKS.md's section on cost curves over synthetic logs (``results/scale.json``, ``bench_scale.py``)."""
from __future__ import annotations

from typing import List, Optional

from render_common import fmt, machine_line

SYNTH_SEED = "0 (synth.py's default)"


def mb(x) -> str:
    return "—" if x is None else f"{x:,.0f}"


def growth_line(points: List[dict]) -> List[str]:
    """What an epoch costs per million interactions at the fewest and the most items seen, both steps."""
    both = [p for p in points if p.get("seconds_per_epoch_row_wise")]
    if len(both) < 2:
        return []
    few, many = min(both, key=lambda p: p["items"]), max(both, key=lambda p: p["items"])

    def per_million(p, key):
        return p[key] / (p["interactions"] / 1e6)

    return [f"Per million interactions, an epoch took {per_million(few, 'seconds_per_epoch'):.0f} s with {few['items']:,} "
            f"items seen and {per_million(many, 'seconds_per_epoch'):.0f} s with {many['items']:,} under dense Adam (the "
            f"whole item table and its moments rewritten every step), against {per_million(few, 'seconds_per_epoch_row_wise'):.0f} "
            f"s and {per_million(many, 'seconds_per_epoch_row_wise'):.0f} s with row-wise item updates. Full ranking grows "
            f"with the items scored, in memory bounded by the evaluator's rows per batch."]


def load_lines(points: List[dict], before: Optional[dict]) -> List[str]:
    """The same logs loaded before read_table parsed CSVs in chunks (``before``'s points) and now."""
    if not before:
        return []
    now = {tuple(p["asked"]): p for p in points}
    rows = [f"{p['interactions']:,} interactions, {p['items']:,} items: {p['peak_rss_mb_after_load']:,.0f} → "
            f"{now[tuple(p['asked'])]['peak_rss_mb_after_load']:,.0f} MB"
            for p in before["seq"] if tuple(p["asked"]) in now]
    return [f"Peak RSS after loading, before → since the CSV is parsed in chunks with categorical ids "
            f"(`results/{before['file']}`, {before['note']}): " + "; ".join(rows) + ".", ""] if rows else []


def scale_section(r: dict, before: Optional[dict] = None) -> List[str]:
    out = ["## Cost at scale, synthetic logs (`benchmarks/bench_scale.py`)", "",
           "Synthetic logs (`benchmarks/synth.py`: Zipf popularity, geometric lengths; Criteo's 13 numeric and "
           "26 categorical fields) measure cost only, never accuracy. Training epochs are timed over a few "
           "batches and scaled to the epoch; each point runs in its own process. Peak RSS counts the "
           "memory-mapped caches the run touched (file-backed pages the kernel may drop), so the anonymous "
           "part (the run's own arrays and tensors, at the end) is given beside it.", ""]
    if r["seq"]:
        out += ["**Sequential** (SASRec width 64, one block, N 50, sampled softmax with 256 negatives, batch 128; "
                "full ranking over every item):", "",
                "| interactions | users | items seen | load s | s / epoch, dense Adam | s / epoch, row-wise items | "
                "full ranking s / 1k users | peak RSS MB | anonymous MB |", "|---|---|---|---|---|---|---|---|---|"]
        for p in sorted(r["seq"], key=lambda p: (p["interactions"], p["items"])):
            out.append(f"| {p['interactions']:,} | {p['users']:,} | {p['items']:,} | {p['load_seconds']:.1f} | "
                       f"{p['seconds_per_epoch']:.0f} | {fmt(p.get('seconds_per_epoch_row_wise'), 0)} | "
                       f"{p['full_ranking_seconds_per_1000_users']:.2f} | "
                       f"{p['peak_rss_mb']:,.0f} | {mb(p.get('rss_anon_mb'))} |")
        out += ["", *growth_line(r["seq"]), "", *load_lines(r["seq"], before)]
    if r["ctr"]:
        out += ["**CTR** (DLRM, embedding 16, batch 4096, Adam; every field hashed into the same number of rows):", "",
                "| rows | embedding rows | ingest s | s / epoch, row-wise Adam | s / epoch, dense Adam | "
                "row-wise / dense | peak RSS MB | anonymous MB |", "|---|---|---|---|---|---|---|---|"]
        for p in sorted(r["ctr"], key=lambda p: p["rows"]):
            out.append(f"| {p['rows']:,} | {p['embedding_rows']:,} | {p['ingest_seconds']:.0f} | "
                       f"{p['seconds_per_epoch']:.0f} | {p['seconds_per_epoch_dense_adam']:.0f} | "
                       f"{p['seconds_per_epoch'] / p['seconds_per_epoch_dense_adam']:.2f}× | {p['peak_rss_mb']:,.0f} | "
                       f"{mb(p.get('rss_anon_mb'))} |")
        out.append("")
    runs = {}  # the invocations that measured the points (older files kept one command and machine for all)
    for p in r["seq"] + r["ctr"]:
        command, machine = p.get("command", r.get("command")), p.get("machine", r.get("machine"))
        runs.setdefault((command, machine_line(machine, SYNTH_SEED)), []).append(
            f"{p['interactions']:,} interactions" if "interactions" in p else f"{p['rows']:,} CTR rows")
    for (command, machine), points in runs.items():
        out.append(f"- {', '.join(points)}: `{command}` — {machine}")
    return out + ["", "![cost curves](benchmarks/results/scale.png)", ""]
