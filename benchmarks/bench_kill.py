"""Kill at any moment: SIGKILL `recarch train`, `search`, `ctr train`, `ctr search` and `ihas` at random times, resume,
and check that every resumed run ends with the uninterrupted run's numbers, bit for bit.

Each command (small settings on ml-100k and frappe) first runs once uninterrupted: its wall time T
and its results (metrics.json / summary.json, times and paths left out) are the reference. Then, per
kill, the command starts in a fresh folder and is killed with SIGKILL after a uniform draw in
[0.05·T, 0.95·T]; every checkpoint it left must load; if its run folder exists it is resumed with
``--resume`` (which may itself be killed again, ``--kills-per-run`` times in all) until it finishes,
and its results must equal the reference. A kill before the run folder exists must leave nothing.

Writes ``benchmarks/results/kill.json``; BENCHMARKS.md shows the counts. Example:
``python benchmarks/bench_kill.py --kills 20 --data-dir ../shared/data``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

from recarch.cost import machine_info
from recarch.io import write_json_atomic

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VOLATILE = re.compile(r"seconds|_s$|elapsed|per_s|rate|run_dir|wall|machine|inference|memory|finished_at|"
                      r"started_at|git_commit|timings|latency|search_seconds|us_per_sample")


def _sets(*pairs: str) -> List[str]:
    return [x for p in pairs for x in ("--set", p)]


COMMANDS: Dict[str, dict] = {
    "train": {"args": ["train", "--dataset", "ml-100k", *_sets(
        "model.max_len=20", "model.hidden_size=16", "model.inner_size=32", "model.n_layers=1", "train.epochs=4",
        "train.patience=0", "train.progress=false", "cost.enabled=false")], "result": "metrics.json"},
    "search": {"args": ["search", "--config", "configs/easrec-quick.yaml", *_sets(
        "model.max_len=20", "model.hidden_size=16", "model.inner_size=32", "model.n_heads=2", "train.epochs=3",
        "retrain.epochs=2", "cost.enabled=false", "space.attn_intensities=[0.0, 0.5]",
        "space.ffn_intensities=[0.0, 0.5]")], "result": "summary.json"},
    "ctr-train": {"args": ["ctr", "train", "--model", "dcnv2", "--dataset", "frappe", *_sets(
        "model.embed_dim=4", "model.mlp=[16]", "train.epochs=4", "train.patience=0", "train.progress=false",
        "train.batch_size=4096", "cost.enabled=false")], "result": "metrics.json"},
    "ctr-search": {"args": ["ctr", "search", "--dataset", "frappe", *_sets(
        "space.blocks=2", "space.dense_dims=[8,16]", "space.sparse_dims=[4,8]", "train.epochs=2",
        "train.batch_size=2048", "train.progress=false", "evolution.population=6", "evolution.sample_size=3",
        "evolution.children=2", "evolution.generations=3", "top_k=2", "retrain.epochs=1", "retrain.batch_size=4096",
        "retrain.progress=false", "cost.threads=1", "train.optimizer=adagrad", "train.lr=0.05",
        "latency_table=false")], "result": "summary.json"},
    "ihas": {"args": ["ihas", "--dataset", "frappe", "--backbone", "deepfm", "--clusters", "3", *_sets(
        "model.embed_dim=4", "model.mlp=[16]", "blocks=2", "search.epochs=2", "search.batch_size=4096",
        "retrain.epochs=2", "retrain.patience=0", "retrain.batch_size=4096", "cost.enabled=false",
        "kmeans_sample=5000", "gate.hash_buckets=32", "target=0.5", "reg_warmup_epochs=1",
        "reg_ramp_epochs=0.5", "budget=0.35")], "result": "summary.json"},
}


def stable(obj):
    """``obj`` without what differs between identical runs (times, paths, machine)."""
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in obj.items() if not VOLATILE.search(k)}
    if isinstance(obj, list):
        return [stable(v) for v in obj]
    return obj


def recarch(args: List[str], data_dir: str, timeout: float, kill_after: Optional[float] = None) -> Optional[int]:
    """Run ``recarch args``; killed with SIGKILL after ``kill_after`` seconds (returns None then)."""
    cmd = [sys.executable, "-m", "recarch.cli", "--data-dir", data_dir, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        proc.wait(timeout=kill_after if kill_after is not None else timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and any child it started (memory measurement)
        proc.wait()
        return None
    if proc.returncode != 0:
        raise RuntimeError(f"recarch {' '.join(args[:2])} exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
    return proc.returncode


def unreadable_checkpoints(folder: Path) -> List[str]:
    import torch

    bad = []
    for path in folder.rglob("*.pt"):
        try:
            torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 (what this counts)
            bad.append(f"{path.relative_to(folder)}: {type(err).__name__}: {err}")
    return bad


def one_kill(name: str, spec: dict, out: Path, data_dir: str, reference: dict, ref_seconds: float,
             rng: random.Random, kills_per_run: int) -> dict:
    row = {"kills": 0, "unreadable": [], "folder": False, "equal": None}
    args = spec["args"] + ["--out-dir", str(out)]
    for attempt in range(kills_per_run + 1):
        last = attempt == kills_per_run
        kill_after = None if last else rng.uniform(0.05, 0.95) * ref_seconds
        folders = [p for p in out.iterdir() if p.is_dir()] if out.exists() else []
        if folders:
            resumed = [spec["args"][0]] if spec["args"][0] != "ctr" else spec["args"][:2]
            done = recarch([*resumed, "--resume", str(folders[0])], data_dir, 20 * ref_seconds + 300, kill_after)
        else:
            done = recarch(args, data_dir, 20 * ref_seconds + 300, kill_after)
        if done is None:
            row["kills"] += 1
            folders = [p for p in out.iterdir() if p.is_dir()] if out.exists() else []
            row["unreadable"] += [u for f in folders for u in unreadable_checkpoints(f)]
            row["folder"] = row["folder"] or bool(folders)
            continue
        break
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    row["equal"] = stable(json.loads((folder / spec["result"]).read_text())) == reference
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20, help="killed runs per command")
    ap.add_argument("--kills-per-run", type=int, default=2, help="times each of those runs is killed before it may finish")
    ap.add_argument("--commands", nargs="*", default=list(COMMANDS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=os.environ.get("RECARCH_DATA"))
    ap.add_argument("--out", default=str(HERE / "results" / "kill.json"))
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.commands:
            spec = COMMANDS[name]
            ref_out = Path(scratch) / name / "reference"
            started = time.perf_counter()
            recarch(spec["args"] + ["--out-dir", str(ref_out)], args.data_dir, 3600)
            ref_seconds = time.perf_counter() - started
            (ref_folder,) = list(ref_out.iterdir())
            reference = stable(json.loads((ref_folder / spec["result"]).read_text()))
            rows = [one_kill(name, spec, Path(scratch) / name / f"kill{i}", args.data_dir, reference, ref_seconds,
                             rng, args.kills_per_run) for i in range(args.kills)]
            results[name] = {"reference_seconds": ref_seconds, "runs": len(rows),
                             "kills": sum(r["kills"] for r in rows),
                             "killed_before_the_folder": sum(1 for r in rows if r["kills"] and not r["folder"]),
                             "resumed_equal": sum(1 for r in rows if r["equal"]),
                             "resumed_different": sum(1 for r in rows if not r["equal"]),
                             "unreadable_checkpoints": [u for r in rows for u in r["unreadable"]]}
            print(f"{name}: {results[name]['kills']} kills over {len(rows)} runs, {results[name]['resumed_equal']} "
                  f"ended equal to the uninterrupted run, {len(results[name]['unreadable_checkpoints'])} unreadable checkpoints",
                  flush=True)
    result = {"benchmark": "kill", "seed": args.seed, "commands": results,
              "command": "python benchmarks/bench_kill.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": machine_info(1)}
    write_json_atomic(args.out, result)
    failed = any(r["resumed_different"] or r["unreadable_checkpoints"] for r in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
