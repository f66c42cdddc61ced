"""``recarch`` command line: a thin layer over :mod:`recarch.run` and the registries."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from recarch.config import ConfigError
from recarch.failures import TrainingDiverged


def _options(args, **options: str) -> dict:
    """A command's own flags as config values (over its preset files, under ``--set``), each mapped to a
    dotted config key."""
    out: dict = {}
    for option, dotted in options.items():
        value = getattr(args, option)
        if value is None or value is False:
            continue
        *parents, leaf = dotted.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


def _print_status(rows, own: str) -> None:
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        mark = "present" if r["present"] == "yes" else "missing"
        print(f"{r['name']:<{width}}  {mark:<8} {r['description']}  [{r['path']}]")
    print(f"\nYour own log instead of a registered data set: {own} (README).")


def _train(args) -> int:
    from recarch import run

    options = _options(args, model="model.name", dataset="data.dataset", out_dir="out_dir")
    if args.resume:
        cfg = run.load_run_config([Path(args.resume) / "config.yaml"], args.set)
    else:
        cfg = run.load_run_config(args.config, args.set, options)
    result = run.train(cfg, data_dir=args.data_dir, run_dir=args.resume, resume=bool(args.resume))
    print(f"results in {result['run_dir']} (metrics.json, cost.json, log.txt)")
    return 0


def _search(args) -> int:
    from recarch.search.job import load_search_config, search

    options = _options(args, dataset="data.dataset", out_dir="out_dir", budget_flops="budget_flops", budget_ms="budget_ms",
                       budgets="budgets", strategy="strategy", executor="executor.kind")
    if args.resume:
        cfg = load_search_config([Path(args.resume) / "config.yaml"], args.set)
    else:
        cfg = load_search_config(args.config, args.set, options)
    summary = search(cfg, data_dir=args.data_dir, run_dir=args.resume, resume=bool(args.resume))
    if "rows" in summary:  # rank 0 of a torchrun job, or a plain run
        made = "front.json, front.png, front/" if (Path(summary["run_dir"]) / "front.json").exists() else "arch.json, retrain/"
        print(f"results in {summary['run_dir']} ({made}, summary.json, search/, baseline/)")
    return 0


def _retrain(args) -> int:
    from recarch import run

    arch_path = Path(args.arch)
    arch = json.loads(arch_path.read_text())
    options = {"data": arch["data"], "model": arch["model"]}  # the architecture beats a preset's model
    if args.out_dir:
        options["out_dir"] = args.out_dir
    cfg = run.load_run_config(args.config, args.set, options)
    weights = None if args.from_scratch else arch_path.parent / arch["weights"]
    result = run.train(cfg, data_dir=args.data_dir, init_weights=weights)
    print(f"results in {result['run_dir']} (metrics.json, cost.json, log.txt)")
    return 0


def _evaluate(args) -> int:
    from recarch import run

    metrics = run.evaluate(Path(args.run_dir), args.protocol or None, args.split, args.data_dir)
    print(json.dumps(metrics, indent=2))
    return 0


def _export(args) -> int:
    from recarch.export import export_run

    out = export_run(Path(args.run_dir), args.k, args.out and Path(args.out), args.data_dir, args.onnx)
    print(f"exported to {out} (model.safetensors, config.json, program.pt2{', model.onnx' if args.onnx else ''})")
    return 0


def _datasets(args) -> int:
    from recarch.data import dataset_status

    _print_status(dataset_status(args.data_dir), "--set data.table.path=FILE --set data.table.user=COLUMN "
                  "--set data.table.item=COLUMN")
    return 0


def _download(args) -> int:
    from recarch.data import download_dataset

    for path in download_dataset(args.name, args.data_dir):
        print(path)
    return 0


def _models(args) -> int:
    from recarch.models import MODELS

    for name in MODELS.names():
        doc = (MODELS.get(name).__doc__ or "").strip().splitlines()
        print(f"{name:<10} {doc[0] if doc else ''}")
    return 0


def _ctr_train(args) -> int:
    from recarch.ctr.run import load_ctr_config, train_ctr

    options = _options(args, model="model.name", dataset="data.dataset", out_dir="out_dir")
    if args.resume:
        cfg = load_ctr_config([Path(args.resume) / "config.yaml"], args.set)
    else:
        cfg = load_ctr_config(args.config, args.set, options)
    result = train_ctr(cfg, data_dir=args.data_dir, run_dir=args.resume, resume=bool(args.resume))
    print(f"results in {result['run_dir']} (metrics.json, cost.json, log.txt)")
    return 0


def _ctr_search(args) -> int:
    from recarch.ctr.search import load_search_config, search_ctr

    options = _options(args, dataset="data.dataset", space="space.space", hardware="hardware",
                       budget_mflops="budget_mflops", out_dir="out_dir", executor="executor.kind")
    if args.resume:
        cfg = load_search_config([Path(args.resume) / "config.yaml"], args.set)
    else:
        cfg = load_search_config(args.config, args.set, options)
    result = search_ctr(cfg, data_dir=args.data_dir, run_dir=args.resume, resume=bool(args.resume))
    print(f"results in {result['run_dir']} (arch-*.json, summary.json, pareto-*.png, retrain/)")
    return 0


def _ctr_evaluate(args) -> int:
    from recarch.ctr.run import evaluate_ctr

    print(json.dumps(evaluate_ctr(Path(args.run_dir), args.split, args.data_dir), indent=2))
    return 0


def _ctr_export(args) -> int:
    from recarch.export import export_ctr_run

    out = export_ctr_run(Path(args.run_dir), args.out and Path(args.out), args.data_dir, args.onnx)
    print(f"exported to {out} (model.safetensors, config.json, program.pt2{', model.onnx' if args.onnx else ''})")
    return 0


def _ctr_datasets(args) -> int:
    from recarch.ctr.datasets import ctr_dataset_status

    _print_status(ctr_dataset_status(args.data_dir), "--set data.table.path=FILE --set data.table.label=COLUMN")
    return 0


def _ctr_models(args) -> int:
    from recarch.ctr.run import CTR_MODELS

    for name in CTR_MODELS.names():
        doc = (CTR_MODELS.get(name).__doc__ or "").strip().splitlines()
        print(f"{name:<10} {doc[0] if doc else ''}")
    return 0


def _ihas(args) -> int:
    from recarch.ihas.job import load_ihas_config, run_ihas

    options = _options(args, dataset="data.dataset", backbone="model.name", clusters="clusters", out_dir="out_dir",
                       executor="executor.kind")
    if args.resume:
        if args.set or args.config or options:  # the stages already trained depend on every setting
            raise ConfigError("--resume continues a run with its own config.yaml and takes no --set, --config, "
                              "--dataset, --backbone, --clusters, --out-dir or --executor; start a new run to change them")
        cfg = load_ihas_config([Path(args.resume) / "config.yaml"])
    else:
        cfg = load_ihas_config(args.config, args.set, options)
    summary = run_ihas(cfg, data_dir=args.data_dir, run_dir=args.resume, resume=bool(args.resume))
    print(f"results in {summary['run_dir']} (summary.json, export/ (serving program), ensemble/, search/, cluster/, "
          "retrain/, baseline-*/)")
    return 0


def _reproduce(args) -> int:
    from recarch.executor import ExecutorConfig
    from recarch.reproduce.tables import reproduce

    for preset in args.config:
        if not Path(preset).is_file():
            raise FileNotFoundError(f"--config: no preset at {preset} (run from the repository root, or give a path)")
    executor = ExecutorConfig(kind=args.executor, cpus_per_job=args.cpus_per_job)
    executor.validate()
    result = reproduce(args.table, args.dataset, args.seeds, args.config, args.set, args.data_dir, Path(args.out_dir),
                       echo=args.verbose, first_seed=args.first_seed, only=args.only,
                       remeasure=args.remeasure_cost, executor=executor)
    if result["markdown"] is None:
        print(f"cached rows: {', '.join(f'{m} ({len(r)} seed(s))' for m, r in result['rows'].items())}; "
              f"run again without --only to write {args.table}")
        return 0
    print(Path(result["markdown"]).read_text())
    return 0


def ctr_parser(sub) -> None:
    c = sub.add_parser("ctr", help="CTR track: train hand-designed models, NASRec-style search with PIM co-design")
    csub = c.add_subparsers(dest="ctr_command", required=True)
    t = csub.add_parser("train", help="train and evaluate a CTR model (AUC, log loss, cost)")
    t.add_argument("--model", help="dlrm | deepfm | dcnv2 | autoint | nasrec (see `recarch ctr models`)")
    t.add_argument("--dataset", help="registered CTR dataset (see `recarch ctr datasets`)")
    t.add_argument("--config", action="append", default=[], metavar="FILE.yaml")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. model.embed_dim=10")
    t.add_argument("--out-dir")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run exactly")
    t.set_defaults(func=_ctr_train)
    s = csub.add_parser("search", help="supernet → evolution (× PIM placement) → retrain the best → export")
    s.add_argument("--dataset")
    s.add_argument("--space", choices=["autoctr", "full"])
    s.add_argument("--hardware", metavar="PIM.yaml", help="hardware model; adds the co-design search")
    s.add_argument("--budget-mflops", type=float, help="FLOPs per sample limit, in millions")
    s.add_argument("--config", action="append", default=[], metavar="FILE.yaml")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--out-dir")
    s.add_argument("--executor", choices=["local", "ray"],
                   help="where the retrains (candidate × learning rate × seed) run: here, or as Ray tasks")
    s.add_argument("--resume", metavar="RUN_DIR", help="go on with an interrupted CTR search in RUN_DIR")
    s.set_defaults(func=_ctr_search)
    e = csub.add_parser("evaluate", help="evaluate a finished CTR run")
    e.add_argument("run_dir")
    e.add_argument("--split", default="test", choices=["valid", "test"])
    e.set_defaults(func=_ctr_evaluate)
    x = csub.add_parser("export", help="safetensors weights + a torch.export click-probability program")
    x.add_argument("run_dir")
    x.add_argument("--out", help="output folder (default RUN_DIR/export)")
    x.add_argument("--onnx", action="store_true", help="also write model.onnx (needs recarch[onnx])")
    x.set_defaults(func=_ctr_export)
    csub.add_parser("datasets", help="list CTR datasets, present or not").set_defaults(func=_ctr_datasets)
    csub.add_parser("models", help="list CTR models").set_defaults(func=_ctr_models)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recarch", description="Automated architecture design of recommender models.")
    p.add_argument("--data-dir", default=None, help="dataset root (default: $RECARCH_DATA, else ~/.cache/recarch/data)")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train and evaluate a sequential model")
    t.add_argument("--model", help="registered model name (see `recarch models`)")
    t.add_argument("--dataset", help="registered dataset name (see `recarch datasets`)")
    t.add_argument("--config", action="append", default=[], metavar="FILE.yaml", help="config file(s), applied in order")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.lr=0.01")
    t.add_argument("--out-dir", help="parent folder of the run folder (default runs/)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run exactly")
    t.set_defaults(func=_train)

    s = sub.add_parser("search", help="EASRec: search, derive, retrain, evaluate, measure (beside SASRec)")
    s.add_argument("--dataset", help="registered dataset name")
    s.add_argument("--strategy", help="search strategy (default easrec)")
    s.add_argument("--config", action="append", default=[], metavar="FILE.yaml")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. architect.lam=0.5")
    budget = s.add_mutually_exclusive_group()
    budget.add_argument("--budget-flops", type=float, help="derive within this fraction of the full model's encoder FLOPs")
    budget.add_argument("--budget-ms", type=float, help="derive within this many measured CPU ms per batch (encoder)")
    budget.add_argument("--budgets", type=float, nargs="+", metavar="FRACTION",
                        help="one architecture per FLOPs fraction from one supernet (front.json, front.png)")
    s.add_argument("--executor", choices=["local", "ray"],
                   help="where independent trainings run (strategy random's trials): here, or as Ray tasks")
    s.add_argument("--out-dir")
    s.add_argument("--resume", metavar="RUN_DIR", help="go on with an interrupted search run in RUN_DIR")
    s.set_defaults(func=_search)

    r = sub.add_parser("retrain", help="retrain a derived architecture (arch.json from `recarch search`)")
    r.add_argument("arch", metavar="ARCH.json")
    r.add_argument("--config", action="append", default=[], metavar="FILE.yaml", help="training settings")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--from-scratch", action="store_true", help="do not start from the inherited supernet weights")
    r.add_argument("--out-dir")
    r.set_defaults(func=_retrain)

    e = sub.add_parser("evaluate", help="evaluate a finished run")
    e.add_argument("run_dir")
    e.add_argument("--protocol", action="append", help="pop100 | uni100 | full | pop100-recbole (repeatable)")
    e.add_argument("--split", default="test", choices=["valid", "test"])
    e.set_defaults(func=_evaluate)

    x = sub.add_parser("export", help="safetensors weights + a torch.export top-k serving program of a run")
    x.add_argument("run_dir")
    x.add_argument("--k", type=int, default=10, help="items returned per history")
    x.add_argument("--out", help="output folder (default RUN_DIR/export)")
    x.add_argument("--onnx", action="store_true", help="also write model.onnx (needs recarch[onnx])")
    x.set_defaults(func=_export)

    sub.add_parser("datasets", help="list registered datasets, present or not").set_defaults(func=_datasets)
    d = sub.add_parser("download", help="fetch a registered dataset into the data directory (sha256-checked)")
    d.add_argument("name")
    d.set_defaults(func=_download)
    sub.add_parser("models", help="list registered models").set_defaults(func=_models)
    ctr_parser(sub)

    ih = sub.add_parser("ihas", help="iHAS: instance-wise embedding dimensions (search → cluster → retrain) vs baselines")
    ih.add_argument("--dataset", help="registered CTR dataset (see `recarch ctr datasets`)")
    ih.add_argument("--backbone", help="dlrm | deepfm | dcnv2 | autoint")
    ih.add_argument("--clusters", type=int, help="number of instance groups k")
    ih.add_argument("--config", action="append", default=[], metavar="FILE.yaml", help="e.g. configs/ihas-quick.yaml")
    ih.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. target=0.3")
    ih.add_argument("--out-dir")
    ih.add_argument("--executor", choices=["local", "ray"],
                    help="where the group models train (tables: per_group): here, or as Ray tasks")
    ih.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run with its config.yaml: finished "
                    "stages are reloaded, the interrupted one goes on from its last epoch")
    ih.set_defaults(func=_ihas)

    rp = sub.add_parser("reproduce", help="the EASRec paper's Table III / IV / V or Fig. 4 on a dataset, beside its numbers")
    rp.add_argument("table", choices=["table3", "table4", "table5", "fig4"])
    rp.add_argument("--dataset", required=True)
    rp.add_argument("--seeds", type=int, default=1, help="seeds per method (mean ± std, t-test from 2)")
    rp.add_argument("--first-seed", type=int, default=42,
                    help="seeds run are first-seed … first-seed+seeds−1; runs are cached per seed, so processes "
                         "given different seeds can fill one --out-dir side by side")
    rp.add_argument("--only", action="append", default=[], metavar="METHOD",
                    help="run only this method's rows into the cache and write no table (repeatable): processes "
                         "given different methods fill one --out-dir side by side")
    rp.add_argument("--config", action="append", default=None, metavar="PRESET.yaml",
                    help="search preset shared by every method (default configs/easrec-quick.yaml)")
    rp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    rp.add_argument("--out-dir", default="reproduce", help="tables, plots and cached runs (resumable)")
    rp.add_argument("--executor", choices=["local", "ray"], default="local",
                    help="where the runs (method × seed) train: here, or as Ray tasks ($RAY_ADDRESS, else a local Ray)")
    rp.add_argument("--cpus-per-job", type=int, default=1, help="ray: CPUs each run reserves (match train.threads)")
    rp.add_argument("--remeasure-cost", action="store_true",
                    help="measure every cached model's FLOPs, inference time and peak memory again with this code")
    rp.add_argument("--verbose", action="store_true", help="print every run's log")
    rp.set_defaults(func=_reproduce)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "func", None) is _reproduce and not args.config:
        args.config = ["configs/easrec-quick.yaml"]
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, KeyError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"recarch: error: {message}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:  # the run folder keeps its last good checkpoint and says it failed
        print(f"recarch: error: training diverged: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
