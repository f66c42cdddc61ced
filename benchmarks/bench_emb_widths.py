"""Embedding-width frontier: test AUC against embedding parameters when every field has the same width
(and, optionally, when one field alone is narrowed), with the data's id concentration per field. It is
the yardstick for any embedding-dimension search: a searched allocation is only worth its cost when it
sits above this curve.

Writes ``benchmarks/results/emb-widths-<dataset>.json``; ``benchmarks/render_ihas.py`` renders it.
Example: ``python benchmarks/bench_emb_widths.py --dataset frappe --widths 2 4 6 8 10 --narrow item=3 --seeds 3``.
``--full-width N`` replaces the preset's full width (10) by N; the results then go to
``emb-widths-<dataset>-full<N>.json``. ``--set KEY=VALUE`` overrides the preset (e.g.
``retrain.embedding_weight_decay=0.01``) and ``--tag T`` appends ``-T`` to the results' name.
``--pair A B`` adds a memorisation diagnostic for two fields (frappe: ``user item``): the share of test rows
whose (A, B) pair occurs in the training rows and their positive rate, and per width the share of those
rows scored below 0.5 and the AUC on the other rows.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from recarch.cost import machine_info
from recarch.ctr.metrics import roc_auc
from recarch.ctr.run import CTREvaluator, embedding_parameters
from recarch.io import write_json_atomic
from recarch.ihas.job import load_ihas_config
from recarch.ihas.retrain import evaluate_both, fit_model, mixed_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def concentration(data) -> dict:
    """Per field: vocabulary, and how many ids cover 80 % of the training rows."""
    cat = np.asarray(data.train.cat)
    out = {}
    for f, name in enumerate(data.schema.fields):
        counts = np.sort(np.bincount(cat[:, f], minlength=data.schema.vocab_sizes[f]))[::-1]
        out[name] = {"vocab": int(data.schema.vocab_sizes[f]),
                     "ids_for_80pct_rows": int(np.searchsorted(np.cumsum(counts) / counts.sum(), 0.8)) + 1}
    return out


def seen_pairs(data, a: int, b: int) -> np.ndarray:
    """Per test row: does its (field a, field b) pair occur in the training rows?"""
    train, test = np.asarray(data.train.cat), np.asarray(data.test.cat)
    base = int(data.schema.vocab_sizes[b])
    known = np.unique(train[:, a].astype(np.int64) * base + train[:, b])
    return np.isin(test[:, a].astype(np.int64) * base + test[:, b], known)


def pair_diagnostic(model, data, seen: np.ndarray, batch_size: int) -> dict:
    """Memorisation (seen-pair rows scored < 0.5) and generalisation (AUC on the unseen-pair rows)."""
    prob = CTREvaluator(data, batch_size).probabilities(model, "test")
    label = np.asarray(data.test.label)
    return {"seen_scored_below_half": float((prob[seen] < 0.5).mean()),
            "unseen_auc": roc_auc(label[~seen], prob[~seen])}


def mean_std(values) -> list:
    return [statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="frappe")
    ap.add_argument("--backbone", default="deepfm")
    ap.add_argument("--widths", nargs="+", type=int, default=[2, 4, 6, 8, 10])
    ap.add_argument("--narrow", action="append", default=[], metavar="FIELD=WIDTH",
                    help="also train with only FIELD narrowed to WIDTH, the others at full width")
    ap.add_argument("--full-width", type=int, default=None,
                    help="the full embedding width (default: the preset's model.embed_dim)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key of configs/ihas-quick.yaml (repeatable)")
    ap.add_argument("--tag", default="", help="appended to the results' file name and run folders")
    ap.add_argument("--pair", nargs=2, metavar=("FIELD_A", "FIELD_B"), default=None,
                    help="memorisation diagnostic on the (FIELD_A, FIELD_B) pairs, e.g. user item")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = machine_info(args.threads)
    sets = [f"data.dataset={args.dataset}", f"model.name={args.backbone}", f"retrain.threads={args.threads}"]
    if args.full_width is not None:
        # Gate blocks play no part here; one column per block always divides the width.
        sets += [f"model.embed_dim={args.full_width}", f"blocks={args.full_width}"]
    cfg = load_ihas_config([ROOT / "configs" / "ihas-quick.yaml"], sets + args.set)
    data = cfg.data.load(args.data_dir)
    fields, full = data.schema.fields, cfg.model.embed_dim
    too_wide = [w for w in args.widths if not 0 < w <= full]
    if too_wide:
        ap.error(f"--widths {too_wide}: each width must lie in 1..{full} (the full width; see --full-width)")
    settings = {f"uniform {w}": [w] * len(fields) for w in args.widths}
    for spec in args.narrow:
        name, _, width = spec.partition("=")
        if name not in fields or not width.isdigit():
            ap.error(f"--narrow {spec!r}: expected FIELD=WIDTH with FIELD one of {', '.join(fields)}")
        settings[f"{name} {width}, others {full}"] = [int(width) if f == name else full for f in fields]
    pair = None
    if args.pair:
        missing = [f for f in args.pair if f not in fields]
        if missing:
            ap.error(f"--pair {missing}: expected fields among {', '.join(fields)}")
        seen = seen_pairs(data, fields.index(args.pair[0]), fields.index(args.pair[1]))
        test_label = np.asarray(data.test.label)
        pair = {"fields": args.pair, "test_rows_seen": float(seen.mean()),
                "positive_rate_seen": float(test_label[seen].mean()),
                "positive_rate_unseen": float(test_label[~seen].mean())}
        print(f"{seen.mean():.1%} of the test rows have a training ({', '.join(args.pair)}) pair; positive rate "
              f"{pair['positive_rate_seen']:.3f} against {pair['positive_rate_unseen']:.3f}", flush=True)
    reference = None
    rows = []
    for label, dims in settings.items():
        aucs, diagnostics = [], []
        for seed in range(args.seed, args.seed + args.seeds):
            run_cfg = replace(cfg, retrain=replace(cfg.retrain, seed=seed))
            model = mixed_model(data, run_cfg.model, [list(range(d)) for d in dims], seed)
            fit_model(model, data, run_cfg.retrain, HERE / ".work" / "emb-widths" / f"{args.dataset}-full{full}{'-' + args.tag if args.tag else ''}-{label}-{seed}",
                      lambda *a, **k: None, run_cfg.eval_batch_size)
            aucs.append(evaluate_both(model, data, run_cfg.eval_batch_size)["test"]["auc"])
            if pair:
                diagnostics.append(pair_diagnostic(model, data, seen, run_cfg.eval_batch_size))
        params = embedding_parameters(model)
        if dims == [full] * len(fields):
            reference = params
        rows.append({"setting": label, "dims": dict(zip(fields, dims)), "embedding_params": params,
                     "test_auc": mean_std(aucs), "per_seed": aucs})
        if pair:
            rows[-1]["pair"] = {k: mean_std([d[k] for d in diagnostics]) for k in diagnostics[0]}
        print(f"{label}: AUC {statistics.mean(aucs):.4f}, {params:,} embedding parameters", flush=True)
    for r in rows:
        r["embedding_params_vs_full"] = r["embedding_params"] / reference if reference else None
    result = {"dataset": args.dataset, "backbone": args.backbone, "full_width": full, "seed": args.seed,
              "seeds": args.seeds,
              "command": "python benchmarks/bench_emb_widths.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": machine, "retrain": "configs/ihas-quick.yaml retrain settings, from scratch",
              "overrides": args.set,
              "concentration": concentration(data), "pair": pair, "rows": rows}
    suffix = ("" if args.full_width is None else f"-full{full}") + (f"-{args.tag}" if args.tag else "")
    out = Path(args.out_dir) / f"emb-widths-{args.dataset}{suffix}.json"
    write_json_atomic(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
