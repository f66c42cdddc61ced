"""Put ``bench_easrec.py``'s run folders into ``recarch reproduce``'s run cache, so that a table does
not train EASRec and the hand-sized SASRec a second time: the search folder becomes the ``easrec`` row,
its ``baseline/`` the ``sasrec`` row.

A folder is imported only when its resolved config equals, field for field, the one ``reproduce``
would run for that method and seed (``bench_easrec`` also trains the baseline inside the search
folder, the one difference allowed). Runs are deterministic per seed: on amazon-games seed 42 both
paths give the same test NDCG@10 to the last digit. Each imported row names its source folder.

Example (the ml-1m runs of the EASRec benchmark, for Tables III and IV)::

    python benchmarks/import_easrec_runs.py --dataset ml-1m --config configs/easrec-ml-1m-cpu.yaml \\
        --set train.threads=1 --set retrain.threads=1 --out-dir benchmarks/results/reproduce \\
        benchmarks/.work/easrec/ml-1m-softmax-main benchmarks/.work/easrec/ml-1m-softmax-main-seed43
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml

from recarch.reproduce.methods import cache_row, copy_run, method_config, resolved, seed_folder


def _differences(expected: dict, found: dict, prefix: str = "") -> list:
    out = []
    for key in sorted(set(expected) | set(found)):
        a, b = expected.get(key), found.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: reproduce runs {a!r}, the folder has {b!r}")
    return out


def import_run(bench_dir: Path, dataset: str, preset, sets, runs_dir: Path) -> list:
    """Import one ``bench_easrec`` search folder; returns the rows written."""
    found = yaml.safe_load((bench_dir / "config.yaml").read_text())
    seed = found["train"]["seed"]
    found["baseline"] = False
    pairs = [("easrec", bench_dir, found),
             ("sasrec", bench_dir / "baseline", yaml.safe_load((bench_dir / "baseline" / "config.yaml").read_text()))]
    for name, _, config in pairs:
        wrong = _differences(resolved(method_config(name, dataset, seed, preset, sets)), config)
        if wrong:
            raise ValueError(f"{bench_dir}: not the {name} run reproduce would train for seed {seed}: " + "; ".join(wrong))
    rows = []
    for name, source, _ in pairs:
        target = seed_folder(runs_dir, dataset, name, seed)
        if (target / "row.json").exists():
            raise FileExistsError(f"{target / 'row.json'}: already cached; remove it to import {source}")
        copy_run(source, target, ignore=shutil.ignore_patterns("baseline"))
        rows.append(cache_row(name, dataset, seed, runs_dir, imported_from=str(source)))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench_dirs", nargs="+", type=Path, help="bench_easrec search folders (benchmarks/.work/easrec/…)")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--config", action="append", required=True, metavar="PRESET.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out-dir", type=Path, default=Path("benchmarks/results/reproduce"))
    args = ap.parse_args(argv)
    for bench_dir in args.bench_dirs:
        for row in import_run(bench_dir, args.dataset, args.config, args.set, args.out_dir / "runs"):
            print(f"{row['method']} seed {row['seed']}: test pop100 NDCG@10 {row['test']['pop100']['ndcg@10']:.4f} "
                  f"(from {row['imported_from']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
