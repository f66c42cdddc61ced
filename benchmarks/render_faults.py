"""BENCHMARKS.md's sections on bad inputs (``results/fuzz.json``, ``bench_fuzz.py``) and on runs killed
at random moments (``results/kill.json``, ``bench_kill.py``)."""
from __future__ import annotations

from typing import List

from render_common import machine_line

OUTCOMES = ("same", "parsed", "named", "crash", "partial")


def fuzz_section(r: dict) -> List[str]:
    t = r["totals"]
    out = ["## Bad inputs (`benchmarks/bench_fuzz.py`)", "",
           f"Command: `{r['command']}` — {machine_line(r['machine'], 'per case')}", "",
           f"**{t['tried']:,} inputs tried, {t.get('named', 0):,} named errors, {t.get('crash', 0)} crashes, "
           f"{t.get('partial', 0)} partial outputs** ({t.get('same', 0):,} files with the clean content read to "
           f"the clean arrays, {t.get('parsed', 0):,} broken files still readable, e.g. cut at a line end). "
           "A named error is a ValueError (the command line's exit 2) whose message names the file; a crash is "
           "any other exception, an error that does not name the file, or a clean-content file read differently; "
           "a partial output is a cache entry left by a failed CTR read.", "",
           "| reader | cases | " + " | ".join(OUTCOMES) + " |", "|---|---|" + "---|" * len(OUTCOMES)]
    for reader, per_mutation in r["counts"].items():
        tally = {k: sum(m.get(k, 0) for m in per_mutation.values()) for k in OUTCOMES}
        out.append(f"| {reader} | {sum(tally.values()):,} | " + " | ".join(f"{tally[k]:,}" for k in OUTCOMES) + " |")
    out.append("")
    for f in r["failures"][:20]:
        out.append(f"- {f['outcome']}: {f['reader']} / {f['mutation']} (seed {f['seed']}): {f['detail']}")
    return out + ([""] if r["failures"] else [])


def kill_section(r: dict) -> List[str]:
    out = ["## Killed at any moment (`benchmarks/bench_kill.py`)", "",
           f"Command: `{r['command']}` — {machine_line(r['machine'], r['seed'])}", "",
           "Each run is killed with SIGKILL at a uniform moment of its uninterrupted wall time, then resumed with "
           "`--resume` (and killed again, as the command says) until it finishes; *equal* counts resumed runs whose "
           "results file (times and paths left out) equals the uninterrupted run's exactly. Every checkpoint left "
           "by a kill is loaded.", "",
           "| command | uninterrupted s | runs | kills | killed before the run folder | equal | different | "
           "unreadable checkpoints |", "|---|---|---|---|---|---|---|---|"]
    for name, c in r["commands"].items():
        out.append(f"| `recarch {name.replace('-', ' ')}` | {c['reference_seconds']:.0f} | {c['runs']} | {c['kills']} | "
                   f"{c['killed_before_the_folder']} | {c['resumed_equal']} | {c['resumed_different']} | "
                   f"{len(c['unreadable_checkpoints'])} |")
    return out + [""]


def gpu_check_section(r: dict) -> List[str]:
    devices = sorted({d for step in r["steps"].values() for d in step})
    out = [f"## GPU check on {r['device_name']} (`benchmarks/gpu_check.sh`)", "",
           f"Command: `{r['command']}` — {machine_line(r['machine'], 'per step')} Every step **capped** "
           f"({r['epochs']} epoch(s)): a check that each step runs and a speed comparison, not accuracy. "
           f"Process group of the one-process run: {r['process_group']}.", "",
           "| step | " + " | ".join(devices) + " |", "|---|" + "---|" * len(devices)]
    for name, by_device in r["steps"].items():
        unit = "" if name.endswith(" s") else " (s per epoch)"
        out.append(f"| {name}{unit} | " + " | ".join(f"{by_device[d]:.1f}" if d in by_device else "—" for d in devices) + " |")
    return out + [""]
