"""Ranking fidelity of an elastic supernet (issue 25): does the score an architecture gets on the
supernet's inherited weights rank architectures the way training each alone does?

From a finished ``strategy: elastic`` search (its ``search/candidates.json``), ``--archs`` candidates
are drawn uniformly (seeded), each is trained standalone from scratch with the search's retrain
settings (to patience, or for ``--epochs`` epochs, then marked capped) in
``<run>/fidelity/<arch>/`` (resumable: a finished one is kept), and Kendall's τ and Spearman's ρ are
computed between the inherited and the standalone validation scores (the search's validation
protocol and metric). Writes ``benchmarks/results/fidelity-<dataset>[-<variant>].json`` and a scatter
plot beside it; ``benchmarks/render.py`` renders the table.

Example: ``python benchmarks/bench_fidelity.py --run benchmarks/.work/easrec/beauty-softmax-main-elastic-sota
--archs 20 --epochs 30``.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import replace
from pathlib import Path

import torch

from recarch import config as cfglib
from recarch import run
from recarch.cost import machine_info
from recarch.io import save_figure_atomic, write_json_atomic
from recarch.reproduce.stats import kendall_tau, spearman_rho
from recarch.search.elastic import Arch, ElasticSupernet
from recarch.search.job import SearchRunConfig, train_phase
from recarch.search.summary import summary_row

HERE = Path(__file__).resolve().parent


def standalone(cfg: SearchRunConfig, net: ElasticSupernet, arch: Arch, folder: Path, epochs: int | None,
               data_dir, echo: bool) -> dict:
    """``arch`` trained alone from scratch with the retrain settings (``epochs``: a shorter cap)."""
    run_cfg = cfg.run_config(net.derived_config(arch))
    if epochs:
        run_cfg = replace(run_cfg, train=replace(run_cfg.train, epochs=epochs))
    return train_phase(run_cfg, data_dir, folder, echo, resume=True)


def plot(rows: list, path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.scatter([r["inherited"] for r in rows], [r["standalone"] for r in rows], s=18)
    ax.set_xlabel("validation score, inherited weights")
    ax.set_ylabel("validation score, trained alone")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a finished strategy-elastic search run folder")
    ap.add_argument("--archs", type=int, default=20, help="candidates drawn uniformly and trained alone")
    ap.add_argument("--epochs", type=int, default=None, help="cap each standalone training (default: the retrain's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variant", default="")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run_dir = Path(args.run)
    scored_path = run_dir / "search" / "candidates.json"
    if not scored_path.exists():
        raise SystemExit(f"{scored_path}: not found; --run expects a finished strategy-elastic search")
    cfg = cfglib.from_dict(SearchRunConfig, cfglib.read_yaml(run_dir / "config.yaml"))
    cfg = replace(cfg, retrain=replace(cfg.retrain, threads=args.threads, progress=False))
    scored = json.loads(scored_path.read_text())
    drawn = random.Random(args.seed).sample(scored, min(args.archs, len(scored)))
    data = run.load_dataset(cfg.run_config(cfg.model), args.data_dir)
    net = ElasticSupernet(data.num_items, cfg.model, cfg.elastic)  # shapes only: never trained here
    protocol, metric = cfg.retrain.valid_protocol, cfg.retrain.valid_metric
    rows = []
    for entry in drawn:
        arch = Arch.from_dict(entry["arch"])
        result = standalone(cfg, net, arch, run_dir / "fidelity" / arch.folder(), args.epochs, args.data_dir,
                            not args.quiet)
        row = summary_row(arch.name(), result)
        rows.append({"arch": entry["arch"], "name": arch.name(), "flops_fraction": entry["flops_fraction"],
                     "inherited": entry["score"], "standalone": result["valid"][protocol][metric],
                     "test_full_ndcg@10": row["full_ndcg@10"], "stopped_by": row["stopped_by"],
                     "epochs_run": row["epochs_run"], "train_seconds": row["train_seconds"]})
        print(f"{arch.name()}: inherited {rows[-1]['inherited']:.4f}, alone {rows[-1]['standalone']:.4f} "
              f"({row['stopped_by']} at epoch {row['epochs_run']})", flush=True)
    inherited, alone = [r["inherited"] for r in rows], [r["standalone"] for r in rows]
    dataset = cfg.data.dataset
    name = f"fidelity-{dataset}" + (f"-{args.variant}" if args.variant else "")
    result = {"benchmark": "fidelity", "dataset": dataset, "run": str(run_dir), "seed": args.seed,
              "metric": f"valid {protocol} {metric}", "epochs_cap": args.epochs or cfg.retrain.epochs,
              "kendall_tau": kendall_tau(inherited, alone), "spearman_rho": spearman_rho(inherited, alone),
              "capped": sum(r["stopped_by"] == "cap" for r in rows), "rows": rows,
              "random_paths": cfg.supernet.random_paths,
              "command": "python benchmarks/bench_fidelity.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": machine_info(args.threads)}
    out = Path(args.out_dir)
    write_json_atomic(out / f"{name}.json", result)
    plot(rows, out / f"{name}.png", f"{dataset}: τ {result['kendall_tau']:.2f}, ρ {result['spearman_rho']:.2f} "
         f"over {len(rows)} architectures")
    print(f"{dataset}: Kendall τ {result['kendall_tau']:.3f}, Spearman ρ {result['spearman_rho']:.3f} over {len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
