"""Cost curves on synthetic logs (benchmarks/synth.py; cost only, never accuracy): where time and
memory go as the log and the catalogue grow.

Sequential track, per (interactions, items) point: the time to read and index the log, seconds per
training epoch of SASRec (width 64, one block, sampled softmax with 256 negatives, batch 128; timed
over ``--train-batches`` batches and scaled to the epoch) with Adam's dense step and, on the same
batches, with the item table updated row-wise (``train.sparse_embeddings``), full-ranking evaluation seconds per 1,000
users (timed on ``--eval-users`` users), and the process's peak RSS. CTR track, per rows point:
ingest (parse, vocabulary or hashing into at most ``--hash-buckets`` rows per field, the cached
encoding), seconds per training epoch of DLRM (timed over batches and scaled) with Adam's row-wise
embedding updates (``train.sparse_embeddings``) and, on the same batches, with its dense step, peak RSS. Each point
runs in its own process, so peak RSS is its own. Writes ``benchmarks/results/scale.json``
(resumable: finished points are kept with ``--reuse``, each with the command and machine that measured
it) and a plot beside it; ``benchmarks/render.py`` renders it.

Example: ``python benchmarks/bench_scale.py --seq 1e6:1e4 1e6:1e5 1e6:1e6 1e7:1e5 1e7:1e6 3e7:1e5 --ctr 1e7 4.5e7
--hash-buckets 400000 --reuse``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "scale"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_split_mb() -> dict:
    """This process's resident memory now, split into anonymous (its own arrays and tensors) and file-backed
    (memory-mapped caches, which the kernel may drop and read again), from /proc/self/status (Linux)."""
    try:
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    except OSError:
        return {}
    return {f"rss_{key[3:].lower()}_mb": int(status[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile")
            if key in status}


def seq_point(interactions: int, items: int, train_batches: int, eval_users: int, threads: int) -> dict:
    """One sequential point, in this process."""
    import torch

    from recarch import run
    from recarch.data.batching import TrainBatches
    from recarch.evaluation import Evaluator
    from recarch.models import SeqModelConfig, build_model
    from recarch.train import TrainConfig, Trainer

    torch.set_num_threads(threads)
    users = max(interactions // 50, 1)
    log = WORK / f"seq-{interactions}-{items}.csv"
    if not log.exists():
        subprocess.run([sys.executable, str(HERE / "synth.py"), "seq", str(log), "--users", str(users), "--items",
                        str(items), "--mean-length", "50"], check=True, capture_output=True)
    cfg = run.load_run_config(sets=[f"data.table.path={log}"])
    start = time.perf_counter()
    data = run.load_dataset(cfg, None)
    load_seconds = time.perf_counter() - start
    rss_loaded = peak_rss_mb()
    model_cfg = SeqModelConfig(max_len=50, hidden_size=64, inner_size=64, n_layers=1, n_heads=1)
    evaluator = Evaluator(data, 50, protocols=["full"])
    epoch = {}
    for sparse in (False, True):  # the same batches and negatives through Adam's dense step and its row-wise one
        torch.manual_seed(0)
        model = build_model(model_cfg, data.num_items)
        tcfg = TrainConfig(loss="sampled_softmax", num_negatives=256, batch_size=128, epochs=1, progress=False,
                           threads=threads, sparse_embeddings=sparse)
        batches = TrainBatches(data, 50, tcfg.regime, tcfg.batch_size, 0)
        trainer = Trainer(model, batches, evaluator, tcfg, None, log=lambda m: None)
        timed = 0
        model.train()
        start = time.perf_counter()
        for batch in batches.epoch(1):
            loss = trainer.step_loss(*batch)
            trainer.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            trainer.optimizer.step()
            timed += 1
            if timed == train_batches:
                break
        epoch["row_wise" if sparse else "dense"] = (time.perf_counter() - start) / timed * len(batches)
    rows = min(eval_users, evaluator.view("valid").num_rows)
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for a in range(0, rows, evaluator.batch_size):
            seq = torch.from_numpy(evaluator.inputs("valid", a, min(a + evaluator.batch_size, rows)))
            evaluator.batch_ranks(model.score_last(seq), "valid", "full", a)
    eval_seconds = (time.perf_counter() - start) / rows * 1000
    return {"interactions": len(data.items), "users": data.num_users, "items": data.num_items,
            "load_seconds": load_seconds, "seconds_per_epoch": epoch["dense"],
            "seconds_per_epoch_row_wise": epoch["row_wise"], "timed_batches": timed,
            "batches_per_epoch": len(batches), "full_ranking_seconds_per_1000_users": eval_seconds,
            "eval_rows_per_batch": evaluator.batch_size, "peak_rss_mb_after_load": rss_loaded,
            "peak_rss_mb": peak_rss_mb(), **rss_split_mb()}


def ctr_point(rows: int, hash_buckets: int, train_batches: int, threads: int) -> dict:
    """One CTR point, in this process."""
    import torch

    from recarch.ctr.datasets import get_ctr_dataset
    from recarch.ctr.models import CTRModelConfig, build_ctr_model
    from recarch.ctr.table import TrainBatches
    from recarch.train import TrainConfig
    from recarch.train.optimizers import build_optimizer

    torch.set_num_threads(threads)
    root = WORK / f"ctr-{rows}"
    log = root / "criteo" / "train.txt"
    if not log.exists():
        subprocess.run([sys.executable, str(HERE / "synth.py"), "ctr", str(log), "--rows", str(rows),
                        "--max-vocab", "10000000"], check=True, capture_output=True)
    start = time.perf_counter()
    data = get_ctr_dataset("criteo", str(root), hash_buckets=hash_buckets, cache_dir=str(root / "cache"),
                           progress=False)
    ingest_seconds = time.perf_counter() - start
    rss_loaded = peak_rss_mb()
    batches = TrainBatches(data.train, 4096, 0)
    epoch = {}
    for sparse in (False, True):  # the same batches through Adam's dense step and its row-wise one
        model = build_ctr_model(data.schema, CTRModelConfig(name="dlrm"))
        optimizer = build_optimizer(model, list(model.parameters()), TrainConfig(sparse_embeddings=sparse))
        timed = 0
        start = time.perf_counter()
        for cat, num, label in batches.epoch(1):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(cat, num), label)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            timed += 1
            if timed == train_batches:
                break
        epoch["row_wise" if sparse else "dense"] = (time.perf_counter() - start) / timed * len(batches)
        del model, optimizer
    return {"rows": rows, "hash_buckets": hash_buckets, "ingest_seconds": ingest_seconds,
            "embedding_rows": int(sum(data.schema.vocab_sizes)),
            "seconds_per_epoch": epoch["row_wise"], "seconds_per_epoch_dense_adam": epoch["dense"],
            "timed_batches": timed, "batches_per_epoch": len(batches), "peak_rss_mb_after_ingest": rss_loaded,
            "peak_rss_mb": peak_rss_mb(), **rss_split_mb()}


def in_child(kind: str, args: list) -> dict:
    """Run one point in a fresh process (its peak RSS its own); its JSON is the last line it prints."""
    out = subprocess.run([sys.executable, __file__, "--point", kind, *map(str, args)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def plot(result: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from recarch.io import save_figure_atomic

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    pts = sorted(result["seq"], key=lambda p: (round(p["interactions"], -6), p["items"]))
    for key, label in (("load_seconds", "load s"), ("seconds_per_epoch", "s per epoch, dense Adam"),
                       ("seconds_per_epoch_row_wise", "s per epoch, row-wise items"),
                       ("full_ranking_seconds_per_1000_users", "full ranking s / 1k users")):
        axes[0].plot([f"{p['interactions'] / 1e6:.0f}M/{p['items'] / 1e3:.0f}k" for p in pts], [p[key] for p in pts],
                     marker="o", label=label)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("interactions / items seen")
    axes[0].legend(fontsize=7)
    pts = sorted(result["ctr"], key=lambda p: p["rows"])
    for key, label in (("ingest_seconds", "ingest s"), ("seconds_per_epoch", "s per epoch, row-wise Adam"),
                       ("seconds_per_epoch_dense_adam", "s per epoch, dense Adam")):
        axes[1].plot([p["rows"] / 1e6 for p in pts], [p[key] for p in pts], marker="o", label=label)
    axes[1].set_xlabel("CTR rows (millions)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", nargs="*", default=[], metavar="INTERACTIONS:ITEMS")
    ap.add_argument("--ctr", nargs="*", default=[], metavar="ROWS")
    ap.add_argument("--hash-buckets", type=int, default=10_000_000)
    ap.add_argument("--train-batches", type=int, default=50)
    ap.add_argument("--eval-users", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reuse", action="store_true", help="keep the points results/scale.json already holds")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument("--point", nargs="+", help=argparse.SUPPRESS)  # internal: one point in this process
    args = ap.parse_args(argv)
    if args.point:
        kind, *values = args.point
        values = [int(float(v)) for v in values]
        print(json.dumps(seq_point(*values) if kind == "seq" else ctr_point(*values)))
        return 0
    from recarch.cost import machine_info
    from recarch.io import write_json_atomic

    WORK.mkdir(parents=True, exist_ok=True)
    path = Path(args.out_dir) / "scale.json"
    old = json.loads(path.read_text()) if args.reuse and path.exists() else {"seq": [], "ctr": []}
    for row in old["seq"] + old["ctr"]:  # a file written before points kept their own: its one command and machine
        for key in ("command", "machine"):
            if key not in row:
                row[key] = old[key]
    # every point records the invocation and machine that measured it: --reuse gathers points of several runs
    here = {"command": "python benchmarks/bench_scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": machine_info(args.threads)}
    result = {"benchmark": "scale", "seq": old["seq"], "ctr": old["ctr"]}
    for point in args.seq:
        interactions, items = (int(float(v)) for v in point.split(":"))
        if not any(p["asked"] == [interactions, items] for p in result["seq"]):
            row = in_child("seq", [interactions, items, args.train_batches, args.eval_users, args.threads])
            result["seq"].append({"asked": [interactions, items], **row, **here})
            print(json.dumps(result["seq"][-1]), flush=True)
            write_json_atomic(path, result)
    for point in args.ctr:
        rows = int(float(point))
        if not any(p["rows"] == rows for p in result["ctr"]):
            result["ctr"].append({**in_child("ctr", [rows, args.hash_buckets, args.train_batches, args.threads]), **here})
            print(json.dumps(result["ctr"][-1]), flush=True)
            write_json_atomic(path, result)
    write_json_atomic(path, result)
    plot(result, path.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
