"""Ranking fidelity of the CTR supernet (issue 26): do the scores candidates get on the supernet's
inherited weights rank them as training each alone does, and does NASRec's scoring (a short fine-tune
of the final layer first, recarch.ctr.finetune) make that ranking hold?

The supernet trains as phase 1 of ``recarch ctr search`` does (``configs/ctr-search-small.yaml`` and
``--set`` overrides), in ``benchmarks/.work/ctr-fidelity/<dataset>[-<tag>]/`` (resumable). ``--archs``
candidates spread evenly over the FLOPs range are picked from uniform draws of the space; each is scored
on inherited weights as the evolution scores it (BatchNorm re-estimated), again after each of
``--finetune-steps`` final-layer fine-tunes, and trained alone from scratch with the search's retrain
settings (its learning rates, one seed or ``--set retrain_seeds=N``; a finished training is kept, in
the untagged variant's ``alone/`` folder named by the architecture, which every variant shares).
Kendall's τ and Spearman's ρ between each score and the trained-alone validation log loss (with several
seeds: their mean, and τ between two seeds as the ceiling their noise sets) go to
``benchmarks/results/ctr-fidelity-<dataset>[-<tag>].json`` with a scatter plot beside it.

``--supernet-from SEARCH_DIR`` starts from the supernet of a ``ctr search`` run with the same supernet
settings (copied; it goes on if that one had not stopped). ``--finetune-from valid`` fits the fine-tunes on
held-out validation rows instead of training rows (both: ``train valid``); ``--reuse-alone RESULT.json``
takes the trained-alone scores of the same candidates from an earlier result (a fresh clone has no
trained-alone runs).

Example: ``python benchmarks/bench_ctr_fidelity.py --dataset frappe --archs 20 --finetune-steps 50 500``
(run again with other steps, it scores again and keeps the supernet and the trained-alone runs).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch

from recarch import config as cfglib
from recarch.cost import machine_info
from recarch.ctr.retrain import retrain_candidates
from recarch.ctr.run import CTRRunConfig, load_data
from recarch.ctr.search import CandidateScorer
from recarch.ctr.search_config import load_search_config
from recarch.ctr.space import sample
from recarch.ctr.supernet_training import train_supernet
from recarch.io import save_figure_atomic, write_json_atomic
from recarch.reproduce.stats import kendall_tau, spearman_rho
from recarch.run import RunLog
from recarch.run_status import open_run
from recarch.train.stopping import stopped_by

HERE = Path(__file__).resolve().parent
DRAWS = 400  # uniform draws of the space the candidates are picked from
ON_ROWS = {"train": "", "valid": " on held-out rows"}  # how a fine-tune's score is labelled by the rows it fits on
SUPERNET_KEYS = ("data", "space", "train", "supernet", "largest_warmup_steps", "eval_paths", "calibration_rows")


def spread_over_flops(scorer: CandidateScorer, space, n: int, seed: int) -> list:
    """``n`` distinct networks at evenly spaced ranks of FLOPs among ``DRAWS`` uniform draws."""
    rng = random.Random(seed)
    distinct = {}
    for _ in range(DRAWS):
        arch = sample(space, rng)
        distinct.setdefault(arch.network_key(), arch)
    ranked = sorted(distinct.values(), key=scorer.mflops)
    step = (len(ranked) - 1) / max(n - 1, 1)
    return [ranked[round(i * step)] for i in range(min(n, len(ranked)))]


def supernet_settings(cfg) -> dict:
    """What the supernet's weights depend on: a work folder's supernet serves any other scoring, retrain
    or candidate settings and thread counts, and goes on to a larger ``train.epochs`` (if its early stopping
    has not ended it)."""
    settings = {key: value for key, value in cfglib.to_dict(cfg).items() if key in SUPERNET_KEYS}
    settings["train"] = {k: v for k, v in settings["train"].items() if k not in ("epochs", "threads", "progress")}
    return settings


def alone_arch_file(folder: Path, space, arch) -> Path:
    """The architecture's file in the folder of trained-alone runs, named by its content, so that
    variants of the supernet (``--tag``) that pick the same candidates share their trained-alone runs."""
    text = json.dumps({"space": cfglib.to_dict(space), "arch": arch.to_dict(), "placement": []}, sort_keys=True)
    path = folder / f"{hashlib.sha1(text.encode()).hexdigest()[:12]}.json"
    if not path.exists():
        write_json_atomic(path, json.loads(text))
    return path


def run_stopped_by(run_dir: Path, patience: int) -> str:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return stopped_by(metrics["epochs_run"], metrics["best_epoch"], patience)


ALONE_FIELDS = ("alone_valid_logloss", "alone_valid_auc", "alone_test_auc", "lr", "stopped_by")


def stored_alone(path: Path, rows: list, cfg) -> tuple:
    """``--reuse-alone``: the trained-alone fields of ``rows`` and the seed-to-seed ranks from an earlier
    result over the same candidates (architecture files are named by content) with the same space and
    retrain learning rates and seeds, for a fresh clone whose trained-alone runs are gone."""
    earlier = json.loads(path.read_text())
    same = {"space": cfglib.to_dict(cfg.space), "retrain_lrs": cfg.learning_rates(), "alone_seeds": cfg.retrain_seeds}
    if any(earlier[k] != v for k, v in same.items()):
        raise SystemExit(f"{path}: its candidates were trained with other settings than {same}")
    by_arch = {Path(r["arch_file"]).name: r for r in earlier["rows"]}
    missing = [r["arch_file"] for r in rows if Path(r["arch_file"]).name not in by_arch]
    if missing:
        raise SystemExit(f"{path} lacks {len(missing)} of the {len(rows)} candidates, e.g. {missing[0]}")
    return [{k: by_arch[Path(r["arch_file"]).name][k] for k in ALONE_FIELDS} for r in rows], earlier["alone_seed_to_seed"]


def plot(rows: list, path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(4.8, 4))
    alone = [r["alone_valid_logloss"] for r in rows]
    for (label, _), marker in zip(rows[0]["scores"].items(), "ox+^v"):
        ax.scatter([r["scores"][label] for r in rows], alone, s=18, marker=marker, label=label)
    ax.set_xlabel("validation log loss, supernet's weights")
    ax.set_ylabel("validation log loss, trained alone")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
    return True


def trained_alone(rows: list, cfg, data, args) -> Optional[dict]:
    """Trains every candidate of ``rows`` alone (finished runs are kept) and adds their scores to the rows;
    with several seeds, returns the ranks between the first two seeds: how far their noise lets any score rank."""
    trained = retrain_candidates(cfg, [(HERE.parent / r["arch_file"], (HERE.parent / r["arch_file"]).with_suffix(""))
                                       for r in rows], args.data_dir, not args.quiet, data)
    for row, alone in zip(rows, trained):
        row.update(alone_valid_logloss=alone["valid"]["logloss"], alone_valid_auc=alone["valid"]["auc"],
                   alone_test_auc=alone["test"]["auc"], lr=alone["lr"],
                   stopped_by=[run_stopped_by(Path(run["run_dir"]), cfg.retrain.patience) for run in alone["per_seed"]])
    if cfg.retrain_seeds == 1:
        return None
    first, second = ([t["per_seed"][k]["valid"]["logloss"] for t in trained] for k in (0, 1))
    return {"kendall_tau": kendall_tau(first, second), "spearman_rho": spearman_rho(first, second)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="frappe")
    ap.add_argument("--archs", type=int, default=20)
    ap.add_argument("--finetune-steps", type=int, nargs="+", default=[500],
                    help="final-layer fine-tunes to score with, beside the inherited weights as they are")
    ap.add_argument("--finetune-from", nargs="+", choices=["train", "valid"], default=["train"],
                    help="rows each fine-tune fits on: training rows (NASRec), held-out validation rows, or both")
    ap.add_argument("--reuse-alone", type=Path, metavar="RESULT.json",
                    help="take the trained-alone scores from this earlier result instead of training the candidates")
    ap.add_argument("--supernet-from", type=Path, metavar="SEARCH_DIR",
                    help="start from the supernet that this `ctr search` run folder trained with the same settings")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="search config overrides")
    ap.add_argument("--tag", default="", help="names a variant (work folder and result file)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    name = f"ctr-fidelity-{args.dataset}" + (f"-{args.tag}" if args.tag else "")
    cfg = load_search_config([HERE.parent / "configs" / "ctr-search-small.yaml"],
                             [f"data.dataset={args.dataset}", f"train.threads={args.threads}",
                              f"retrain.threads={args.threads}", "retrain_seeds=1", *args.set])
    data = load_data(CTRRunConfig(data=cfg.data), args.data_dir)
    run_dir = HERE / ".work" / "ctr-fidelity" / name.removeprefix("ctr-fidelity-")
    if not (run_dir / "config.yaml").exists():
        open_run(run_dir, cfglib.to_dict(cfg))
    elif supernet_settings(load_search_config([run_dir / "config.yaml"])) != supernet_settings(cfg):
        raise SystemExit(f"{run_dir} holds a supernet trained with other settings; remove it or name this one with --tag")
    if args.supernet_from and not (run_dir / "supernet").exists():
        if supernet_settings(load_search_config([args.supernet_from / "config.yaml"])) != supernet_settings(cfg):
            raise SystemExit(f"{args.supernet_from}: its supernet was trained with other settings than these")
        shutil.copytree(args.supernet_from / "supernet" / "checkpoints", run_dir / "supernet" / "checkpoints")
    log = RunLog(run_dir / "log.txt", not args.quiet)
    started = time.perf_counter()
    net, fit = train_supernet(cfg, data, run_dir, log, resume=True)
    scorers = {"inherited": CandidateScorer(net, data, cfg, None, "arch"),
               **{f"{steps} fine-tune steps" + ON_ROWS[rows]:
                  CandidateScorer(net, data, replace(cfg, finetune_steps=steps, finetune_from=rows), None, "arch")
                  for rows in args.finetune_from for steps in args.finetune_steps}}
    archs = spread_over_flops(scorers["inherited"], cfg.space, args.archs, cfg.train.seed)
    rows = []
    for k, arch in enumerate(archs):
        path = alone_arch_file(HERE / ".work" / "ctr-fidelity" / args.dataset / "alone", cfg.space, arch)
        scores = {label: scorer.arch_info(arch)["valid_logloss"] for label, scorer in scorers.items()}
        rows.append({"arch_file": str(path.relative_to(HERE.parent)), "mflops": scorers["inherited"].mflops(arch),
                     "scores": scores})
        log(f"candidate {k}: {rows[-1]['mflops']:.3f} MFLOPs, valid log loss "
            + ", ".join(f"{label} {v:.4f}" for label, v in scores.items()))
    if args.reuse_alone:
        fields, noise = stored_alone(args.reuse_alone, rows, cfg)
        for row, alone in zip(rows, fields):
            row.update(alone)
    else:
        noise = trained_alone(rows, cfg, data, args)
    alone = [r["alone_valid_logloss"] for r in rows]
    result = {"benchmark": "ctr-fidelity", "dataset": args.dataset, "tag": args.tag,
              "command": "python benchmarks/bench_ctr_fidelity.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": machine_info(args.threads), "seed": cfg.train.seed,
              "finetune_rows": cfg.finetune_rows, "finetune_lr": cfg.finetune_lr, "draws": DRAWS,
              "supernet": {"rule": cfg.supernet.rule, "random_paths": cfg.supernet.random_paths,
                           "epochs": fit["epoch"], "best_epoch": fit["best_epoch"], "seconds": fit["train_seconds"],
                           "stopped_by": stopped_by(fit["epoch"], fit["best_epoch"], cfg.train.patience)},
              "space": cfglib.to_dict(cfg.space), "retrain_lrs": cfg.learning_rates(), "rows": rows,
              "rank": {label: {"kendall_tau": kendall_tau([r["scores"][label] for r in rows], alone),
                               "spearman_rho": spearman_rho([r["scores"][label] for r in rows], alone)}
                       for label in scorers},
              "alone_seed_to_seed": noise, "alone_seeds": cfg.retrain_seeds,
              "alone_from": str(args.reuse_alone) if args.reuse_alone else None,
              "wall_seconds": time.perf_counter() - started}
    out = Path(args.out_dir)
    write_json_atomic(out / f"{name}.json", result)
    taus = ", ".join(f"{label} {v['kendall_tau']:.2f}" for label, v in result["rank"].items())
    plot(rows, out / f"{name}.png", f"{args.dataset}, Kendall τ: {taus}")
    log(f"Kendall τ: {taus}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
