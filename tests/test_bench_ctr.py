"""bench_ctr.py: the popularity floor on a hand-computed case, --reuse-results, --parallel, an unfinished search
going on, and the table's note on seeds trained at different commits."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmark_scripts import load
from recarch import config as cfglib
from recarch.ctr.table import CTRData, CTRSchema, CTRTable

DATA = Path(os.environ.get("RECARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def table(items, labels) -> CTRTable:
    cat = np.stack([np.zeros(len(items), np.int64), np.asarray(items, np.int64)], 1)
    return CTRTable(cat, np.zeros((len(items), 0), np.float32), np.asarray(labels, np.float32))


def test_the_popularity_floor_scores_rows_by_their_items_training_clicks():
    # training clicks: item 1 → 2, item 2 → 1, item 3 → 0 (shown but never clicked)
    train = table([1, 1, 1, 2, 2, 3], [1, 1, 0, 1, 0, 0])
    # test scores 2, 1, 0, 2: positives {2, 0} vs negatives {1, 2}; pairs (2>1) 1, (2=2) ½, (0<1) 0, (0<2) 0 → 1.5 / 4
    test = table([1, 2, 3, 1], [1, 0, 1, 0])
    data = CTRData("tiny", CTRSchema(fields=["user_id", "item_id"], vocab_sizes=[1, 4], numeric=[]), train, test, test)
    assert load("bench_ctr").popularity_auc(data, "item_id") == pytest.approx(1.5 / 4)


def stored_baselines(out_dir, command: str) -> None:
    run = {"seed": 42, "valid": {"auc": 0.8}, "test": {"auc": 0.79}, "best_epoch": 3, "epochs_run": 6, "train_seconds": 9.0}
    row = {"model": "dlrm", "seed": 42, "run_dir": "/gone", "lr": 3e-4, "per_seed": [run], "samples_per_s": 1.0,
           "flops_per_sample": 2, "params": 3, "embedding_params": 1, "inference_us_per_sample": 4.0}
    (out_dir / "ctr-baselines").mkdir()
    stored = {"command": command, "machine": {"git_commit": "7b73156dc5"}, "baselines": [row]}
    (out_dir / "ctr-baselines" / "tiny.json").write_text(json.dumps(stored))


def test_reuse_results_keeps_a_stored_seed_whose_run_folder_is_gone(tmp_path):
    bench = load("bench_ctr")
    stored_baselines(tmp_path, "python benchmarks/bench_ctr.py --datasets tiny --baselines-only --lrs 3e-4 --threads 1")
    args = bench.parser().parse_args(["--baselines-only", "--reuse-results", "--lrs", "3e-4", "--out-dir", str(tmp_path)])
    args.earlier = bench.earlier_runs("tiny", args)
    row = bench.baseline("tiny", "dlrm", 42, 3e-4, args)  # trained, this would fail: there is no dataset "tiny"
    assert (row["model"], row["seed"], row["test"]["auc"], row["epochs_run"], row["flops_per_sample"]) == ("dlrm", 42, 0.79, 6, 2)
    assert row["commit"] == "7b73156dc5"  # the stored file's: the run's own code, not this checkout's
    assert set(args.earlier) == {("tiny", "dlrm", 3e-4, 42)}


def test_reuse_results_skips_a_file_made_with_other_overrides(tmp_path, capsys):
    bench = load("bench_ctr")
    stored_baselines(tmp_path, "python benchmarks/bench_ctr.py --baselines-only --set model.embed_dim=16")
    args = bench.parser().parse_args(["--baselines-only", "--reuse-results", "--out-dir", str(tmp_path)])
    assert bench.earlier_runs("tiny", args) == {}
    assert "not reused" in capsys.readouterr().err
    args = bench.parser().parse_args(["--baselines-only", "--out-dir", str(tmp_path)])  # no --reuse-results
    assert bench.earlier_runs("tiny", args) == {}


def test_the_baselines_table_names_the_commits_of_seeds_trained_apart():
    render = load("render_ctr")
    runs = [{"seed": s, "best_epoch": 3, "epochs_run": 6, "commit": c} for s, c in ((42, "7b73156dc5aa"), (43, "190a66d0bb"))]
    row = {"model": "dlrm", "lr": 3e-4, "test_auc": [0.8, 0.01], "test_logloss": [0.5, 0.01], "per_seed": runs,
           "flops_per_sample": 1e6, "params": 10, "samples_per_s": 5.0}
    r = {"dataset": "tiny", "command": "python benchmarks/bench_ctr.py", "machine": {}, "seed": 42, "seeds": [42, 43],
         "lrs": [3e-4], "baselines": [row], "best_baseline": "dlrm"}
    assert "seed(s) 42 at `7b73156dc5`; seed(s) 43 at `190a66d0bb`" in "\n".join(render.baselines_section(r))
    runs[1]["commit"] = runs[0]["commit"]
    assert "different commits" not in "\n".join(render.baselines_section(r))


def test_baselines_trained_side_by_side_equal_those_trained_one_after_another(tmp_path):
    """--parallel 2 trains in two processes what --parallel 1 trains in this one: the same runs, the same scores."""
    bench = load("bench_ctr")
    results = {}
    for parallel in (2, 1):
        out = tmp_path / f"parallel{parallel}"
        argv = ["--data-dir", str(DATA), "--datasets", "avazu-sample", "--baselines-only", "--models", "dlrm", "deepfm", "--seeds", "1",
                "--lrs", "1e-3", "--set", "train.epochs=2", "--set", "model.mlp=[16]",
                "--work-dir", str(out / "runs"), "--out-dir", str(out), "--parallel", str(parallel), "--quiet"]
        if parallel == 2:  # the worker processes alone train them
            args = bench.parser().parse_args(argv)
            args.earlier = {}
            bench.train_side_by_side("avazu-sample", ["dlrm", "deepfm"], [42], args)
            assert len(list((out / "runs").glob("avazu-sample-*-seed42/metrics.json"))) == 2
        bench.main(argv)
        stored = json.loads((out / "ctr-baselines" / "avazu-sample.json").read_text())
        results[parallel] = {b["model"]: (b["valid"]["logloss"], b["test"]["auc"], b["epochs_run"]) for b in stored["baselines"]}
    assert set(results[1]) == {"dlrm", "deepfm"} and results[1] == results[2]


def test_an_unfinished_search_goes_on_only_with_the_same_settings(tmp_path, monkeypatch):
    bench = load("bench_ctr")
    monkeypatch.setattr(bench, "search_ctr", lambda cfg, data_dir, run_dir, echo, resume: {"resume": resume})
    args = bench.parser().parse_args(["--work-dir", str(tmp_path)])
    assert bench.search("frappe", 1.0, args) == {"resume": False}  # nothing there yet
    run_dir = tmp_path / "frappe-search-batchnorm"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfglib.to_dict(bench.search_config("frappe", 1.0, args))))
    assert bench.search("frappe", 1.0, args) == {"resume": True}
    other = bench.parser().parse_args(["--work-dir", str(tmp_path), "--search-set", "top_k=2"])
    with pytest.raises(SystemExit, match="unfinished search with other settings"):
        bench.search("frappe", 1.0, other)
